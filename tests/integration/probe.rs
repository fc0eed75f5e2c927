//! The `probe` subcommand against a real server and a closed port.

use std::process::Command;

use crate::util::*;

fn probe(args: &[&str]) -> (i32, Vec<String>) {
    let out = Command::new(BIN).arg("probe").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    (out.status.code().unwrap(), text)
}

fn summary(lines: &[String]) -> std::collections::HashMap<String, i64> {
    let last = lines.last().expect("no output");
    let rest = last
        .strip_prefix("probe summary ")
        .unwrap_or_else(|| panic!("no summary: {lines:?}"));
    rest.split(' ')
        .map(|kv| kv.split_once('=').unwrap())
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[test]
fn probe_counts_successes_per_second() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let (code, lines) = probe(&[
        &format!("http://{addr}/test"),
        "--for",
        "2s",
        "--every",
        "50ms",
        "--expect",
        "hello from /test",
    ]);
    assert_eq!(code, 0);
    let seconds: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("probe second="))
        .collect();
    assert_eq!(seconds.len(), 2, "{lines:?}");
    assert!(
        seconds[0].starts_with("probe second=1 ok=")
            && seconds[1].starts_with("probe second=2 ok="),
        "{lines:?}"
    );
    let s = summary(&lines);
    assert_eq!(s["failed"], 0, "{lines:?}");
    assert!(s["ok"] >= 10, "{lines:?}");
    assert_eq!(s["ok"], s["requests"]);
    assert_eq!(s["last_failed_ms"], -1);
}

#[test]
fn probe_counts_failures_and_the_outage() {
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    // a body that never matches is a failure
    let (code, lines) = probe(&[
        &format!("http://{addr}/test"),
        "--for",
        "1s",
        "--expect",
        "nope",
    ]);
    assert_eq!(code, 0);
    let s = summary(&lines);
    assert_eq!((s["ok"], s["first_ok_ms"]), (0, -1), "{lines:?}");
    assert!(s["failed"] > 0 && s["longest_outage_ms"] > 500, "{lines:?}");
    // a closed port is a failure too
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_, lines) = probe(&[&format!("http://{closed}/"), "--for", "500ms"]);
    assert_eq!(summary(&lines)["ok"], 0);
}

#[test]
fn probe_usage_errors_exit_2() {
    for args in [
        &[][..],
        &["https://x/"],
        &["http://x/", "--every", "0"],
        &["http://x/", "--bogus"],
    ] {
        let out = Command::new(BIN).arg("probe").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("hello-path-rs: error: ") && err.lines().count() <= 2,
            "{err}"
        );
    }
}
