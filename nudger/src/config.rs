//! Command line → plain configuration data (`Config`).
//!
//! The same style as the service: one or two dashes, values after a space or `=`, booleans
//! bare or with `=BOOL` (never with a separate value).

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::goflags::{parse_addr, split_options};

/// The help text printed by `--help`.
pub(crate) const HELP: &str = "\
hello-path-nudger - a changed Secret or ConfigMap reaches the running pods at once.

Watches Secrets, ConfigMaps and Pods like an informer. When the data of a Secret or
ConfigMap changes, it annotates every running pod that mounts it as a volume (directly or
through a projected volume) with its resourceVersion, and the kubelet rewrites the pod's
copy at once instead of on its next periodic sync: no new pod, no restart. Pods that read
it through env, envFrom or a subPath mount cannot be helped that way: they are reported
with the cure (a restart of their owner), and restarted with --restart-unreloadable.

USAGE:
  hello-path-nudger [OPTIONS]

OPTIONS (one or two dashes; values after a space or '='):
  --namespace NS                 watch this namespace; repeatable [default: in a pod, its
                                 own; outside, the kubeconfig context's, else default]
  --all-namespaces               watch every namespace (not with --namespace)
  --kubeconfig PATH              kubeconfig file [default: in a pod, its ServiceAccount;
                                 else $KUBECONFIG (its first file), else ~/.kube/config]
  --context NAME                 kubeconfig context [default: current-context]
  --listen-addr ADDR             /metrics, /healthz, /readyz [default: 0.0.0.0:8080]
  --restart-unreloadable[=BOOL]  restart the Deployment, StatefulSet or DaemonSet of pods
                                 that read a changed object through env, envFrom or subPath,
                                 as `kubectl rollout restart` does [default: false]
  --dry-run[=BOOL]               log what would be done; patch nothing [default: false]
  -h, --help                     print this help
  -V, --version                  print the version

ANNOTATIONS:
  secret.nudge.hello-path-rs/NAME, configmap.nudge.hello-path-rs/NAME
                                 set on nudged pods: the object's resourceVersion (a NAME
                                 over 63 characters: its first 52, '-', 10 hex of its sha256)
  nudge.hello-path-rs/ignore: \"true\"
                                 on a pod: never nudge, report or restart it

ENVIRONMENT:
  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT
                                 set in a pod: use its ServiceAccount (token re-read when it
                                 rotates, and the mount's ca.crt) unless --kubeconfig is given
  KUBECONFIG                     kubeconfig files (':'-separated; the first is read)
  NUDGER_SERVICEACCOUNT_DIR      where the ServiceAccount is mounted
                                 [default: /var/run/secrets/kubernetes.io/serviceaccount]
  NUDGER_LOG                     debug (also pods left unchanged or skipped), info or warn
                                 [default: info]

EXIT STATUS: 0 after SIGTERM or SIGINT, 1 runtime failure, 2 usage error.
";

/// The version line printed by `--version`.
pub(crate) const VERSION: &str = concat!("hello-path-nudger ", env!("CARGO_PKG_VERSION"));

/// Which namespaces are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Namespaces {
    /// `--namespace NS`, one or more (in the order given, without repeats).
    These(Vec<String>),
    /// `--all-namespaces`.
    All,
    /// Neither: the pod's own, else the kubeconfig context's, else `default`.
    Default,
}

/// Whether changes are acted on or only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Patch pods (and restart workloads when asked).
    Act,
    /// `--dry-run`: log what would be done.
    DryRun,
}

/// What happens to consumers the nudge cannot help (env, envFrom, subPath).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreloadable {
    /// Log them with the cure (the default).
    Report,
    /// `--restart-unreloadable`: restart their Deployment, StatefulSet or DaemonSet.
    Restart,
}

/// Configuration of the controller, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) namespaces: Namespaces,
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) context: Option<String>,
    pub(crate) listen_addr: SocketAddr,
    pub(crate) unreloadable: Unreloadable,
    pub(crate) mode: Mode,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    Run(Config),
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

const VALUE_OPTIONS: &[&str] = &["namespace", "kubeconfig", "context", "listen-addr"];
const BOOL_OPTIONS: &[&str] = &["all-namespaces", "restart-unreloadable", "dry-run"];

/// Parses the arguments (without the program name).
pub(crate) fn parse(args: Vec<OsString>) -> Result<Command, UsageError> {
    let args = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|_| usage("an argument is not valid UTF-8"))
        })
        .collect::<Result<Vec<String>, _>>()?;
    let (bools, rest) = split_options(args, VALUE_OPTIONS, BOOL_OPTIONS).map_err(usage)?;
    let mut p = pico_args::Arguments::from_vec(rest.into_iter().map(OsString::from).collect());
    if p.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if p.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let mut namespaces = Vec::new();
    for ns in values(&mut p, "--namespace", parse_namespace)? {
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    let kubeconfig = values(&mut p, "--kubeconfig", parse_path)?.pop();
    let context = values(&mut p, "--context", parse_nonempty)?.pop();
    let listen_addr = values(&mut p, "--listen-addr", parse_addr)?
        .pop()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080)));
    reject_leftovers(p)?;
    let flag = |name: &str| {
        bools
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, v)| *v)
    };
    let namespaces = match (flag("all-namespaces"), namespaces.is_empty()) {
        (true, false) => {
            return Err(usage(
                "--all-namespaces and --namespace cannot be used together: choose one",
            ))
        }
        (true, true) => Namespaces::All,
        (false, false) => Namespaces::These(namespaces),
        (false, true) => Namespaces::Default,
    };
    Ok(Command::Run(Config {
        namespaces,
        kubeconfig,
        context,
        listen_addr,
        unreloadable: if flag("restart-unreloadable") {
            Unreloadable::Restart
        } else {
            Unreloadable::Report
        },
        mode: if flag("dry-run") {
            Mode::DryRun
        } else {
            Mode::Act
        },
    }))
}

