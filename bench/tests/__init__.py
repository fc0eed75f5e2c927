"""Unit tests of the pure parts of bench: python3 -m unittest discover -s bench/tests -t ."""
