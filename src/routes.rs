//! Pure routing: a request's method and target, plus what the server knows, → a reply.
//! No I/O here: a reload or the metrics are handed back to the server to perform.

use crate::config::{Exposure, Mode};

/// Content type of every plain-text body.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// The methods every path serves (`/-/reload`: POST alone). As the Go original, which
/// answers any method, POST gets the page too; the other methods of RFC 9110 (and PATCH)
/// get 405 with this list, a method unknown here 501 (RFC 9110 §9.1, §15.6.2), and a
/// CONNECT never gets here: tiny_http refuses it (405 and the end of the connection, no
/// tunnel).
pub(crate) const ALLOW: &str = "GET, HEAD, POST";

/// The standard methods that are not served (RFC 9110 §9.3, RFC 5789).
const NOT_ALLOWED: [&str; 6] = ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

/// A finished answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
    /// `Allow` header value, for 405 answers.
    pub(crate) allow: Option<&'static str>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            allow: None,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Answer with this.
    Reply(Reply),
    /// `POST /-/reload` with `--reload`: re-read now, then answer with `reload_reply`.
    Reload,
    /// `/metrics`: render the current numbers.
    Metrics,
}

/// What routing needs to know of the server's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) ready: bool,
    pub(crate) generation: u64,
    pub(crate) secret: &'a str,
    pub(crate) exposure: Exposure,
    pub(crate) mode: Mode,
}

/// Routes one request. `method` is the HTTP method as sent, `target` the request target.
pub(crate) fn route(method: &str, target: &str, view: &View<'_>) -> Route {
    let path = request_path(target);
    let served = matches!(method, "GET" | "HEAD" | "POST");
    if !served && !NOT_ALLOWED.contains(&method) {
        return Route::Reply(Reply::text(
            501,
            format!("method {method} not implemented\n"),
        ));
    }
    if path == "/-/reload" {
        return match (method, view.mode) {
            ("POST", Mode::Reload) => Route::Reload,
            ("POST", Mode::FailFast) => Route::Reply(Reply::text(
                403,
                "reload is disabled: start with --reload to re-read the credential at run time\n",
            )),
            _ => Route::Reply(Reply {
                allow: Some("POST"),
                ..Reply::text(405, "method not allowed: use POST\n")
            }),
        };
    }
    if !served {
        return Route::Reply(Reply {
            allow: Some(ALLOW),
            ..Reply::text(405, "method not allowed: use GET, HEAD or POST\n")
        });
    }
    Route::Reply(match path.as_str() {
        "/" => Reply::text(200, "try to add /test as path\n"),
        "/healthz" => Reply::text(200, "ok"),
        "/readyz" if view.ready => Reply::text(200, "ok"),
        "/readyz" => Reply::text(503, "shutting down"),
        "/metrics" => return Route::Metrics,
        "/mysecret" => {
            let shown = match view.exposure {
                Exposure::Exposed => view.secret,
                Exposure::Masked => "****",
            };
            Reply::text(
                200,
                format!(
                    "my little secret is {shown} (generation {})",
                    view.generation
                ),
            )
        }
        _ => Reply::text(200, format!("hello from {path}\n")),
    })
}

/// Whether the answer for `target` must not be stored by a cache (SPEC §4: the answers that
/// change); the static `/` and `/path` answers may be.
pub(crate) fn no_store(target: &str) -> bool {
    matches!(
        request_path(target).as_str(),
        "/metrics" | "/healthz" | "/readyz" | "/mysecret" | "/-/reload"
    )
}

/// The answer to `POST /-/reload` (and the log of SIGHUP) for a finished check.
pub(crate) fn reload_reply(result: &Result<u64, String>) -> Reply {
    match result {
        Ok(generation) => Reply::text(
            200,
            format!("ok: credential of generation {generation} in use\n"),
        ),
        Err(reason) => Reply::text(
            500,
            format!("reload rejected: {reason}; the last good credential stays in use\n"),
        ),
    }
}

