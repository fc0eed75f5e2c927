//! SIGTERM, SIGINT and SIGHUP as flags that the main loop checks between requests.
//!
//! Registering handlers also matters as PID 1 in a container: the kernel drops signals
//! that PID 1 has no handler for, so without them `podman stop` would wait out its timeout.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals received so far.
pub(crate) struct Signals {
    term: Arc<AtomicBool>,
    int: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers.
    pub(crate) fn register() -> io::Result<Signals> {
        let s = Signals {
            term: Arc::default(),
            int: Arc::default(),
            hup: Arc::default(),
        };
        signal_hook::flag::register(SIGTERM, Arc::clone(&s.term))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&s.int))?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&s.hup))?;
        Ok(s)
    }

    /// The name of the stop signal received, if any (it stays set).
    pub(crate) fn stop(&self) -> Option<&'static str> {
        if self.term.load(Ordering::Relaxed) {
            Some("SIGTERM")
        } else if self.int.load(Ordering::Relaxed) {
            Some("SIGINT")
        } else {
            None
        }
    }

    /// Whether SIGHUP arrived since the last call.
    pub(crate) fn take_hup(&self) -> bool {
        self.hup.swap(false, Ordering::Relaxed)
    }
}
