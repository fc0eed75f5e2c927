//! SPEC §8: no live process with a dead listener.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// SPEC §8: never a live process with a dead listener. When the descriptor table is full,
/// tiny_http reports the failed `accept()` (or, patched, the failed dup of the new socket)
/// once and ends its accept thread: the server must start a new one and serve again.
#[test]
fn descriptor_exhaustion_recovers_once_connections_close() {
    // A hard limit of 48 descriptors: the start-up raise of the soft limit cannot go past it.
    for round in 0..3 {
        let mut p = with_nofile(48);
        let addr = p.wait_addr();
        assert_eq!(get(addr, "/test").status, 200);
        // Idle connections hold descriptors (one each since tiny_http patch 12, two
        // before) until the table is full; one more each round to try both parities of
        // free descriptors.
        let flood: Vec<TcpStream> = (0..80 + round)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        p.wait_log("the listener stopped accepting connections");
        assert!(p.is_running());
        drop(flood);
        let start = std::time::Instant::now();
        while !matches!(try_request(addr, "GET", "/test"), Ok(a) if a.status == 200) {
            if start.elapsed() > WAIT || !p.is_running() {
                p.fail("the server did not answer again after the flood");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        p.wait_log("the listener accepts connections again");
        for _ in 0..20 {
            assert_eq!(get(addr, "/test").status, 200, "served once, then stopped");
        }
        p.signal("TERM");
        let (status, _) = p.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0));
    }
}

/// The recovery keeps the socket: a connection queued in the backlog while the accept
/// thread is down is answered once descriptors are free again.
#[test]
fn an_accept_error_restarts_the_listener_without_losing_the_backlog() {
    let mut p = with_nofile(40);
    let addr = p.wait_addr();
    let mut flood = Vec::new();
    while p.count_log("the listener stopped accepting connections") == 0 {
        flood.push(TcpStream::connect(addr).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        if flood.len() > 200 || !p.is_running() {
            p.fail("no accept error after 200 connections, or an exit");
        }
    }
    let queued = std::thread::spawn(move || try_request(addr, "GET", "/queued"));
    std::thread::sleep(Duration::from_millis(200));
    drop(flood);
    match queued.join().unwrap() {
        Ok(a) if a.status == 200 && a.body == "hello from /queued\n" => {}
        other => p.fail(&format!("the queued request got {other:?}")),
    }
    p.wait_log("the listener accepts connections again");
    assert!(p.is_running());
}

/// tiny_http 0.12 queued a burst of new connections behind pool threads that were about to
/// be busy with other (keep-alive) connections: some were never answered (patched, see
/// vendor/tiny_http/PATCHES.md).
#[test]
fn a_burst_of_keep_alive_connections_is_answered() {
    use std::io::{Read, Write};
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let mut held = Vec::new();
    for round in 0..3 {
        let mut conns: Vec<TcpStream> =
            (0..30).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for c in &mut conns {
            c.write_all(b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            c.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = [0u8; 512];
            let n = c.read(&mut buf).unwrap_or_else(|e| {
                panic!("round {round}: keep-alive connection {i} of 30 never answered: {e}")
            });
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "round {round}, connection {i}"
            );
        }
        // the connections stay open (keep-alive) while the next burst arrives
        held.push(conns);
    }
}

/// A pids limit does not limit connections: tiny_http's reader thread (patch 8) reads them
/// all, where a thread per connection used to run out. Every one of 40 idle keep-alive
/// connections is answered under a limit of 12 tasks, without a thread more.
#[test]
fn a_pids_limit_does_not_limit_connections() {
    use std::io::{Read, Write};
    let mut p = Proc::spawn_cmd(
        as_nobody_with_nproc(12),
        &["--listen-addr", "127.0.0.1:0", "--mysecret", "4321"],
        &[],
    );
    let addr = p.wait_addr();
    let threads = |p: &Proc| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:")?.trim().parse::<usize>().ok())
            .unwrap()
    };
    // one answer first: the accept thread starts the reader and the writer after the
    // address is logged, and counting before they run would blame them on the flood
    assert_eq!(get(addr, "/first").status, 200);
    let before = threads(&p);
    let mut flood: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for (i, s) in flood.iter_mut().enumerate() {
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(format!("GET /c{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
    }
    for (i, s) in flood.iter_mut().enumerate() {
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.ends_with(&format!("hello from /c{i}\n")),
            "connection {i}: {text:?}"
        );
    }
    assert_eq!(threads(&p), before, "threads grew with the connections");
    drop(flood);
    assert_eq!(get(addr, "/test").status, 200);
    assert!(p.is_running());
}

/// Threads the server cannot start at all (a pids limit of 2, then 3: tiny_http's accept
/// thread, then its reader): one clear line, exit 1 — never a server that accepts and does
/// not answer.
#[test]
fn no_thread_to_start_is_one_clear_error() {
    for n in [2, 3] {
        let mut p = Proc::spawn_cmd(
            as_nobody_with_nproc(n),
            &["--listen-addr", "127.0.0.1:0", "--mysecret", "4321"],
            &[],
        );
        let (status, _) = p.wait_exit(WAIT);
        assert_eq!(status.code(), Some(1), "nproc {n}: {:?}", p.stdout());
        let err = p.stderr();
        assert!(
            err.len() == 1
                && err[0].starts_with("hello-path-rs: error: ")
                && err[0].contains("cannot start a thread"),
            "nproc {n}: {err:?}"
        );
    }
}

/// Any panic ends the process with status 1 and one line, never a live process with a dead
/// thread. A real one: the log's stdout is a pipe nobody reads any more, so the next log
/// line fails (EPIPE) and `println!` panics. (Waiting for a valid secret logs a RELOAD line
/// every 100 ms: there is always a next line.)
#[test]
fn a_panic_ends_the_process_with_status_1() {
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .args([
            "--listen-addr",
            "127.0.0.1:0",
            "--reload",
            "--retry-interval",
            "100ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reading end of the log pipe is gone
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > WAIT {
            child.kill().ok();
            panic!("still running with its log pipe closed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("hello-path-rs: error: internal failure, exiting: "),
        "{err:?}"
    );
}

/// `prlimit --nproc=N` around the binary; RLIMIT_NPROC is not enforced for root, so as root
/// the binary runs as nobody; otherwise the limit leaves room for N tasks of ours.
fn as_nobody_with_nproc(n: usize) -> Command {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let mut cmd = Command::new("prlimit");
    if uid == "0" {
        cmd.args([
            format!("--nproc={n}:{n}").as_str(),
            "--",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
        ]);
    } else {
        let tasks = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status")).ok())
            .filter(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid))
            })
            .map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:")?.trim().parse::<usize>().ok())
                    .unwrap_or(1)
            })
            .sum::<usize>();
        cmd.args([format!("--nproc={}", tasks + n), "--".into(), BIN.into()]);
    }
    cmd
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=256:4096", "--", BIN]);
    let mut p = Proc::spawn_cmd(
        cmd,
        &["--listen-addr", "127.0.0.1:0", "--mysecret", "4321"],
        &[],
    );
    p.wait_addr();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((fields[3], fields[4]), ("4096", "4096"), "{line}");
}

