//! An informer without a framework, after client-go's reflector: list (in pages of 500),
//! then watch from the list's resourceVersion with bookmarks and a server-side timeout
//! of 5 to 10 minutes at random; watch again from the last resourceVersion when a watch
//! ends; list again on `410 Gone` (an answer, or an ERROR event); capped, jittered
//! exponential backoff on errors, and never a busy loop. While nothing changes its thread
//! sleeps in a blocking read: no periodic wake-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::client::{ApiError, Client, WatchStream};
use crate::metrics::{InformerId, Metrics};
use crate::store::Scope;

/// Items per list page, as client-go's reflector asks.
const PAGE: u32 = 500;
/// The server ends a watch after this many seconds, plus up to as many again at random.
const MIN_WATCH_SECONDS: u64 = 300;
/// How long past its timeoutSeconds a watch's stream may still last: only a server that
/// died without closing the connection gets there.
const WATCH_MARGIN: Duration = Duration::from_secs(60);
/// A watch shorter than this that brought no event is followed by a backoff pause, so that
/// a server that ends every watch at once cannot make a busy loop.
const SHORT_WATCH: Duration = Duration::from_secs(1);

/// Capped exponential backoff with jitter: 800 ms, doubling up to 30 s, each pause up to
/// twice its step at random (client-go's reflector: jitter 1.0).
#[derive(Debug)]
pub(crate) struct Backoff {
    step: Duration,
    first: Duration,
    cap: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff::with(Duration::from_millis(800), Duration::from_secs(30))
    }

    fn with(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            step: first,
            first,
            cap,
        }
    }

    /// The next pause, given `unit`, a random number in [0, 1): the step plus up to one
    /// step more, never above the cap; the step doubles up to the cap.
    pub(crate) fn next(&mut self, unit: f64) -> Duration {
        let pause = self.step.mul_f64(1.0 + unit.clamp(0.0, 1.0)).min(self.cap);
        self.step = (self.step * 2).min(self.cap);
        pause
    }

    /// After a success: the next failure waits the first step again.
    pub(crate) fn reset(&mut self) {
        self.step = self.first;
    }
}

/// A random number in [0, 1) from the system's generator (0.5 if it fails).
pub(crate) fn random_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// What a watch event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// What an informer feeds: the objects of one resource, reduced as they arrive.
pub(crate) trait Handler: Send {
    /// The object as decoded from the API.
    type Json: DeserializeOwned;
    /// The object as kept.
    type Kept;
    /// The API resource, e.g. `secrets`.
    fn resource(&self) -> &'static str;
    /// Reduces a decoded object to what is kept.
    fn keep(&self, json: Self::Json) -> Self::Kept;
    /// Its resourceVersion.
    fn resource_version(kept: &Self::Kept) -> &str;
    /// A complete list, first or again; `at`: when it was complete.
    fn listed(&mut self, items: Vec<Self::Kept>, at: Instant);
    /// A watch event; `at`: when it was read.
    fn event(&mut self, event: EventType, item: Self::Kept, at: Instant);
}

/// One line of a watch stream.
#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: serde_json::Value,
}

/// How a watch ended.
enum WatchEnd {
    /// The server closed it (its timeoutSeconds): watch again from `rv`.
    Ended,
    /// The connection broke: watch again from `rv`.
    Dropped(String),
    /// 410 Gone: the resourceVersion is too old; list again.
    Expired,
    /// An ERROR event other than 410: list again after a pause.
    ErrorEvent(String),
    /// The watch request itself failed.
    Refused(ApiError),
}

/// One resource in one scope, listed and watched for good.
pub(crate) struct Informer<H: Handler> {
    pub(crate) client: Client,
    pub(crate) scope: Scope,
    pub(crate) handler: H,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) id: InformerId,
}

impl<H: Handler> Informer<H> {
    /// `/api/v1/namespaces/NS/secrets` or `/api/v1/secrets`.
    fn path(&self) -> String {
        match &self.scope {
            Scope::Namespace(ns) => format!("/api/v1/namespaces/{ns}/{}", self.handler.resource()),
            Scope::All => format!("/api/v1/{}", self.handler.resource()),
        }
    }

