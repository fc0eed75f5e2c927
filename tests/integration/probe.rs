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

/// The failures of a probe's summary, by kind, and the overall counts.
fn kinds(lines: &[String]) -> [i64; 7] {
    let s = summary(lines);
    [
        "connect_timeout",
        "refused",
        "reset",
        "http_error",
        "read_timeout",
        "other",
        "failed_after_ok",
    ]
    .map(|k| *s.get(k).unwrap_or_else(|| panic!("no {k} in {lines:?}")))
}

#[test]
fn probe_tells_failures_apart() {
    // refused: nothing listens
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // reset: a listener that accepts and closes at once
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closing = closer.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in closer.incoming() {
            drop(c);
        }
    });
    // read timeout: the kernel completes the handshake (backlog), nobody ever answers
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let muted = mute.local_addr().unwrap();
    // http error: an answer without the expected text, and a 404-free 503
    let (_p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);

    let run = |url: String, expect: Option<&str>| {
        let mut args = vec![url, "--for".into(), "1s".into()];
        args.extend(["--every", "100ms", "--timeout", "300ms"].map(String::from));
        if let Some(e) = expect {
            args.extend(["--expect".to_string(), e.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        probe(&args).1
    };
    let lines = run(format!("http://{closed}/"), None);
    let [ct, refused, reset, http, rt, other, _] = kinds(&lines);
    assert!(
        refused > 0 && ct + reset + http + rt + other == 0,
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("probe first-failure kind=refused ")),
        "{lines:?}"
    );
    let lines = run(format!("http://{closing}/"), None);
    let [_, _, reset, _, _, _, _] = kinds(&lines);
    assert_eq!(reset, summary(&lines)["failed"], "{lines:?}");
    let lines = run(format!("http://{muted}/"), None);
    let [_, _, _, _, rt, _, _] = kinds(&lines);
    assert!(rt > 0 && rt == summary(&lines)["failed"], "{lines:?}");
    let lines = run(format!("http://{addr}/test"), Some("nope"));
    let [_, _, _, http, _, _, _] = kinds(&lines);
    assert!(http > 0 && http == summary(&lines)["failed"], "{lines:?}");
    // the seconds list the kinds that occurred
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("probe second=1 ok=0 failed=") && l.contains(" http_error=")),
        "{lines:?}"
    );
    drop(mute);
}

#[test]
fn several_urls_are_asked_in_turn_and_failures_after_an_answer_are_told() {
    let (p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(BIN)
        .args([
            "probe",
            &format!("http://{addr}/test"),
            &format!("http://{closed}/"),
        ])
        .args(["--for", "3s", "--every", "50ms", "--timeout", "300ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The server answers for a while, then goes away: its failures come after an answer.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    p.signal("KILL");
    let out = child.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let target = |url: String| -> std::collections::HashMap<String, String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("probe target url={url} ")))
            .unwrap_or_else(|| panic!("no target line for {url}: {lines:?}"));
        line.split(' ')
            .skip(2)
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let served = target(format!("http://{addr}/test"));
    let never = target(format!("http://{closed}/"));
    assert!(served["ok"].parse::<i64>().unwrap() > 0, "{lines:?}");
    assert!(
        served["failed_after_ok"].parse::<i64>().unwrap() > 0,
        "{lines:?}"
    );
    assert_eq!(never["ok"], "0", "{lines:?}");
    assert_eq!(never["failed_after_ok"], "0", "{lines:?}");
    let total =
        served["requests"].parse::<i64>().unwrap() - never["requests"].parse::<i64>().unwrap();
    assert!(total.abs() <= 1, "asked in turn: {lines:?}");
    assert_eq!(
        summary(&lines)["failed_after_ok"],
        served["failed_after_ok"].parse::<i64>().unwrap()
    );
}