/// A quiet server started under `prlimit --nofile=N:N` (the start-up raise of the soft limit
/// cannot go past that hard limit).
fn with_nofile(n: u32) -> Proc {
    let mut cmd = Command::new("prlimit");
    cmd.args([format!("--nofile={n}:{n}").as_str(), "--", BIN]);
    let args = [
        "--listen-addr",
        "127.0.0.1:0",
        "--mysecret",
        "4321",
        "--log-requests=false",
    ];
    Proc::spawn_cmd(cmd, &args, &[])
}

/// tiny_http patch 6: answers are written on the single request loop; a client that pipelines
/// requests and never reads the answers used to block it in `write` for good once the socket
/// buffers were full. Now that connection is dropped after a bounded wait (patch 12: the
/// reactor never waits on it at all; `bounds.rs` has the rest).
#[test]
fn a_client_that_never_reads_does_not_block_the_loop() {
    use std::io::Write;
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let flooder = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // ~7 kB answers; 3000 of them are far more than loopback socket buffers hold
        let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "x".repeat(7000));
        for _ in 0..3000 {
            if s.write_all(request.as_bytes()).is_err() {
                break; // the server gave up on us: what should happen
            }
        }
        s // never read, kept open until joined
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        assert_eq!(
            get(addr, "/test").status,
            200,
            "blocked by a client that never reads"
        );
    }
    drop(flooder.join().unwrap());
    assert!(p.is_running());
}

/// SPEC §5: exit within 1 s of SIGTERM, also while a flood fills the listen backlog (dropping
/// a tiny_http::Server connects to its own address, which blocked while the backlog was full).
#[test]
fn sigterm_exits_while_a_flood_fills_the_backlog() {
    let mut p = with_nofile(48);
    let addr = p.wait_addr();
    let mut flood = Vec::new();
    // connect until the descriptors run out (the accept thread ends), then until the backlog
    // is full (a connect no longer completes)
    let fill = |flood: &mut Vec<TcpStream>| {
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            flood.push(s);
            assert!(flood.len() < 20_000, "the backlog never filled");
        }
    };
    fill(&mut flood);
    p.wait_log("the listener stopped accepting connections");
    fill(&mut flood);
    p.signal("TERM");
    let (status, _) = p.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    drop(flood);
}
