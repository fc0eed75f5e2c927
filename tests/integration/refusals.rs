//! What the HTTP layer refuses on its own is seen (tiny_http patch 11): each refusal moves
//! `hello_path_http_requests_total` and `hello_path_http_refused_total{code}`, and is
//! logged once, like a request, its path escaped as the request log escapes it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::util::*;

/// Sends `bytes` on a new connection, reads to the end; returns the status of the one
/// answer and the client's address (as the log names it).
fn refusal(addr: SocketAddr, bytes: &[u8]) -> (u16, SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("no end within {WAIT:?}: {e}"));
    let text = String::from_utf8_lossy(&got);
    let all = parse_answers(&text).unwrap_or_else(|| panic!("not answers: {text:?}"));
    assert_eq!(all.len(), 1, "{text:?}");
    assert_eq!(all[0].header("Connection"), Some("close"), "{text:?}");
    (all[0].status, me)
}

/// One request of each kind the HTTP layer refuses, with the status it gets.
fn refusals() -> Vec<(Vec<u8>, u16)> {
    let post = "POST /t HTTP/1.1\r\nHost: x\r\n";
    let many: String = (0..101).map(|i| format!("X-{i}: {i}\r\n")).collect();
    vec![
        (
            format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").into_bytes(),
            400,
        ),
        (b"GET /t HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
            405,
        ),
        (b"GET /slow HTTP/1.1\r\nHo".to_vec(), 408),
        (
            format!("{post}Content-Length: 70000\r\n\r\nabc").into_bytes(),
            413,
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(70 * 1024)).into_bytes(),
            414,
        ),
        (format!("{post}Expect: bogus\r\n\r\n").into_bytes(), 417),
        (
            format!("GET /t HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes(),
            431,
        ),
        (
            format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n").into_bytes(),
            501,
        ),
        (b"GET /t HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505),
    ]
}

/// Every status the HTTP layer gives on its own, a known number of times each: exactly
/// that many in `/metrics` (each status its series, all of them in the request count) and
/// exactly that many log lines, one per refusal, saying what was wrong and whose request.
#[test]
fn every_refusal_is_counted_and_logged_once() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--header-timeout", "300ms"], &[]);
    let mut expected: Vec<(u16, usize)> = Vec::new();
    for (i, (bytes, status)) in refusals().into_iter().enumerate() {
        // the first kind three times, the others once or twice: counts that cannot be
        // confused
        let times = if i == 0 { 3 } else { 1 + i % 2 };
        for _ in 0..times {
            let (got, _) = refusal(addr, &bytes);
            assert_eq!(
                got,
                status,
                "{:?}",
                String::from_utf8_lossy(&bytes[..40.min(bytes.len())])
            );
        }
        match expected.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += times,
            None => expected.push((status, times)),
        }
    }
    let total: usize = expected.iter().map(|(_, n)| n).sum();
    let body = get(addr, "/metrics").body;
    for (status, n) in &expected {
        let line = format!("hello_path_http_refused_total{{code=\"{status}\"}} {n}");
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    assert_eq!(
        body.lines()
            .filter(|l| l.starts_with("hello_path_http_refused_total{"))
            .count(),
        expected.len(),
        "a series per status seen, no other:\n{body}"
    );
    // every refusal is a request answered, and so is this /metrics
    assert!(
        body.lines()
            .any(|l| l == format!("hello_path_http_requests_total {}", total + 1)),
        "{body}"
    );
    // (logged before /metrics was answered; the test's reader may lag behind the pipe)
    p.wait_log_n(" refused: ", total);
    for (status, n) in &expected {
        let lines = p.count_log(&format!("] {status} refused: "));
        assert_eq!(
            lines,
            *n,
            "log lines for {status}:\n{}",
            p.stdout().join("\n")
        );
    }
    assert_eq!(p.count_log(" refused: "), total);
}

/// The log line: status, reason, the request's method and path (escaped as the request log
/// escapes it: a request cannot forge a line) and the client's address; `from` alone when
/// not even a request line could be read.
#[test]
fn a_refusal_is_logged_like_a_request() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let (_, me) = refusal(
        addr,
        b"POST /a%0AFATAL:%20forged?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
    );
    let line = p.wait_log(" refused: ");
    assert!(
        line.ends_with(&format!(
            "[hello-path-rs] 400 refused: Content-Length given twice (POST /a%0AFATAL: forged from {me})"
        )),
        "{line:?}"
    );
    let (_, me) = refusal(addr, b"\x01\x02 not http\r\n\r\n");
    let line = p.wait_log_n(" refused: ", 2);
    assert!(
        line.ends_with(&format!("400 refused: invalid request line (from {me})")),
        "{line:?}"
    );
    let (_, me) = refusal(
        addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    let line = p.wait_log_n(" refused: ", 3);
    assert!(
        line.ends_with(&format!(
            "405 refused: CONNECT is not served (no tunnel) (CONNECT example.com:443 from {me})"
        )),
        "{line:?}"
    );
    // at most one line per refusal: nothing else was logged for them
    assert_eq!(p.count_log(" refused: "), 3);
    assert_eq!(p.count_log("] POST "), 0);
}

/// `--log-requests=false` silences the refusal lines too; the counters still move.
#[test]
fn refusals_are_counted_but_not_logged_without_request_logging() {
    let (p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    for _ in 0..5 {
        assert_eq!(refusal(addr, b"GET /t HTTP/1.1\r\n\r\n").0, 400);
    }
    assert_eq!(
        metric(addr, "hello_path_http_refused_total{code=\"400\"}"),
        5.0
    );
    assert_eq!(metric(addr, "hello_path_http_requests_total"), 7.0);
    assert_eq!(p.count_log(" refused: "), 0, "{:?}", p.stdout());
}
