//! SIGTERM, SIGINT and SIGHUP: flags that the main thread reads, and a thread blocked on a
//! self-pipe that wakes it the moment one arrives (no polling: an idle process sleeps).
//!
//! Registering handlers also matters as PID 1 in a container: the kernel drops signals
//! that PID 1 has no handler for, so without them `podman stop` would wait out its timeout.

use std::io::Read;
use std::os::unix::io::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::events::{Event, Outbox};

/// The signals received so far.
pub(crate) struct Signals {
    term: Arc<AtomicBool>,
    int: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers and starts the thread that turns each signal into an `Event`.
    /// Each handler sets its flag first, then writes a byte to the pipe, so the flag is set
    /// by the time the main thread is woken.
    pub(crate) fn register(outbox: Outbox) -> Result<Signals, String> {
        let s = Signals {
            term: Arc::default(),
            int: Arc::default(),
            hup: Arc::default(),
        };
        let io = |e: std::io::Error| crate::secret::io_message(&e);
        let (mut read, write) = UnixStream::pair().map_err(io)?;
        // One descriptor for the three handlers, handed over for good (never unregistered).
        let write = write.into_raw_fd();
        for (sig, flag) in [(SIGTERM, &s.term), (SIGINT, &s.int), (SIGHUP, &s.hup)] {
            signal_hook::flag::register(sig, Arc::clone(flag)).map_err(io)?;
            signal_hook::low_level::pipe::register_raw(sig, write).map_err(io)?;
        }
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                // Several signals may come as one read; the flags say which.
                loop {
                    match read.read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => outbox.send(Event::Signal),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| format!("cannot start a thread: {}", io(e)))?;
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
