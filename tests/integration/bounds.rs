//! Backpressure, not buffering (tiny_http patch 12): a connection has a bounded number of
//! requests in flight, past which the server stops reading it; a client that pipelines and
//! reads gets every answer, one that never reads is cut off by the send timeout, and no
//! number of either grows the process's memory or delays anyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// The manifests' `limits.memory: 32Mi`, in kB as /proc/PID/status counts.
const POD_LIMIT_KB: u64 = 32 * 1024;

/// `VmHWM` or `VmRSS` of `pid`, in kB.
fn memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `n` pipelined `GET /{prefix}{i}`, i = 0..n, one after the other.
fn pipelined(prefix: &str, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("GET /{prefix}{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes())
        .collect()
}

/// Writes `bytes` on `s` until done or the server gives up on the connection (a write
/// error); returns the bytes written.
fn write_until_refused(s: &mut TcpStream, bytes: &[u8]) -> usize {
    s.set_write_timeout(Some(WAIT)).unwrap();
    let mut sent = 0;
    while sent < bytes.len() {
        match s.write(&bytes[sent..(sent + 64 * 1024).min(bytes.len())]) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    sent
}

/// The sockets `pid` holds open (its listener, its connections, …): a connection the
/// server has ended is one less, seen without reading from it (a client that reads would
/// be one the server has no reason to end).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// A client that pipelines 10,000 requests while it reads gets all 10,000 answers, in
/// order, on the one connection (tiny_http 0.12 + patch 8 cut such a client off after
/// about 2,000 answers, with no `Connection: close`, when a send blocked for 250 ms).
#[test]
fn a_client_that_pipelines_and_reads_gets_every_answer_in_order() {
    const N: usize = 10_000;
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let requests = pipelined("r", N);
        writer.write_all(&requests).map(|()| requests.len())
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut answers = 0;
    while answers < N {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{answers} answers of {N}, then nothing for {WAIT:?}: {e}"));
        assert!(n > 0, "closed after {answers} answers of {N}");
        got.extend_from_slice(&buf[..n]);
        answers = got.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    }
    sender.join().unwrap().expect("all requests sent");
    let text = String::from_utf8(got).unwrap();
    let all = parse_answers(&text).expect("whole answers");
    assert_eq!(all.len(), N);
    for (i, a) in all.iter().enumerate() {
        assert_eq!(
            (a.status, a.body.as_str(), a.header("Connection")),
            (200, format!("hello from /r{i}\n").as_str(), None),
            "answer {i}"
        );
    }
    // and the connection goes on
    s.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut s).body, "hello from /after\n");
}

/// A client that pipelines and never reads is answered until its socket takes no more,
/// then holds a bounded number of answers; the send timeout (2 s without the client
/// taking a byte) ends the connection, and nothing it sent after that is processed.
#[test]
fn a_client_that_never_reads_is_cut_off_and_nothing_more_is_processed() {
    const N: usize = 40_000; // ~1.4 MB of requests, ~7 MB of answers
    let (p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    // (before any connection: a closed one may linger a moment on the server's side)
    let idle = sockets(p.pid());
    let mut s = TcpStream::connect(addr).unwrap();
    let requests = pipelined("n", N);
    let start = Instant::now();
    let flooder = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || write_until_refused(&mut s, &requests))
    };
    // the server stops reading it, then ends it: the send timeout (2 s), twice at most
    // (the socket may still have been taking bytes when its buffer filled)
    thread::sleep(Duration::from_millis(100));
    while sockets(p.pid()) > idle {
        assert!(
            start.elapsed() < WAIT,
            "the connection is still open after {WAIT:?}; {} of {N} requests handled",
            p.count_log("] GET /n")
        );
        thread::sleep(Duration::from_millis(50));
    }
    let cut_after = start.elapsed();
    let logged = || p.count_log("] GET /n");
    let handled = logged();
    assert!(
        handled < N,
        "all {N} requests were handled: nothing held it back"
    );
    // what the client reads is whole answers, then the end (a reset: the server closed it
    // with requests unread)
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got);
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    let sent = flooder.join().unwrap();
    let received = got.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert!(
        received <= handled,
        "{received} answers for {handled} requests"
    );
    // nothing more is processed, and the others are served
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        logged(),
        handled,
        "requests handled after the connection ended"
    );
    assert_eq!(get(addr, "/test").status, 200);
    eprintln!(
        "never read: {sent} bytes sent, {handled} handled, {received} answers read, \
         cut off after {cut_after:?}"
    );
}

