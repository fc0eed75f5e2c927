//! SPEC §4, RFC 9112: request framing by the RFC over real sockets — every request whose
//! framing is in doubt is refused with `Connection: close`, the connection really closed,
//! and nothing sent after it answered; one Host; honest `Connection` headers; timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::util::*;

/// What a client sends after the request under test, on the same connection: if the server
/// read it as a request, a second answer would say so.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Sends `request` + `SMUGGLED`; asserts one answer with `status`, `Connection: close`,
/// X-Served-By, then the end of the connection.
fn refused(addr: SocketAddr, request: &str, status: u16) {
    let all = answers_then_close(addr, format!("{request}{SMUGGLED}").as_bytes());
    assert_eq!(all.len(), 1, "{request:?}: {all:?}");
    let a = &all[0];
    assert_eq!(a.status, status, "{request:?}: {a:?}");
    assert_eq!(a.header("Connection"), Some("close"), "{request:?}: {a:?}");
    assert!(a.header("X-Served-By").is_some(), "{request:?}: {a:?}");
    assert!(!a.body.contains("smuggled"), "{request:?}: {a:?}");
}

/// Each request that may be framed differently by a proxy in front (RFC 9112 §6, §7.1, §5.2,
/// §2.2, §3.2): one refusal, then the connection closes and the bytes after it are never
/// answered.
#[test]
fn doubtful_framing_is_refused_and_nothing_after_it_is_read() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let post = "POST /t HTTP/1.1\r\nHost: x\r\n";
    let cases: Vec<(String, u16)> = vec![
        // §6.3: Content-Length with Transfer-Encoding, either order
        (
            format!("{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
            400,
        ),
        // §6.3: Content-Length: one field of digits only
        (
            format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            400,
        ),
        (
            format!("{post}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
            400,
        ),
        (format!("{post}Content-Length: 5, 5\r\n\r\nhello"), 400),
        (format!("{post}Content-Length: +5\r\n\r\nhello"), 400),
        (format!("{post}Content-Length: -5\r\n\r\nhello"), 400),
        (format!("{post}Content-Length: 5 5\r\n\r\nhello"), 400),
        (format!("{post}Content-Length: \r\n\r\nhello"), 400),
        (format!("{post}Content-Length: banana\r\n\r\nhello"), 400),
        // §6.1: chunked exactly once and last; another coding before it is not implemented
        (
            format!("{post}Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            501,
        ),
        // §6.1: Transfer-Encoding in HTTP/1.0
        (
            "POST /t HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            400,
        ),
        // §7.1: bad chunk sizes, overflow, data not followed by CRLF, bad extensions
        (
            format!("{post}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!(
                "{post}Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        // §5.2: obs-fold, even one that hides a Transfer-Encoding
        (
            "GET /t HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n".into(),
            400,
        ),
        // §5.1: whitespace between a field name and its colon
        (
            format!("{post}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        ("GET /t HTTP/1.1\r\nHost : x\r\n\r\n".into(), 400),
        // §2.2: whitespace before the first field line; bare CR; bare LF (refused, see
        // vendor/tiny_http/PATCHES.md)
        ("GET /t HTTP/1.1\r\n Host: x\r\n\r\n".into(), 400),
        ("GET /t HTTP/1.1\rHost: x\r\n\r\n".into(), 400),
        ("GET /t HTTP/1.1\nHost: x\n\n".into(), 400),
        (
            "GET /t HTTP/1.1\r\nHost: x\r\nX-Bare: a\nb\r\n\r\n".into(),
            400,
        ),
        (
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
            400,
        ),
        // §3.2: exactly one valid Host
        ("GET /t HTTP/1.1\r\n\r\n".into(), 400),
        ("GET /t HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("GET /t HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".into(), 400),
        ("GET /t HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("GET /t HTTP/1.1\r\nHost: a b\r\n\r\n".into(), 400),
        ("GET /t HTTP/1.1\r\nHost: a/b\r\n\r\n".into(), 400),
        // §3: an invalid request line or target
        ("GET  /t HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        ("GET t HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400),
        // RFC 9110 §5.5: NUL in a field value
        ("GET /t HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n".into(), 400),
        // RFC 9110 §10.1.1: an unknown expectation
        (
            format!("{post}Expect: bogus\r\nContent-Length: 1\r\n\r\nx"),
            417,
        ),
        // §2.3: another major version
        ("GET /t HTTP/2.0\r\nHost: x\r\n\r\n".into(), 505),
        // limits: body (64 KiB), chunked body, header lines (100)
        (format!("{post}Content-Length: 70000\r\n\r\nxyz"), 413),
        (
            format!("{post}Transfer-Encoding: chunked\r\n\r\n20000\r\nxyz"),
            413,
        ),
        (
            format!(
                "GET /t HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..100)
                    .map(|i| format!("X-{i}: {i}\r\n"))
                    .collect::<String>()
            ),
            431,
        ),
    ];
    for (request, status) in &cases {
        refused(addr, request, *status);
        assert_eq!(
            get(addr, "/test").status,
            200,
            "not serving after {request:?}"
        );
    }
    assert!(p.is_running());
    // the prior-knowledge HTTP/2 preface: 505, then the end
    let all = answers_then_close(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (all[0].status, all[0].header("Connection")),
        (505, Some("close"))
    );
    // what stays valid
    for (request, body) in [
        (
            format!("{post}Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5;a=\"b\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
            "hello from /t\n",
        ),
        (
            "GET /t HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n".into(),
            "hello from /t\n",
        ),
        (
            "GET /t HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n".into(),
            "hello from /t\n",
        ),
        (
            format!("{post}Content-Length: 005\r\nConnection: close\r\n\r\nhello"),
            "hello from /t\n",
        ),
        // §2.3: a higher minor version is served as 1.1
        (
            "GET /t HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            "hello from /t\n",
        ),
        // §3.2.2: the absolute form is accepted, its path is what is asked
        (
            "GET http://example.com/test?q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .into(),
            "hello from /test\n",
        ),
        // §2.2: empty lines before the request line are ignored
        (
            "\r\n\r\nGET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            "hello from /t\n",
        ),
    ] {
        let all = answers_then_close(addr, request.as_bytes());
        assert_eq!(all.len(), 1, "{request:?}: {all:?}");
        assert_eq!((all[0].status, all[0].body.as_str()), (200, body), "{request:?}");
    }
}

/// RFC 9112 §9.6: after a request with `Connection: close` nothing more is read as a
/// request; its answer says `Connection: close` and the connection ends.
#[test]
fn nothing_is_read_after_a_request_that_asked_to_close() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let all = answers_then_close(
        addr,
        format!("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n{SMUGGLED}").as_bytes(),
    );
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].body, "hello from /a\n");
    assert_eq!(all[0].header("Connection"), Some("close"));
    // also as one option of several, in any case
    let all = answers_then_close(
        addr,
        format!("GET /b HTTP/1.1\r\nHost: x\r\nConnection: TE, Close\r\n\r\n{SMUGGLED}").as_bytes(),
    );
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].header("Connection"), Some("close"));
}

/// RFC 9112 §9.3: HTTP/1.0 closes unless it asked for keep-alive (then the answer says
/// `Connection: keep-alive` and the connection goes on); HTTP/1.1 goes on, saying nothing.
#[test]
fn connection_headers_say_what_happens_next() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let all = answers_then_close(
        addr,
        format!("GET /a HTTP/1.0\r\n\r\n{SMUGGLED}").as_bytes(),
    );
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].header("Connection"), Some("close"));

    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let a = read_one(&mut s);
    assert_eq!(
        (a.body.as_str(), a.header("Connection")),
        ("hello from /k1\n", Some("keep-alive"))
    );
    s.write_all(b"GET /k2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let a = read_one(&mut s);
    assert_eq!(
        (a.body.as_str(), a.header("Connection")),
        ("hello from /k2\n", None)
    );
    s.write_all(b"GET /k3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let a = read_one(&mut s);
    assert_eq!(a.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the end of the connection");
    assert!(rest.is_empty(), "{rest:?}");
}

/// RFC 9110 §10.1.1: an HTTP/1.0 request's `Expect: 100-continue` is ignored (no 100).
#[test]
fn an_http10_expectation_is_ignored() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let text = raw(
        addr,
        b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    )
    .unwrap();
    assert!(text.starts_with("HTTP/1.0 200 "), "{text:?}");
    assert!(!text.contains("100 Continue"), "{text:?}");
    let text = raw(addr, b"GET /e HTTP/1.0\r\nExpect: bogus\r\n\r\n").unwrap();
    assert!(text.starts_with("HTTP/1.0 200 "), "{text:?}");
}

/// `--idle-timeout`: a connection with no request in progress — just accepted, or after
/// its last answer — is closed without a byte.
#[test]
fn an_idle_connection_is_closed_silently() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--idle-timeout", "300ms"], &[]);
    // just accepted, nothing sent
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("closed within WAIT without a request");
    assert!(got.is_empty(), "{got:?}");
    // after its last answer
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /i HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_one(&mut s).body, "hello from /i\n");
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("closed within WAIT after its answer");
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(get(addr, "/test").status, 200);
    assert!(p.is_running());
}

/// A keep-alive connection is not closed while its idle timeout (the default, 75 s) runs.
#[test]
fn a_keep_alive_connection_stays_open_within_its_idle_timeout() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    for i in 0..2 {
        s.write_all(format!("GET /s{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        assert_eq!(read_one(&mut s).body, format!("hello from /s{i}\n"));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `--header-timeout`: once a request's first byte arrived, its head and body must be
/// complete in time, else 408 with `Connection: close`, and the end.
#[test]
fn a_slow_request_gets_408_and_the_end() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--header-timeout", "300ms"], &[]);
    for partial in [
        &b"G"[..],
        b"GET /slow HTTP/1.1\r\nHo",
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r",
        b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        b"POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    ] {
        let all = answers_then_close(addr, partial);
        assert_eq!(all.len(), 1, "{partial:?}: {all:?}");
        assert_eq!(all[0].status, 408, "{partial:?}");
        assert_eq!(all[0].header("Connection"), Some("close"), "{partial:?}");
        assert!(all[0].header("X-Served-By").is_some());
        assert_eq!(get(addr, "/test").status, 200);
    }
    assert!(p.is_running());
}

/// SPEC §4: the answers that change carry `Cache-Control: no-store`; the static ones do not.
#[test]
fn the_answers_that_change_are_not_stored() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--reload"], &[]);
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/mysecret"),
        ("POST", "/-/reload"),
        ("GET", "/-/reload"),
    ] {
        let a = request(addr, method, path);
        assert_eq!(
            a.header("Cache-Control"),
            Some("no-store"),
            "{method} {path}"
        );
    }
    for path in ["/", "/test"] {
        assert_eq!(get(addr, path).header("Cache-Control"), None, "{path}");
    }
}

/// While shutting down (`--shutdown-delay`) every answer says `Connection: close` and the
/// connection ends after it, so that keep-alive clients go to another pod.
#[test]
fn answers_say_close_while_shutting_down() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--shutdown-delay", "5s"], &[]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /before HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut s).header("Connection"), None);
    p.signal("TERM");
    p.wait_log("/readyz now answers 503");
    s.write_all(b"GET /during HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let a = read_one(&mut s);
    assert_eq!(
        (a.body.as_str(), a.header("Connection")),
        ("hello from /during\n", Some("close"))
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the end of the connection");
    assert!(rest.is_empty(), "{rest:?}");
}

/// A request refused by tiny_http right behind one the application has still to answer:
/// both are answered, in order (the refusal used to block the one writer thread for good,
/// waiting for an answer queued behind it), and every other connection is still served.
#[test]
fn a_refusal_behind_a_pipelined_request_waits_its_turn() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    for bad in [
        "GET /t HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n",
    ] {
        let all = answers_then_close(
            addr,
            format!("GET /first HTTP/1.1\r\nHost: x\r\n\r\n{bad}{SMUGGLED}").as_bytes(),
        );
        let got: Vec<(u16, Option<&str>)> = all
            .iter()
            .map(|a| (a.status, a.header("Connection")))
            .collect();
        assert_eq!(got.len(), 2, "{bad:?}: {all:?}");
        assert_eq!(got[0], (200, None), "{bad:?}: {all:?}");
        assert_eq!(got[1].1, Some("close"), "{bad:?}: {all:?}");
        assert_eq!(all[0].body, "hello from /first\n");
        assert_eq!(get(addr, "/test").status, 200, "not serving after {bad:?}");
    }
}

/// RFC 9110 §9.3.6: a 2xx to CONNECT would open a tunnel (and must not carry
/// `Content-Length`); the server opens none: 405 with `Allow`, `Connection: close`, and
/// nothing after it on the connection is read, as after any refusal.
#[test]
fn connect_gets_405_and_the_end() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    for request in [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "CONNECT /test HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.0\r\n\r\n",
    ] {
        refused(addr, request, 405);
        let all = answers_then_close(addr, format!("{request}{SMUGGLED}").as_bytes());
        assert_eq!(
            all[0].header("Allow"),
            Some("GET, HEAD, POST"),
            "{request:?}"
        );
    }
    // behind a pipelined request: that one is answered, then the 405, then the end
    let all = answers_then_close(
        addr,
        format!("GET /first HTTP/1.1\r\nHost: x\r\n\r\nCONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n{SMUGGLED}").as_bytes(),
    );
    let got: Vec<u16> = all.iter().map(|a| a.status).collect();
    assert_eq!(got, [200, 405], "{all:?}");
}
