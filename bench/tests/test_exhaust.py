import unittest

from bench.exhaust import cause


class CauseTest(unittest.TestCase):
    def test_panic_in_a_crate(self):
        log = ("thread '<unnamed>' panicked at /root/.cargo/registry/src/index.crates.io-6f17d22b"
               "ba15001f/tiny_http-0.12.0/src/util/task_pool.rs:104:14:\n"
               "called `Result::unwrap()` on an `Err` value: Os { code: 11, kind: WouldBlock, "
               "message: \"Resource temporarily unavailable\" }\n")
        self.assertEqual(cause(log), "panic at tiny_http-0.12.0/src/util/task_pool.rs:104: "
                                     "Resource temporarily unavailable")

    def test_panic_in_std(self):
        log = ("thread 'main' panicked at library/std/src/thread/mod.rs:687:29:\n"
               "failed to spawn thread: Os { code: 11, kind: WouldBlock, message: \"Resource "
               "temporarily unavailable\" }\n")
        self.assertEqual(cause(log), "panic at std/src/thread/mod.rs:687: failed to spawn thread: "
                                     "Resource temporarily unavailable")

    def test_go_runtime_and_plain_messages(self):
        self.assertEqual(cause("runtime: failed to create new OS thread (have 9 already)\n"),
                         "failed to create new OS thread")
        self.assertEqual(cause("fatal error: out of memory\ngoroutine 1\n"),
                         "fatal error: out of memory")
        self.assertEqual(cause("accept: too many open files\n"), "too many open files")
        self.assertEqual(cause("Web service accessible at 127.0.0.1:1\n"), "")


if __name__ == "__main__":
    unittest.main()
