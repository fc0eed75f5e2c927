//! Go's `flag` style of options on top of pico-args, for both binaries (hello-path-nudger
//! includes this file with `#[path]`): one or two dashes, values after a space or `=`,
//! booleans bare or with `=BOOL`, never with a separate value; and Go's address forms.

use std::net::{SocketAddr, ToSocketAddrs};

/// Boolean options as (name, value), and the arguments left for pico-args.
pub(crate) type SplitOptions = (Vec<(String, bool)>, Vec<String>);

/// Normalizes Go-style options (`-name` → `--name`) and takes the boolean options out,
/// leaving value options for pico-args. A value following a value option is never touched.
/// The error is the message of a usage error.
pub(crate) fn split_options(
    args: Vec<String>,
    value_opts: &[&str],
    bool_opts: &[&str],
) -> Result<SplitOptions, String> {
    let mut bools = Vec::new();
    let mut rest = Vec::new();
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            rest.push(arg);
            rest.extend(iter.by_ref());
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            rest.push(arg);
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if bool_opts.contains(&name) {
            let v = match inline {
                None => true,
                Some(v) => parse_bool(v).ok_or_else(|| {
                    format!("invalid value '{v}' for --{name}: expected true or false")
                })?,
            };
            bools.push((name.to_string(), v));
        } else if value_opts.contains(&name) {
            match inline {
                Some(v) => rest.push(format!("--{name}={v}")),
                None => {
                    rest.push(format!("--{name}"));
                    if let Some(v) = iter.next() {
                        rest.push(v);
                    }
                }
            }
        } else if matches!(name, "h" | "help" | "V" | "version") && inline.is_none() {
            rest.push(if name.len() == 1 {
                format!("-{name}")
            } else {
                format!("--{name}")
            });
        } else if name.is_empty() {
            rest.push(arg); // a lone "-": let the leftover check name it
        } else {
            return Err(format!("unknown option --{name}"));
        }
    }
    Ok((bools, rest))
}

/// Parses a boolean the way Go's `strconv.ParseBool` does.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A listen address as Go's net package takes it: `HOST:PORT`, `:PORT` (every interface),
/// a host name that resolves.
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // Go accepts ":8080" (all interfaces) and host names.
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    if let Ok(a) = full.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !full.contains(':') {
        return Err("expected HOST:PORT, e.g. 0.0.0.0:8080".into());
    }
    match full.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| "the host name resolves to no address".into()),
        Err(e) => Err(format!("expected HOST:PORT, e.g. 0.0.0.0:8080 ({e})")),
    }
}
