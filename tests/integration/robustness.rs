//! SPEC §8: no live process with a dead listener.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

#[test]
fn descriptor_exhaustion_recovers_once_connections_close() {
    // A hard limit of 48 descriptors: the start-up raise of the soft limit cannot go past it.
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=48:48", "--", BIN]);
    let mut p = Proc::spawn_cmd(
        cmd,
        &[
            "--listen-addr",
            "127.0.0.1:0",
            "--mysecret",
            "4321",
            "--log-requests=false",
        ],
        &[],
    );
    let addr = p.wait_addr();
    assert_eq!(get(addr, "/test").status, 200);
    // Idle connections hold descriptors (two each in tiny_http) until accept() fails.
    let flood: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    p.wait_log("the listener stopped accepting connections");
    assert!(p.is_running());
    drop(flood);
    eventually(
        "the server to answer again after the flood",
        || matches!(try_request(addr, "GET", "/test"), Ok(a) if a.status == 200),
    );
    p.wait_log("the listener accepts connections again");
    // and it keeps doing so
    for _ in 0..20 {
        assert_eq!(get(addr, "/test").status, 200);
    }
    p.signal("TERM");
    let (status, _) = p.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
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
