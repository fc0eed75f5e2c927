//! Command line and environment → plain configuration data (`Config`, `ProbeConfig`).
//!
//! Options follow Go's `flag` package as well as the usual Rust style: one or two dashes,
//! values after a space or `=`, booleans bare or with `=BOOL` (never with a separate value).

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::goflags::{parse_addr, split_options};

/// The help text printed by `--help`.
pub(crate) const HELP: &str = "\
hello-path-rs - a simple web service returning the URL path.

A re-implementation of hello-path-go that waits for a valid credential and reloads a
changed Secret file in place.

USAGE:
  hello-path-rs [OPTIONS]
  hello-path-rs probe URL [URL...] [--for DUR] [--every DUR] [--timeout DUR] [--expect TEXT]

OPTIONS (one or two dashes; values after a space or '='):
  --listen-addr ADDR      where to serve [default: 0.0.0.0:8080]
  --mysecret VALUE        the credential on the command line (visible in ps: avoid)
  --mysecret-file PATH    the credential from a file (a mounted Secret); can change at run time
  --reload[=BOOL]         wait for a valid credential and hot-swap a changed file [default: false]
  --retry-interval DUR    pause between validation attempts while waiting [default: 10s]
  --watch[=BOOL]          follow --mysecret-file with a file watch (inotify on its directory),
                          so a change is in use at once [default: true]
  --watch-interval DUR    safety re-read of --mysecret-file; the only re-read with --watch=false
                          or where the directory cannot be watched [default: 1m]
  --shutdown-delay DUR    after SIGTERM, keep serving with /readyz failing [default: 0s]
  --log-requests[=BOOL]   log one line per request [default: true]
  --idle-timeout DUR      close a connection with no request in progress after this [default: 75s]
  --header-timeout DUR    a request must arrive whole within this of its first byte, else 408
                          [default: 10s]
  --expose-secret[=BOOL]  demo only: log and serve the credential in clear [default: false]
  --expected-secret LIST  credential(s) the mock remote service accepts, comma-separated
                          [default: 4321]
  -h, --help              print this help
  -V, --version           print the version

ENVIRONMENT:
  MYSECRET                the credential, used when neither --mysecret nor --mysecret-file is given

DURATIONS: 250ms, 10s, 1m, 1m30s, or bare seconds.

ROUTES: /  /mysecret  /healthz  /readyz  /metrics  POST /-/reload  /anything-else
SIGNALS: SIGHUP re-reads the credential (with --reload); SIGTERM/SIGINT drain and exit 0.
";

/// The version line printed by `--version`.
pub(crate) const VERSION: &str = concat!("hello-path-rs ", env!("CARGO_PKG_VERSION"));

const DEFAULT_SECRET: &str = "1234";

/// Where the credential comes from, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// `--mysecret-file PATH`: the only source that can change while running.
    File(PathBuf),
    /// `--mysecret VALUE`.
    Flag(String),
    /// The `MYSECRET` environment variable.
    Env(String),
    /// Nothing given: the article's default `1234`.
    Default,
}

/// What the service does with a wrong or changed credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Exit 1 on a wrong credential; never re-read it (the article's default).
    FailFast,
    /// Wait for a valid credential, then follow changes of the file (`--reload`).
    Reload,
}

/// Whether a secret value may appear in logs and responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exposure {
    /// Values are masked as `****`.
    Masked,
    /// `--expose-secret`: values are shown in clear, as the article does.
    Exposed,
}

/// How a running `--reload` server learns that `--mysecret-file` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileWatch {
    /// inotify on the file's directory, plus the safety re-read every `--watch-interval`.
    Inotify,
    /// `--watch=false`: only the re-read every `--watch-interval` (and SIGHUP, `/-/reload`).
    Poll,
}

/// Configuration of the web service, fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) listen_addr: SocketAddr,
    pub(crate) source: SecretSource,
    pub(crate) mode: Mode,
    pub(crate) retry_interval: Duration,
    pub(crate) watch: FileWatch,
    pub(crate) watch_interval: Duration,
    pub(crate) shutdown_delay: Duration,
    pub(crate) log_requests: bool,
    pub(crate) exposure: Exposure,
    pub(crate) expected: Vec<String>,
    /// `--idle-timeout`: a connection with no request in progress is closed after this.
    pub(crate) idle_timeout: Duration,
    /// `--header-timeout`: a request's head and body must arrive within this of its first
    /// byte.
    pub(crate) header_timeout: Duration,
}

