//! Test helpers: spawn the real binary, read its log, talk HTTP over std::net, and lay out a
//! Secret volume exactly as the kubelet's AtomicWriter does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hello-path-rs");

/// Upper bound of every wait in these tests (they run on shared, noisy machines).
pub const WAIT: Duration = Duration::from_secs(10);

/// A running hello-path-rs, killed and reaped on drop.
pub struct Proc {
    pub child: Option<Child>,
    pub args: Vec<String>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(l) => into.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
}

impl Proc {
    /// Spawns the binary with `args` and extra environment (MYSECRET is always cleared first).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
        Self::spawn_cmd(Command::new(BIN), args, env)
    }

    /// Spawns `cmd` (the binary, or a wrapper such as prlimit) with `args`.
    pub fn spawn_cmd(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Proc {
        cmd.args(args)
            .env_remove("MYSECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hello-path-rs");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), Arc::clone(&out));
        collect(child.stderr.take().unwrap(), Arc::clone(&err));
        Proc {
            child: Some(child),
            args: args.iter().map(|s| s.to_string()).collect(),
            out,
            err,
        }
    }

    /// Starts a server on 127.0.0.1:0 and waits until it says where it listens.
    pub fn serve(args: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
        let mut all = vec!["--listen-addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut p = Proc::spawn(&all, env);
        let addr = p.wait_addr();
        (p, addr)
    }

    /// Starts a `--reload` server on `file` that waits for its credential, its retries an
    /// hour apart unless `extra` says otherwise (the last option wins): whatever it does
    /// within a test's wait, a retry cannot explain.
    pub fn waiting(file: &str, extra: &[&str]) -> Proc {
        let mut all = vec![
            "--listen-addr",
            "127.0.0.1:0",
            "--reload",
            "--mysecret-file",
            file,
            "--retry-interval",
            "1h",
        ];
        all.extend_from_slice(extra);
        Proc::spawn(&all, &[])
    }

    /// Waits for `Web service accessible at ADDR` and returns ADDR.
    pub fn wait_addr(&mut self) -> SocketAddr {
        let line = self.wait_log("Web service accessible at ");
        line.rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .expect("an address")
    }

    pub fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }

    /// The message part of each log line (after `[hello-path-rs] `).
    pub fn messages(&self) -> Vec<String> {
        self.stdout()
            .iter()
            .filter_map(|l| l.split_once("[hello-path-rs] ").map(|(_, m)| m.to_string()))
            .collect()
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.stdout().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until a log line contains `needle`; returns the line.
    pub fn wait_log(&mut self, needle: &str) -> String {
        self.wait_log_n(needle, 1)
    }

    /// Waits until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_log_n(&mut self, needle: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let hits: Vec<String> = self
                .stdout()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if hits.len() >= n {
                return hits[n - 1].clone();
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                thread::sleep(Duration::from_millis(50)); // let the readers finish
                self.fail(&format!("exited ({status}) before logging {n}× {needle:?}"));
            }
            if start.elapsed() > WAIT {
                self.fail(&format!(
                    "gave up after {WAIT:?} waiting for {n}× {needle:?} in the log"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a log line contains `needle` or the process has exited; true: logged.
    pub fn wait_log_or_exit(&mut self, needle: &str) -> bool {
        let start = Instant::now();
        loop {
            if self.count_log(needle) > 0 {
                return true;
            }
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                thread::sleep(Duration::from_millis(50)); // let the readers finish
                return self.count_log(needle) > 0;
            }
            if start.elapsed() > WAIT {
                self.fail(&format!(
                    "gave up after {WAIT:?} waiting for {needle:?} or an exit"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; returns its status and how long that took.
    pub fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                thread::sleep(Duration::from_millis(50));
                return (s, start.elapsed());
            }
            if start.elapsed() > within {
                self.fail(&format!(
                    "still running {within:?} after it should have exited"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Panics with everything needed to understand the failure.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\nargs: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args,
            self.stdout().join("\n"),
            self.stderr().join("\n")
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes on a new connection and reads until the server closes it.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(bytes)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// One request on a new connection (`Connection: close`).
pub fn try_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<Answer> {
    let text = raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )?;
    parse_answer(&text).ok_or_else(|| std::io::Error::other(format!("unparsable answer: {text:?}")))
}

pub fn parse_answer(text: &str) -> Option<Answer> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Reads one answer (head and Content-Length body) from a kept-open connection, as sent.
pub fn read_one_raw(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s
            .read(&mut byte)
            .unwrap_or_else(|e| panic!("no answer: {e}; so far {buf:?}"));
        assert!(n == 1, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = parse_answer(&head)
        .and_then(|a| a.header("Content-Length").map(|v| v.parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// Reads one answer from a kept-open connection.
pub fn read_one(s: &mut TcpStream) -> Answer {
    let raw = read_one_raw(s);
    parse_answer(&raw).unwrap_or_else(|| panic!("not an answer: {raw:?}"))
}

/// Every answer in `text`, one after the other, each framed by its Content-Length; `None`
/// when anything is left that is not a whole answer.
pub fn parse_answers(text: &str) -> Option<Vec<Answer>> {
    let mut rest = text;
    let mut all = Vec::new();
    while !rest.is_empty() {
        let end = rest.find("\r\n\r\n")? + 4;
        let a = parse_answer(&rest[..end])?;
        let len: usize = match a.header("Content-Length") {
            Some(v) => v.parse().ok()?,
            None => 0,
        };
        let body = rest.get(end..end + len)?.to_string();
        rest = &rest[end + len..];
        all.push(Answer { body, ..a });
    }
    Some(all)
}

/// Sends `bytes` on a new connection and returns the answers it got before the server
/// closed it; panics when the server does not close it within `WAIT`, or sends anything
/// that is not whole answers.
pub fn answers_then_close(addr: SocketAddr, bytes: &[u8]) -> Vec<Answer> {
    let text = raw(addr, bytes).unwrap_or_else(|e| {
        panic!(
            "no close within {WAIT:?} after {:?}: {e}",
            String::from_utf8_lossy(bytes)
        )
    });
    parse_answers(&text).unwrap_or_else(|| {
        panic!(
            "not whole answers for {:?}: {text:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

pub fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    try_request(addr, method, path).unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path)
}

/// The value of an unlabelled (or exactly labelled) sample in `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    let body = get(addr, "/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in\n{body}"))
        .parse()
        .unwrap()
}

/// The generation of the credential in use (`/metrics`).
pub fn generation(addr: SocketAddr) -> f64 {
    metric(addr, "hello_path_secret_generation")
}

/// Reloads counted as successful (`/metrics`).
pub fn successes(addr: SocketAddr) -> f64 {
    metric(addr, "hello_path_secret_reloads_total{result=\"success\"}")
}

/// Reloads counted as failed (`/metrics`).
pub fn failures(addr: SocketAddr) -> f64 {
    metric(addr, "hello_path_secret_reloads_total{result=\"failure\"}")
}

/// `hello_path_secret_last_reload_successful`.
pub fn last_ok(addr: SocketAddr) -> f64 {
    metric(addr, "hello_path_secret_last_reload_successful")
}

/// Polls `f` until it returns true; panics with `what` after `WAIT`.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < WAIT,
            "gave up after {WAIT:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("hello-path-rs-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Secret volume as the kubelet's AtomicWriter writes it:
///
/// ```text
/// DIR/..2026_11_28_23_00_00.000000001/mysecret   the payload
/// DIR/..data -> ..2026_11_28_23_00_00.000000001  swapped by rename(..data_tmp, ..data)
/// DIR/mysecret -> ..data/mysecret                created once, never touched again
/// ```
pub struct SecretVolume {
    pub dir: TempDir,
    key: String,
    serial: u32,
    current: Option<String>,
}

impl SecretVolume {
    pub fn new(key: &str, value: &str) -> SecretVolume {
        let mut v = SecretVolume {
            dir: TempDir::new("secret"),
            key: key.into(),
            serial: 0,
            current: None,
        };
        v.update(value);
        std::os::unix::fs::symlink(format!("..data/{key}"), v.dir.0.join(key)).unwrap();
        v
    }

    /// The path the application is given (`/etc/hello-path/mysecret` in a pod).
    pub fn path(&self) -> String {
        self.dir.0.join(&self.key).to_string_lossy().into_owned()
    }

    /// Writes a new timestamped directory, points `..data_tmp` at it, renames it over
    /// `..data` (the atomic step), then removes the old directory.
    pub fn update(&mut self, value: &str) {
        self.update_then(value, |_| {});
    }

    /// `update`, with `prepare` called on the new payload file before the swap (to chmod
    /// it, remove it or put something else in its place).
    pub fn update_then(&mut self, value: &str, prepare: impl FnOnce(&std::path::Path)) {
        self.serial += 1;
        let ts = format!("..2026_11_28_23_00_00.{:09}", self.serial);
        let root = &self.dir.0;
        std::fs::create_dir(root.join(&ts)).unwrap();
        let payload = root.join(&ts).join(&self.key);
        std::fs::write(&payload, value).unwrap();
        prepare(&payload);
        self.swap_to(&ts);
        if let Some(old) = self.current.replace(ts) {
            std::fs::remove_dir_all(root.join(old)).unwrap();
        }
    }

    /// Swaps `..data` to `ts`, a directory in the volume made by the caller (a mount point,
    /// say), as the kubelet swaps it: `..data_tmp` renamed over `..data`.
    pub fn swap_to(&self, ts: &str) {
        let tmp = self.dir.0.join("..data_tmp");
        std::os::unix::fs::symlink(ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.0.join("..data")).unwrap();
    }

    /// The payload file `..data` points at now.
    pub fn payload(&self) -> PathBuf {
        let ts = self.current.as_ref().expect("a payload written by update");
        self.dir.0.join(ts).join(&self.key)
    }

    /// Removes the payload the way a deleted key looks: `..data` points nowhere.
    pub fn break_link(&mut self) {
        std::fs::remove_file(self.dir.0.join("..data")).unwrap();
    }
}
