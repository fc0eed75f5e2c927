//! What wakes the main thread besides a request: a signal, a change in the secret file's
//! directory, or a deadline the loop set itself (SPEC §1). Signals and file events each
//! have a small thread blocked in `read` — no wake-up at all while nothing happens — that
//! hands what it saw over a channel and rings the bell of whatever the main thread waits
//! on: the channel itself during the start-up wait, the server's request queue while it
//! serves. The main thread alone decides what an event means.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, FileWatch, Mode, SecretSource};
use crate::signals::Signals;
use crate::watch::{Reaction, Watch};

/// What a wake-up thread saw.
pub(crate) enum Event {
    /// A signal arrived; its flag is set in `Signals`.
    Signal,
    /// Something happened in a watched directory.
    File(inotify::EventMask, inotify::WatchDescriptor),
    /// The watch thread cannot read inotify any more (the message says why).
    WatchFailed(String),
}

/// Wakes the main thread where it waits. Until the server runs there is nothing to ring:
/// the start-up wait blocks on the mailbox, which the sender already woke.
#[derive(Clone, Default)]
pub(crate) struct Bell(Arc<Mutex<Option<tiny_http::Waker>>>);

impl Bell {
    /// Wakes the server's `recv_until`, if a server runs.
    pub(crate) fn ring(&self) {
        // A poisoned lock means a panic elsewhere, which already ends the process.
        if let Some(waker) = self.0.lock().ok().and_then(|w| w.clone()) {
            waker.wake();
        }
    }
}

/// The events not yet taken by the main thread. (A few lines instead of `std::sync::mpsc`,
/// whose generic channel would cost the binary about 10 kB for this.)
#[derive(Default)]
struct Mailbox {
    events: Mutex<Vec<Event>>,
    arrived: Condvar,
}

impl Mailbox {
    /// Takes what arrived, waiting for something until `until` (no wait: `None`).
    fn take(&self, until: Option<Instant>) -> Vec<Event> {
        // A poisoned lock means a panic in a wake-up thread, which already ends the process.
        let Ok(mut events) = self.events.lock() else {
            return Vec::new();
        };
        if let Some(until) = until {
            while events.is_empty() {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                match self.arrived.wait_timeout(events, until - now) {
                    Ok((e, _)) => events = e,
                    Err(_) => return Vec::new(),
                }
            }
        }
        std::mem::take(&mut *events)
    }
}

/// The sending half, for the wake-up threads.
#[derive(Clone)]
pub(crate) struct Outbox {
    mailbox: Arc<Mailbox>,
    bell: Bell,
}

impl Outbox {
    /// Hands `event` to the main thread and wakes it.
    pub(crate) fn send(&self, event: Event) {
        if let Ok(mut events) = self.mailbox.events.lock() {
            events.push(event);
            self.mailbox.arrived.notify_one();
        }
        self.bell.ring();
    }
}

/// Delay between an event that may be half of an update (a file created, deleted or
/// renamed away) and the re-read it triggers, so that `rm` + create or a truncate before a
/// write is read once complete rather than counted as a rejected credential. Events that
/// end an update (a rename into the directory, as the kubelet's swap of `..data` ends; a
/// file closed after writing) are acted on at once.
const SETTLE: Duration = Duration::from_millis(50);

/// What the main thread has to do, gathered from everything that arrived.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct News {
    /// SIGTERM or SIGINT (it stays set).
    pub(crate) stop: Option<&'static str>,
    /// SIGHUP arrived since the last look.
    pub(crate) hup: bool,
    /// The secret file may have changed: re-read it.
    pub(crate) reread: bool,
}

/// The main thread's side: signals, the file watch and their deadlines.
pub(crate) struct Events {
    outbox: Outbox,
    signals: Signals,
    watch: Option<Watch>,
    /// `follow` was called.
    following: bool,
    /// A re-read asked for by `follow`.
    pending: bool,
    /// Safety re-read period (`--watch-interval`), when the file is followed.
    interval: Option<Duration>,
    next_safety: Option<Instant>,
    settle_at: Option<Instant>,
}

