//! Routes, headers and malformed input over real sockets.

use crate::util::*;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn the_routes_answer_as_specified() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let cases: [(&str, &str, u16, &str); 7] = [
        ("GET", "/", 200, "try to add /test as path\n"),
        ("GET", "/test", 200, "hello from /test\n"),
        ("GET", "/a/b?x=1", 200, "hello from /a/b\n"),
        ("POST", "/test", 200, "hello from /test\n"),
        ("GET", "/healthz", 200, "ok"),
        ("GET", "/readyz", 200, "ok"),
        (
            "GET",
            "/mysecret",
            200,
            "my little secret is **** (generation 1)",
        ),
    ];
    for (method, path, status, body) in cases {
        let a = request(addr, method, path);
        assert_eq!(
            (a.status, a.body.as_str()),
            (status, body),
            "{method} {path}"
        );
        assert_eq!(
            a.header("Content-Type"),
            Some("text/plain; charset=utf-8"),
            "{method} {path}"
        );
        assert_eq!(
            a.header("X-Served-By"),
            Some(hostname().as_str()),
            "{method} {path}"
        );
    }
}

#[test]
fn head_gets_headers_only() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let a = request(addr, "HEAD", "/test");
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "");
    assert_eq!(a.header("Content-Length"), Some("17"));
    assert!(a.header("X-Served-By").is_some());
}

#[test]
fn metrics_are_prometheus_text() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    get(addr, "/test");
    let a = get(addr, "/metrics");
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for name in [
        "hello_path_http_requests_total 2",
        "hello_path_secret_reloads_total{result=\"success\"} 0",
        "hello_path_secret_reloads_total{result=\"failure\"} 0",
        "hello_path_secret_last_reload_successful 1",
        "hello_path_secret_generation 1",
        "hello_path_secret_last_reload_success_timestamp_seconds ",
        "process_start_time_seconds ",
    ] {
        assert!(
            a.body.lines().any(|l| l.starts_with(name)),
            "no {name:?} in\n{}",
            a.body
        );
    }
    let start = metric(addr, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start > now - 60.0 && start <= now,
        "process_start_time_seconds {start} vs now {now}"
    );
}

#[test]
fn reload_endpoint_without_reload_mode() {
    let (p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    assert_eq!(request(addr, "POST", "/-/reload").status, 403);
    let a = request(addr, "GET", "/-/reload");
    assert_eq!(a.status, 405);
    assert_eq!(a.header("Allow"), Some("POST"));
    drop(p);
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--reload"], &[]);
    assert_eq!(request(addr, "PUT", "/-/reload").status, 405);
    assert_eq!(request(addr, "POST", "/-/reload").status, 200);
}

#[test]
fn malformed_requests_get_an_error_and_never_stop_the_server() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let garbage: [&[u8]; 6] = [
        b"\x00\x01\x02\xff\xfe garbage\r\n\r\n",
        b"POST /test HTTP/1.1\r\nExpect: bogus\r\nContent-Length: 1\r\n\r\nx",
        b"GET /test HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /test\r\n\r\n",
        b"NOT A REQUEST AT ALL\r\n\r\n",
        b"GET /test HTTP/1.1\r\nContent-Length: banana\r\nConnection: close\r\n\r\n",
    ];
    for (i, g) in garbage.iter().enumerate() {
        let answer = raw(addr, g).unwrap_or_else(|e| panic!("{g:?}: {e}"));
        match parse_answer(&answer) {
            Some(a) => {
                assert!(a.status >= 400, "{g:?} got {}", a.status);
                // also tiny_http's own 400 and 505 answers (SPEC §4: every response)
                assert_eq!(
                    a.header("X-Served-By"),
                    Some(hostname().as_str()),
                    "{g:?} got {answer:?}"
                );
            }
            // bytes that are not HTTP at all may just get the connection closed
            None => assert!(i == 0 && answer.is_empty(), "{g:?} got {answer:?}"),
        }
        assert_eq!(get(addr, "/test").status, 200, "not serving after {g:?}");
    }
    // a connection that sends half a request and goes away
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /half HTTP/1.1\r\nHo").unwrap();
    }
    assert_eq!(get(addr, "/test").status, 200);
    let a = raw(addr, b"GET /test HTTP/9.9\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        a.starts_with("HTTP/1.1 505") || a.starts_with("HTTP/1.1 400"),
        "{a:?}"
    );
    assert!(p.is_running());
}