/// Every value of a repeatable option, in order.
fn values<T>(
    p: &mut pico_args::Arguments,
    name: &'static str,
    f: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, UsageError> {
    let mut all = Vec::new();
    loop {
        match p.opt_value_from_fn(name, f) {
            Ok(Some(v)) => all.push(v),
            Ok(None) => return Ok(all),
            Err(pico_args::Error::OptionWithoutAValue(_)) => {
                return Err(usage(format!("option {name} needs a value")))
            }
            Err(pico_args::Error::Utf8ArgumentParsingFailed { value, cause }) => {
                return Err(usage(format!(
                    "invalid value '{value}' for {name}: {cause}"
                )))
            }
            Err(e) => return Err(usage(format!("{name}: {e}"))),
        }
    }
}

fn reject_leftovers(p: pico_args::Arguments) -> Result<(), UsageError> {
    match p.finish().first() {
        None => Ok(()),
        Some(a) => {
            let a = a.to_string_lossy();
            if a.starts_with('-') && a.len() > 1 {
                Err(usage(format!("unknown option {a}")))
            } else {
                Err(usage(format!(
                    "unexpected argument '{a}' (boolean options take =true or =false, e.g. --dry-run=true)"
                )))
            }
        }
    }
}

/// Whether `s` is a DNS label (a namespace name): at most 63 of a-z, 0-9 and '-', starting
/// and ending with a letter or digit.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn parse_namespace(s: &str) -> Result<String, String> {
    if is_dns_label(s) {
        Ok(s.to_string())
    } else {
        Err("not a namespace name (a DNS label: a-z, 0-9, '-', at most 63)".into())
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        Err("expected a path".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

fn parse_nonempty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("expected a name".into())
    } else {
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().map(OsString::from).collect()) {
            Ok(Command::Run(c)) => Ok(c),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.namespaces, Namespaces::Default);
        assert_eq!(c.listen_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.mode, Mode::Act);
        assert_eq!(c.unreloadable, Unreloadable::Report);
        assert_eq!(c.kubeconfig, None);
        assert_eq!(c.context, None);
    }

    #[test]
    fn repeatable_namespaces_in_order_without_repeats() {
        let c = run(&["--namespace", "shop", "-namespace=web", "--namespace=shop"]).unwrap();
        assert_eq!(
            c.namespaces,
            Namespaces::These(vec!["shop".into(), "web".into()])
        );
    }

    #[test]
    fn booleans_bare_or_with_a_value() {
        let c = run(&[
            "--dry-run",
            "-restart-unreloadable=true",
            "--all-namespaces",
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::DryRun);
        assert_eq!(c.unreloadable, Unreloadable::Restart);
        assert_eq!(c.namespaces, Namespaces::All);
        let c = run(&["--dry-run=false", "--all-namespaces=0"]).unwrap();
        assert_eq!(c.mode, Mode::Act);
        assert_eq!(c.namespaces, Namespaces::Default);
    }

    #[test]
    fn values_after_a_space_or_equals() {
        let c = run(&[
            "--kubeconfig",
            "/tmp/k",
            "--context=dev",
            "-listen-addr",
            ":9090",
        ])
        .unwrap();
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/tmp/k")));
        assert_eq!(c.context.as_deref(), Some("dev"));
        assert_eq!(c.listen_addr, "0.0.0.0:9090".parse().unwrap());
    }

    #[test]
    fn usage_errors_name_the_culprit() {
        for (args, want) in [
            (&["--bogus"][..], "unknown option --bogus"),
            (&["--namespace"][..], "option --namespace needs a value"),
            (
                &["--namespace", "Shop_1"][..],
                "invalid value 'Shop_1' for --namespace",
            ),
            (
                &["--all-namespaces", "--namespace", "a"][..],
                "cannot be used together",
            ),
            (&["--dry-run", "yes"][..], "unexpected argument 'yes'"),
            (&["--dry-run=yes"][..], "invalid value 'yes' for --dry-run"),
            (
                &["--listen-addr", "nowhere"][..],
                "invalid value 'nowhere' for --listen-addr",
            ),
            (&["--context="][..], "option --context needs a value"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_and_version_first() {
        for a in ["-h", "--help", "-help"] {
            assert!(parse(vec![OsString::from("--bogus=1"), OsString::from(a)]).is_err());
            assert!(matches!(parse(vec![OsString::from(a)]), Ok(Command::Help)));
        }
        for a in ["-V", "--version"] {
            assert!(matches!(
                parse(vec![OsString::from(a)]),
                Ok(Command::Version)
            ));
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("shop"));
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
