//! The file watch of `--mysecret-file` (SPEC §5): inotify on the directory that holds the
//! file, so that the kubelet's swap of `..data` (a rename inside that directory), an
//! in-place write and a `mv` over the file are all seen at once. A thread blocked in `read`
//! hands the events over (`events.rs`); what they mean is decided here, on the main thread.
//!
//! An event only says "re-read": the content decides (`secret.rs`). When the watch cannot
//! be set up or is lost, this says so once in the log and the safety re-read every
//! `--watch-interval` is all that is left. While the directory is missing its parent is
//! watched, and the directory is watched again the moment it comes back (or, when the
//! parent cannot be watched either, at the next safety re-read).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use crate::config::format_secs;
use crate::events::{Event, Outbox};
use crate::secret::io_message;

/// What an event asks of the main thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    Nothing,
    /// Re-read now: the event ends an update (a rename into the directory, a file closed
    /// after writing, a change of permissions).
    Now,
    /// Re-read shortly: the event may be the first half of an update (a file created,
    /// deleted, renamed away; the directory itself gone).
    Soon,
}

/// What is watched.
#[derive(Debug)]
enum State {
    /// The directory that holds the file.
    Dir(WatchDescriptor),
    /// The directory is missing: its parent, for the directory to come back.
    Parent(WatchDescriptor),
    /// Nothing: the safety re-read only.
    Blind,
}

/// The watch of one secret file's directory.
pub(crate) struct Watch {
    file: PathBuf,
    dir: PathBuf,
    interval: Duration,
    /// `None` when there is no inotify at all (it could not be set up, or its thread ended).
    watches: Option<Watches>,
    state: State,
}

/// Changes inside the directory, and the directory's own end.
fn dir_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// The directory coming back into its parent, and the parent's own end.
fn parent_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// The watch is gone: the directory was removed, moved away or unmounted.
fn lost(mask: EventMask) -> bool {
    mask.intersects(
        EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT | EventMask::IGNORED,
    )
}

/// An inotify error in words, naming the kernel limit behind it.
fn watch_error(e: &io::Error) -> String {
    const EMFILE: i32 = 24;
    const ENOSPC: i32 = 28;
    match e.raw_os_error() {
        Some(ENOSPC) => "no inotify watch left (fs.inotify.max_user_watches)".into(),
        Some(EMFILE) => {
            "too many open files or inotify instances (fs.inotify.max_user_instances)".into()
        }
        _ => io_message(e),
    }
}

impl Watch {
    /// Sets up inotify and its thread, and watches the directory of `file`. Never fails:
    /// what cannot be watched is said once and left to the safety re-read.
    pub(crate) fn start(file: &Path, interval: Duration, outbox: Outbox) -> Watch {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut w = Watch {
            file: file.to_path_buf(),
            dir,
            interval,
            watches: None,
            state: State::Blind,
        };
        match Inotify::init().and_then(|i| w.spawn_reader(i, outbox)) {
            Ok(watches) => {
                w.watches = Some(watches);
                w.attach(false);
            }
            Err(e) => w.blind(&w.dir, &watch_error(&e)),
        }
        w
    }