/// The issue's measurement, as a test: 8 connections each flood 1.5 MiB of pipelined
/// `GET /test` and never read, until the send timeout ends them; meanwhile another client
/// is answered in bounded time, and
/// the process's peak RSS (VmHWM, the honest figure: it is what the kernel charged) stays
/// under the manifests' 32Mi limit. Before tiny_http patch 12, 2 such connections × 1 MiB
/// took it to 50–73 MB, 20 × 1 MiB to 428–565 MB.
#[test]
fn floods_that_never_read_keep_memory_bounded_while_others_are_served() {
    const FLOODERS: usize = 8;
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let pid = p.pid();
    let idle = sockets(pid);
    let request = b"GET /test HTTP/1.1\r\nHost: x\r\n\r\n";
    let flood: Vec<u8> = request.repeat(3 * 512 * 1024 / request.len());
    let flood = std::sync::Arc::new(flood);
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let flood = std::sync::Arc::clone(&flood);
            let mut s = TcpStream::connect(addr).unwrap();
            thread::spawn(move || {
                let sent = write_until_refused(&mut s, &flood);
                (sent, s) // kept open, never read, until joined
            })
        })
        .collect();
    // probes until every flooder has been cut off (the server holds no socket of theirs)
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while probes < 10 || flooders.iter().any(|f| !f.is_finished()) || sockets(pid) > idle {
        let t = Instant::now();
        let a = try_request(addr, "GET", "/healthz")
            .unwrap_or_else(|e| p.fail(&format!("a probe during the flood got no answer: {e}")));
        assert_eq!(a.status, 200);
        slowest = slowest.max(t.elapsed());
        probes += 1;
        thread::sleep(Duration::from_millis(50));
        if start.elapsed() > 2 * WAIT {
            p.fail(&format!(
                "the flooders were not all cut off within {:?}: {} sockets open, {idle} idle",
                2 * WAIT,
                sockets(pid)
            ));
        }
    }
    let cut_after = start.elapsed();
    let sent: Vec<usize> = flooders.into_iter().map(|f| f.join().unwrap().0).collect();
    let hwm = memory_kb(pid, "VmHWM");
    eprintln!(
        "flood: {FLOODERS} × {} bytes (sent {sent:?}), peak RSS {hwm} kB, RSS now {} kB, \
         {probes} probes, slowest {slowest:?}, all cut off after {cut_after:?}",
        flood.len(),
        memory_kb(pid, "VmRSS"),
    );
    assert!(
        hwm < POD_LIMIT_KB,
        "peak RSS {hwm} kB, over the pods' 32Mi limit"
    );
    assert!(p.is_running());
    assert_eq!(get(addr, "/test").status, 200);
}

/// Connections that pipeline requests for 40 kB paths (each answer echoes its path) and
/// never read: once their sockets take no more, the server holds a bounded number of
/// requests and answers by bytes too (64 KiB in flight, plus the one that crosses it), not
/// 32 of each (2.6 MB) per connection, and the send timeout ends them.
#[test]
fn large_pipelined_requests_are_bounded_by_bytes_too() {
    const CONNS: usize = 4;
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let pid = p.pid();
    let idle = sockets(pid);
    assert_eq!(get(addr, "/test").status, 200);
    let before = memory_kb(pid, "VmRSS");
    let big = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(40 * 1024));
    let flood = std::sync::Arc::new(big.repeat(100).into_bytes()); // 4 MB each
    let flooders: Vec<_> = (0..CONNS)
        .map(|_| {
            let flood = std::sync::Arc::clone(&flood);
            let mut s = TcpStream::connect(addr).unwrap();
            thread::spawn(move || (write_until_refused(&mut s, &flood), s))
        })
        .collect();
    let start = Instant::now();
    while flooders.iter().any(|f| !f.is_finished()) || sockets(pid) > idle {
        if start.elapsed() > 2 * WAIT {
            p.fail("the flooders were not cut off");
        }
        thread::sleep(Duration::from_millis(50));
    }
    for f in flooders {
        let _ = f.join().unwrap();
    }
    let grown = memory_kb(pid, "VmHWM").saturating_sub(before);
    eprintln!(
        "{CONNS} × 4 MB of requests for 40 kB answers: RSS {before} kB before, peak +{grown} kB"
    );
    assert!(
        grown < 2048,
        "peak RSS grew by {grown} kB for {CONNS} connections"
    );
    assert_eq!(get(addr, "/test").status, 200);
    assert!(p.is_running());
}
