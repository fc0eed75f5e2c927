//! The reads of the secret file. A file found unreadable right after the kubelet's swap is
//! read again before it counts (issue 16: with `fsGroup`, the new file gets its group a
//! moment after the swap); only a regular file is read (issue 17: a FIFO, a socket, a
//! device or a directory is refused by its type); and a read that hangs — a FUSE mount whose
//! daemon never answers — stalls nothing but itself: the server answers, counts the read as
//! failed at its deadline, never starts a second one, and exits on SIGTERM, in both phases.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::util::*;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The user the server runs as in the permission tests: root reads any file whatever its
/// mode, so as root the server runs as `nobody` (65534), from a copy of the binary that
/// `nobody` can reach; anyone else runs it as themselves.
fn as_unprivileged(v: &SecretVolume) -> Command {
    let root = fs::metadata("/proc/self").unwrap().uid() == 0;
    if !root {
        return Command::new(BIN);
    }
    let bin = v.dir.0.join("hello-path-rs");
    fs::copy(BIN, &bin).unwrap();
    for dir in [&v.dir.0, &v.payload().parent().unwrap().to_path_buf()] {
        chmod(dir, 0o755);
    }
    chmod(&v.payload(), 0o644);
    let mut cmd = Command::new(bin);
    std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
    std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
    cmd
}

/// A `--reload` server on the volume, from `cmd`, its safety re-read an hour away: what it
/// picks up within a test's wait it owes to the file watch and its own retries.
fn serve_volume_with(cmd: Command, v: &SecretVolume) -> (Proc, std::net::SocketAddr) {
    let path = v.path();
    let mut p = Proc::spawn_cmd(
        cmd,
        &[
            "--listen-addr",
            "127.0.0.1:0",
            "--reload",
            "--mysecret-file",
            &path,
            "--watch-interval",
            "1h",
            "--expected-secret",
            "4321,5678",
        ],
        &[],
    );
    let addr = p.wait_addr();
    p.wait_log("watching ");
    (p, addr)
}

/// The kubelet swaps `..data` to a new directory whose file the server cannot read yet (it
/// gets its mode, as with `fsGroup` its group, a moment later, inside the new directory,
/// where the watch sees nothing): no failure counted, logged or exposed, and the new
/// credential is in use once readable — found by the server's retries alone.
#[test]
fn a_file_readable_a_moment_after_the_swap_is_no_failure() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume_with(as_unprivileged(&v), &v);
    v.update_then("5678", |f| {
        chmod(f.parent().unwrap(), 0o755);
        chmod(f, 0o000);
    });
    thread::sleep(Duration::from_millis(250));
    chmod(&v.payload(), 0o444);
    p.wait_log("secret reloaded: generation 2 in use");
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is **** (generation 2)"
    );
    assert_eq!((failures(addr), last_ok(addr)), (0.0, 1.0));
    assert_eq!(p.count_log("secret rejected"), 0, "{:#?}", p.messages());
}

/// The same with the key missing from the new directory for a moment (ENOENT).
#[test]
fn a_key_missing_a_moment_after_the_swap_is_no_failure() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume_with(Command::new(BIN), &v);
    v.update_then("5678", |f| fs::remove_file(f).unwrap());
    thread::sleep(Duration::from_millis(250));
    fs::write(v.payload(), "5678").unwrap();
    p.wait_log("secret reloaded: generation 2 in use");
    assert_eq!((failures(addr), last_ok(addr)), (0.0, 1.0));
    assert_eq!(p.count_log("secret rejected"), 0, "{:#?}", p.messages());
}

/// A file that stays unreadable is rejected once its retries are over: counted and logged
/// once, also when later events find it unreadable again; an explicit trigger counts at
/// once, as always.
#[test]
fn a_file_that_stays_unreadable_counts_once() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume_with(as_unprivileged(&v), &v);
    v.update_then("5678", |f| {
        chmod(f.parent().unwrap(), 0o755);
        chmod(f, 0o000);
    });
    let line = p.wait_log("secret rejected");
    assert!(
        line.contains(&format!(
            "secret rejected: cannot read {}: permission denied",
            v.path()
        )),
        "{line}"
    );
    // an event in the directory: read again, retried again, still the same error
    fs::write(v.dir.0.join("unrelated"), "x").unwrap();
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(p.count_log("secret rejected"), 1, "{:#?}", p.messages());
    assert_eq!(
        (failures(addr), last_ok(addr), generation(addr)),
        (1.0, 0.0, 1.0)
    );
    assert_eq!(get(addr, "/readyz").status, 200);
    let a = request(addr, "POST", "/-/reload");
    assert_eq!(a.status, 500, "{a:?}");
    assert!(a.body.contains("permission denied"), "{a:?}");
    assert_eq!(failures(addr), 2.0, "an explicit trigger counts");
}