impl Events {
    /// Installs the signal handlers and their thread. Errors: the handlers or their thread
    /// cannot be set up.
    pub(crate) fn start(config: &Config) -> Result<Events, String> {
        let outbox = Outbox {
            mailbox: Arc::default(),
            bell: Bell::default(),
        };
        let signals = Signals::register(outbox.clone())?;
        let follows = config.mode == Mode::Reload && config.source.can_change();
        let interval = follows.then_some(config.watch_interval);
        Ok(Events {
            outbox,
            signals,
            watch: None,
            following: false,
            interval,
            next_safety: None,
            settle_at: None,
            pending: false,
        })
    }

    /// For `--reload` with a secret file: starts following the file (the watch, or only
    /// the safety re-read with `--watch=false`), once; logs how. The file is re-read once
    /// right after, for what changed before the watch was in place.
    pub(crate) fn follow(&mut self, config: &Config) {
        if self.following || self.interval.is_none() {
            return;
        }
        self.following = true;
        self.pending = true;
        self.next_safety = self.interval.map(|i| Instant::now() + i);
        match (&config.source, config.watch) {
            (SecretSource::File(path), FileWatch::Inotify) => {
                self.watch = Some(Watch::start(
                    path,
                    config.watch_interval,
                    self.outbox.clone(),
                ));
            }
            _ => info!(
                "not watching {} (--watch=false): re-reading it every {} s",
                config.source.describe(),
                crate::config::format_secs(config.watch_interval)
            ),
        }
    }

    /// From now on, wake-ups also wake the server's `recv_until`.
    pub(crate) fn ring_server(&self, waker: tiny_http::Waker) {
        if let Ok(mut slot) = self.outbox.bell.0.lock() {
            *slot = Some(waker);
        }
    }

    /// Everything that arrived since the last call, without blocking.
    pub(crate) fn take(&mut self) -> News {
        self.collect(None)
    }

    /// Blocks on the wake-up threads until something arrives or `deadline` (or a deadline
    /// of its own) passes: the start-up wait, where no server runs yet.
    pub(crate) fn wait(&mut self, deadline: Instant) -> News {
        let news = self.take();
        if news != News::default() {
            return news;
        }
        // (after `take`, which may have set a deadline of its own)
        let until = self.deadline().map_or(deadline, |d| d.min(deadline));
        self.collect(Some(until))
    }

    fn collect(&mut self, until: Option<Instant>) -> News {
        let mut news = News::default();
        for event in self.outbox.mailbox.take(until) {
            self.apply(event, &mut news);
        }
        self.finish(&mut news);
        news
    }

    /// The earliest deadline of the events themselves (a settling change, the safety
    /// re-read); `None`: nothing to wait for but events.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match (self.settle_at, self.next_safety) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn apply(&mut self, event: Event, news: &mut News) {
        let reaction = match (event, self.watch.as_mut()) {
            (Event::Signal, _) => Reaction::Nothing,
            (Event::File(mask, wd), Some(w)) => w.on_event(mask, &wd),
            (Event::WatchFailed(why), Some(w)) => w.on_failure(&why),
            (_, None) => Reaction::Nothing,
        };
        match reaction {
            Reaction::Nothing => {}
            Reaction::Now => news.reread = true,
            Reaction::Soon => {
                let at = Instant::now() + SETTLE;
                self.settle_at = Some(self.settle_at.map_or(at, |t| t.max(at)));
            }
        }
    }

    /// Adds the signals and the deadlines that passed.
    fn finish(&mut self, news: &mut News) {
        news.stop = self.signals.stop();
        news.hup |= self.signals.take_hup();
        news.reread |= std::mem::take(&mut self.pending);
        let now = Instant::now();
        if self.settle_at.is_some_and(|t| now >= t) {
            self.settle_at = None;
            news.reread = true;
        }
        if let (Some(t), Some(interval)) = (self.next_safety, self.interval) {
            if now >= t {
                self.next_safety = Some(now + interval);
                if let Some(w) = self.watch.as_mut() {
                    w.retry();
                }
                news.reread = true;
            }
        }
    }
}
