//! The command line, the article's log story and exit codes.

use std::time::Duration;

use crate::util::*;

const BANNER: [&str; 4] = [
    "------------------------------------------------------------",
    "hello-path-rs - a simple web service returning the URL path.",
    "------------------------------------------------------------",
    "Web service initialization...",
];

fn run(args: &[&str], env: &[(&str, &str)]) -> (Proc, i32) {
    let mut p = Proc::spawn(args, env);
    let (status, _) = p.wait_exit(WAIT);
    let code = status
        .code()
        .unwrap_or_else(|| p.fail("killed by a signal"));
    (p, code)
}

/// Usage errors: exit 2, one line naming the culprit, at most one more pointing at --help.
fn usage_error(args: &[&str], expect: &str) {
    let (p, code) = run(args, &[]);
    let err = p.stderr();
    if code != 2 || err.is_empty() || err.len() > 2 || !err[0].contains(expect) {
        p.fail(&format!(
            "expected exit 2 and one line containing {expect:?}, got exit {code}"
        ));
    }
    assert!(err[0].starts_with("hello-path-rs: error: "), "{err:?}");
    if err.len() == 2 {
        assert!(err[1].contains("--help"), "{err:?}");
    }
    assert!(
        p.stdout().is_empty(),
        "a usage error printed to stdout: {:?}",
        p.stdout()
    );
}

#[test]
fn no_secret_is_the_articles_fatal_story() {
    let (p, code) = run(&[], &[]);
    assert_eq!(code, 1);
    let m = p.messages();
    let expected: Vec<&str> = BANNER
        .iter()
        .copied()
        .chain([
            "Note: mysecret value is **** while expected value is ****.",
            "FATAL: connection to remote service failed. Check mysecret parameter.",
        ])
        .collect();
    if m != expected {
        p.fail(&format!("log lines differ from the article's:\n{m:#?}"));
    }
    assert!(
        p.stdout()
            .iter()
            .all(|l| !l.contains("1234") && !l.contains("4321")),
        "a secret leaked"
    );
}

#[test]
fn expose_secret_prints_the_values_as_the_article_does() {
    let (p, code) = run(&["--expose-secret"], &[]);
    assert_eq!(code, 1);
    assert!(p
        .messages()
        .contains(&"Note: mysecret value is 1234 while expected value is 4321.".to_string()));
}