/// The start-up wait retries the same way: a pod waiting for its credential whose new file
/// is readable a moment after the swap is Ready, with no failed attempt logged for it.
#[test]
fn the_start_up_wait_retries_a_file_unreadable_after_the_swap() {
    let mut v = SecretVolume::new("mysecret", "1234");
    let path = v.path();
    let mut p = Proc::spawn_cmd(
        as_unprivileged(&v),
        &[
            "--listen-addr",
            "127.0.0.1:0",
            "--reload",
            "--mysecret-file",
            &path,
            "--retry-interval",
            "1h",
        ],
        &[],
    );
    p.wait_log("watching ");
    v.update_then("4321", |f| {
        chmod(f.parent().unwrap(), 0o755);
        chmod(f, 0o000);
    });
    thread::sleep(Duration::from_millis(250));
    chmod(&v.payload(), 0o444);
    p.wait_addr();
    let m = p.messages();
    assert!(
        m.iter()
            .any(|l| l == "RELOAD(1): Connection to remote service: ok."),
        "{m:#?}"
    );
    assert_eq!(p.count_log("cannot read"), 0, "{m:#?}");
}

/// The key as a FIFO (without a writer: opening it must not wait for one), a Unix socket,
/// a character device (`/dev/null`, through a symlink) and a directory: each rejected with
/// its reason, the server answering throughout, and a regular file in use again after.
#[test]
fn only_a_regular_file_is_read() {
    let mut v = SecretVolume::new("mysecret", "4321");
    let (mut p, addr) = serve_volume_with(Command::new(BIN), &v);
    let mut sockets = Vec::new();
    // each in place of the key's file in a new directory, swapped in as the kubelet does
    let mut replace = |f: &Path, what: &str| {
        fs::remove_file(f).unwrap();
        match what {
            "a FIFO" => {
                let made = Command::new("mkfifo").arg(f).status().unwrap();
                assert!(made.success(), "mkfifo {}", f.display());
            }
            "a socket" => sockets.push(std::os::unix::net::UnixListener::bind(f).unwrap()),
            "a character device" => std::os::unix::fs::symlink("/dev/null", f).unwrap(),
            _ => fs::create_dir(f).unwrap(),
        }
    };
    let kinds = ["a FIFO", "a socket", "a character device", "a directory"];
    for (n, what) in kinds.into_iter().enumerate() {
        v.update_then("5678", |f| replace(f, what));
        assert_eq!(get(addr, "/healthz").status, 200, "{what}");
        let reason = format!("cannot read {}: not a regular file ({what})", v.path());
        p.wait_log(&format!(
            "secret rejected: {reason}; generation 1 stays in use"
        ));
        let a = request(addr, "POST", "/-/reload");
        assert_eq!(a.status, 500, "{what}: {a:?}");
        assert!(a.body.contains(&reason), "{what}: {a:?}");
        assert_eq!(failures(addr), 2.0 * (n as f64 + 1.0), "{what}");
        assert_eq!(get(addr, "/readyz").status, 200, "{what}");
    }
    v.update("5678");
    p.wait_log("secret reloaded: generation 2 in use");
    assert_eq!(last_ok(addr), 1.0);
}

/// The mount point of the hung filesystem: a timestamped directory of the volume, so that
/// swapping `..data` to it is the kubelet's own update.
const HUNG: &str = "..2026_12_04_12_00_00.000000099";

/// The hung FUSE helper, which mounts `mountpoint` in a namespace of the server's own and
/// then runs the server (`tests/lib/hung-fuse.sh`).
fn on_a_hung_mount(mountpoint: &Path) -> Command {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lib/hung-fuse.sh");
    let mut cmd = Command::new(script);
    cmd.arg(mountpoint).arg(BIN);
    cmd
}

/// The threads of `pid` that wait on a FUSE filesystem (their kernel wait channel).
fn blocked_on_fuse(pid: u32) -> Vec<String> {
    let mut blocked = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let wchan = fs::read_to_string(task.join("wchan")).unwrap_or_default();
        if wchan.starts_with("fuse") || wchan == "request_wait_answer" {
            let name = fs::read_to_string(task.join("comm")).unwrap_or_default();
            blocked.push(format!("{} ({wchan})", name.trim()));
        }
    }
    blocked
}

/// Waits until a thread of `p` waits on the hung mount.
fn wait_blocked(p: &mut Proc) -> Vec<String> {
    let pid = p.pid();
    let mut blocked = Vec::new();
    let start = std::time::Instant::now();
    while blocked.is_empty() {
        if start.elapsed() > WAIT || !p.is_running() {
            p.fail("no thread of the server ever waited on the hung mount");
        }
        thread::sleep(Duration::from_millis(20));
        blocked = blocked_on_fuse(pid);
    }
    blocked
}

