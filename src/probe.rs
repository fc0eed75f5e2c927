//! `hello-path-rs probe URL`: a plain HTTP/1.1 client on `std::net` that measures availability
//! from inside a cluster (the scratch image has no curl). One new connection per request, so
//! a Service spreads them; one line per second with its failures by kind (so that a reader
//! can tell a network that drops connections from an app that answers badly), then one
//! summary line.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{ProbeConfig, UsageError};

/// Host, port and path of an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    host: String,
    port: u16,
    path: String,
}

/// Splits `http://host[:port][/path]`.
pub(crate) fn parse_url(url: &str) -> Result<Target, UsageError> {
    let bad = |why: &str| UsageError(format!("invalid probe URL '{url}': {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
    };
    Ok(Target {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Why a request failed: what a reader needs to tell the app from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection within the timeout: the SYN went unanswered (nothing reached a
    /// process, or a listener's backlog was full).
    ConnectTimeout,
    /// The connection was refused: nothing listens there.
    Refused,
    /// The connection was reset, or closed before a whole answer.
    Reset,
    /// An answer came, but not `200` (or without the `--expect` text).
    HttpError,
    /// Connected, but the answer did not come within the timeout.
    ReadTimeout,
    /// Anything else: no address for the host, a network unreachable, ...
    Other,
}

impl Failure {
    /// Every kind, in the order the output lists them.
    pub(crate) const ALL: [Failure; 6] = [
        Failure::ConnectTimeout,
        Failure::Refused,
        Failure::Reset,
        Failure::HttpError,
        Failure::ReadTimeout,
        Failure::Other,
    ];

    /// Its name in the output (`connect_timeout=3`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Failure::ConnectTimeout => "connect_timeout",
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::HttpError => "http_error",
            Failure::ReadTimeout => "read_timeout",
            Failure::Other => "other",
        }
    }

    fn index(self) -> usize {
        Failure::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }
}

/// Failed requests by kind, and those that failed on a URL that had answered before.
#[derive(Debug, Default, Clone)]
struct Kinds {
    by_kind: [u64; 6],
    after_ok: u64,
}

impl Kinds {
    fn add(&mut self, kind: Failure, after_ok: bool) {
        self.by_kind[kind.index()] += 1;
        self.after_ok += u64::from(after_ok);
    }

    /// ` connect_timeout=2 failed_after_ok=2`: the kinds that occurred (all of them with
    /// `all`), then `failed_after_ok`.
    fn fields(&self, all: bool) -> String {
        let mut out = String::new();
        for kind in Failure::ALL {
            let n = self.by_kind[kind.index()];
            if all || n > 0 {
                out.push_str(&format!(" {}={n}", kind.name()));
            }
        }
        if all || self.after_ok > 0 {
            out.push_str(&format!(" failed_after_ok={}", self.after_ok));
        }
        out
    }
}

/// Running counts over the whole probe.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    ok: u64,
    failed: u64,
    kinds: Kinds,
    first_ok_ms: Option<u128>,
    last_failed_ms: Option<u128>,
    outage_start_ms: Option<u128>,
    longest_outage_ms: u128,
}

impl Tally {
    fn record(&mut self, result: Result<(), Failure>, after_ok: bool, at_ms: u128) {
        self.requests += 1;
        match result {
            Ok(()) => {
                self.ok += 1;
                self.first_ok_ms.get_or_insert(at_ms);
                if let Some(start) = self.outage_start_ms.take() {
                    self.longest_outage_ms = self.longest_outage_ms.max(at_ms - start);
                }
            }
            Err(kind) => {
                self.failed += 1;
                self.kinds.add(kind, after_ok);
                self.last_failed_ms = Some(at_ms);
                self.outage_start_ms.get_or_insert(at_ms);
            }
        }
    }

    fn summary(&mut self, end_ms: u128) -> String {
        if let Some(start) = self.outage_start_ms.take() {
            self.longest_outage_ms = self.longest_outage_ms.max(end_ms - start);
        }
        let ms = |v: Option<u128>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
        format!(
            "probe summary requests={} ok={} failed={}{} longest_outage_ms={} first_ok_ms={} last_failed_ms={}",
            self.requests,
            self.ok,
            self.failed,
            self.kinds.fields(true),
            self.longest_outage_ms,
            ms(self.first_ok_ms),
            ms(self.last_failed_ms)
        )
    }
}

/// One URL the probe asks, with what it answered so far.
struct Asked {
    url: String,
    target: Target,
    answered: bool,
    requests: u64,
    ok: u64,
    failed: u64,
    failed_after_ok: u64,
}

/// Runs the probe; returns when `--for` has elapsed. With several URLs, they are asked in
/// turn, and each gets its own summary line before the overall one.
pub(crate) fn run(cfg: &ProbeConfig) -> Result<(), UsageError> {
    let mut asked = Vec::new();
    for url in &cfg.urls {
        asked.push(Asked {
            url: url.clone(),
            target: parse_url(url)?,
            answered: false,
            requests: 0,
            ok: 0,
            failed: 0,
            failed_after_ok: 0,
        });
    }
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut seen = [false; 6];
    let (mut second, mut sec_ok, mut sec_failed) = (1u64, 0u64, 0u64);
    let mut sec_kinds = Kinds::default();
    let out = io::stdout();
    let say = |line: &str| {
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    let mut turn = 0;
    while start.elapsed() < cfg.duration {
        let began = Instant::now();
        let a = &mut asked[turn % cfg.urls.len()];
        turn += 1;
        let result = check(&a.target, cfg.timeout, cfg.expect.as_deref());
        let at = start.elapsed();
        // Attribute the answer to the second in which it came back; print finished seconds.
        while at.as_secs() + 1 > second {
            say(&format!(
                "probe second={second} ok={sec_ok} failed={sec_failed}{}",
                sec_kinds.fields(false)
            ));
            (second, sec_ok, sec_failed) = (second + 1, 0, 0);
            sec_kinds = Kinds::default();
        }
        if at < cfg.duration {
            a.requests += 1;
            match result {
                Ok(()) => {
                    sec_ok += 1;
                    a.ok += 1;
                    a.answered = true;
                    tally.record(Ok(()), false, at.as_millis());
                }
                Err((kind, why)) => {
                    sec_failed += 1;
                    a.failed += 1;
                    a.failed_after_ok += u64::from(a.answered);
                    sec_kinds.add(kind, a.answered);
                    tally.record(Err(kind), a.answered, at.as_millis());
                    // The first failure of each kind, with the error: how to confirm a cause.
                    if !std::mem::replace(&mut seen[kind.index()], true) {
                        say(&format!(
                            "probe first-failure kind={} at_ms={} url={} error={why}",
                            kind.name(),
                            at.as_millis(),
                            a.url
                        ));
                    }
                }
            }
        }
        if let Some(rest) = cfg.every.checked_sub(began.elapsed()) {
            thread::sleep(rest.min(cfg.duration.saturating_sub(start.elapsed())));
        }
    }
    if sec_ok + sec_failed > 0 || second <= cfg.duration.as_secs() {
        say(&format!(
            "probe second={second} ok={sec_ok} failed={sec_failed}{}",
            sec_kinds.fields(false)
        ));
    }
    if asked.len() > 1 {
        for a in &asked {
            say(&format!(
                "probe target url={} requests={} ok={} failed={} failed_after_ok={}",
                a.url, a.requests, a.ok, a.failed, a.failed_after_ok
            ));
        }
    }
    say(&tally.summary(cfg.duration.as_millis()));
    Ok(())
}

/// One request on a new connection: `Ok` when the answer is 200 (and holds `expect`), else
/// the kind of failure and what went wrong, in one line.
fn check(
    target: &Target,
    timeout: Duration,
    expect: Option<&str>,
) -> Result<(), (Failure, String)> {
    let (status, body) = fetch(target, timeout)?;
    if status != 200 {
        return Err((Failure::HttpError, format!("status {status}")));
    }
    match expect {
        Some(e) if !body.contains(e) => Err((
            Failure::HttpError,
            format!("status 200 without the text '{e}'"),
        )),
        _ => Ok(()),
    }
}

/// The kind of an I/O error: `connecting` says whether the connection was established.
fn kind_of(e: &io::Error, connected: bool) -> Failure {
    use io::ErrorKind::*;
    match e.kind() {
        TimedOut | WouldBlock if !connected => Failure::ConnectTimeout,
        TimedOut | WouldBlock => Failure::ReadTimeout,
        ConnectionRefused => Failure::Refused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Failure::Reset,
        _ => Failure::Other,
    }
}

fn fetch(target: &Target, timeout: Duration) -> Result<(u16, String), (Failure, String)> {
    let fail = |connected: bool| move |e: io::Error| (kind_of(&e, connected), e.to_string());
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(fail(false))?
        .next()
        .ok_or_else(|| (Failure::Other, format!("no address for {}", target.host)))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(fail(false))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left())).map_err(fail(true))?;
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: hello-path-rs-probe\r\nConnection: close\r\n\r\n",
        target.path, target.port
    )
    .map_err(fail(true))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left())).map_err(fail(true))?;
        match stream.read(&mut chunk).map_err(fail(true))? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let closed = |what: &str| (Failure::Reset, format!("connection closed {what}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| closed("before a whole answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| closed("without a status line"))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://10.43.0.12/test").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("10.43.0.12", 80, "/test")
        );
        let t = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.port, t.path.as_str()), (8080, "/"));
        let t = parse_url("http://[::1]:9/x?y=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9, "/x?y=1")
        );
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
        assert!(parse_url("ftp://h/").is_err());
    }

    #[test]
    fn outages_are_measured_from_the_first_failure_to_the_next_success() {
        let mut t = Tally::default();
        t.record(Ok(()), false, 10);
        t.record(Err(Failure::ConnectTimeout), true, 20);
        t.record(Err(Failure::Refused), true, 30);
        t.record(Ok(()), false, 70);
        t.record(Err(Failure::HttpError), true, 80);
        let s = t.summary(100);
        assert_eq!(
            s,
            "probe summary requests=5 ok=2 failed=3 connect_timeout=1 refused=1 reset=0 http_error=1 \
             read_timeout=0 other=0 failed_after_ok=3 longest_outage_ms=50 first_ok_ms=10 last_failed_ms=80"
        );
        let mut none = Tally::default();
        assert_eq!(
            none.summary(1000),
            "probe summary requests=0 ok=0 failed=0 connect_timeout=0 refused=0 reset=0 http_error=0 \
             read_timeout=0 other=0 failed_after_ok=0 longest_outage_ms=0 first_ok_ms=-1 last_failed_ms=-1"
        );
    }

    #[test]
    fn a_second_lists_only_the_kinds_that_occurred() {
        let mut k = Kinds::default();
        assert_eq!(k.fields(false), "");
        k.add(Failure::ConnectTimeout, true);
        k.add(Failure::ConnectTimeout, false);
        k.add(Failure::ReadTimeout, false);
        assert_eq!(
            k.fields(false),
            " connect_timeout=2 read_timeout=1 failed_after_ok=1"
        );
    }

    #[test]
    fn io_errors_are_told_apart() {
        let e = |k| io::Error::from(k);
        use io::ErrorKind::*;
        assert_eq!(kind_of(&e(TimedOut), false), Failure::ConnectTimeout);
        assert_eq!(kind_of(&e(WouldBlock), true), Failure::ReadTimeout);
        assert_eq!(kind_of(&e(ConnectionRefused), false), Failure::Refused);
        assert_eq!(kind_of(&e(ConnectionReset), true), Failure::Reset);
        assert_eq!(kind_of(&e(NotFound), false), Failure::Other);
    }
}