#[test]
fn an_expected_list_is_masked_the_same_way() {
    let (p, code) = run(
        &["--mysecret", "1111", "--expected-secret", "4321,5678"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(p
        .messages()
        .contains(&"Note: mysecret value is **** while expected value is ****.".to_string()));
    assert!(p
        .stdout()
        .iter()
        .all(|l| !l.contains("1111") && !l.contains("5678")));
}

#[test]
fn the_right_secret_serves_in_both_option_styles() {
    for args in [
        &["-mysecret", "4321"][..],
        &["--mysecret=4321"],
        &["-mysecret=4321", "-reload=true"],
    ] {
        let (p, addr) = Proc::serve(args, &[]);
        let m = p.messages();
        let i = m
            .iter()
            .position(|l| l == "Connection to remote service: ok.")
            .unwrap_or_else(|| p.fail("no ok line"));
        assert_eq!(&m[..4], &BANNER[..], "{args:?}");
        assert_eq!(m[i + 1], format!("Web service accessible at {addr}"));
        assert_eq!(get(addr, "/test").status, 200);
        assert!(
            p.count_log("visible in ps") == 1,
            "the command-line warning is missing: {m:?}"
        );
    }
}

#[test]
fn mysecret_comes_from_the_environment() {
    let (p, addr) = Proc::serve(&[], &[("MYSECRET", "4321")]);
    assert_eq!(get(addr, "/test").status, 200);
    assert_eq!(p.count_log("visible in ps"), 0);
    drop(p);
    let (p, code) = run(&[], &[("MYSECRET", "9999")]);
    assert_eq!(code, 1, "{:?}", p.stdout());
}

#[test]
fn mysecret_file_is_read_and_trimmed() {
    let v = SecretVolume::new("mysecret", "4321\r\n");
    let (_p, addr) = Proc::serve(&["--mysecret-file", &v.path()], &[]);
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is **** (generation 1)"
    );
    let (_p, addr) = Proc::serve(&["--mysecret-file", &v.path(), "--expose-secret"], &[]);
    assert_eq!(
        get(addr, "/mysecret").body,
        "my little secret is 4321 (generation 1)"
    );
}

#[test]
fn usage_errors_exit_2_naming_the_culprit() {
    usage_error(&["--bogus"], "unknown option --bogus");
    usage_error(&["-bogus"], "unknown option --bogus");
    usage_error(&["--mysecret"], "--mysecret needs a value");
    usage_error(&["--retry-interval", "soon"], "'soon' for --retry-interval");
    usage_error(&["--watch-interval=0"], "--watch-interval");
    usage_error(&["--shutdown-delay", "-1s"], "--shutdown-delay");
    usage_error(&["--listen-addr", "nowhere"], "'nowhere' for --listen-addr");
    usage_error(&["--listen-addr", "127.0.0.1:99999"], "--listen-addr");
    usage_error(
        &["--mysecret", "4321", "--mysecret-file", "/x"],
        "--mysecret and --mysecret-file",
    );
    usage_error(&["--reload", "true"], "unexpected argument 'true'");
    usage_error(&["--reload=yes"], "--reload");
    usage_error(&["--expected-secret", ""], "--expected-secret");
}

#[test]
fn help_and_version_exit_0() {
    let (p, code) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    let out = p.stdout().join("\n");
    for flag in [
        "--listen-addr",
        "--mysecret",
        "--mysecret-file",
        "--reload",
        "--retry-interval",
        "--watch-interval",
        "--shutdown-delay",
        "--log-requests",
        "--idle-timeout",
        "--header-timeout",
        "--expose-secret",
        "--expected-secret",
        "MYSECRET",
        "probe",
    ] {
        assert!(out.contains(flag), "--help does not mention {flag}");
    }
    let (p, code) = run(&["-V"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        p.stdout(),
        vec![format!("hello-path-rs {}", env!("CARGO_PKG_VERSION"))]
    );
}

#[test]
fn an_unreadable_secret_file_fails_fast_naming_it() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nope").to_string_lossy().into_owned();
    let (p, code) = run(&["--mysecret-file", &path], &[]);
    assert_eq!(code, 1);
    runtime_error(
        &p,
        &format!("cannot read {path}: no such file or directory"),
    );
}

/// Runtime errors: exactly one line on stderr, `hello-path-rs: error: ...`, nothing else.
fn runtime_error(p: &Proc, what: &str) {
    let expected = vec![format!("hello-path-rs: error: {what}")];
    if p.stderr() != expected {
        p.fail(&format!("expected exactly {expected:?} on stderr"));
    }
    assert_eq!(p.count_log(what), 0, "the error is also in the log");
}

#[test]
fn an_oversize_secret_file_is_an_error_not_a_credential() {
    let dir = TempDir::new("big");
    let path = dir.0.join("big");
    let mut content = "4321".to_string();
    content.push_str(&" ".repeat(4093)); // 4097 bytes before trimming
    std::fs::write(&path, content).unwrap();
    let path = path.to_string_lossy().into_owned();
    let (p, code) = run(&["--mysecret-file", &path], &[]);
    assert_eq!(code, 1);
    runtime_error(&p, &format!("cannot use {path}: larger than 4096 bytes"));
}

#[test]
fn a_port_in_use_exits_1_naming_the_address() {
    let (_first, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let (p, code) = run(
        &["--mysecret", "4321", "--listen-addr", &addr.to_string()],
        &[],
    );
    assert_eq!(code, 1);
    runtime_error(
        &p,
        &format!("cannot listen on {addr}: address already in use"),
    );
}

#[test]
fn request_logging_can_be_turned_off() {
    let (p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    get(addr, "/logged?token=abc");
    eventually("the request line", || p.count_log("GET /logged") == 1);
    assert_eq!(p.count_log("abc"), 0, "the query string was logged");
    let (p, addr) = Proc::serve(&["--mysecret", "4321", "--log-requests=false"], &[]);
    get(addr, "/quiet");
    get(addr, "/healthz"); // the loop answered both: the first one was not logged
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(p.count_log("GET /quiet"), 0);
}

/// A request cannot forge log lines: a decoded `%0A` is written back as `%0A` in the log
/// (the answer still carries the decoded path, as Go's `r.URL.Path` does).
#[test]
fn a_request_cannot_forge_log_lines() {
    let (mut p, addr) = Proc::serve(&["--mysecret", "4321"], &[]);
    let a = get(addr, "/x%0AFATAL:%20forged");
    assert_eq!(a.body, "hello from /x\nFATAL: forged\n");
    p.wait_log("GET /x%0AFATAL: forged");
    assert!(
        !p.stdout().iter().any(|l| l.starts_with("FATAL: forged")),
        "{:?}",
        p.stdout()
    );
}
