//! What wakes the main thread besides a request: a signal, a change in the secret file's
//! directory, a read of the secret file that finished, or a deadline the loop set itself
//! (SPEC §1). Signals and file events each have a small thread blocked in `read` — no
//! wake-up at all while nothing happens — that hands what it saw over a channel and rings
//! the bell of whatever the main thread waits on: the channel itself during the start-up
//! wait, the server's request queue while it serves. The secret file is read the same way,
//! by a thread of its own, so that a file that never answers (a hung network or FUSE mount)
//! stalls that thread only, never the request loop or SIGTERM. The main thread alone
//! decides what an event or a read means.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, FileWatch, Mode, SecretSource};
use crate::secret::{self, io_message, ReadError, Trigger, READ_TIMEOUT};
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
    /// The reader thread finished a read of the secret file.
    Read(Result<String, ReadError>),
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

/// How long `Mailbox::take` waits for something to arrive.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

impl Mailbox {
    /// Takes what arrived, waiting for something as `wait` says.
    fn take(&self, wait: Wait) -> Vec<Event> {
        // A poisoned lock means a panic in a wake-up thread, which already ends the process.
        let Ok(mut events) = self.events.lock() else {
            return Vec::new();
        };
        while events.is_empty() {
            let woken = match wait {
                Wait::No => break,
                Wait::Forever => self.arrived.wait(events).ok(),
                Wait::Until(until) => {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    self.arrived
                        .wait_timeout(events, until - now)
                        .ok()
                        .map(|(e, _)| e)
                }
            };
            match woken {
                Some(e) => events = e,
                None => return Vec::new(),
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

/// Pauses before each new read of a file that a read after a file event (or the safety
/// re-read) found missing, unreadable or not a file: the kubelet swaps `..data` first and
/// gives the new file its group for `fsGroup` after that, and its chown and chmod happen
/// inside the timestamped directory, where the watch sees nothing. 750 ms in all; only
/// then does the error count.
const UNREADABLE_RETRIES: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
];

/// What the main thread has to do, gathered from everything that arrived.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct News {
    /// SIGTERM or SIGINT (it stays set).
    pub(crate) stop: Option<&'static str>,
    /// SIGHUP arrived since the last look.
    pub(crate) hup: bool,
    /// The secret file may have changed: re-read it (`ask(Trigger::Watch)`).
    pub(crate) reread: bool,
    /// Reads asked for with `ask` that finished, or did not finish in time, in that order.
    pub(crate) reads: Vec<Done>,
}

/// A read of the secret file that finished (or ran out of time), for the main thread to
/// apply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Done {
    /// What it was asked for: explicit triggers count their outcome.
    pub(crate) trigger: Trigger,
    /// The credential, or why there is none (`ReadError::Timeout` for a read still hanging).
    pub(crate) result: Result<String, ReadError>,
    /// It answers every ticket of `ask` up to this one: they were asked before it started.
    pub(crate) upto: u64,
    /// It is one of the `UNREADABLE_RETRIES`.
    retry: bool,
}

/// Why a read is made; when several share one read, the strongest says what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    Watch,
    Retry,
    Explicit,
}

impl Why {
    fn trigger(self) -> Trigger {
        match self {
            Why::Watch | Why::Retry => Trigger::Watch,
            Why::Explicit => Trigger::Explicit,
        }
    }
}

/// The thread that reads the secret file (`secret::read_file`). Started with the first
/// read, it then sleeps on its condition variable until the next one is asked: no wake-up
/// while nothing is asked.
struct Reader(Arc<(Mutex<bool>, Condvar)>);

impl Reader {
    fn start(path: PathBuf, outbox: Outbox) -> std::io::Result<Reader> {
        let asked: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let theirs = Arc::clone(&asked);
        std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || {
                let (flag, arrived) = &*theirs;
                loop {
                    // A poisoned lock means a panic elsewhere, which already ends the process.
                    let Ok(mut asked) = flag.lock() else {
                        return;
                    };
                    while !*asked {
                        asked = match arrived.wait(asked) {
                            Ok(a) => a,
                            Err(_) => return,
                        };
                    }
                    *asked = false;
                    drop(asked);
                    outbox.send(Event::Read(secret::read_file(&path)));
                }
            })?;
        Ok(Reader(asked))
    }

    fn ask(&self) {
        let (flag, arrived) = &*self.0;
        if let Ok(mut asked) = flag.lock() {
            *asked = true;
            arrived.notify_one();
        }
    }
}

/// A read asked for: on the reader thread, or waiting for the read there to end.
#[derive(Debug)]
struct Asked {
    why: Why,
    /// The last ticket it answers.
    upto: u64,
    /// When it counts as failed; `None` once it has (a read still hanging, or one waiting
    /// behind it, which then runs as a plain re-read when the thread is free).
    deadline: Option<Instant>,
}