/// The kubelet swaps `..data` to a directory on a mount that never answers. The read
/// hangs on the reader thread; the server answers all along, counts the read as failed at
/// its deadline (log, failure metric, `last_reload_successful 0`), keeps the last good
/// credential and stays ready; later triggers never start a second read (one thread waits
/// on the mount, whatever comes); an explicit one gets its answer at its own deadline; and
/// SIGTERM ends the process, exit 0.
#[test]
fn a_read_that_hangs_stalls_nothing_but_itself() {
    let v = SecretVolume::new("mysecret", "4321");
    let mountpoint = v.dir.0.join(HUNG);
    fs::create_dir(&mountpoint).unwrap();
    let (mut p, addr) = serve_volume_with(on_a_hung_mount(&mountpoint), &v);
    p.wait_log("hung-fuse: mounted");
    v.swap_to(HUNG);
    assert_eq!(get(addr, "/healthz").status, 200);
    let blocked = wait_blocked(&mut p);
    assert_eq!(get(addr, "/healthz").status, 200, "while {blocked:?}");
    let reason = format!(
        "cannot read {}: the read did not finish within 2s",
        v.path()
    );
    p.wait_log(&format!(
        "secret rejected: {reason}; generation 1 stays in use"
    ));
    assert_eq!(
        (failures(addr), last_ok(addr), generation(addr)),
        (1.0, 0.0, 1.0)
    );
    assert_eq!(get(addr, "/readyz").status, 200);
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is **** (generation 1)"
    );
    // more triggers while it hangs: a file event, SIGHUP, POST /-/reload
    fs::write(v.dir.0.join("unrelated"), "x").unwrap();
    p.signal("HUP");
    p.wait_log_n("secret rejected", 2);
    // POST /-/reload waits for its read, the loop does not: a request behind it on the
    // same connection is answered meanwhile, and the answers leave in request order
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"POST /-/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    p.wait_log_n("GET /healthz", 3);
    assert_eq!(get(addr, "/test").status, 200);
    let a = read_one(&mut s);
    assert_eq!(a.status, 500, "{a:?}");
    assert!(a.body.contains(&reason), "{a:?}");
    assert_eq!(read_one(&mut s).body, "ok");
    let m = p.messages();
    let at = |what: &str| m.iter().rposition(|l| l.starts_with(what)).unwrap();
    assert!(
        at("GET /test") < at("secret rejected"),
        "the loop waited for the read: {m:#?}"
    );
    assert_eq!(
        failures(addr),
        3.0,
        "each explicit trigger counts, the event not"
    );
    assert_eq!(
        blocked_on_fuse(p.pid()),
        blocked,
        "a read was started while one hung"
    );
    assert_eq!(get(addr, "/healthz").status, 200);
    p.signal("TERM");
    let (status, _) = p.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{:#?}", p.messages());
    p.wait_log("Web service stopped.");
}

/// The start-up wait reads the same way: a first read that hangs is a failed read at its
/// deadline (the wait goes on), and SIGTERM ends the wait, exit 0, whether it comes while
/// that first read hangs or after.
#[test]
fn sigterm_during_a_start_up_read_that_hangs_exits_0() {
    for after_deadline in [false, true] {
        let v = SecretVolume::new("mysecret", "4321");
        let mountpoint = v.dir.0.join(HUNG);
        fs::create_dir(&mountpoint).unwrap();
        v.swap_to(HUNG);
        let path = v.path();
        let mut p = Proc::spawn_cmd(
            on_a_hung_mount(&mountpoint),
            &[
                "--listen-addr",
                "127.0.0.1:0",
                "--reload",
                "--mysecret-file",
                &path,
                "--retry-interval",
                "1h",
            ],
            &[],
        );
        p.wait_log("hung-fuse: mounted");
        wait_blocked(&mut p);
        if after_deadline {
            p.wait_log(&format!(
                "cannot read {path}: the read did not finish within 2s"
            ));
            p.wait_log("RELOAD: Connection to remote service: nok.");
        }
        p.signal("TERM");
        let (status, _) = p.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "{:#?}", p.messages());
        assert_eq!(
            p.count_log("Received SIGTERM while waiting for a valid credential: exiting."),
            1
        );
        assert_eq!(p.count_log("Web service accessible"), 0);
    }
}

/// Without `--reload`, a first read that hangs is one clear error at its deadline, exit 1.
#[test]
fn without_reload_a_read_that_hangs_is_an_error() {
    let v = SecretVolume::new("mysecret", "4321");
    let mountpoint = v.dir.0.join(HUNG);
    fs::create_dir(&mountpoint).unwrap();
    v.swap_to(HUNG);
    let path = v.path();
    let mut p = Proc::spawn_cmd(
        on_a_hung_mount(&mountpoint),
        &["--listen-addr", "127.0.0.1:0", "--mysecret-file", &path],
        &[],
    );
    p.wait_log("hung-fuse: mounted");
    let (status, _) = p.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        p.stderr(),
        [format!(
            "hello-path-rs: error: cannot read {path}: the read did not finish within 2s"
        )]
    );
}
