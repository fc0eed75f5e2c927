//! Reload semantics (SPEC §5) against a Secret volume swapped exactly as the kubelet does it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::util::*;

/// A `--reload` server following the volume's file. Its safety re-read is an hour away, so
/// whatever it picks up within a test's wait it owes to the file watch; a test that wants
/// re-reads of unchanged content passes a short `--watch-interval` (the last one wins).
fn serve_volume(v: &SecretVolume, extra: &[&str]) -> (Proc, std::net::SocketAddr) {
    let path = v.path();
    let mut args = vec![
        "--reload",
        "--mysecret-file",
        &path,
        "--watch-interval",
        "1h",
    ];
    args.extend_from_slice(extra);
    Proc::serve(&args, &[])
}

#[test]
fn startup_waits_for_a_valid_secret_then_serves_without_restarting() {
    let mut v = SecretVolume::new("mysecret", "1234");
    let path = v.path();
    let mut p = Proc::waiting(&path, &["--retry-interval", "200ms"]);
    p.wait_log("RELOAD: Connection to remote service: nok. Checking every 0.2 seconds.");
    p.wait_log("RELOAD(3): Connection to remote service: nok.");
    let pid = p.pid();
    v.update("4321\n");
    let addr = p.wait_addr();
    assert_eq!(p.pid(), pid);
    let m = p.messages();
    let ok = m
        .iter()
        .position(|l| l.ends_with("Connection to remote service: ok.") && l.starts_with("RELOAD("))
        .unwrap();
    assert_eq!(m[ok + 1], "Connection to remote service: ok.");
    // attempts are numbered 1, 2, 3, ... (the original doubles them by mistake)
    let numbers: Vec<u64> = m
        .iter()
        .filter_map(|l| l.strip_prefix("RELOAD(")?.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as u64).collect::<Vec<_>>(),
        "{m:#?}"
    );
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is **** (generation 1)"
    );
    assert!(
        p.stdout()
            .iter()
            .all(|l| !l.contains("1234") && !l.contains("4321")),
        "a secret leaked"
    );
}

#[test]
fn startup_waits_for_a_secret_file_that_does_not_exist_yet() {
    let dir = TempDir::new("late");
    let path = dir.0.join("mysecret");
    let p_str = path.to_string_lossy().into_owned();
    let mut p = Proc::waiting(&p_str, &["--retry-interval", "100ms"]);
    p.wait_log("RELOAD(2): Connection to remote service: nok (cannot read");
    std::fs::write(&path, "4321").unwrap();
    let addr = p.wait_addr();
    assert_eq!(get(addr, "/test").status, 200);
}

#[test]
fn a_flag_or_env_source_is_said_to_be_fixed_and_the_wait_goes_on() {
    let mut p = Proc::spawn(
        &[
            "--listen-addr",
            "127.0.0.1:0",
            "--reload=true",
            "--retry-interval",
            "100ms",
        ],
        &[("MYSECRET", "1234")],
    );
    p.wait_log("RELOAD(3): Connection to remote service: nok.");
    assert_eq!(p.count_log("cannot change while the process runs"), 1);
    assert!(p.count_log("MYSECRET environment variable") == 1);
    assert!(p.is_running());
}

#[test]
fn a_kubelet_swap_is_reloaded_without_a_restart() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume(&v, &["--expected-secret", "4321,5678"]);
    let key_before = std::fs::symlink_metadata(v.path()).unwrap();
    v.update("5678\n");
    let key_after = std::fs::symlink_metadata(v.path()).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            key_before.ino(),
            key_after.ino(),
            "the key symlink itself must not change"
        );
    }
    p.wait_log("secret reloaded: generation 2 in use");
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is **** (generation 2)"
    );
    assert_eq!(
        (
            generation(addr),
            successes(addr),
            failures(addr),
            last_ok(addr)
        ),
        (2.0, 1.0, 0.0, 1.0)
    );
    assert!(
        metric(
            addr,
            "hello_path_secret_last_reload_success_timestamp_seconds"
        ) > 1.7e9
    );
    assert_eq!(p.count_log("secret reloaded"), 1, "one log line per swap");
    assert!(p.is_running());
}

#[test]
fn a_bad_change_is_rejected_once_and_the_last_good_secret_stays() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume(&v, &["--watch-interval", "100ms"]);
    v.update("9999");
    p.wait_log("secret rejected: the remote service refused the new credential");
    thread::sleep(Duration::from_millis(500)); // five safety re-reads of the same bad content
    assert_eq!(
        p.count_log("secret rejected"),
        1,
        "counted and logged once per distinct content"
    );
    assert_eq!(
        (
            generation(addr),
            successes(addr),
            failures(addr),
            last_ok(addr)
        ),
        (1.0, 0.0, 1.0, 0.0)
    );
    assert_eq!(
        get(addr, "/readyz").status,
        200,
        "a rejected change must not make the pod unready"
    );
    assert_eq!(get(addr, "/test").status, 200);
    // another bad content counts again
    v.update("8888");
    p.wait_log_n("secret rejected", 2);
    assert_eq!(failures(addr), 2.0);
    // back to the credential in use: successful again, same generation
    v.update("4321");
    eventually("last_reload_successful back to 1", || last_ok(addr) == 1.0);
    assert_eq!((generation(addr), failures(addr)), (1.0, 2.0));
    assert!(
        p.stdout()
            .iter()
            .all(|l| !l.contains("9999") && !l.contains("8888")),
        "a secret leaked"
    );
}

