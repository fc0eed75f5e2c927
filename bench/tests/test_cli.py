import contextlib
import importlib
import io
import unittest

from bench import cli


class CliTest(unittest.TestCase):
    def test_every_command_has_its_function(self):
        for name, module in cli.COMMANDS.items():
            with self.subTest(command=name):
                mod = importlib.import_module(f"bench.{module}")
                self.assertTrue(callable(getattr(mod, "cmd_" + name.replace("-", "_"), None)))

    def test_unknown_command_is_a_usage_error(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(cli.main(["bogus"]), 2)
            self.assertEqual(cli.main([]), 2)
        self.assertIn("unknown command 'bogus'", err.getvalue())


if __name__ == "__main__":
    unittest.main()
