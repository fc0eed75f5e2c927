//! Startup validation: check the credential with the remote service, and with `--reload`
//! wait until it is accepted — blocked until the next retry, a signal, a change of the
//! secret file (SPEC §5: a pod waiting for its credential is Ready as soon as the kubelet
//! writes it) or the end of a read, with no wake-up in between. The file is read on the
//! reader thread (`events.rs`), so a read that hangs never keeps SIGTERM waiting.

use std::time::{Duration, Instant};

use crate::config::{format_secs, Config, Mode};
use crate::events::Events;
use crate::remote::Remote;
use crate::secret::{Credential, Trigger};
use crate::{clock, Error};

/// Returns the accepted credential, or `None` when a stop signal came during the wait.
pub(crate) fn validate(
    config: &Config,
    remote: &Remote,
    events: &mut Events,
) -> Result<Option<Credential>, Error> {
    events.ask(Trigger::Explicit);
    let first = loop {
        let news = events.wait(None);
        if let Some(sig) = news.stop {
            info!("Received {sig} while waiting for a valid credential: exiting.");
            return Ok(None);
        }
        if let Some(done) = news.reads.into_iter().next() {
            break done.result;
        }
    };
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
    events.follow(config);
    let mut last = first;
    let mut next_retry = Instant::now() + config.retry_interval;
    let mut attempt = 0u64;
    loop {
        let news = events.wait(Some(next_retry));
        if let Some(sig) = news.stop {
            info!("Received {sig} while waiting for a valid credential: exiting.");
            return Ok(None);
        }
        if news.hup {
            info!("Received SIGHUP: checking the credential now.");
            events.ask(Trigger::Explicit);
        }
        if news.reread {
            events.ask(Trigger::Watch);
        }
        if Instant::now() >= next_retry {
            events.ask(Trigger::Explicit);
            next_retry = Instant::now() + config.retry_interval;
        }
        for done in news.reads {
            if events.holds(&done) {
                continue; // a file in the middle of an update: read again shortly
            }
            if done.trigger == Trigger::Watch && done.result == last {
                continue; // a file event that changed nothing is no attempt
            }
            attempt += 1;
            next_retry = Instant::now() + config.retry_interval;
            match &done.result {
                Ok(v) if remote.accepts(v) => {
                    info!("RELOAD({attempt}): Connection to remote service: ok.");
                    info!("Connection to remote service: ok.");
                    return Ok(Some(Credential::new(v.clone(), clock::unix_now())));
                }
                Ok(_) => info!("RELOAD({attempt}): Connection to remote service: nok."),
                Err(e) => info!("RELOAD({attempt}): Connection to remote service: nok ({e})."),
            }
            last = done.result;
        }
    }
}
