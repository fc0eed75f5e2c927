//! Startup validation: check the credential with the remote service, and with `--reload`
//! block (in short sleeps that still honour signals) until it is accepted.

use std::thread;
use std::time::{Duration, Instant};

use crate::config::{format_secs, Config, Mode};
use crate::remote::Remote;
use crate::secret::Credential;
use crate::signals::Signals;
use crate::{clock, Error};

/// Longest sleep between two looks at the signal flags.
const SLICE: Duration = Duration::from_millis(50);

/// Returns the accepted credential, or `None` when a stop signal came during the wait.
pub(crate) fn validate(
    config: &Config,
    remote: &Remote,
    signals: &Signals,
) -> Result<Option<Credential>, Error> {
    let first = config.source.read();
    if let Ok(v) = &first {
        if remote.accepts(v) {
            info!("Connection to remote service: ok.");
            return Ok(Some(Credential::new(v.clone(), clock::unix_now())));
        }
    }
    match (&first, config.mode) {
        (Err(e), Mode::FailFast) => return Err(Error::Secret(e.clone())),
        (Ok(v), Mode::FailFast) => {
            info!("{}", remote.note(v, config.exposure));
            error!("FATAL: connection to remote service failed. Check mysecret parameter.");
            return Err(Error::Rejected);
        }
        (Err(e), Mode::Reload) => warn!("{e}"),
        (Ok(v), Mode::Reload) => info!("{}", remote.note(v, config.exposure)),
    }
    info!(
        "RELOAD: Connection to remote service: nok. Checking every {} second{}.",
        format_secs(config.retry_interval),
        if config.retry_interval == Duration::from_secs(1) {
            ""
        } else {
            "s"
        }
    );
    if !config.source.can_change() {
        warn!(
            "RELOAD: mysecret comes from {}, which cannot change while the process runs: \
             fix it and restart the process (the pod) to recover.",
            config.source.describe()
        );
    }
    for attempt in 1u64.. {
        if let Some(sig) = pause(config.retry_interval, signals) {
            info!("Received {sig} while waiting for a valid credential: exiting.");
            return Ok(None);
        }
        match config.source.read() {
            Ok(v) if remote.accepts(&v) => {
                info!("RELOAD({attempt}): Connection to remote service: ok.");
                info!("Connection to remote service: ok.");
                return Ok(Some(Credential::new(v, clock::unix_now())));
            }
            Ok(_) => info!("RELOAD({attempt}): Connection to remote service: nok."),
            Err(e) => info!("RELOAD({attempt}): Connection to remote service: nok ({e})."),
        }
    }
    unreachable!("the attempt counter is unbounded")
}

/// Sleeps `total` in short slices; returns early with the signal's name on SIGTERM/SIGINT,
/// and without one on SIGHUP (an immediate retry).
fn pause(total: Duration, signals: &Signals) -> Option<&'static str> {
    let end = Instant::now() + total;
    loop {
        if let Some(sig) = signals.stop() {
            return Some(sig);
        }
        if signals.take_hup() {
            info!("Received SIGHUP: checking the credential now.");
            return None;
        }
        let now = Instant::now();
        if now >= end {
            return None;
        }
        thread::sleep(SLICE.min(end - now));
    }
}
