//! The nudger's counters and the Prometheus text it serves on `/metrics` (names prefixed
//! `hello_path_nudger_`), and its readiness: Ready once every informer has listed its
//! resource once, and not while the API refuses or cannot be reached.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// The content type of `/metrics`.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the event → last patch histogram.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What happened to one pod a change concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum NudgeResult {
    Patched,
    Unchanged,
    Gone,
    Failed,
}

impl NudgeResult {
    fn label(self) -> &'static str {
        match self {
            NudgeResult::Patched => "patched",
            NudgeResult::Unchanged => "unchanged",
            NudgeResult::Gone => "gone",
            NudgeResult::Failed => "failed",
        }
    }
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Counters {
    nudges: BTreeMap<(&'static str, NudgeResult), u64>,
    cannot_help: BTreeMap<&'static str, u64>,
    restarts: BTreeMap<(String, &'static str), u64>,
    watch_restarts: BTreeMap<(String, &'static str), u64>,
    api_errors: BTreeMap<String, u64>,
    objects: BTreeMap<&'static str, u64>,
    latency: Histogram,
}

/// One informer as readiness sees it.
struct Informer {
    /// `secrets in namespace shop`, `pods in all namespaces`.
    what: String,
    listed: bool,
    /// Why the API cannot be used now (a refusal, no answer), if so.
    problem: Option<String>,
}

/// `# HELP` and `# TYPE` of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP hello_path_nudger_{name} {help}");
    let _ = writeln!(out, "# TYPE hello_path_nudger_{name} {kind}");
}

/// Counters and readiness, shared by every thread.
pub(crate) struct Metrics {
    counters: Mutex<Counters>,
    informers: Mutex<Vec<Informer>>,
    start_unix: Duration,
}

/// An informer's handle on its readiness entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InformerId(usize);

impl Metrics {
    /// Fresh counters; the nudge and cannot-help series start at 0 for both kinds.
    pub(crate) fn new(start_unix: Duration) -> Metrics {
        let mut c = Counters::default();
        for kind in ["secret", "configmap"] {
            for r in [
                NudgeResult::Patched,
                NudgeResult::Unchanged,
                NudgeResult::Gone,
                NudgeResult::Failed,
            ] {
                c.nudges.insert((kind, r), 0);
            }
            c.cannot_help.insert(kind, 0);
        }
        Metrics {
            counters: Mutex::new(c),
            informers: Mutex::new(Vec::new()),
            start_unix,
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic ends the process (main's hook), so a poisoned lock is never seen.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn informers(&self) -> std::sync::MutexGuard<'_, Vec<Informer>> {
        self.informers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pod of a change: patched, unchanged, gone or failed.
    pub(crate) fn nudge(&self, kind: &'static str, result: NudgeResult) {
        *self.counters().nudges.entry((kind, result)).or_default() += 1;
    }

    /// Pods a change of `kind` cannot reach (env, envFrom, subPath).
    pub(crate) fn cannot_help(&self, kind: &'static str, pods: u64) {
        *self.counters().cannot_help.entry(kind).or_default() += pods;
    }

    /// A workload restart: `result` restarted, unchanged (done already) or failed.
    pub(crate) fn restart(&self, workload: &str, result: &'static str) {
        *self
            .counters()
            .restarts
            .entry((workload.to_lowercase(), result))
            .or_default() += 1;
    }

    /// A watch begun again, and why.
    pub(crate) fn watch_restart(&self, resource: &str, reason: &'static str) {
        *self
            .counters()
            .watch_restarts
            .entry((resource.to_string(), reason))
            .or_default() += 1;
    }

    /// A request that failed: its status code, or `transport`/`decode`.
    pub(crate) fn api_error(&self, code: String) {
        *self.counters().api_errors.entry(code).or_default() += 1;
    }

    /// The objects of a resource in the caches now.
    pub(crate) fn objects(&self, resource: &'static str, count: u64) {
        self.counters().objects.insert(resource, count);
    }

    /// Seconds from a watch event to the last patch it caused.
    pub(crate) fn event_to_patch(&self, d: Duration) {
        let s = d.as_secs_f64();
        let mut c = self.counters();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if s <= *bound {
                c.latency.counts[i] += 1;
            }
        }
        c.latency.sum += s;
        c.latency.count += 1;
    }

    /// A new informer, not listed yet.
    pub(crate) fn informer(&self, what: String) -> InformerId {
        let mut all = self.informers();
        all.push(Informer {
            what,
            listed: false,
            problem: None,
        });
        InformerId(all.len() - 1)
    }

    /// The informer listed its resource (and so can be used).
    pub(crate) fn listed(&self, id: InformerId) {
        let mut all = self.informers();
        all[id.0].listed = true;
        all[id.0].problem = None;
    }

    /// Why the informer cannot use the API now; `None` once it can again.
    pub(crate) fn problem(&self, id: InformerId, problem: Option<String>) {
        self.informers()[id.0].problem = problem;
    }

    /// `Ok` when ready, else every reason it is not, one a line.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        let all = self.informers();
        let mut reasons = Vec::new();
        for i in all.iter() {
            if let Some(p) = &i.problem {
                reasons.push(p.clone());
            } else if !i.listed {
                reasons.push(format!("waiting for the first list of {}", i.what));
            }
        }
        if all.is_empty() {
            reasons.push("no informer started yet".into());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("\n"))
        }
    }

    /// The Prometheus text format of everything.
    pub(crate) fn render(&self) -> String {
        let ready = self.readiness().is_ok();
        let c = self.counters();
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "nudges_total",
            "counter",
            "Pods a change of a Secret or ConfigMap concerned, by kind and result (patched, unchanged, gone, failed).",
        );
        for ((kind, result), n) in &c.nudges {
            let _ = writeln!(
                out,
                "hello_path_nudger_nudges_total{{kind=\"{kind}\",result=\"{}\"}} {n}",
                result.label()
            );
        }
        family(
            &mut out,
            "cannot_help_total",
            "counter",
            "Pods that read a changed Secret or ConfigMap through env, envFrom or a subPath mount, which a nudge cannot update.",
        );
        for (kind, n) in &c.cannot_help {
            let _ = writeln!(
                out,
                "hello_path_nudger_cannot_help_total{{kind=\"{kind}\"}} {n}"
            );
        }
        family(
            &mut out,
            "restarts_total",
            "counter",
            "Workload restarts for --restart-unreloadable, by workload kind and result (restarted, unchanged, failed).",
        );
        for ((kind, result), n) in &c.restarts {
            let _ = writeln!(
                out,
                "hello_path_nudger_restarts_total{{kind=\"{kind}\",result=\"{result}\"}} {n}"
            );
        }
        family(
            &mut out,
            "watch_restarts_total",
            "counter",
            "Watches begun again, by resource and reason (ended, dropped, expired, error).",
        );
        for ((resource, reason), n) in &c.watch_restarts {
            let _ = writeln!(out, "hello_path_nudger_watch_restarts_total{{resource=\"{resource}\",reason=\"{reason}\"}} {n}");
        }
        family(
            &mut out,
            "api_errors_total",
            "counter",
            "Failed API requests, by HTTP status code (transport: no answer; decode: a malformed one).",
        );
        for (code, n) in &c.api_errors {
            let _ = writeln!(
                out,
                "hello_path_nudger_api_errors_total{{code=\"{code}\"}} {n}"
            );
        }
        family(
            &mut out,
            "event_to_patch_seconds",
            "histogram",
            "Seconds from the watch event of a change to the last pod patch it caused.",
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "hello_path_nudger_event_to_patch_seconds_bucket{{le=\"{bound}\"}} {}",
                c.latency.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "hello_path_nudger_event_to_patch_seconds_bucket{{le=\"+Inf\"}} {}",
            c.latency.count
        );
        let _ = writeln!(
            out,
            "hello_path_nudger_event_to_patch_seconds_sum {}",
            c.latency.sum
        );
        let _ = writeln!(
            out,
            "hello_path_nudger_event_to_patch_seconds_count {}",
            c.latency.count
        );
        family(
            &mut out,
            "cached_objects",
            "gauge",
            "Objects in the informers' caches, by resource.",
        );
        for (resource, n) in &c.objects {
            let _ = writeln!(
                out,
                "hello_path_nudger_cached_objects{{resource=\"{resource}\"}} {n}"
            );
        }
        family(
            &mut out,
            "ready",
            "gauge",
            "1 once every watched resource was listed and the API is usable, else 0.",
        );
        let _ = writeln!(out, "hello_path_nudger_ready {}", u8::from(ready));
        let _ = writeln!(out, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.");
        let _ = writeln!(out, "# TYPE process_start_time_seconds gauge");
        let _ = writeln!(
            out,
            "process_start_time_seconds {}",
            self.start_unix.as_secs_f64()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_readiness() {
        let m = Metrics::new(Duration::from_secs(1_700_000_000));
        let id = m.informer("secrets in namespace shop".into());
        assert_eq!(
            m.readiness().unwrap_err(),
            "waiting for the first list of secrets in namespace shop"
        );
        m.listed(id);
        assert!(m.readiness().is_ok());
        m.problem(id, Some("forbidden: cannot watch secrets".into()));
        assert_eq!(
            m.readiness().unwrap_err(),
            "forbidden: cannot watch secrets"
        );
        m.problem(id, None);
        m.nudge("secret", NudgeResult::Patched);
        m.nudge("secret", NudgeResult::Patched);
        m.cannot_help("configmap", 3);
        m.restart("Deployment", "restarted");
        m.watch_restart("pods", "expired");
        m.api_error("403".into());
        m.event_to_patch(Duration::from_millis(7));
        m.objects("secrets", 12);
        let text = m.render();
        for line in [
            "hello_path_nudger_nudges_total{kind=\"secret\",result=\"patched\"} 2",
            "hello_path_nudger_nudges_total{kind=\"configmap\",result=\"gone\"} 0",
            "hello_path_nudger_cannot_help_total{kind=\"configmap\"} 3",
            "hello_path_nudger_restarts_total{kind=\"deployment\",result=\"restarted\"} 1",
            "hello_path_nudger_watch_restarts_total{resource=\"pods\",reason=\"expired\"} 1",
            "hello_path_nudger_api_errors_total{code=\"403\"} 1",
            "hello_path_nudger_event_to_patch_seconds_bucket{le=\"0.005\"} 0",
            "hello_path_nudger_event_to_patch_seconds_bucket{le=\"0.01\"} 1",
            "hello_path_nudger_event_to_patch_seconds_bucket{le=\"+Inf\"} 1",
            "hello_path_nudger_event_to_patch_seconds_count 1",
            "hello_path_nudger_cached_objects{resource=\"secrets\"} 12",
            "hello_path_nudger_ready 1",
            "process_start_time_seconds 1700000000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // Each family once, HELP before TYPE before its samples.
        assert_eq!(
            text.matches("# TYPE hello_path_nudger_nudges_total counter")
                .count(),
            1
        );
    }
}