#[test]
fn keep_alive_connections_are_served_in_turn() {
    use std::io::{Read, Write};
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    for i in 0..3 {
        s.write_all(format!("GET /k{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with(&format!("hello from /k{i}\n")),
            "{text:?}"
        );
    }
}

/// What tiny_http patch 4 (one buffer per response, a per-second Date, header lines read
/// with `read_until`) must keep: the exact framing, pipelining, lines split across reads.
#[test]
fn the_response_framing_is_exact() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let text = raw(
        addr,
        b"GET /frame HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "hello from /frame\n");
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/1.1 200 OK", "{text:?}");
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_once(": ").expect(l).0)
        .collect();
    assert_eq!(
        names,
        [
            "Server",
            "Date",
            "Content-Type",
            "X-Served-By",
            "Content-Length",
            "Connection"
        ],
        "{text:?}"
    );
    assert!(lines.contains(&"Content-Length: 18"), "{text:?}");
    // the request asked to close: the answer says so (RFC 9112 §9.6)
    assert!(lines.contains(&"Connection: close"), "{text:?}");
    // IMF-fixdate, e.g. "Sun, 29 Nov 2026 00:35:12 GMT"
    let date = lines[2].strip_prefix("Date: ").unwrap();
    let shape: String = date
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                '9'
            } else if c.is_ascii_alphabetic() {
                'a'
            } else {
                c
            }
        })
        .collect();
    assert_eq!(shape, "aaa, 99 aaa 9999 99:99:99 aaa", "{date:?}");
    assert!(date.ends_with(" GMT"), "{date:?}");
}

#[test]
fn the_date_header_follows_the_clock() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let first = get(addr, "/d").header("Date").unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = get(addr, "/d").header("Date").unwrap().to_string();
    assert_ne!(first, second, "the Date header did not move in 1.1 s");
}