/// The path of a request target: query string dropped, absolute form reduced to its path,
/// percent-escapes decoded (as Go's `r.URL.Path`).
pub(crate) fn request_path(target: &str) -> String {
    let mut t = target.split(['?', '#']).next().unwrap_or("");
    if let Some(rest) = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
    {
        t = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    if t.is_empty() {
        t = "/";
    }
    percent_decode(t)
}

/// `request_path` as it goes into the request log line: control characters (a decoded
/// `%0A` included) are written back as `%XX`, so that a request cannot forge log lines.
pub(crate) fn loggable_path(target: &str) -> String {
    let path = request_path(target);
    if !path.chars().any(char::is_control) {
        return path;
    }
    let mut out = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        if c.is_control() {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(mode: Mode) -> View<'static> {
        View {
            ready: true,
            generation: 2,
            secret: "4321",
            exposure: Exposure::Masked,
            mode,
        }
    }

    fn reply(method: &str, target: &str, v: &View<'_>) -> Reply {
        match route(method, target, v) {
            Route::Reply(r) => r,
            other => panic!("{method} {target}: {other:?}"),
        }
    }

    #[test]
    fn the_articles_routes() {
        let v = view(Mode::FailFast);
        assert_eq!(
            reply("GET", "/", &v),
            Reply::text(200, "try to add /test as path\n")
        );
        assert_eq!(
            reply("GET", "/test", &v),
            Reply::text(200, "hello from /test\n")
        );
        assert_eq!(
            reply("GET", "/a/b?secret=1#x", &v),
            Reply::text(200, "hello from /a/b\n")
        );
        assert_eq!(
            reply("GET", "/a%20b", &v),
            Reply::text(200, "hello from /a b\n")
        );
        assert_eq!(
            reply("GET", "http://host:80/x?y", &v),
            Reply::text(200, "hello from /x\n")
        );
        assert_eq!(
            reply("HEAD", "/test", &v),
            Reply::text(200, "hello from /test\n")
        );
    }

    #[test]
    fn probes() {
        let mut v = view(Mode::FailFast);
        assert_eq!(reply("GET", "/healthz", &v), Reply::text(200, "ok"));
        assert_eq!(reply("GET", "/readyz", &v), Reply::text(200, "ok"));
        v.ready = false;
        assert_eq!(reply("GET", "/readyz", &v).status, 503);
        assert_eq!(reply("GET", "/healthz", &v).status, 200);
        assert_eq!(route("GET", "/metrics", &v), Route::Metrics);
    }

    #[test]
    fn the_secret_is_masked_unless_exposed() {
        let mut v = view(Mode::FailFast);
        assert_eq!(
            reply("GET", "/mysecret", &v).body,
            "my little secret is **** (generation 2)"
        );
        v.exposure = Exposure::Exposed;
        assert_eq!(
            reply("GET", "/mysecret", &v).body,
            "my little secret is 4321 (generation 2)"
        );
    }

    #[test]
    fn reload_endpoint() {
        assert_eq!(
            route("POST", "/-/reload", &view(Mode::Reload)),
            Route::Reload
        );
        assert_eq!(
            reply("POST", "/-/reload", &view(Mode::FailFast)).status,
            403
        );
        let r = reply("GET", "/-/reload", &view(Mode::Reload));
        assert_eq!((r.status, r.allow), (405, Some("POST")));
        assert_eq!(reload_reply(&Ok(3)).status, 200);
        let bad = reload_reply(&Err("the remote service refused the new credential".into()));
        assert_eq!(bad.status, 500);
        assert!(bad.body.contains("refused"));
    }

    #[test]
    fn methods() {
        let v = view(Mode::Reload);
        for method in ["GET", "HEAD", "POST"] {
            assert_eq!(reply(method, "/x", &v).status, 200, "{method}");
        }
        for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"] {
            let r = reply(method, "/x", &v);
            assert_eq!((r.status, r.allow), (405, Some(ALLOW)), "{method}");
            let r = reply(method, "/-/reload", &v);
            assert_eq!(
                (r.status, r.allow),
                (405, Some("POST")),
                "{method} /-/reload"
            );
        }
        assert_eq!(reply("OPTIONS", "*", &v).allow, Some(ALLOW));
        // a token that names no method here; methods are case-sensitive (RFC 9110 §9.1)
        for method in ["BREW", "PROPFIND", "get", "X-Y"] {
            for target in ["/x", "/-/reload"] {
                let r = reply(method, target, &v);
                assert_eq!((r.status, r.allow), (501, None), "{method} {target}");
            }
        }
    }

    #[test]
    fn the_answers_that_change_are_not_stored() {
        for target in [
            "/metrics",
            "/healthz",
            "/readyz?x",
            "/mysecret",
            "/-/reload",
            "http://h/metrics",
            "/%6Dysecret",
        ] {
            assert!(no_store(target), "{target}");
        }
        for target in ["/", "/test", "/metrics/x", "/healthz2", "*"] {
            assert!(!no_store(target), "{target}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(request_path(""), "/");
        assert_eq!(request_path("/%zz"), "/%zz");
        assert_eq!(request_path("/%2"), "/%2");
        assert_eq!(request_path("/%41"), "/A");
        assert_eq!(loggable_path("/a%0AFATAL:%20x"), "/a%0AFATAL: x");
        assert_eq!(
            loggable_path("/t%09%0D%1B%7F%C2%85/%41"),
            "/t%09%0D%1B%7F%C2%85/A"
        );
        assert_eq!(loggable_path("/caf%C3%A9"), "/café");
        assert_eq!(request_path("/%ff"), "/%ff");
    }
}