/// Configuration of the `probe` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeConfig {
    /// The URLs, asked in turn (one request every `every`).
    pub(crate) urls: Vec<String>,
    pub(crate) duration: Duration,
    pub(crate) every: Duration,
    pub(crate) timeout: Duration,
    pub(crate) expect: Option<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    Serve(Config),
    Probe(ProbeConfig),
    Help,
    Version,
}

/// A usage error: exit code 2, one line naming the culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

const VALUE_OPTIONS: &[&str] = &[
    "listen-addr",
    "mysecret",
    "mysecret-file",
    "retry-interval",
    "watch-interval",
    "shutdown-delay",
    "expected-secret",
    "idle-timeout",
    "header-timeout",
];
/// Options whose values are never repeated in an error message.
const SECRET_OPTIONS: &[&str] = &["--mysecret", "--expected-secret"];
const BOOL_OPTIONS: &[&str] = &["reload", "watch", "log-requests", "expose-secret"];
const PROBE_VALUE_OPTIONS: &[&str] = &["for", "every", "timeout", "expect"];

/// Parses the arguments (without the program name) and the value of `MYSECRET`.
pub(crate) fn parse(
    args: Vec<OsString>,
    env_secret: Option<String>,
) -> Result<Command, UsageError> {
    let mut args = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|_| usage("an argument is not valid UTF-8"))
        })
        .collect::<Result<Vec<String>, _>>()?;
    if args.first().map(String::as_str) == Some("probe") {
        args.remove(0);
        return parse_probe(args).map(Command::Probe);
    }
    let (bools, rest) = split_options(args, VALUE_OPTIONS, BOOL_OPTIONS).map_err(usage)?;
    let mut p = pico_args::Arguments::from_vec(rest.into_iter().map(OsString::from).collect());
    if p.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if p.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let listen_addr = value(&mut p, "--listen-addr", parse_addr)?
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080)));
    let flag_secret = value(&mut p, "--mysecret", |s| Ok(s.to_string()))?;
    let file = value(&mut p, "--mysecret-file", parse_path)?;
    let retry_interval = value(&mut p, "--retry-interval", parse_positive_duration)?
        .unwrap_or(Duration::from_secs(10));
    let watch_interval = value(&mut p, "--watch-interval", parse_positive_duration)?
        .unwrap_or(Duration::from_secs(60));
    let shutdown_delay =
        value(&mut p, "--shutdown-delay", parse_duration)?.unwrap_or(Duration::ZERO);
    let expected =
        value(&mut p, "--expected-secret", parse_list)?.unwrap_or_else(|| vec!["4321".to_string()]);
    let idle_timeout = value(&mut p, "--idle-timeout", parse_positive_duration)?
        .unwrap_or(Duration::from_secs(75));
    let header_timeout = value(&mut p, "--header-timeout", parse_positive_duration)?
        .unwrap_or(Duration::from_secs(10));
    reject_leftovers(p)?;

    let source = match (file, flag_secret, env_secret) {
        (Some(_), Some(_), _) => {
            return Err(usage(
                "--mysecret and --mysecret-file cannot be used together: choose one source",
            ))
        }
        (Some(path), None, _) => SecretSource::File(path),
        (None, Some(v), _) => SecretSource::Flag(v),
        (None, None, Some(v)) => SecretSource::Env(v),
        (None, None, None) => SecretSource::Default,
    };
    let flag = |name: &str, default: bool| {
        bools
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(default, |(_, v)| *v)
    };
    Ok(Command::Serve(Config {
        listen_addr,
        source,
        mode: if flag("reload", false) {
            Mode::Reload
        } else {
            Mode::FailFast
        },
        retry_interval,
        watch: if flag("watch", true) {
            FileWatch::Inotify
        } else {
            FileWatch::Poll
        },
        watch_interval,
        shutdown_delay,
        log_requests: flag("log-requests", true),
        exposure: if flag("expose-secret", false) {
            Exposure::Exposed
        } else {
            Exposure::Masked
        },
        expected,
        idle_timeout,
        header_timeout,
    }))
}

