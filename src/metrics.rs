//! The Prometheus text exposition of `/metrics` (format 0.0.4), from plain numbers.

use std::fmt::Write;
use std::time::Duration;

/// Content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Requests refused by tiny_http on its own, counted by status (a handful of statuses: a
/// short list kept in order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Refusals(Vec<(u16, u64)>);

impl Refusals {
    /// One more refusal with `status`.
    pub(crate) fn count(&mut self, status: u16) {
        match self.0.binary_search_by_key(&status, |&(s, _)| s) {
            Ok(i) => self.0[i].1 += 1,
            Err(i) => self.0.insert(i, (status, 1)),
        }
    }

    /// (status, count) for each status seen, in order.
    pub(crate) fn by_status(&self) -> &[(u16, u64)] {
        &self.0
    }
}

/// Everything `/metrics` reports, as of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot<'a> {
    pub(crate) requests_total: u64,
    pub(crate) refused: &'a [(u16, u64)],
    pub(crate) reload_successes: u64,
    pub(crate) reload_failures: u64,
    pub(crate) last_reload_successful: bool,
    pub(crate) generation: u64,
    pub(crate) last_success_unix: Duration,
    pub(crate) start_unix: Duration,
    pub(crate) ready: bool,
}

/// Renders the snapshot in the Prometheus text format.
pub(crate) fn render(s: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(1536);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "hello_path_http_requests_total",
        "counter",
        "HTTP requests answered, this one included, and those refused by the HTTP layer.",
        &[("", s.requests_total.to_string())],
    );
    let labels: Vec<String> = s
        .refused
        .iter()
        .map(|(code, _)| format!("{{code=\"{code}\"}}"))
        .collect();
    let refused: Vec<(&str, String)> = labels
        .iter()
        .zip(s.refused)
        .map(|(l, (_, n))| (l.as_str(), n.to_string()))
        .collect();
    metric(
        "hello_path_http_refused_total",
        "counter",
        "HTTP requests the HTTP layer refused and answered on its own (malformed, too large, \
         too slow, CONNECT), by status; a series per status seen.",
        &refused,
    );
    metric(
        "hello_path_secret_reloads_total",
        "counter",
        "Checks of a changed or explicitly reloaded credential, by result.",
        &[
            ("{result=\"success\"}", s.reload_successes.to_string()),
            ("{result=\"failure\"}", s.reload_failures.to_string()),
        ],
    );
    metric(
        "hello_path_secret_last_reload_successful",
        "gauge",
        "1 when the source holds the credential in use, 0 after a rejected change.",
        &[("", u8::from(s.last_reload_successful).to_string())],
    );
    metric(
        "hello_path_secret_generation",
        "gauge",
        "Credential generation in use: 1 at start, +1 per accepted change.",
        &[("", s.generation.to_string())],
    );
    metric(
        "hello_path_secret_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful credential load.",
        &[("", seconds(s.last_success_unix))],
    );
    metric(
        "hello_path_ready",
        "gauge",
        "1 while /readyz answers 200, 0 while shutting down.",
        &[("", u8::from(s.ready).to_string())],
    );
    metric(
        "hello_path_build_info",
        "gauge",
        "Build information.",
        &[(
            concat!("{version=\"", env!("CARGO_PKG_VERSION"), "\"}"),
            "1".to_string(),
        )],
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        &[("", seconds(s.start_unix))],
    );
    out
}

/// `1700000000.250`: seconds with milliseconds, without float formatting.
fn seconds(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_once_with_help_and_type() {
        let s = Snapshot {
            requests_total: 7,
            refused: &[(400, 2), (408, 1)],
            reload_successes: 2,
            reload_failures: 1,
            last_reload_successful: false,
            generation: 3,
            last_success_unix: Duration::from_millis(1_700_000_000_500),
            start_unix: Duration::from_millis(1_699_999_999_250),
            ready: true,
        };
        let text = render(&s);
        for line in [
            "hello_path_http_requests_total 7",
            "# TYPE hello_path_http_refused_total counter",
            "hello_path_http_refused_total{code=\"400\"} 2",
            "hello_path_http_refused_total{code=\"408\"} 1",
            "hello_path_secret_reloads_total{result=\"success\"} 2",
            "hello_path_secret_reloads_total{result=\"failure\"} 1",
            "hello_path_secret_last_reload_successful 0",
            "hello_path_secret_generation 3",
            "hello_path_secret_last_reload_success_timestamp_seconds 1700000000.500",
            "hello_path_ready 1",
            "process_start_time_seconds 1699999999.250",
            "# TYPE hello_path_secret_reloads_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(
            text.matches("# TYPE ").count(),
            text.matches("# HELP ").count()
        );
        assert!(text.ends_with('\n'));
        // no refusal yet: the family is described, with no series
        let none = render(&Snapshot { refused: &[], ..s });
        assert!(none.contains("# TYPE hello_path_http_refused_total counter\n# HELP"));
        assert!(!none.contains("hello_path_http_refused_total{"));
    }

    #[test]
    fn refusals_are_counted_by_status_in_order() {
        let mut r = Refusals::default();
        for status in [431, 400, 408, 400, 431, 400] {
            r.count(status);
        }
        assert_eq!(r.by_status(), &[(400, 3), (408, 1), (431, 2)]);
    }
}
