//! hello-path-nudger: a small Kubernetes controller. It watches Secrets, ConfigMaps and
//! Pods like an informer and, when the data of a Secret or ConfigMap changes, annotates the
//! running pods that mount it, so that the kubelet delivers the change in about a second
//! instead of on its next sync (SPEC §9). The story: parse the options, find the cluster,
//! serve the probes, start one informer per resource and namespace, wait for SIGTERM.
#![forbid(unsafe_code)]

mod client;
mod clock;
mod config;
mod endpoints;
/// Go-style options: the service's own parser (src/goflags.rs), one source for both binaries.
#[path = "../../src/goflags.rs"]
mod goflags;
mod handlers;
mod informer;
mod kubeconfig;
mod metrics;
mod nudge;
mod objects;
mod pods;
mod store;

use std::fmt;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;

use config::{Command, Config, Namespaces, UsageError};
use handlers::{DataHandler, PodHandler};
use informer::{Handler, Informer};
use metrics::Metrics;
use objects::ObjKind;
use store::{Scope, Store};

/// Everything that ends the process with a non-zero status.
#[derive(Debug)]
enum Error {
    /// Bad command line: exit 2.
    Usage(UsageError),
    /// A kubeconfig or ServiceAccount that cannot be used: exit 2 when the command line
    /// named it wrongly, else 1.
    Kubeconfig(kubeconfig::KubeconfigError),
    /// Anything else at start (TLS material, the listen address, threads): exit 1.
    Start(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) => write!(f, "{e}"),
            Error::Kubeconfig(e) => write!(f, "{e}"),
            Error::Start(m) => f.write_str(m),
        }
    }
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Kubeconfig(e) if e.usage => 2,
            _ => 1,
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-path-nudger: error: {e}");
            if matches!(e, Error::Usage(_)) {
                eprintln!("Try 'hello-path-nudger --help' for more information.");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run() -> Result<(), Error> {
    let config = match config::parse(std::env::args_os().skip(1).collect()).map_err(Error::Usage)? {
        Command::Help => {
            print!("{}", config::HELP);
            return Ok(());
        }
        Command::Version => {
            println!("{}", config::VERSION);
            return Ok(());
        }
        Command::Run(c) => c,
    };
    let start_unix = clock::unix_now();
    // First, so that a SIGTERM during start-up also ends the process at once with 0.
    let stop = stop_signals()?;
    init_logging();
    exit_on_panic();

    let env = kubeconfig::Environment {
        service_host: std::env::var("KUBERNETES_SERVICE_HOST").ok(),
        service_port: std::env::var("KUBERNETES_SERVICE_PORT").ok(),
        kubeconfig: std::env::var("KUBECONFIG").ok(),
        home: std::env::var("HOME").ok(),
        serviceaccount_dir: std::env::var("NUDGER_SERVICEACCOUNT_DIR").ok(),
    };
    let conn = kubeconfig::load(
        config.kubeconfig.as_deref(),
        config.context.as_deref(),
        &env,
    )
    .map_err(Error::Kubeconfig)?;
    let client = client::Client::new(&conn).map_err(Error::Start)?;
    let scopes = scopes(&config, conn.namespace.as_deref());
    let endpoints = endpoints::Endpoints::bind(config.listen_addr).map_err(Error::Start)?;
    log::info!(
        target: "hello-path-nudger",
        "{} watching secrets, configmaps and pods {} through {} ({}); /metrics, /healthz, /readyz on {}{}{}",
        config::VERSION,
        scopes.iter().map(Scope::describe).collect::<Vec<_>>().join(", "),
        conn.server,
        conn.source,
        endpoints.local_addr(),
        if config.mode == config::Mode::DryRun { "; dry run: patching nothing" } else { "" },
        if config.unreloadable == config::Unreloadable::Restart { "; restarting what a nudge cannot help" } else { "" },
    );

    let metrics = Arc::new(Metrics::new(start_unix));
    let store = Arc::new(Store::default());
    let nudger = Arc::new(nudge::Nudger::new(
        client.clone(),
        store.clone(),
        metrics.clone(),
        config.mode,
        config.unreloadable,
    ));
    endpoints.serve(metrics.clone()).map_err(Error::Start)?;
    for scope in scopes {
        let pods = PodHandler {
            scope: scope.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
        };
        start(&client, &scope, pods, &metrics)?;
        for kind in [ObjKind::Secret, ObjKind::ConfigMap] {
            let handler = DataHandler {
                kind,
                scope: scope.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                nudger: nudger.clone(),
            };
            start(&client, &scope, handler, &metrics)?;
        }
    }
    let signal = stop.wait();
    log::info!(target: "hello-path-nudger", "{signal}: exiting");
    Ok(())
}

/// The namespaces to watch: as given, all, or the default (the pod's own, else the
/// kubeconfig context's, else `default`).
fn scopes(config: &Config, default: Option<&str>) -> Vec<Scope> {
    match &config.namespaces {
        Namespaces::All => vec![Scope::All],
        Namespaces::These(list) => list.iter().cloned().map(Scope::Namespace).collect(),
        Namespaces::Default => vec![Scope::Namespace(default.unwrap_or("default").to_string())],
    }
}

/// Starts an informer on a thread of its own.
fn start<H: Handler + 'static>(
    client: &client::Client,
    scope: &Scope,
    handler: H,
    metrics: &Arc<Metrics>,
) -> Result<(), Error> {
    let what = format!("{} {}", handler.resource(), scope.describe());
    let informer = Informer {
        client: client.clone(),
        scope: scope.clone(),
        id: metrics.informer(what.clone()),
        handler,
        metrics: metrics.clone(),
    };
    std::thread::Builder::new()
        .name(format!("watch {what}"))
        .spawn(move || informer.run())
        .map(|_| ())
        .map_err(|e| {
            Error::Start(format!(
                "cannot start a thread: {}",
                kubeconfig::io_message(&e)
            ))
        })
}