    /// Starts the thread that reads `inotify` and forwards its events.
    fn spawn_reader(&self, mut inotify: Inotify, outbox: Outbox) -> io::Result<Watches> {
        let watches = inotify.watches();
        std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match inotify.read_events_blocking(&mut buf) {
                        Ok(events) => {
                            for e in events {
                                outbox.send(Event::File(e.mask, e.wd));
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            outbox.send(Event::WatchFailed(watch_error(&e)));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start a thread: {e}")))?;
        Ok(watches)
    }

    /// What the event `mask` on `wd` means; follows the directory when it goes away or comes
    /// back.
    pub(crate) fn on_event(&mut self, mask: EventMask, wd: &WatchDescriptor) -> Reaction {
        if mask.contains(EventMask::Q_OVERFLOW) {
            return Reaction::Now; // events were dropped: whatever happened, look
        }
        match &self.state {
            State::Dir(d) if d == wd => {
                if lost(mask) {
                    self.lost(if mask.contains(EventMask::MOVE_SELF) {
                        "moved away"
                    } else if mask.contains(EventMask::UNMOUNT) {
                        "unmounted"
                    } else {
                        "removed"
                    });
                    Reaction::Soon
                } else if mask
                    .intersects(EventMask::MOVED_TO | EventMask::CLOSE_WRITE | EventMask::ATTRIB)
                {
                    Reaction::Now
                } else {
                    Reaction::Soon
                }
            }
            State::Parent(p) if p == wd => {
                if lost(mask) {
                    self.attach(true);
                    Reaction::Nothing
                } else if self.watch_dir_again() {
                    // (an entry created in the parent: if the directory is back, watch it)
                    Reaction::Now
                } else {
                    Reaction::Nothing
                }
            }
            _ => Reaction::Nothing, // a watch left behind
        }
    }

    /// The watch thread ended (`why`): from now on, the safety re-read only.
    pub(crate) fn on_failure(&mut self, why: &str) -> Reaction {
        self.blind(&self.dir, why);
        self.watches = None;
        self.state = State::Blind;
        Reaction::Now
    }

    /// At each safety re-read: makes sure the watch still follows the directory now at
    /// `dir` (it may have been replaced, or come back while nothing could be watched).
    pub(crate) fn retry(&mut self) {
        match &self.state {
            State::Dir(d) => {
                let same = self
                    .watches
                    .as_mut()
                    .and_then(|w| w.add(&self.dir, dir_mask()).ok())
                    .is_some_and(|now| &now == d);
                if !same {
                    self.lost("replaced");
                }
            }
            State::Parent(_) => {
                self.watch_dir_again();
            }
            State::Blind if self.watches.is_some() => self.attach(true),
            State::Blind => {}
        }
    }

    /// Watches the directory again after it came back; true when it is watched.
    fn watch_dir_again(&mut self) -> bool {
        let Some(watches) = self.watches.as_mut() else {
            return false;
        };
        let Ok(wd) = watches.add(&self.dir, dir_mask()) else {
            return false;
        };
        if let State::Parent(p) = std::mem::replace(&mut self.state, State::Dir(wd)) {
            watches.remove(p).ok();
        }
        info!("watching {} again", self.dir.display());
        true
    }

    /// Watches the directory, or else its parent, or else nothing; says what it does when
    /// that differs from before (`again`: after a loss).
    fn attach(&mut self, again: bool) {
        let Some(watches) = self.watches.as_mut() else {
            return;
        };
        let old = std::mem::replace(&mut self.state, State::Blind);
        if let State::Dir(d) | State::Parent(d) = &old {
            watches.remove(d.clone()).ok(); // already gone when the kernel dropped it
        }
        let quiet = again && matches!(old, State::Blind); // said already
        match watches.add(&self.dir, dir_mask()) {
            Ok(wd) => {
                self.state = State::Dir(wd);
                if again {
                    info!("watching {} again", self.dir.display());
                } else {
                    info!(
                        "watching {} for changes of {} (and re-reading it every {} s)",
                        self.dir.display(),
                        self.file.display(),
                        format_secs(self.interval)
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(parent) = self.dir.parent() else {
                    return;
                };
                match watches.add(parent, parent_mask()) {
                    Ok(wd) => {
                        if !matches!(old, State::Parent(_)) {
                            warn!(
                                "{} is missing: watching {} until it is back",
                                self.dir.display(),
                                parent.display()
                            );
                        }
                        self.state = State::Parent(wd);
                    }
                    Err(e) if !quiet => self.blind(parent, &watch_error(&e)),
                    Err(_) => {}
                }
            }
            Err(e) if !quiet => self.blind(&self.dir, &watch_error(&e)),
            Err(_) => {}
        }
    }

    /// The watch on the directory is gone (`how`): says so, and watches what it can.
    fn lost(&mut self, how: &str) {
        warn!(
            "the watch on {} is lost: the directory was {how}",
            self.dir.display()
        );
        self.attach(true);
    }

    /// Says that `what` cannot be watched (`why`), so the safety re-read is all there is.
    fn blind(&self, what: &Path, why: &str) {
        warn!(
            "cannot watch {}: {why}; re-reading {} every {} s instead",
            what.display(),
            self.file.display(),
            format_secs(self.interval)
        );
    }
}
