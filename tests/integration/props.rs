//! A property test of the request-head parser, against the real binary: random and mutated
//! requests never stop or hang the server, each gets whole answers or a close (never a
//! reset, never a half answer), a refusal is the last answer and says `Connection: close`,
//! and the server keeps serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::util::*;

/// Requests that are valid before they are mutated.
const BASES: &[&str] = &[
    "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\n\r\n",
    "GET http://h/d?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "POST /e HTTP/1.1\r\nHost: [::1]:80\r\nExpect: 100-continue\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
];

/// Bytes that matter to the parser, mutations are drawn from them half of the time.
const ALPHABET: &[u8] = b"\r\n :;,=\"\t\0\x7f\x80/0159afAF-.HTTP1chunked";

/// The statuses tiny_http answers on its own: the connection ends after each. (A 501 that
/// says `method … not implemented` is the routes' answer to an unknown method, which keeps
/// the connection: see `is_refusal`.)
const REFUSALS: &[u16] = &[400, 405, 408, 413, 414, 417, 431, 501, 505];

/// An answer tiny_http gave on its own.
fn is_refusal(a: &Answer) -> bool {
    REFUSALS.contains(&a.status) && !a.body.starts_with("method ")
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![prop::sample::select(ALPHABET), any::<u8>()]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), byte()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
    ]
}

/// A mutated base request, or random bytes.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (0..BASES.len(), vec(edit(), 1..6)).prop_map(|(base, edits)| {
        let mut bytes = BASES[base].as_bytes().to_vec();
        for e in edits {
            let n = bytes.len();
            match e {
                Edit::Set(i, b) if n > 0 => bytes[i % n] = b,
                Edit::Insert(i, b) => bytes.insert(i % (n + 1), b),
                Edit::Remove(i) if n > 0 => {
                    bytes.remove(i % n);
                }
                _ => {}
            }
        }
        bytes
    });
    prop_oneof![4 => mutated, 1 => vec(any::<u8>(), 0..300)]
}

/// Sends `bytes`, reads until the server closes the connection.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Vec<Answer>, TestCaseError> {
    let mut s = TcpStream::connect(addr).map_err(|e| TestCaseError::fail(e.to_string()))?;
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(bytes)
        .map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .map_err(|e| TestCaseError::fail(format!("no clean close within {WAIT:?}: {e}")))?;
    let text = String::from_utf8_lossy(&got);
    // a 100 Continue is an interim answer: the final ones follow it
    let text = text.replace("HTTP/1.1 100 Continue\r\n\r\n", "");
    parse_answers(&text).ok_or_else(|| TestCaseError::fail(format!("not whole answers: {text:?}")))
}

#[test]
fn random_and_mutated_requests_get_whole_answers_or_a_close() {
    // short timeouts: a mutated request that never completes is ended in 100 ms
    let (mut p, addr) = Proc::serve(
        &[
            "--mysecret",
            "4321",
            "--log-requests=false",
            "--idle-timeout",
            "100ms",
            "--header-timeout",
            "100ms",
        ],
        &[],
    );
    let config = Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&input(), |bytes| {
        let answers = exchange(addr, &bytes)?;
        prop_assert!(answers.len() <= 2, "{answers:?}");
        for (i, a) in answers.iter().enumerate() {
            prop_assert!((100..600).contains(&a.status), "{a:?}");
            prop_assert!(a.header("X-Served-By").is_some(), "{a:?}");
            if is_refusal(a) {
                prop_assert_eq!(a.header("Connection"), Some("close"), "{:?}", a);
                prop_assert_eq!(i, answers.len() - 1, "an answer after a refusal");
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        p.fail(&format!("property failed: {e}"));
    }
    assert!(p.is_running());
    assert_eq!(get(addr, "/test").status, 200);
}
