//! hello-path-rs: the article's hello-path-go, re-implemented. The story is the article's:
//! parse the options, say hello, validate the credential with the remote service, serve.
#![forbid(unsafe_code)]

/// Logs with the target `hello-path-rs`, as every line of the service does.
macro_rules! info {
    ($($arg:tt)+) => { log::info!(target: "hello-path-rs", $($arg)+) };
}
macro_rules! warn {
    ($($arg:tt)+) => { log::warn!(target: "hello-path-rs", $($arg)+) };
}
macro_rules! error {
    ($($arg:tt)+) => { log::error!(target: "hello-path-rs", $($arg)+) };
}

mod config;
mod events;
mod goflags;
mod metrics;
mod probe;
mod remote;
mod routes;
mod secret;
mod server;
mod signals;
mod startup;
mod watch;

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;

use config::{Command, Config, SecretSource, UsageError};

/// Everything that ends the process with a non-zero status.
#[derive(Debug)]
pub(crate) enum Error {
    /// Bad command line: exit 2.
    Usage(UsageError),
    /// The remote service refused the credential (FATAL already logged): exit 1.
    Rejected,
    /// The secret file cannot be used in fail-fast mode: exit 1.
    Secret(secret::ReadError),
    /// The address cannot be bound: exit 1.
    Listen { addr: SocketAddr, message: String },
    /// Signal handlers cannot be installed: exit 1.
    Signals(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) => write!(f, "{e}"),
            Error::Rejected => f.write_str("connection to remote service failed"),
            Error::Secret(e) => write!(f, "{e}"),
            Error::Listen { addr, message } => write!(f, "cannot listen on {addr}: {message}"),
            Error::Signals(m) => write!(f, "cannot install signal handlers: {m}"),
        }
    }
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Wall-clock time for metrics.
pub(crate) mod clock {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Time since the Unix epoch.
    pub(crate) fn unix_now() -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                Error::Rejected => {} // the FATAL line was the message
                Error::Usage(_) => {
                    eprintln!("hello-path-rs: error: {e}");
                    eprintln!("Try 'hello-path-rs --help' for more information.");
                }
                _ => eprintln!("hello-path-rs: error: {e}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run() -> Result<(), Error> {
    let args = std::env::args_os().skip(1).collect();
    let config = match config::parse(args, std::env::var("MYSECRET").ok()).map_err(Error::Usage)? {
        Command::Help => {
            print!("{}", config::HELP);
            return Ok(());
        }
        Command::Version => {
            println!("{}", config::VERSION);
            return Ok(());
        }
        Command::Probe(p) => return probe::run(&p).map_err(Error::Usage),
        Command::Serve(c) => c,
    };
    let start_unix = clock::unix_now();
    init_logging();
    exit_on_panic();
    // As the Go runtime does: a server may need more descriptors than the soft limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    banner(&config);

    let mut events = events::Events::start(&config).map_err(Error::Signals)?;
    let remote = remote::Remote::new(config.expected.clone());
    let Some(credential) = startup::validate(&config, &remote, &mut events)? else {
        return Ok(());
    };
    // With --reload and a secret file: the file watch, before the port opens.
    events.follow(&config);
    let listener = server::bind(&config)?;
    info!("Web service accessible at {}", listener.local_addr());
    server::serve(
        &config,
        &remote,
        credential,
        listener,
        &mut events,
        start_unix,
    );
    Ok(())
}

fn init_logging() {
    // No timestamps: the container runtime records one per line (`kubectl logs --timestamps`,
    // `podman logs -t`), and simple_logger's would add ~30 kB (the `time` crate) to the binary.
    // `init` fails only when a logger is already set, which cannot happen here.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .with_module_level("tiny_http", log::LevelFilter::Off)
        .init();
}

/// A panic in any thread ends the process with status 1 and one log line. A panic in one of
/// tiny_http's threads would otherwise leave a live process with a dead listener, which the
/// kubelet never restarts; `panic = "abort"` alone covers release builds only, and exits
/// by a signal. (A log line that cannot be written, stdout gone, is such a panic.)
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let what = info.to_string().replace('\n', " ");
        eprintln!("hello-path-rs: error: internal failure, exiting: {what}");
        std::process::exit(1);
    }));
}

fn banner(config: &Config) {
    let rule = "-".repeat(60);
    info!("{rule}");
    info!("hello-path-rs - a simple web service returning the URL path.");
    info!("{rule}");
    info!("Web service initialization...");
    if matches!(config.source, SecretSource::Flag(_)) {
        warn!(
            "mysecret is given on the command line: it is visible in ps and in the pod spec; \
             prefer --mysecret-file (a Secret volume) or MYSECRET (secretKeyRef)."
        );
    }
}