    fn namespace(&self) -> Option<&str> {
        match &self.scope {
            Scope::Namespace(ns) => Some(ns),
            Scope::All => None,
        }
    }

    /// `secrets in namespace shop`.
    fn what(&self) -> String {
        format!("{} {}", self.handler.resource(), self.scope.describe())
    }

    /// Lists, then watches, for good.
    pub(crate) fn run(mut self) {
        let mut backoff = Backoff::new();
        let mut rv: Option<String> = None;
        loop {
            let from = match rv.take() {
                Some(rv) => rv,
                None => match self.list() {
                    Ok(rv) => {
                        backoff.reset();
                        rv
                    }
                    Err(e) => {
                        self.failed("list", &e, &mut backoff);
                        continue;
                    }
                },
            };
            let started = Instant::now();
            let mut last = from.clone();
            let mut events = 0u64;
            let end = self.watch(&from, &mut last, &mut events);
            let short = events == 0 && started.elapsed() < SHORT_WATCH;
            let resource = self.handler.resource();
            match end {
                WatchEnd::Ended => {
                    self.metrics.watch_restart(resource, "ended");
                    log::debug!(target: "hello-path-nudger", "watch of {} ended after {} s; watching again from resourceVersion {last}", self.what(), started.elapsed().as_secs());
                    rv = Some(last);
                }
                WatchEnd::Dropped(why) => {
                    self.metrics.watch_restart(resource, "dropped");
                    log::info!(target: "hello-path-nudger", "watch of {} dropped ({why}); watching again from resourceVersion {last}", self.what());
                    rv = Some(last);
                }
                WatchEnd::Expired => {
                    self.metrics.watch_restart(resource, "expired");
                    log::info!(target: "hello-path-nudger", "watch of {} expired (410 Gone: resourceVersion {last} is too old); listing again", self.what());
                }
                WatchEnd::ErrorEvent(why) => {
                    self.metrics.watch_restart(resource, "error");
                    self.metrics.api_error("watch-error".into());
                    log::warn!(target: "hello-path-nudger", "watch of {} failed: {why}; listing again", self.what());
                    self.pause(&mut backoff);
                    continue;
                }
                WatchEnd::Refused(e) => {
                    self.metrics.watch_restart(resource, "error");
                    self.failed("watch", &e, &mut backoff);
                    rv = Some(last);
                    continue;
                }
            }
            if short {
                self.pause(&mut backoff);
            } else if events > 0 || started.elapsed() >= SHORT_WATCH {
                backoff.reset();
            }
        }
    }

    /// Sleeps for the backoff's next pause.
    fn pause(&self, backoff: &mut Backoff) {
        std::thread::sleep(backoff.next(random_unit()));
    }

    /// A failed request: counted, said (log and /readyz), then a pause.
    fn failed(&self, verb: &str, e: &ApiError, backoff: &mut Backoff) {
        self.metrics.api_error(e.code_label());
        let line = e.explain(verb, self.handler.resource(), None, self.namespace());
        let pause = backoff.next(random_unit());
        log::warn!(target: "hello-path-nudger", "{line}; trying again in {:.1} s", pause.as_secs_f64());
        self.metrics.problem(self.id, Some(line));
        std::thread::sleep(pause);
    }