#[test]
fn pipelined_and_fragmented_requests_are_answered_in_order() {
    use std::io::{Read, Write};
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    // two requests in one write, then a third cut inside its lines and between CR and LF
    // (a bare LF inside a header line is refused since tiny_http patch 9: framing.rs)
    s.write_all(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    for piece in [
        &b"GET /p"[..],
        b"3 HTTP/1.1\r",
        b"\nHo",
        b"st: x\r\nX-Cut: a",
        b"b\r\nConnection: close\r\n\r",
        b"\n",
    ] {
        s.write_all(piece).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{text:?}");
    assert!(answers[0].ends_with("\r\n\r\nhello from /p1\n"), "{text:?}");
    assert!(answers[1].contains("Content-Length: 15\r\n"), "{text:?}");
    assert!(
        answers[1].ends_with("\r\n\r\n"),
        "HEAD got a body: {text:?}"
    );
    assert!(answers[2].ends_with("\r\n\r\nhello from /p3\n"), "{text:?}");
}

/// tiny_http patch 6: a body is read on the connection's thread, bounded; the single request
/// loop never waits for a client's bytes.
#[test]
fn request_bodies_never_block_or_stop_the_loop() {
    use std::io::Write;
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let connect = || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    };
    // a body announced but not sent, connection kept open: others are still served
    let mut short = connect();
    short
        .write_all(b"POST /short HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\nabc")
        .unwrap();
    assert_eq!(get(addr, "/test").status, 200, "blocked by an unsent body");
    // Expect: 100-continue gets its 100 before the body is sent
    let mut cont = connect();
    cont.write_all(
        b"POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut cont, &mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    cont.write_all(b"hello").unwrap();
    assert!(read_one_raw(&mut cont).ends_with("hello from /c\n"));
    // bodies too large for the limit (64 KiB), or for any memory: 413, the server goes on
    for len in ["70000", "18446744073709551615"] {
        let a = raw(
            addr,
            format!("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\nxyz").as_bytes(),
        )
        .unwrap();
        let a = parse_answer(&a).unwrap_or_else(|| panic!("{len}: {a:?}"));
        assert_eq!(a.status, 413, "Content-Length {len}");
        assert!(a.header("X-Served-By").is_some());
        assert_eq!(get(addr, "/test").status, 200);
    }
    // a body larger than tiny_http's old 1 KiB buffer, and a chunked one, each followed by a
    // pipelined request on the same connection: the framing holds
    let big = "b".repeat(5000);
    let text = raw(
        addr,
        format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{big}\
             POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n\
             GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let bodies: Vec<&str> = text
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|a| a.split_once("\r\n\r\n").unwrap().1)
        .collect();
    assert_eq!(
        bodies,
        [
            "hello from /a\n",
            "hello from /chunked\n",
            "hello from /after\n"
        ],
        "{text:?}"
    );
    // a chunked body in pieces, its last chunk a few bytes after the others
    let mut chunked = connect();
    for piece in [
        &b"POST /pieces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
    ] {
        chunked.write_all(piece).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(read_one_raw(&mut chunked).ends_with("hello from /pieces\n"));
    drop(short);
    assert!(p.is_running());
}

/// tiny_http patch 6: a request for HTTP/2 (or its prior-knowledge preface) gets a 505, where
/// the connection thread used to hang and answer nothing.
#[test]
fn http2_gets_505() {
    use std::io::{Read, Write};
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    for request in [
        &b"GET /test HTTP/2.0\r\nHost: x\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(request).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .unwrap_or_else(|e| panic!("{request:?}: no answer: {e}"));
        let text = String::from_utf8_lossy(&buf);
        let a = parse_answer(&text).unwrap_or_else(|| panic!("{request:?}: {text:?}"));
        assert_eq!(a.status, 505, "{text:?}");
        assert!(text.starts_with("HTTP/1.1 505"), "{text:?}");
        assert_eq!(a.header("X-Served-By"), Some(hostname().as_str()));
        assert_eq!(get(addr, "/test").status, 200);
    }
}

/// tiny_http patch 7: the request head is bounded (64 KiB): a longer request line gets 414, longer
/// headers 431, and the server goes on (a head without end used to grow a buffer without end).
#[test]
fn an_oversized_request_head_is_refused() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let long_path = "p".repeat(70 * 1024);
    let long_header = "h".repeat(40 * 1024);
    let cases = [
        (format!("GET /{long_path} HTTP/1.1\r\nHost: x\r\n\r\n"), 414),
        (
            format!("GET /t HTTP/1.1\r\nA: {long_header}\r\nB: {long_header}\r\n\r\n"),
            431,
        ),
        // just under the limit: served
        (
            format!("GET /t HTTP/1.1\r\nHost: x\r\nA: {long_header}\r\nConnection: close\r\n\r\n"),
            200,
        ),
        // the same without Host: HTTP/1.1 needs one (RFC 9112 §3.2)
        (
            format!("GET /t HTTP/1.1\r\nA: {long_header}\r\nConnection: close\r\n\r\n"),
            400,
        ),
    ];
    for (request, status) in cases {
        let text = raw(addr, request.as_bytes()).unwrap();
        let a = parse_answer(&text).unwrap_or_else(|| panic!("no answer for {status}: {text:?}"));
        assert_eq!(a.status, status);
        assert_eq!(a.header("X-Served-By"), Some(hostname().as_str()));
        assert_eq!(get(addr, "/test").status, 200);
    }
    assert!(p.is_running());
}

/// The methods the routes do not serve (README "Routes"): the other methods of RFC 9110
/// and PATCH get 405 with `Allow` naming what the path serves, a method unknown here gets
/// 501 (RFC 9110 §9.1), and the connection goes on (the request was framed: nothing is in
/// doubt), as nginx does.
#[test]
fn methods_not_served_get_405_with_allow_or_501() {
    use std::io::Write;
    let (_p, addr) = Proc::serve(
        &["--mysecret", "4321", "--reload", "--log-requests=false"],
        &[],
    );
    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        ("PUT", "/x", 405, Some("GET, HEAD, POST")),
        ("DELETE", "/x", 405, Some("GET, HEAD, POST")),
        ("PATCH", "/metrics", 405, Some("GET, HEAD, POST")),
        ("OPTIONS", "/x", 405, Some("GET, HEAD, POST")),
        ("OPTIONS", "*", 405, Some("GET, HEAD, POST")),
        ("TRACE", "/", 405, Some("GET, HEAD, POST")),
        ("PUT", "/-/reload", 405, Some("POST")),
        ("GET", "/-/reload", 405, Some("POST")),
        ("BREW", "/x", 501, None),
        ("PROPFIND", "/-/reload", 501, None),
        ("get", "/x", 501, None),
    ];
    for &(method, target, status, allow) in cases {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        // with a body, and a request behind it on the same connection
        s.write_all(
            format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
                 GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let a = read_one(&mut s);
        assert_eq!(
            (a.status, a.header("Allow"), a.header("Connection")),
            (status, allow, None),
            "{method} {target}: {a:?}"
        );
        assert!(a.header("X-Served-By").is_some(), "{method} {target}");
        let next = read_one(&mut s);
        assert_eq!(next.body, "hello from /next\n", "{method} {target}");
    }
    // the ones served: GET, HEAD and POST on every path
    for method in ["GET", "HEAD", "POST"] {
        assert_eq!(request(addr, method, "/x").status, 200, "{method}");
    }
}
