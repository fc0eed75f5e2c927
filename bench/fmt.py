"""How a figure is written in the table (each takes the number as measured)."""


def ms(v):
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def kb(v):
    """bytes → kB (1000 bytes, as build-image.sh) or MB"""
    return f"{v / 1e6:.2f} MB" if v >= 1e6 else f"{v / 1000:.0f} kB"


def kib(v):
    return f"{v / 1024:.2f} MiB" if v >= 1024 else f"{v:.0f} KiB"


def rps(v):
    return f"{v / 1000:.1f}k"


def integer(v):
    return f"{v:.0f}"


def cpu(v):
    """ms of CPU per 10 s, and the share of one core"""
    return f"{v:.1f} ms ({v / 100:.3f} %)"


def one_decimal(v):
    return f"{v:.1f}"


def two_decimals(v):
    return f"{v:.2f}"


def us(v):
    return f"{v:.1f} µs"


def percent(v):
    return f"{v:.0f} %"


def seconds(v):
    """ms → "133 ms", or "1.20 s" from a second on"""
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"