/// SIGTERM and SIGINT, through a self-pipe that the main thread reads: it sleeps until one
/// comes (a handler also matters as PID 1, which has no default action for them).
struct Stop {
    read: UnixStream,
    term: Arc<std::sync::atomic::AtomicBool>,
}

impl Stop {
    /// Blocks until SIGTERM or SIGINT; its name.
    fn wait(mut self) -> &'static str {
        let mut buf = [0u8; 16];
        loop {
            match self.read.read(&mut buf) {
                Ok(0) => return "signal pipe closed",
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return "signal pipe broken",
            }
        }
        if self.term.load(std::sync::atomic::Ordering::Relaxed) {
            "SIGTERM"
        } else {
            "SIGINT"
        }
    }
}

fn stop_signals() -> Result<Stop, Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let fail = |e: std::io::Error| {
        Error::Start(format!(
            "cannot install signal handlers: {}",
            kubeconfig::io_message(&e)
        ))
    };
    let (read, write) = UnixStream::pair().map_err(fail)?;
    let term = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(SIGTERM, term.clone()).map_err(fail)?;
    for sig in [SIGTERM, SIGINT] {
        signal_hook::low_level::pipe::register(sig, write.try_clone().map_err(fail)?)
            .map_err(fail)?;
    }
    Ok(Stop { read, term })
}

fn init_logging() {
    // No timestamps, as the service: the container runtime records one per line. `init`
    // fails only when a logger is set already, which cannot happen here.
    let level = match std::env::var("NUDGER_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("warn") => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Warn)
        .with_module_level("hello-path-nudger", level)
        .with_module_level("tiny_http", log::LevelFilter::Off)
        .init();
}

/// A panic in any thread ends the process with status 1 and one line: an informer thread
/// that died would otherwise leave a live process that nudges nothing.
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let what = info.to_string().replace('\n', " ");
        eprintln!("hello-path-nudger: error: internal failure, exiting: {what}");
        std::process::exit(1);
    }));
}