/// The reads of a secret file: one at a time on the reader thread, each with its deadline.
/// A read asked for while another is on the thread is not started twice: it waits for it
/// (several such asks make one read), and runs when the thread is free.
struct Reads {
    path: PathBuf,
    reader: Option<Reader>,
    busy: Option<Asked>,
    next: Option<Asked>,
}

impl Reads {
    fn ask(&mut self, why: Why, ticket: u64, outbox: &Outbox, done: &mut Vec<Done>) {
        if self.busy.is_none() {
            return self.start(why, ticket, outbox, done);
        }
        match &mut self.next {
            Some(n) if n.deadline.is_some() => {
                n.why = n.why.max(why);
                n.upto = n.upto.max(ticket);
            }
            next => {
                *next = Some(Asked {
                    why,
                    upto: ticket,
                    deadline: Some(Instant::now() + READ_TIMEOUT),
                })
            }
        }
    }

    /// Starts a read, and the reader thread first if it has not started: a thread that
    /// cannot be started (a pids limit) is a failed read, and the next read tries again.
    fn start(&mut self, why: Why, upto: u64, outbox: &Outbox, done: &mut Vec<Done>) {
        if self.reader.is_none() {
            match Reader::start(self.path.clone(), outbox.clone()) {
                Ok(r) => self.reader = Some(r),
                Err(e) => {
                    return done.push(Done {
                        trigger: why.trigger(),
                        result: Err(ReadError::Io {
                            path: self.path.clone(),
                            message: format!(
                                "cannot start a thread to read it: {}",
                                io_message(&e)
                            ),
                        }),
                        upto,
                        retry: why == Why::Retry,
                    })
                }
            }
        }
        if let Some(r) = &self.reader {
            r.ask();
        }
        self.busy = Some(Asked {
            why,
            upto,
            deadline: Some(Instant::now() + READ_TIMEOUT),
        });
    }

    /// The reader thread is done with a read: hands it out and starts the next one. A read
    /// that finished after its deadline answers nobody any more (its askers were answered
    /// by the timeout): it is applied as a plain re-read, which tells whether the file is
    /// good again.
    fn finished(
        &mut self,
        result: Result<String, ReadError>,
        outbox: &Outbox,
        done: &mut Vec<Done>,
    ) {
        let Some(busy) = self.busy.take() else {
            return; // (nothing is read that was not asked for)
        };
        done.push(match busy.deadline {
            Some(_) => Done {
                trigger: busy.why.trigger(),
                result,
                upto: busy.upto,
                retry: busy.why == Why::Retry,
            },
            None => Done {
                trigger: Trigger::Watch,
                result,
                upto: 0,
                retry: false,
            },
        });
        match self.next.take() {
            Some(
                n @ Asked {
                    deadline: Some(_), ..
                },
            ) => self.start(n.why, n.upto, outbox, done),
            Some(_) => self.start(Why::Watch, 0, outbox, done),
            None => {}
        }
    }

