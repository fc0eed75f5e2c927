//! SPEC §8: no live process with a dead listener.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// SPEC §8: never a live process with a dead listener. tiny_http reports an `accept()`
/// failure once and ends its accept thread: the server must restart it and serve again.
/// When the table fills between tiny_http's accept and its dup of the new socket, tiny_http
/// panics instead, and the process must then exit 1 (the kubelet restarts it). Which of
/// the two happens depends on the parity of free descriptors at that instant, so both
/// outcomes are accepted; a live process that does not answer is not.
#[test]
fn descriptor_exhaustion_never_leaves_a_dead_listener() {
    // A hard limit of 48 descriptors: the start-up raise of the soft limit cannot go past it.
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=48:48", "--", BIN]);
    let args = [
        "--listen-addr",
        "127.0.0.1:0",
        "--mysecret",
        "4321",
        "--log-requests=false",
    ];
    let mut p = Proc::spawn_cmd(cmd, &args, &[]);
    let addr = p.wait_addr();
    assert_eq!(get(addr, "/test").status, 200);
    // Idle connections hold descriptors (two each in tiny_http) until the table is full.
    let flood: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let start = std::time::Instant::now();
    while p.count_log("the listener stopped accepting connections") == 0 && p.is_running() {
        if start.elapsed() > WAIT {
            p.fail("the table is full, yet neither an accept error nor an exit was seen");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(flood);
    let start = std::time::Instant::now();
    loop {
        if matches!(try_request(addr, "GET", "/test"), Ok(a) if a.status == 200) {
            assert!(p.count_log("the listener accepts connections again") >= 1);
            for _ in 0..20 {
                assert_eq!(get(addr, "/test").status, 200, "served once, then stopped");
            }
            p.signal("TERM");
            let (status, _) = p.wait_exit(Duration::from_secs(5));
            assert_eq!(status.code(), Some(0));
            return;
        }
        if !p.is_running() {
            let (status, _) = p.wait_exit(Duration::from_secs(1));
            assert_eq!(
                status.code(),
                Some(1),
                "an exit after exhaustion must be a failure"
            );
            assert_eq!(
                p.count_log("internal failure, exiting"),
                1,
                "{:?}",
                p.stdout()
            );
            return;
        }
        if start.elapsed() > WAIT {
            p.fail("alive but not answering after the flood ended: a dead listener");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The recovery path on its own: the accept thread is restarted on the same socket and
/// connections queued meanwhile in the backlog are served, not lost.
#[test]
fn an_accept_error_restarts_the_listener_without_losing_the_backlog() {
    // Find a flood size that ends in an accept() error (not the dup panic), then check that
    // what was queued in the backlog while the accept thread was down gets answered.
    for _ in 0..6 {
        let mut cmd = Command::new("prlimit");
        cmd.args(["--nofile=40:40", "--", BIN]);
        let args = [
            "--listen-addr",
            "127.0.0.1:0",
            "--mysecret",
            "4321",
            "--log-requests=false",
        ];
        let mut p = Proc::spawn_cmd(cmd, &args, &[]);
        let addr = p.wait_addr();
        let mut flood = Vec::new();
        while p.count_log("the listener stopped accepting connections") == 0 && p.is_running() {
            flood.push(TcpStream::connect(addr).unwrap());
            std::thread::sleep(Duration::from_millis(5));
            assert!(flood.len() < 200, "no accept error after 200 connections");
        }
        if !p.is_running() {
            continue; // the dup panic won this time: try again
        }
        // A request queued in the backlog while the accept thread is down...
        let queued = std::thread::spawn(move || try_request(addr, "GET", "/queued"));
        std::thread::sleep(Duration::from_millis(200));
        drop(flood);
        // ...is answered once descriptors are free again.
        match queued.join().unwrap() {
            Ok(a) if a.status == 200 && a.body == "hello from /queued\n" => {}
            other if !p.is_running() => {
                let _ = other;
                continue;
            }
            other => p.fail(&format!("the queued request got {other:?}")),
        }
        p.wait_log("the listener accepts connections again");
        assert!(p.is_running());
        return;
    }
    panic!("six attempts in a row ended in the dup panic instead of an accept() error");
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

#[test]
fn a_thread_that_cannot_be_spawned_ends_the_process_instead_of_the_listener() {
    // RLIMIT_NPROC is not enforced for root: drop to nobody when we are root.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let mut cmd = Command::new("prlimit");
    if root {
        cmd.args([
            "--nproc=12:12",
            "--",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
        ]);
    } else {
        // the limit counts every task of this user: leave room for 12 of ours
        let uid = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid = uid
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
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
        cmd.args([format!("--nproc={}", tasks + 12), "--".into(), BIN.into()]);
    }
    let mut p = Proc::spawn_cmd(
        cmd,
        &["--listen-addr", "127.0.0.1:0", "--mysecret", "4321"],
        &[],
    );
    let addr = p.wait_addr();
    // Each idle connection holds a thread of tiny_http's pool until spawning fails.
    // Each idle connection holds one of tiny_http's threads; paced so that the pool sees its
    // idle threads taken and spawns new ones, until spawning fails.
    let mut flood = Vec::new();
    for _ in 0..40 {
        match TcpStream::connect(addr) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(25));
        if !p.is_running() {
            break;
        }
    }
    let (status, _) = p.wait_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(1),
        "expected exit 1 when a thread cannot be spawned"
    );
    assert_eq!(
        p.count_log("internal failure, exiting"),
        1,
        "{:?}",
        p.stdout()
    );
}
