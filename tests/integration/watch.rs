//! The file watch (SPEC §5): changes are picked up at once, whatever `--watch-interval`
//! says, and the watch follows its directory when it goes away and comes back. Every test
//! here sets the safety re-read (or the start-up retry) an hour away, so that only the
//! watch can explain what the test sees within its 10-second waits. No timing is asserted.

use std::fs;
use std::path::Path;

use crate::util::*;

/// A `--reload` server on `file`, accepting 4321, 5678 and 7777, with `extra` options.
fn serve_file(file: &Path, extra: &[&str]) -> (Proc, std::net::SocketAddr) {
    let file = file.to_string_lossy().into_owned();
    let mut args = vec![
        "--reload",
        "--mysecret-file",
        &file,
        "--watch-interval",
        "1h",
        "--expected-secret",
        "4321,5678,7777",
    ];
    args.extend_from_slice(extra);
    Proc::serve(&args, &[])
}

#[test]
fn a_kubelet_swap_is_in_use_without_waiting_for_the_safety_re_read() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_file(Path::new(&v.path()), &[]);
    let dir = v.dir.0.display().to_string();
    p.wait_log(&format!("watching {dir} for changes of {}", v.path()));
    v.update("5678");
    p.wait_log("secret reloaded: generation 2 in use");
    v.update("7777");
    p.wait_log("secret reloaded: generation 3 in use");
    assert_eq!((generation(addr), failures(addr)), (3.0, 0.0));
}

/// A plain file rewritten in place (`echo 5678 > file`: truncate, write, close) and then
/// replaced by a rename (`mv new file`): both seen, and the truncated moment in between is
/// never read as a (rejected) empty credential.
#[test]
fn an_in_place_rewrite_and_a_rename_over_the_file_are_seen() {
    let dir = TempDir::new("plain");
    let file = dir.0.join("mysecret");
    fs::write(&file, "4321\n").unwrap();
    let (mut p, addr) = serve_file(&file, &[]);
    p.wait_log("watching ");
    fs::write(&file, "5678\n").unwrap();
    p.wait_log("secret reloaded: generation 2 in use");
    let new = dir.0.join("mysecret.new");
    fs::write(&new, "7777\n").unwrap();
    fs::rename(&new, &file).unwrap();
    p.wait_log("secret reloaded: generation 3 in use");
    assert_eq!((generation(addr), failures(addr)), (3.0, 0.0));
    assert!(p.is_running());
}

/// The directory removed (the watch is lost: said once, the file now unreadable and
/// rejected, the last good credential kept), then back (renamed into place, as a volume
/// would be mounted again): watched again through its parent, the new content in use.
#[test]
fn a_removed_and_recreated_directory_is_followed() {
    let root = TempDir::new("vanishing");
    let dir = root.0.join("secret");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("mysecret");
    fs::write(&file, "4321").unwrap();
    let (mut p, addr) = serve_file(&file, &[]);
    p.wait_log("watching ");
    fs::remove_dir_all(&dir).unwrap();
    p.wait_log(&format!(
        "the watch on {} is lost: the directory was removed",
        dir.display()
    ));
    p.wait_log(&format!(
        "{} is missing: watching {} until it is back",
        dir.display(),
        root.0.display()
    ));
    p.wait_log("secret rejected: cannot read");
    assert_eq!(get(addr, "/readyz").status, 200);
    let staged = root.0.join("staged");
    fs::create_dir(&staged).unwrap();
    fs::write(staged.join("mysecret"), "5678").unwrap();
    fs::rename(&staged, &dir).unwrap();
    p.wait_log(&format!("watching {} again", dir.display()));
    p.wait_log("secret reloaded: generation 2 in use");
    // and the new directory is watched, not only found
    fs::write(&file, "7777").unwrap();
    p.wait_log("secret reloaded: generation 3 in use");
    assert_eq!(p.count_log("is lost"), 1, "the loss is said once");
    assert_eq!(failures(addr), 1.0, "the unreadable file counted once");
}

/// The directory and its parent both gone: nothing can be watched, so the safety re-read
/// (here every 200 ms) is all that is left — it finds the directory back and watches it
/// again.
#[test]
fn with_nothing_to_watch_the_safety_re_read_finds_the_directory_again() {
    let root = TempDir::new("gone");
    let parent = root.0.join("parent");
    let dir = parent.join("secret");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mysecret");
    fs::write(&file, "4321").unwrap();
    let (mut p, addr) = serve_file(&file, &["--watch-interval", "200ms"]);
    p.wait_log("watching ");
    fs::remove_dir_all(&parent).unwrap();
    p.wait_log(&format!(
        "cannot watch {}: no such file or directory; re-reading",
        parent.display()
    ));
    fs::create_dir_all(&dir).unwrap();
    fs::write(&file, "5678").unwrap();
    p.wait_log(&format!("watching {} again", dir.display()));
    p.wait_log("secret reloaded: generation 2 in use");
    assert_eq!(generation(addr), 2.0);
}