    /// Reads past their deadline count as failed, once.
    fn expire(&mut self, now: Instant, done: &mut Vec<Done>) {
        for a in [&mut self.busy, &mut self.next].into_iter().flatten() {
            if a.deadline.is_some_and(|d| now >= d) {
                a.deadline = None;
                done.push(Done {
                    trigger: a.why.trigger(),
                    result: Err(ReadError::Timeout {
                        path: self.path.clone(),
                    }),
                    upto: a.upto,
                    retry: false,
                });
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        [&self.busy, &self.next]
            .into_iter()
            .flatten()
            .filter_map(|a| a.deadline)
            .min()
    }
}

/// Where the credential comes from, for `ask`.
enum Source {
    /// A flag, the environment or the default: read at once.
    Fixed(String),
    File(Reads),
}

/// The retries of a file found unreadable after a file event (`UNREADABLE_RETRIES`).
#[derive(Debug)]
struct Retry {
    /// Retries made so far.
    made: usize,
    /// The next one; `None` while it runs.
    at: Option<Instant>,
}

/// `Events::holds`, with the retries in `retry`.
fn hold(retry: &mut Option<Retry>, done: &Done, now: Instant) -> bool {
    let transient =
        done.trigger == Trigger::Watch && done.result.as_ref().is_err_and(ReadError::is_transient);
    if !transient {
        *retry = None;
        return false;
    }
    match retry {
        None => {
            *retry = Some(Retry {
                made: 0,
                at: Some(now + UNREADABLE_RETRIES[0]),
            });
            true
        }
        Some(r) if done.retry => {
            r.made += 1;
            match UNREADABLE_RETRIES.get(r.made) {
                Some(pause) => {
                    r.at = Some(now + *pause);
                    true
                }
                None => {
                    *retry = None;
                    false
                }
            }
        }
        Some(_) => true, // a file event's read: the retries go on
    }
}

/// The main thread's side: signals, the file watch, the reads of the secret file and their
/// deadlines.
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
    source: Source,
    /// Reads done, not yet handed out.
    done: Vec<Done>,
    /// The last ticket handed out by `ask`.
    tickets: u64,
    retry: Option<Retry>,
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
        let source = match config.source.fixed() {
            Ok(v) => Source::Fixed(v),
            Err(path) => Source::File(Reads {
                path: path.to_path_buf(),
                reader: None,
                busy: None,
                next: None,
            }),
        };
        Ok(Events {
            outbox,
            signals,
            watch: None,
            following: false,
            interval,
            next_safety: None,
            settle_at: None,
            pending: false,
            source,
            done: Vec::new(),
            tickets: 0,
            retry: None,
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

    /// Asks for a read of the credential; it comes back in `News::reads`, answering the
    /// ticket returned here. The secret file is read on the reader thread, one read at a
    /// time: a read asked for while one is running waits for it (and is not started twice),
    /// and one that takes longer than `READ_TIMEOUT` comes back as `ReadError::Timeout`.
    pub(crate) fn ask(&mut self, trigger: Trigger) -> u64 {
        self.tickets += 1;
        let why = match trigger {
            Trigger::Watch => Why::Watch,
            Trigger::Explicit => Why::Explicit,
        };
        self.request(why, self.tickets);
        self.tickets
    }

    fn request(&mut self, why: Why, ticket: u64) {
        match &mut self.source {
            Source::Fixed(v) => self.done.push(Done {
                trigger: why.trigger(),
                result: Ok(v.clone()),
                upto: ticket,
                retry: why == Why::Retry,
            }),
            Source::File(reads) => reads.ask(why, ticket, &self.outbox, &mut self.done),
        }
    }

    /// Whether `done` is held back rather than applied: a read after a file event (or the
    /// safety re-read) that found the file missing, unreadable or not a file is read again
    /// after each of `UNREADABLE_RETRIES` (a file event in between is read at once, as
    /// always) and only the last error counts. Any other read ends such retries. Call it
    /// for every read, before applying it.
    pub(crate) fn holds(&mut self, done: &Done) -> bool {
        hold(&mut self.retry, done, Instant::now())
    }

    /// Everything that arrived since the last call, without blocking.
    pub(crate) fn take(&mut self) -> News {
        self.collect(Wait::No)
    }

    /// Blocks on the wake-up threads until something arrives or `deadline` (or a deadline
    /// of its own) passes — with neither, until something arrives: the start-up wait,
    /// where no server runs yet.
    pub(crate) fn wait(&mut self, deadline: Option<Instant>) -> News {
        let news = self.take();
        if news != News::default() {
            return news;
        }
        // (after `take`, which may have set a deadline of its own)
        let until = match (self.deadline(), deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.collect(until.map_or(Wait::Forever, Wait::Until))
    }

    fn collect(&mut self, wait: Wait) -> News {
        let mut news = News::default();
        for event in self.outbox.mailbox.take(wait) {
            self.apply(event, &mut news);
        }
        self.finish(&mut news);
        news
    }

    /// The earliest deadline of the events and reads themselves (a settling change, a
    /// retry of an unreadable file, a read that may hang, the safety re-read); `None`:
    /// nothing to wait for but events.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let reads = match &self.source {
            Source::File(r) => r.deadline(),
            Source::Fixed(_) => None,
        };
        [
            self.settle_at,
            self.next_safety,
            self.retry.as_ref().and_then(|r| r.at),
            reads,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn apply(&mut self, event: Event, news: &mut News) {
        let reaction = match (event, self.watch.as_mut()) {
            (Event::Read(result), _) => {
                if let Source::File(reads) = &mut self.source {
                    reads.finished(result, &self.outbox, &mut self.done);
                }
                Reaction::Nothing
            }
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

    /// Adds the signals, the deadlines that passed and the reads done.
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
        if let Some(r) = self.retry.as_mut() {
            if r.at.is_some_and(|t| now >= t) {
                r.at = None;
                self.request(Why::Retry, 0);
            }
        }
        if let Source::File(reads) = &mut self.source {
            reads.expire(now, &mut self.done);
        }
        news.reads = std::mem::take(&mut self.done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Outbox {
        Outbox {
            mailbox: Arc::default(),
            bell: Bell::default(),
        }
    }

    fn reads() -> Reads {
        Reads {
            path: PathBuf::from("/nonexistent/hello-path-rs/mysecret"),
            reader: None,
            busy: None,
            next: None,
        }
    }

    fn denied(retry: bool) -> Done {
        Done {
            trigger: Trigger::Watch,
            result: Err(ReadError::Io {
                path: "/s".into(),
                message: "permission denied".into(),
            }),
            upto: 0,
            retry,
        }
    }

    #[test]
    fn an_unreadable_file_after_an_event_is_retried_four_times_then_counts() {
        let now = Instant::now();
        let mut retry = None;
        assert!(hold(&mut retry, &denied(false), now), "first: held");
        let mut waited = Duration::ZERO;
        for n in 0..UNREADABLE_RETRIES.len() {
            let at = retry.as_ref().and_then(|r| r.at).expect("a retry planned");
            waited += at - now;
            // a file event's read in between changes nothing
            assert!(hold(&mut retry, &denied(false), now));
            let last = n + 1 == UNREADABLE_RETRIES.len();
            assert_eq!(hold(&mut retry, &denied(true), now), !last, "retry {n}");
        }
        assert!(retry.is_none());
        assert_eq!(waited, Duration::from_millis(750));
    }

    #[test]
    fn a_good_read_or_an_explicit_one_ends_the_retries_and_is_never_held() {
        let now = Instant::now();
        let mut retry = None;
        assert!(hold(&mut retry, &denied(false), now));
        let ok = Done {
            result: Ok("4321".into()),
            ..denied(true)
        };
        assert!(!hold(&mut retry, &ok, now));
        assert!(retry.is_none());
        let explicit = Done {
            trigger: Trigger::Explicit,
            ..denied(false)
        };
        assert!(
            !hold(&mut retry, &explicit, now),
            "explicit: counts at once"
        );
        let wrong = Done {
            result: Err(ReadError::TooLarge { path: "/s".into() }),
            ..denied(false)
        };
        assert!(!hold(&mut retry, &wrong, now), "a file read whole: counts");
        let hung = Done {
            result: Err(ReadError::Timeout { path: "/s".into() }),
            ..denied(false)
        };
        assert!(!hold(&mut retry, &hung, now), "a read that hung: counts");
    }

    #[test]
    fn a_read_is_never_started_twice_and_each_ask_has_a_deadline() {
        let (out, mut done) = (outbox(), Vec::new());
        let mut r = reads();
        r.ask(Why::Watch, 1, &out, &mut done);
        assert!(r.reader.is_some() && r.busy.is_some() && done.is_empty());
        // asked while it runs: one read after it, the strongest reason, the last ticket
        r.ask(Why::Explicit, 2, &out, &mut done);
        r.ask(Why::Watch, 3, &out, &mut done);
        let next = r.next.as_ref().unwrap();
        assert_eq!((next.why, next.upto), (Why::Explicit, 3));
        // the running read hangs: at its deadline it counts as failed, for its own asker
        let later = Instant::now() + READ_TIMEOUT;
        r.expire(later, &mut done);
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!((done[0].trigger, done[0].upto), (Trigger::Watch, 1));
        assert_eq!((done[1].trigger, done[1].upto), (Trigger::Explicit, 3));
        assert!(done.iter().all(|d| d
            .result
            .as_ref()
            .unwrap_err()
            .to_string()
            .ends_with("did not finish within 2s")));
        assert_eq!(
            r.deadline(),
            None,
            "nothing more to wait for while it hangs"
        );
        r.expire(later + READ_TIMEOUT, &mut done);
        assert_eq!(done.len(), 2, "a timeout counts once");
        // it ends at last: a plain re-read, answering nobody; then the one asked meanwhile
        // runs, as a plain re-read too (its askers had their answer)
        done.clear();
        r.finished(Ok("4321".into()), &out, &mut done);
        assert_eq!(
            done,
            [Done {
                trigger: Trigger::Watch,
                result: Ok("4321".into()),
                upto: 0,
                retry: false
            }]
        );
        let busy = r.busy.as_ref().unwrap();
        assert_eq!((busy.why, busy.upto), (Why::Watch, 0));
        assert!(r.deadline().is_some() && r.next.is_none());
    }

    #[test]
    fn a_read_that_ends_in_time_answers_its_askers_then_the_next_one_runs() {
        let (out, mut done) = (outbox(), Vec::new());
        let mut r = reads();
        r.ask(Why::Retry, 0, &out, &mut done);
        r.ask(Why::Explicit, 5, &out, &mut done);
        r.finished(Ok("4321".into()), &out, &mut done);
        assert_eq!(
            done,
            [Done {
                trigger: Trigger::Watch,
                result: Ok("4321".into()),
                upto: 0,
                retry: true
            }]
        );
        let busy = r.busy.as_ref().unwrap();
        assert_eq!((busy.why, busy.upto), (Why::Explicit, 5));
    }
}
