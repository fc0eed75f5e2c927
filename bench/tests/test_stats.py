import unittest

from bench import fmt, stats


class SummaryTest(unittest.TestCase):
    def test_none(self):
        self.assertEqual(stats.summary([], fmt.ms), "—")

    def test_one_value_has_no_range(self):
        self.assertEqual(stats.summary([0.93], fmt.ms), "0.93 ms")

    def test_median_and_range_share_the_unit(self):
        self.assertEqual(stats.summary([1.07, 0.73, 0.93], fmt.ms), "0.93 ms (0.73–1.07 ms)")

    def test_even_count_median_is_the_mean_of_the_middle_two(self):
        self.assertEqual(stats.summary([1.0, 2.0, 3.0, 4.0], fmt.ms), "2.50 ms (1.00–4.00 ms)")

    def test_range_across_units_keeps_both(self):
        self.assertEqual(stats.summary([10.418, 740.5, 1200.0], fmt.ms),
                         "740 ms (10.4 ms–1.20 s)")

    def test_unitless_format(self):
        self.assertEqual(stats.summary([0, 0, 0], fmt.integer), "0 (0–0)")


class RatioTest(unittest.TestCase):
    def test_ratio_of_medians(self):
        self.assertEqual(stats.ratio_text([94.8, 1, 200], [82.4]), "1.15×")

    def test_missing_side_or_zero_peer(self):
        self.assertEqual(stats.ratio_text([], [1.0]), "—")
        self.assertEqual(stats.ratio_text([1.0], []), "—")
        self.assertEqual(stats.ratio_text([1.0], [0.0]), "—")

    def test_ratio_checks(self):
        at_least, at_most = stats.ratio_at_least(1.0), stats.ratio_at_most(0.3)
        self.assertTrue(at_least([100.0], [100.0]))
        self.assertFalse(at_least([99.0], [100.0]))
        self.assertTrue(at_most([0.3], [1.0]))
        self.assertFalse(at_most([0.31], [1.0]))
        self.assertIsNone(at_least([1.0], []))
        self.assertIsNone(at_most([], [1.0]))


class CheckTest(unittest.TestCase):
    def test_median_at_most(self):
        check = stats.median_at_most(1.0)
        self.assertTrue(check([0.5, 1.0, 9.0], []))
        self.assertFalse(check([1.0, 1.1, 0.2, 1.2], []))
        self.assertIsNone(check([], [0.1]))

    def test_max_at_most_and_min_at_least(self):
        self.assertTrue(stats.max_at_most(50)([1.0, 50.0], []))
        self.assertFalse(stats.max_at_most(50)([1.0, 50.1], []))
        self.assertTrue(stats.min_at_least(100)([100, 101], []))
        self.assertFalse(stats.min_at_least(100)([99, 101], []))
        self.assertIsNone(stats.max_at_most(0)([], []))


class FormatTest(unittest.TestCase):
    def test_formats(self):
        self.assertEqual(fmt.ms(0.25), "0.25 ms")
        self.assertEqual(fmt.ms(12.34), "12.3 ms")
        self.assertEqual(fmt.ms(660.0), "660 ms")
        self.assertEqual(fmt.ms(1224.0), "1.22 s")
        self.assertEqual(fmt.kb(681213), "681 kB")
        self.assertEqual(fmt.kb(4500862), "4.50 MB")
        self.assertEqual(fmt.kib(736), "736 KiB")
        self.assertEqual(fmt.kib(3400), "3.32 MiB")
        self.assertEqual(fmt.rps(94812), "94.8k")
        self.assertEqual(fmt.cpu(14.9), "14.9 ms (0.149 %)")
        self.assertEqual(fmt.seconds(133.2), "133 ms")
        self.assertEqual(fmt.seconds(1500.0), "1.50 s")


if __name__ == "__main__":
    unittest.main()