/// A pod waiting for its credential is Ready as soon as the kubelet writes it, not at its
/// next retry (an hour away here); the wake-up is a numbered attempt like any other.
#[test]
fn the_startup_wait_is_ready_on_a_swap_before_its_next_retry() {
    let mut v = SecretVolume::new("mysecret", "1234");
    let path = v.path();
    let mut p = Proc::waiting(&path, &[]);
    p.wait_log("Checking every 3600 seconds.");
    p.wait_log("watching ");
    v.update("4321");
    let addr = p.wait_addr();
    assert_eq!(get(addr, "/readyz").status, 200);
    let m = p.messages();
    assert!(
        m.iter()
            .any(|l| l == "RELOAD(1): Connection to remote service: ok."),
        "{m:#?}"
    );
    assert_eq!(p.count_log("RELOAD(2)"), 0, "{m:#?}");
}

/// A file event that changes nothing the credential depends on is no attempt: the wait
/// logs nothing for it.
#[test]
fn the_startup_wait_ignores_events_that_change_nothing() {
    let mut v = SecretVolume::new("mysecret", "1234");
    let path = v.path();
    let mut p = Proc::waiting(&path, &[]);
    p.wait_log("watching ");
    fs::write(v.dir.0.join("unrelated"), "x").unwrap();
    v.update("1234"); // the same wrong value, freshly swapped in
    v.update("9999"); // a different wrong value: an attempt
    p.wait_log("RELOAD(1): Connection to remote service: nok.");
    v.update("4321");
    p.wait_addr();
    assert_eq!(
        p.count_log("RELOAD(2): Connection to remote service: ok."),
        1
    );
}

/// Context switches of every thread of the process, from `/proc/PID/task/*/status`.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Idle means idle: once started, a server that nobody talks to does not wake up at all —
/// no thread of it is scheduled — with a fixed credential and while following a Secret
/// volume. A count, not a timing.
#[test]
fn an_idle_server_does_not_wake_up() {
    let v = SecretVolume::new("mysecret", "4321");
    let path = v.path();
    for args in [
        &["--mysecret", "4321"][..],
        &["--reload", "--mysecret-file", &path],
    ] {
        let (p, addr) = Proc::serve(args, &[]);
        assert_eq!(get(addr, "/healthz").status, 200);
        // the threads started by the first connection settle
        let mut before = context_switches(p.pid());
        let mut settled = false;
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = context_switches(p.pid());
            if now == before {
                settled = true;
                break;
            }
            before = now;
        }
        assert!(settled, "{args:?}: never settled");
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert_eq!(
            context_switches(p.pid()),
            before,
            "{args:?}: the idle server woke up"
        );
    }
}

/// A file removed while the start-up waits (an event that may be half of an update, acted
/// on once it settled): an attempt, well before the next retry an hour away.
#[test]
fn the_startup_wait_sees_its_file_removed() {
    let dir = TempDir::new("removed");
    let file = dir.0.join("mysecret");
    fs::write(&file, "1234").unwrap();
    let f = file.to_string_lossy().into_owned();
    let mut p = Proc::waiting(&f, &[]);
    p.wait_log("watching ");
    fs::remove_file(&file).unwrap();
    p.wait_log("RELOAD(1): Connection to remote service: nok (cannot read");
    fs::write(&file, "4321").unwrap();
    p.wait_addr();
}

/// No descriptor left for inotify (a `prlimit --nofile` just too low for it, found by
/// trying): said in one line, and the wait goes on with its retries — the safety net,
/// never a crash.
#[test]
fn without_a_descriptor_for_inotify_the_wait_goes_on() {
    let v = SecretVolume::new("mysecret", "1234");
    let path = v.path();
    let mut seen = Vec::new();
    for n in 4..24u32 {
        let mut cmd = std::process::Command::new("prlimit");
        cmd.args([format!("--nofile={n}:{n}").as_str(), "--", BIN]);
        let mut p = Proc::spawn_cmd(
            cmd,
            &[
                "--listen-addr",
                "127.0.0.1:0",
                "--reload",
                "--mysecret-file",
                &path,
                "--retry-interval",
                "100ms",
            ],
            &[],
        );
        p.wait_log_or_exit("RELOAD(2)");
        let cannot = p.count_log("cannot watch") == 1
            && p.count_log("too many open files or inotify instances") == 1;
        if cannot && p.is_running() {
            assert_eq!(p.count_log("watching "), 0);
            return;
        }
        seen.push((n, p.stdout(), p.stderr()));
        if p.count_log("watching ") == 1 {
            break; // from here on there are descriptors enough
        }
    }
    panic!("no limit gave 'cannot watch' and a live wait: {seen:#?}");
}