/// The built-in default credential, as in the article.
pub(crate) fn default_secret() -> &'static str {
    DEFAULT_SECRET
}

fn parse_probe(args: Vec<String>) -> Result<ProbeConfig, UsageError> {
    let (_, rest) = split_options(args, PROBE_VALUE_OPTIONS, &[]).map_err(usage)?;
    let mut p = pico_args::Arguments::from_vec(rest.into_iter().map(OsString::from).collect());
    let duration =
        value(&mut p, "--for", parse_positive_duration)?.unwrap_or(Duration::from_secs(10));
    let every =
        value(&mut p, "--every", parse_positive_duration)?.unwrap_or(Duration::from_millis(100));
    let timeout =
        value(&mut p, "--timeout", parse_positive_duration)?.unwrap_or(Duration::from_secs(1));
    let expect = value(&mut p, "--expect", |s| Ok(s.to_string()))?;
    let mut urls = Vec::new();
    for a in p.finish() {
        let a = a.to_string_lossy().into_owned();
        if a.starts_with('-') && a.len() > 1 {
            return Err(usage(format!("unknown option {a}")));
        }
        if !a.starts_with("http://") {
            return Err(usage(format!(
                "invalid probe URL '{a}': only http:// URLs are supported"
            )));
        }
        urls.push(a);
    }
    if urls.is_empty() {
        return Err(usage(
            "probe needs a URL, e.g. probe http://127.0.0.1:8080/test",
        ));
    }
    Ok(ProbeConfig {
        urls,
        duration,
        every,
        timeout,
        expect,
    })
}

