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
