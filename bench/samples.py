"""The samples of a run: bench.sh appends one `KEY<TAB>SIDE<TAB>VALUE` line per figure
(SIDE: rs or peer); a key may have many values (one per run)."""


class Samples:
    def __init__(self, lines=()):
        self.data = {}
        for line in lines:
            key, side, value = line.rstrip("\n").split("\t")
            self.data.setdefault((key, side), []).append(value)

    @classmethod
    def read(cls, path):
        with open(path) as f:
            return cls(f)

    def values(self, key, side):
        """Every value, as text."""
        return self.data.get((key, side), [])

    def num(self, key, side):
        """The values that are numbers."""
        out = []
        for v in self.values(key, side):
            try:
                out.append(float(v))
            except ValueError:
                pass
        return out

    def text(self, key, side):
        """The last value, or None."""
        vals = self.values(key, side)
        return vals[-1] if vals else None
