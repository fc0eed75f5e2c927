import unittest

from bench import wrk

# What `wrk -t2 -c100 -d3s --latency` prints (wrk 4.2).
OUTPUT = """Running 3s test @ http://127.0.0.1:40123/test
  2 thread and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  312.45us   9.87ms   81.20%
    Req/Sec    47.70k     2.01k   51.22k    70.00%
  Latency Distribution
     50%    0.98ms
     75%    1.16ms
     90%    1.38ms
     99%    1.91ms
  284512 requests in 3.00s, 33.64MB read
Requests/sec:  94812.37
Transfer/sec:     11.21MB
"""


class ParseTest(unittest.TestCase):
    def test_figures(self):
        self.assertEqual(wrk.parse(OUTPUT), (94812.37, 1.91, 284512))

    def test_latency_units(self):
        for text, ms in (("812.00us", 0.812), ("1.91ms", 1.91), ("2.05s", 2050.0),
                         ("1.50m", 90000.0)):
            with self.subTest(text=text):
                self.assertAlmostEqual(wrk.latency_ms(text), ms)
        self.assertIsNone(wrk.latency_ms("fast"))
        self.assertIsNone(wrk.latency_ms("x.yms"))

    def test_p99_in_seconds(self):
        figures = wrk.parse(OUTPUT.replace("     99%    1.91ms", "     99%    2.05s"))
        self.assertAlmostEqual(figures[1], 2050.0)

    def test_without_latency_distribution(self):
        # wrk run without --latency: no 99% line, no figures.
        text = "\n".join(line for line in OUTPUT.splitlines() if "%  " not in line)
        self.assertIsNone(wrk.parse(text))

    def test_failed_run(self):
        self.assertIsNone(wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n"))

    def test_socket_errors_do_not_confuse_it(self):
        text = OUTPUT.replace("Requests/sec:", "  Socket errors: connect 0, read 3, write 0, "
                              "timeout 0\nRequests/sec:")
        self.assertEqual(wrk.parse(text), (94812.37, 1.91, 284512))


if __name__ == "__main__":
    unittest.main()