    /// Lists every page; hands the items to the handler; returns the resourceVersion to
    /// watch from.
    fn list(&mut self) -> Result<String, ApiError> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let mut path = format!("{}?limit={PAGE}", self.path());
            if !token.is_empty() {
                path.push_str("&continue=");
                path.push_str(&encode_query(&token));
            }
            let page: crate::objects::List<H::Json> = self.client.get(&path)?;
            items.extend(page.items.into_iter().map(|j| self.handler.keep(j)));
            if page.metadata.continue_token.is_empty() {
                let rv = page.metadata.resource_version;
                let count = items.len();
                self.handler.listed(items, Instant::now());
                self.metrics.listed(self.id);
                log::info!(target: "hello-path-nudger", "listed {count} {} at resourceVersion {rv}", self.what());
                return Ok(rv);
            }
            token = page.metadata.continue_token;
        }
    }

    /// Watches from `from` until the stream ends; `last` follows the resourceVersion of
    /// each event and bookmark, `events` counts them.
    fn watch(&mut self, from: &str, last: &mut String, events: &mut u64) -> WatchEnd {
        let seconds = MIN_WATCH_SECONDS + (random_unit() * MIN_WATCH_SECONDS as f64) as u64;
        let path = format!(
            "{}?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={seconds}",
            self.path(),
            encode_query(from)
        );
        let mut stream: WatchStream = match self
            .client
            .watch(&path, Duration::from_secs(seconds) + WATCH_MARGIN)
        {
            Ok(s) => s,
            Err(e) if e.code() == Some(410) => return WatchEnd::Expired,
            Err(e) => return WatchEnd::Refused(e),
        };
        self.metrics.problem(self.id, None);
        let mut line = Vec::new();
        loop {
            match stream.next_line(&mut line) {
                Ok(true) => {}
                Ok(false) => return WatchEnd::Ended,
                Err(ApiError::Decode(m)) => return WatchEnd::Dropped(m),
                Err(e) => return WatchEnd::Dropped(e.to_string()),
            }
            let at = Instant::now();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let raw: RawEvent = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    // Never the line itself: it may hold a Secret's data.
                    self.malformed(&format!("not a watch event: {e}"));
                    continue;
                }
            };
            let kind = match raw.kind.as_str() {
                "ADDED" => EventType::Added,
                "MODIFIED" => EventType::Modified,
                "DELETED" => EventType::Deleted,
                "BOOKMARK" => {
                    match raw
                        .object
                        .pointer("/metadata/resourceVersion")
                        .and_then(|v| v.as_str())
                    {
                        Some(rv) if !rv.is_empty() => *last = rv.to_string(),
                        _ => self.malformed("a BOOKMARK without a resourceVersion"),
                    }
                    continue;
                }
                "ERROR" => {
                    let code = raw.object.get("code").and_then(serde_json::Value::as_u64);
                    if code == Some(410) {
                        return WatchEnd::Expired;
                    }
                    let message = raw
                        .object
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("no message");
                    return WatchEnd::ErrorEvent(format!(
                        "ERROR event {}: {message}",
                        code.map_or_else(|| "without a code".to_string(), |c| c.to_string())
                    ));
                }
                other => {
                    self.malformed(&format!(
                        "an event of unknown type '{}'",
                        other.chars().take(20).collect::<String>()
                    ));
                    continue;
                }
            };
            let json: H::Json = match serde_json::from_value(raw.object) {
                Ok(j) => j,
                Err(e) => {
                    self.malformed(&format!(
                        "a {} event whose object cannot be read: {e}",
                        raw.kind
                    ));
                    continue;
                }
            };
            let kept = self.handler.keep(json);
            let rv = H::resource_version(&kept);
            if !rv.is_empty() {
                *last = rv.to_string();
            }
            *events += 1;
            self.handler.event(kind, kept, at);
        }
    }

    fn malformed(&self, what: &str) {
        self.metrics.api_error("decode".into());
        log::warn!(target: "hello-path-nudger", "skipped a malformed event on the watch of {}: {what}", self.what());
    }
}

/// Percent-encodes a query value (a continue token, a resourceVersion).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let mut b = Backoff::new();
        assert_eq!(b.next(0.0), Duration::from_millis(800));
        assert_eq!(b.next(0.0), Duration::from_millis(1600));
        assert_eq!(
            b.next(0.5),
            Duration::from_millis(4800),
            "3.2 s + half a step"
        );
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = b.next(0.999);
        }
        assert_eq!(last, Duration::from_secs(30), "capped");
        b.reset();
        assert_eq!(b.next(0.0), Duration::from_millis(800));
        assert_eq!(
            b.next(2.0),
            Duration::from_millis(3200),
            "the unit is clamped to 1"
        );
    }

    #[test]
    fn random_units_are_in_range() {
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("12345"), "12345");
        assert_eq!(encode_query("eyJ2Ij==/+"), "eyJ2Ij%3D%3D%2F%2B");
    }
}
