//! `hello-path-rs probe URL`: a plain HTTP/1.1 client on `std::net` that measures availability
//! from inside a cluster (the scratch image has no curl). One new connection per request, so
//! a Service spreads them; one line per second, then one summary line.

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

/// Running counts over the whole probe.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    ok: u64,
    failed: u64,
    first_ok_ms: Option<u128>,
    last_failed_ms: Option<u128>,
    outage_start_ms: Option<u128>,
    longest_outage_ms: u128,
}

impl Tally {
    fn record(&mut self, ok: bool, at_ms: u128) {
        self.requests += 1;
        if ok {
            self.ok += 1;
            self.first_ok_ms.get_or_insert(at_ms);
            if let Some(start) = self.outage_start_ms.take() {
                self.longest_outage_ms = self.longest_outage_ms.max(at_ms - start);
            }
        } else {
            self.failed += 1;
            self.last_failed_ms = Some(at_ms);
            self.outage_start_ms.get_or_insert(at_ms);
        }
    }

    fn summary(&mut self, end_ms: u128) -> String {
        if let Some(start) = self.outage_start_ms.take() {
            self.longest_outage_ms = self.longest_outage_ms.max(end_ms - start);
        }
        let ms = |v: Option<u128>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
        format!(
            "probe summary requests={} ok={} failed={} longest_outage_ms={} first_ok_ms={} last_failed_ms={}",
            self.requests,
            self.ok,
            self.failed,
            self.longest_outage_ms,
            ms(self.first_ok_ms),
            ms(self.last_failed_ms)
        )
    }
}

/// Runs the probe; returns when `--for` has elapsed.
pub(crate) fn run(cfg: &ProbeConfig) -> Result<(), UsageError> {
    let target = parse_url(&cfg.url)?;
    let start = Instant::now();
    let mut tally = Tally::default();
    let (mut second, mut sec_ok, mut sec_failed) = (1u64, 0u64, 0u64);
    let out = io::stdout();
    let flush_second = |second: u64, ok: u64, failed: u64| {
        let mut o = out.lock();
        let _ = writeln!(o, "probe second={second} ok={ok} failed={failed}");
        let _ = o.flush();
    };
    while start.elapsed() < cfg.duration {
        let began = Instant::now();
        let ok = check(&target, cfg.timeout, cfg.expect.as_deref());
        let at = start.elapsed();
        // Attribute the answer to the second in which it came back; print finished seconds.
        while at.as_secs() + 1 > second {
            flush_second(second, sec_ok, sec_failed);
            (second, sec_ok, sec_failed) = (second + 1, 0, 0);
        }
        if at < cfg.duration {
            if ok {
                sec_ok += 1;
            } else {
                sec_failed += 1;
            }
            tally.record(ok, at.as_millis());
        }
        if let Some(rest) = cfg.every.checked_sub(began.elapsed()) {
            thread::sleep(rest.min(cfg.duration.saturating_sub(start.elapsed())));
        }
    }
    if sec_ok + sec_failed > 0 || second <= cfg.duration.as_secs() {
        flush_second(second, sec_ok, sec_failed);
    }
    println!("{}", tally.summary(cfg.duration.as_millis()));
    Ok(())
}

/// One request on a new connection: true when the answer is 200 (and holds `expect`).
fn check(target: &Target, timeout: Duration, expect: Option<&str>) -> bool {
    fetch(target, timeout)
        .is_ok_and(|(status, body)| status == 200 && expect.map_or(true, |e| body.contains(e)))
}

fn fetch(target: &Target, timeout: Duration) -> io::Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = (target.host.as_str(), target.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left()))?;
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: hello-path-rs-probe\r\nConnection: close\r\n\r\n",
        target.path, target.port
    )?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left()))?;
        match stream.read(&mut chunk)? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("incomplete answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("no status line"))?;
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
        t.record(true, 10);
        t.record(false, 20);
        t.record(false, 30);
        t.record(true, 70);
        t.record(false, 80);
        let s = t.summary(100);
        assert_eq!(
            s,
            "probe summary requests=5 ok=2 failed=3 longest_outage_ms=50 first_ok_ms=10 last_failed_ms=80"
        );
        let mut none = Tally::default();
        assert_eq!(
            none.summary(1000),
            "probe summary requests=0 ok=0 failed=0 longest_outage_ms=0 first_ok_ms=-1 last_failed_ms=-1"
        );
    }
}