fn value<T>(
    p: &mut pico_args::Arguments,
    name: &'static str,
    f: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, UsageError> {
    let mut last = None;
    loop {
        match p.opt_value_from_fn(name, f) {
            Ok(Some(v)) => last = Some(v),
            Ok(None) => return Ok(last),
            Err(pico_args::Error::OptionWithoutAValue(_)) => {
                return Err(usage(format!("option {name} needs a value")))
            }
            Err(pico_args::Error::Utf8ArgumentParsingFailed { value, cause }) => {
                // Never echo what may be a credential.
                return Err(usage(if SECRET_OPTIONS.contains(&name) {
                    format!("invalid value for {name}: {cause}")
                } else {
                    format!("invalid value '{value}' for {name}: {cause}")
                }));
            }
            Err(e) => return Err(usage(format!("{name}: {e}"))),
        }
    }
}

fn reject_leftovers(p: pico_args::Arguments) -> Result<(), UsageError> {
    let rest = p.finish();
    match rest.first() {
        None => Ok(()),
        Some(a) => {
            let a = a.to_string_lossy();
            if a.starts_with('-') && a.len() > 1 {
                Err(usage(format!("unknown option {a}")))
            } else {
                Err(usage(format!(
                    "unexpected argument '{a}' (boolean options take =true or =false, e.g. --reload=true)"
                )))
            }
        }
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(s))
}

fn parse_list(s: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = s.split(',').map(|v| v.trim().to_string()).collect();
    if items.iter().any(String::is_empty) {
        return Err("expected a comma-separated list of non-empty values".into());
    }
    Ok(items)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Parses `250ms`, `10s`, `1m`, `1m30s`, `1.5s`, `2h` or bare seconds (`5`, `0.25`).
/// Integer arithmetic only: float parsing and printing would cost the binary ~20 kB.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration such as 250ms, 10s, 1m or 5";
    const MAX_NANOS: u128 = 1_000_000_000 * 1_000_000_000; // a billion seconds
    let s = s.trim();
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    if s.is_empty() {
        return Err(HINT.into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !is_number(c)).unwrap_or(rest.len());
        let unit_len = rest[num_len..]
            .find(is_number)
            .unwrap_or(rest.len() - num_len);
        let (num, unit) = (&rest[..num_len], &rest[num_len..num_len + unit_len]);
        let scale: u128 = match unit {
            "" if num_len == s.len() => 1_000_000_000, // bare seconds
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(HINT.into()),
        };
        total += decimal(num, scale).ok_or(HINT)?;
        if total > MAX_NANOS {
            return Err(HINT.into());
        }
        rest = &rest[num_len + unit_len..];
    }
    u64::try_from(total)
        .map(Duration::from_nanos)
        .map_err(|_| HINT.to_string())
}

/// `num` (digits, at most one '.') times `scale`, truncated to an integer.
fn decimal(num: &str, scale: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || int.len() > 15 {
        return None;
    }
    let mut value = if int.is_empty() {
        0
    } else {
        int.parse::<u128>().ok()? * scale
    };
    let mut unit = scale;
    for c in frac.chars().take(12) {
        unit /= 10;
        value += u128::from(c.to_digit(10)?) * unit;
    }
    Some(value)
}

/// Formats a duration in seconds the way log lines say it ("10", "0.25", "1.5").
pub(crate) fn format_secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Config {
        serve_env(args, None)
    }

    fn serve_env(args: &[&str], env: Option<&str>) -> Config {
        match parse(
            args.iter().map(OsString::from).collect(),
            env.map(String::from),
        ) {
            Ok(Command::Serve(c)) => c,
            other => panic!("{args:?}: expected a serve config, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().map(OsString::from).collect(), None) {
            Err(e) => e.0,
            Ok(other) => panic!("{args:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_article() {
        let c = serve(&[]);
        assert_eq!(c.listen_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.source, SecretSource::Default);
        assert_eq!(c.mode, Mode::FailFast);
        assert_eq!(c.retry_interval, Duration::from_secs(10));
        assert_eq!(c.watch, FileWatch::Inotify);
        assert_eq!(c.watch_interval, Duration::from_secs(60));
        assert_eq!(c.shutdown_delay, Duration::ZERO);
        assert!(c.log_requests);
        assert_eq!(c.exposure, Exposure::Masked);
        assert_eq!(c.expected, vec!["4321"]);
        assert_eq!(c.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn connection_timeouts() {
        let c = serve(&["--idle-timeout", "300ms", "-header-timeout=2s"]);
        assert_eq!(c.idle_timeout, Duration::from_millis(300));
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(
            serve(&["--idle-timeout=1m30s"]).idle_timeout,
            Duration::from_secs(90)
        );
        assert!(err(&["--idle-timeout", "0"]).contains("greater than zero"));
        assert!(err(&["--header-timeout", "soon"])
            .starts_with("invalid value 'soon' for --header-timeout"));
        assert_eq!(
            err(&["--header-timeout"]),
            "option --header-timeout needs a value"
        );
    }

    #[test]
    fn go_and_rust_styles_both_work() {
        for args in [
            &["-mysecret", "4321"][..],
            &["--mysecret", "4321"],
            &["-mysecret=4321"],
            &["--mysecret=4321"],
        ] {
            assert_eq!(
                serve(args).source,
                SecretSource::Flag("4321".into()),
                "{args:?}"
            );
        }
        assert_eq!(serve(&["--reload=true"]).mode, Mode::Reload);
        assert_eq!(serve(&["-reload"]).mode, Mode::Reload);
        assert_eq!(serve(&["--reload", "--reload=false"]).mode, Mode::FailFast);
        assert!(!serve(&["-log-requests=0"]).log_requests);
        assert_eq!(serve(&["--expose-secret=T"]).exposure, Exposure::Exposed);
        assert_eq!(serve(&["--watch=false"]).watch, FileWatch::Poll);
        assert_eq!(serve(&["-watch"]).watch, FileWatch::Inotify);
    }

    #[test]
    fn a_value_that_looks_like_an_option_is_a_value() {
        assert_eq!(
            serve(&["--mysecret", "-reload"]).source,
            SecretSource::Flag("-reload".into())
        );
        assert_eq!(serve(&["--mysecret", "-reload"]).mode, Mode::FailFast);
    }

    #[test]
    fn sources_and_precedence() {
        assert_eq!(
            serve_env(&[], Some("4321")).source,
            SecretSource::Env("4321".into())
        );
        assert_eq!(
            serve_env(&["--mysecret", "1"], Some("2")).source,
            SecretSource::Flag("1".into())
        );
        assert_eq!(
            serve_env(&["--mysecret-file", "/s"], Some("2")).source,
            SecretSource::File("/s".into())
        );
        assert!(
            err(&["--mysecret", "1", "--mysecret-file", "/s"]).contains("cannot be used together")
        );
    }

    #[test]
    fn bad_input_names_the_culprit() {
        assert_eq!(err(&["--bogus"]), "unknown option --bogus");
        assert_eq!(err(&["-bogus=1"]), "unknown option --bogus");
        assert_eq!(err(&["--mysecret"]), "option --mysecret needs a value");
        assert!(err(&["--retry-interval", "soon"])
            .starts_with("invalid value 'soon' for --retry-interval"));
        assert!(err(&["--watch-interval", "0s"]).contains("greater than zero"));
        assert!(err(&["--listen-addr", "nowhere"])
            .starts_with("invalid value 'nowhere' for --listen-addr"));
        assert!(err(&["--reload", "true"]).starts_with("unexpected argument 'true'"));
        assert!(err(&["--reload=maybe"]).contains("--reload"));
        let e = err(&["--expected-secret", "4321,,5678"]);
        assert!(
            e.contains("--expected-secret") && !e.contains("4321"),
            "{e}"
        );
    }

    #[test]
    fn help_and_version() {
        let p = |a: &[&str]| parse(a.iter().map(OsString::from).collect(), None);
        assert!(matches!(p(&["-h"]), Ok(Command::Help)));
        assert!(matches!(p(&["-help"]), Ok(Command::Help)));
        assert!(matches!(p(&["--version"]), Ok(Command::Version)));
        assert!(matches!(p(&["-V"]), Ok(Command::Version)));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            serve(&["--listen-addr", ":9090"]).listen_addr,
            "0.0.0.0:9090".parse().unwrap()
        );
        assert_eq!(
            serve(&["--listen-addr=127.0.0.1:0"]).listen_addr,
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            serve(&["--listen-addr", "[::1]:80"]).listen_addr,
            "[::1]:80".parse().unwrap()
        );
    }

    #[test]
    fn lists() {
        assert_eq!(
            serve(&["--expected-secret", "4321, 5678"]).expected,
            vec!["4321", "5678"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "", "-1s", "10x", "s", "ms10", "1e400", "nan", "1..2s", ".", "1 s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seconds_format() {
        assert_eq!(format_secs(Duration::from_secs(10)), "10");
        assert_eq!(format_secs(Duration::from_millis(250)), "0.25");
        assert_eq!(format_secs(Duration::from_millis(1500)), "1.5");
    }

    #[test]
    fn probe_options() {
        let p = |a: &[&str]| parse(a.iter().map(OsString::from).collect(), None);
        match p(&[
            "probe",
            "http://10.0.0.1/test",
            "--for",
            "60s",
            "-every=50ms",
            "--expect",
            "hello",
        ]) {
            Ok(Command::Probe(c)) => {
                assert_eq!(c.urls, ["http://10.0.0.1/test"]);
                assert_eq!(c.duration, Duration::from_secs(60));
                assert_eq!(c.every, Duration::from_millis(50));
                assert_eq!(c.timeout, Duration::from_secs(1));
                assert_eq!(c.expect.as_deref(), Some("hello"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p(&["probe"]), Err(UsageError(m)) if m.contains("needs a URL")));
        assert!(
            matches!(p(&["probe", "https://x/"]), Err(UsageError(m)) if m.contains("only http://"))
        );
        assert!(
            matches!(p(&["probe", "http://x/", "--bogus"]), Err(UsageError(m)) if m == "unknown option --bogus")
        );
        match p(&["probe", "http://10.0.0.1:8080/", "http://10.0.0.2:8080/"]) {
            Ok(Command::Probe(c)) => assert_eq!(c.urls.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(p(&["probe", "http://x/", "x/"]), Err(UsageError(m)) if m.contains("only http://"))
        );
    }
}