#[test]
fn an_unreadable_file_is_rejected_and_the_service_stays_up() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume(&v, &["--watch-interval", "100ms"]);
    v.break_link();
    p.wait_log("secret rejected: cannot read");
    thread::sleep(Duration::from_millis(400)); // four safety re-reads of the same missing file
    assert_eq!(p.count_log("secret rejected"), 1);
    assert_eq!(
        (failures(addr), last_ok(addr), generation(addr)),
        (1.0, 0.0, 1.0)
    );
    assert_eq!(get(addr, "/readyz").status, 200);
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is **** (generation 1)"
    );
}

/// SIGHUP re-reads at once. The file watch would pick the swap up by itself, so it is
/// switched off (`--watch=false`, safety re-read an hour away): only the signal can explain
/// the reload. (Before the watch, `--watch-interval 1h` alone isolated it.)
#[test]
fn sighup_reloads_at_once() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume(&v, &["--watch=false", "--expected-secret", "4321,5678"]);
    p.wait_log("not watching the file");
    v.update("5678");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        generation(addr),
        1.0,
        "reloaded although nothing watches the file"
    );
    p.signal("HUP");
    p.wait_log("secret reloaded: generation 2 in use");
    assert_eq!(successes(addr), 1.0);
    // an explicit trigger always re-checks and counts its outcome
    p.signal("HUP");
    p.wait_log_n("Received SIGHUP", 2);
    eventually("the second SIGHUP counted", || successes(addr) == 2.0);
    assert_eq!(generation(addr), 2.0);
}

/// `POST /-/reload` re-checks now and reports the outcome. The watch also sees each change:
/// it counts a bad content once (SPEC §5), and every explicit trigger counts on top of it.
#[test]
fn post_reload_reports_the_outcome() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume(&v, &["--expected-secret", "4321,5678"]);
    v.update("5678");
    p.wait_log("secret reloaded: generation 2 in use"); // the watch was first
    let a = request(addr, "POST", "/-/reload");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("generation 2"), "{a:?}");
    v.update("0000");
    p.wait_log("secret rejected");
    assert_eq!(failures(addr), 1.0, "the watch counts a bad content once");
    for n in 2..=3 {
        let a = request(addr, "POST", "/-/reload");
        assert_eq!(a.status, 500, "{a:?}");
        assert!(a.body.contains("refused"), "{a:?}");
        assert!(!a.body.contains("0000"), "the rejected value leaked: {a:?}");
        assert_eq!(failures(addr), n as f64, "every explicit trigger counts");
    }
    assert_eq!((generation(addr), last_ok(addr)), (2.0, 0.0));
    // an unreadable file: 500 with the reason, counted at every trigger
    v.break_link();
    p.wait_log_n("secret rejected", 4); // the watch's, the two POSTs', then the watch's

    assert_eq!(
        failures(addr),
        4.0,
        "the watch counts the unreadable file once"
    );
    for n in 5..=6 {
        let a = request(addr, "POST", "/-/reload");
        assert_eq!(a.status, 500, "{a:?}");
        assert!(a.body.contains("cannot read"), "{a:?}");
        assert_eq!(failures(addr), n as f64, "every explicit trigger counts");
    }
    assert_eq!(get(addr, "/readyz").status, 200);
}

#[test]
fn without_reload_a_changed_file_is_ignored_and_sighup_is_logged() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let path = v.path();
    let (mut p, addr) = Proc::serve(
        &[
            "--mysecret-file",
            &path,
            "--watch-interval",
            "100ms",
            "--expected-secret",
            "4321,5678",
        ],
        &[],
    );
    v.update("5678");
    p.signal("HUP");
    p.wait_log("Received SIGHUP: ignored");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(generation(addr), 1.0);
    assert!(p.is_running());
}

#[test]
fn a_rotation_under_continuous_requests_drops_nothing() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume(
        &v,
        &["--expected-secret", "4321,5678", "--log-requests=false"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match try_request(addr, "GET", "/test") {
                        Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for (i, value) in ["5678", "4321", "5678", "9999", "5678"].iter().enumerate() {
        thread::sleep(Duration::from_millis(250));
        v.update(value);
        if i < 3 {
            p.wait_log_n("secret reloaded", i + 1);
        }
    }
    p.wait_log("secret rejected");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "too few requests to mean anything: {ok}");
    assert_eq!(failed, 0, "{failed} failed requests out of {}", ok + failed);
    assert_eq!(generation(addr), 4.0);
    assert_eq!(failures(addr), 1.0);
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is **** (generation 4)"
    );
}
