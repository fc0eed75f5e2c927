//! hello-path-rs patch 9: the request framing of RFC 9112, strictly (a proxy in front that
//! frames a request differently turns any leniency into request smuggling). The request
//! line and the header fields are parsed by `httparse`; this module adds what `httparse`
//! leaves to its caller, each rule with its section in `parse_head` and `Dechunker`. Pure
//! functions over bytes: the reader (`reactor.rs`) calls them on what it has buffered.
//!
//! Line endings: CRLF only. RFC 9112 §2.2 lets a recipient accept a bare LF as a line end;
//! this server refuses it (400), as it does a bare CR: a proxy that keeps a bare LF inside a
//! field value would otherwise see other fields than we do.

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::request::{Persistence, MAX_BODY};

/// Longest request head (request line, headers, their CRLFs), in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header field lines in a request head (or trailer lines after a chunked body).
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;
/// Most bytes a chunked body may take on the wire, framing and trailers included.
pub(crate) const MAX_CHUNKED: usize = 2 * MAX_BODY;

/// 414 when the request line alone is too long, else 431.
pub(crate) fn head_too_large(buf: &[u8]) -> Refusal {
    let line = &buf[..buf.len().min(MAX_HEAD)];
    if line.windows(2).any(|w| w == b"\r\n") {
        Refusal::new(431, "head longer than 64 KiB")
    } else {
        Refusal::new(414, "request line longer than 64 KiB")
    }
}

/// hello-path-rs patch 11: the method and target of the request line at the start of `buf`,
/// when it is one (`token SP target SP HTTP/...` and CRLF, printable ASCII), for the
/// application's log of a refused request.
pub(crate) fn request_line(buf: &[u8]) -> Option<(String, String)> {
    let end = buf[..buf.len().min(MAX_HEAD)]
        .windows(2)
        .position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if parts.next().is_some()
        || !printable(method)
        || !method.bytes().all(is_tchar)
        || !printable(target)
        || !version.starts_with("HTTP/")
    {
        return None;
    }
    Some((method.to_owned(), target.to_owned()))
}

/// What `scan_block` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// the block ends just before this index (its empty line included)
    End(usize),
    /// no end before this index yet
    More(usize),
    /// a bare CR or LF
    Bad,
}

/// Looks for the end of a block of lines (a request head, or trailers) that starts at
/// `start`, from `from` on: an empty line. Every line ends with CRLF; a CR not followed by
/// LF, or an LF not preceded by CR, is `Bad` (RFC 9112 §2.2).
pub(crate) fn scan_block(buf: &[u8], start: usize, from: usize) -> Scan {
    let mut i = from.max(start);
    while i < buf.len() {
        match buf[i] {
            b'\r' => {
                if i + 1 == buf.len() {
                    return Scan::More(i);
                }
                if buf[i + 1] != b'\n' {
                    return Scan::Bad;
                }
                if i == start || (i >= start + 2 && &buf[i - 2..i] == b"\r\n") {
                    return Scan::End(i + 2);
                }
                i += 2;
            }
            b'\n' => return Scan::Bad,
            _ => i += 1,
        }
    }
    Scan::More(i)
}

/// How a request's body is delimited (RFC 9112 §6).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// A request head that passed every check.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) version: HTTPVersion,
    pub(crate) headers: Vec<Header>,
    pub(crate) framing: Framing,
    pub(crate) expects_continue: bool,
    pub(crate) persistence: Persistence,
}

/// Why a request is refused (hello-path-rs patch 11): its status, and a few words for the
/// application's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

impl Refusal {
    pub(crate) const fn new(code: u16, reason: &'static str) -> Refusal {
        Refusal { code, reason }
    }
}

/// A 400.
const fn bad(reason: &'static str) -> Refusal {
    Refusal::new(400, reason)
}

/// Parses and checks a complete head (up to and including its empty line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Head, Refusal> {
    // (left uninitialised: httparse writes the ones it fills, 3 KiB not cleared per request)
    let mut slots = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(431, "more than 100 header fields"))
        }
        Err(httparse::Error::Version) => {
            // RFC 9112 §2.3: a higher minor version of 1 is served as 1.1; another major
            // version gets 505
            return match other_version(head) {
                Some(b'1') => {
                    let mut copy = head.to_vec();
                    let at = copy.iter().position(|&b| b == b'\r').unwrap_or(0);
                    copy[at - 1] = b'1'; // the minor digit, just before the CRLF
                    parse_head(&copy)
                }
                Some(_) => Err(Refusal::new(505, "unsupported HTTP version")),
                None => Err(bad("invalid HTTP version")),
            };
        }
        Err(httparse::Error::HeaderName) => return Err(bad("invalid header field name")),
        Err(httparse::Error::HeaderValue) => return Err(bad("invalid header field value")),
        Err(httparse::Error::NewLine) => return Err(bad("invalid line ending")),
        Err(_) => return Err(bad("invalid request line")),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("invalid request line"));
    };
    let version = HTTPVersion(1, minor);
    let method: Method = method.parse().map_err(|_| bad("invalid method"))?;
    if !valid_target(&method, target) {
        return Err(bad("invalid request target")); // RFC 9112 §3.2: none of the four forms
    }

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut hosts = 0;
    let mut lengths = Vec::new();
    let mut codings: Vec<&str> = Vec::new();
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut expects_continue = false;
    let mut unknown_expectation = false;
    for h in req.headers.iter() {
        // RFC 9110 §5.5: field values are ASCII here (obs-text refused, CTLs by httparse)
        let value = std::str::from_utf8(h.value)
            .ok()
            .filter(|v| v.is_ascii())
            .ok_or(bad("non-ASCII header field value"))?
            .trim_matches(|c| c == ' ' || c == '\t');
        let name = h.name;
        if name.eq_ignore_ascii_case("Host") {
            // RFC 9112 §3.2: exactly one, valid
            hosts += 1;
            if hosts > 1 {
                return Err(bad("Host given twice"));
            }
            if !valid_host(value) {
                return Err(bad("invalid Host"));
            }
        } else if name.eq_ignore_ascii_case("Content-Length") {
            lengths.push(value);
        } else if name.eq_ignore_ascii_case("Transfer-Encoding") {
            transfer_encoding = true;
            codings.extend(list(value));
        } else if name.eq_ignore_ascii_case("Connection") {
            for option in list(value) {
                close |= option.eq_ignore_ascii_case("close");
                keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("Expect") && minor == 1 {
            // RFC 9110 §10.1.1: an HTTP/1.0 request's expectation is ignored; an unknown
            // one is refused (417)
            for expectation in list(value) {
                if expectation.eq_ignore_ascii_case("100-continue") {
                    expects_continue = true;
                } else {
                    unknown_expectation = true;
                }
            }
        }
        headers.push(Header {
            field: HeaderField::from_bytes(name).map_err(|_| bad("invalid header field name"))?,
            value: AsciiString::from_ascii(value)
                .map_err(|_| bad("non-ASCII header field value"))?,
        });
    }
    if hosts == 0 && minor == 1 {
        return Err(bad("no Host in an HTTP/1.1 request")); // RFC 9112 §3.2
    }

    let framing = if transfer_encoding {
        // RFC 9112 §6.1: not in HTTP/1.0, never with Content-Length (§6.3: both is an
        // attempt at smuggling), chunked exactly once and last (§6.3: else the length
        // cannot be determined, 400); a coding we do not implement before it: 501
        let Some((last, before)) = codings.split_last() else {
            return Err(bad("empty Transfer-Encoding"));
        };
        if minor == 0 {
            return Err(bad("Transfer-Encoding in HTTP/1.0"));
        }
        if !lengths.is_empty() {
            return Err(bad("Content-Length with Transfer-Encoding"));
        }
        if !last.eq_ignore_ascii_case("chunked") {
            return Err(bad("Transfer-Encoding not ending in chunked"));
        }
        if before.iter().any(|c| c.eq_ignore_ascii_case("chunked")) {
            return Err(bad("chunked given twice"));
        }
        if !before.is_empty() {
            return Err(Refusal::new(501, "unsupported transfer coding"));
        }
        Framing::Chunked
    } else {
        // RFC 9112 §6.3: one Content-Length field of digits only (a list, even of equal
        // values, and a repeated field are refused: what a proxy makes of them varies)
        match lengths.as_slice() {
            [] => Framing::None,
            [value] => Framing::Length(content_length(value).ok_or(bad("invalid Content-Length"))?),
            _ => return Err(bad("Content-Length given twice")),
        }
    };
    if unknown_expectation {
        return Err(Refusal::new(417, "unsupported expectation"));
    }
    // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"
    let persistence = if close {
        Persistence::Close
    } else if minor == 0 && keep_alive {
        Persistence::KeepAlive10
    } else if minor == 0 {
        Persistence::Close
    } else {
        Persistence::Default
    };
    Ok(Head {
        method,
        path: target.to_owned(),
        version,
        headers,
        framing,
        expects_continue,
        persistence,
    })
}

/// The major version digit of a request line whose version `httparse` refused, when the
/// line is otherwise `method SP target SP HTTP/DIGIT.DIGIT`.
fn other_version(head: &[u8]) -> Option<u8> {
    let end = head.iter().position(|&b| b == b'\r')?;
    let line = &head[..end];
    let mut parts = line.split(|&b| b == b' ');
    let (_method, _target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some(*major)
        }
        _ => None,
    }
}

/// The elements of a comma-separated list, trimmed, empty ones dropped (RFC 9110 §5.6.1).
fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(|v| v.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|v| !v.is_empty())
}

/// `1*DIGIT` (RFC 9110 §8.6); a value too large for memory saturates (it gets 413).
fn content_length(value: &str) -> Option<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.bytes().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// RFC 9112 §3.2: origin-form, absolute-form, authority-form (CONNECT only) or
/// asterisk-form (OPTIONS only).
fn valid_target(method: &Method, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    if target == "*" {
        return *method == Method::Options;
    }
    if *method == Method::Connect {
        return !target.is_empty() && valid_host(target);
    }
    // absolute-form: scheme ":" ... (RFC 3986 §3.1)
    match target.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        }
        None => false,
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2); empty is valid (a target
/// without authority).
fn valid_host(value: &str) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        // IP-literal
        let Some((literal, port)) = rest.split_once(']') else {
            return false;
        };
        let ok = !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.vV".contains(&b) || sub_delim(b));
        if !ok {
            return false;
        }
        ("", port)
    } else {
        match value.rfind(':') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        }
    };
    let port_ok =
        port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()));
    let bytes = host.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            // pct-encoded
            if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~".contains(&b) || sub_delim(b)) {
            return false;
        }
        i += 1;
    }
    port_ok
}

fn sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// What `Dechunker::decode` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// the body is complete and took this many bytes (trailers included)
    Done(usize),
    More,
    /// refused (400 invalid, 413 too large, 431 too many trailers)
    Refused(Refusal),
}

/// A chunked body (RFC 9112 §7.1), decoded as it arrives: each call goes on where the last
/// one stopped.
#[derive(Debug)]
pub(crate) struct Dechunker {
    /// the decoded body so far
    pub(crate) body: Vec<u8>,
    /// bytes of the encoded body decoded so far
    at: usize,
    /// in the trailer section (after the last chunk)
    trailers: bool,
}

impl Dechunker {
    pub(crate) fn new() -> Dechunker {
        Dechunker {
            body: Vec::new(),
            at: 0,
            trailers: false,
        }
    }

    /// Decodes what `buf` (the encoded body, from its start) holds beyond `self.at`.
    pub(crate) fn decode(&mut self, buf: &[u8]) -> Decoded {
        if buf.len() > MAX_CHUNKED {
            return Decoded::Refused(Refusal::new(413, "chunked body longer than 128 KiB"));
        }
        loop {
            if self.trailers {
                // RFC 9112 §7.1.2: field lines, then an empty line; read, then dropped
                return match scan_block(buf, self.at, self.at) {
                    Scan::Bad => Decoded::Refused(bad("bare CR or LF in the trailers")),
                    Scan::More(_) => Decoded::More,
                    Scan::End(end) => {
                        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                        match httparse::parse_headers(&buf[self.at..end], &mut slots) {
                            Ok(httparse::Status::Complete(_)) => Decoded::Done(end),
                            Err(httparse::Error::TooManyHeaders) => {
                                Decoded::Refused(Refusal::new(431, "more than 100 trailer fields"))
                            }
                            _ => Decoded::Refused(bad("invalid trailer field")),
                        }
                    }
                };
            }
            let rest = &buf[self.at..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return if rest.len() > MAX_CHUNK_LINE {
                    Decoded::Refused(bad("chunk line longer than 1 KiB"))
                } else if rest.contains(&b'\n') {
                    Decoded::Refused(bad("bare LF in a chunk line"))
                } else {
                    Decoded::More
                };
            };
            if eol > MAX_CHUNK_LINE {
                return Decoded::Refused(bad("chunk line longer than 1 KiB"));
            }
            let Some(size) = chunk_size(&rest[..eol]) else {
                return Decoded::Refused(bad("invalid chunk size"));
            };
            if size == 0 {
                self.at += eol + 2;
                self.trailers = true;
                continue;
            }
            if size > (MAX_BODY - self.body.len()) as u64 {
                return Decoded::Refused(Refusal::new(413, "body longer than 64 KiB"));
            }
            let size = size as usize;
            let data = eol + 2;
            if rest.len() < data + size + 2 {
                return Decoded::More;
            }
            if &rest[data + size..data + size + 2] != b"\r\n" {
                return Decoded::Refused(bad("chunk data not followed by CRLF"));
            }
            self.body.extend_from_slice(&rest[data..data + size]);
            self.at += data + size + 2;
        }
    }
}

/// The size of a chunk-size line: `1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token /
/// quoted-string ) ] )` (RFC 9112 §7.1, §7.1.1; the extensions are ignored). `None` for
/// anything else, a size beyond 64 bits included.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16)? as u64;
        size = size.checked_mul(16)?.checked_add(d)?;
    }
    let mut rest = &line[digits..];
    let bws = |r: &mut &[u8]| {
        while let [b' ' | b'\t', tail @ ..] = *r {
            *r = tail;
        }
    };
    let token = |r: &mut &[u8]| -> bool {
        let n = r.iter().take_while(|&&b| is_tchar(b)).count();
        *r = &r[n..];
        n > 0
    };
    loop {
        let before = rest.len();
        bws(&mut rest);
        match rest {
            // (whitespace only before a ';')
            [] if rest.len() == before => return Some(size),
            [b';', tail @ ..] => rest = tail,
            _ => return None,
        }
        bws(&mut rest);
        if !token(&mut rest) {
            return None;
        }
        bws(&mut rest);
        if let [b'=', tail @ ..] = rest {
            rest = tail;
            bws(&mut rest);
            if let [b'"', tail @ ..] = rest {
                rest = quoted_string_rest(tail)?;
            } else if !token(&mut rest) {
                return None;
            }
        }
    }
}

/// What follows a quoted-string whose opening quote has been taken (RFC 9110 §5.6.4).
fn quoted_string_rest(mut s: &[u8]) -> Option<&[u8]> {
    loop {
        match s {
            [b'"', tail @ ..] => return Some(tail),
            [b'\\', c, tail @ ..] if *c == b'\t' || (0x20..0x7f).contains(c) => s = tail,
            [c, tail @ ..] if *c == b'\t' || (*c >= 0x20 && *c != 0x7f && *c != b'\\') => s = tail,
            _ => return None,
        }
    }
}

/// RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod test {
    use super::*;

    /// `parse_head` on a head given without its final empty line.
    fn head(text: &str) -> Result<Head, Refusal> {
        let bytes = format!("{text}\r\n\r\n").into_bytes();
        assert_eq!(scan_block(&bytes, 0, 0), Scan::End(bytes.len()), "{text:?}");
        parse_head(&bytes)
    }

    fn status(text: &str) -> u16 {
        head(text).map_or_else(|r| r.code, |_| 200)
    }

    #[test]
    fn the_rules_of_rfc_9112_for_a_head() {
        let h = "GET / HTTP/1.1\r\nHost: x";
        let cases: &[(&str, u16)] = &[
            (h, 200),
            ("GET / HTTP/1.0", 200),
            // §3.2: exactly one valid Host
            ("GET / HTTP/1.1", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: a", 400),
            ("GET / HTTP/1.0\r\nHost: a\r\nHost: b", 400),
            ("GET / HTTP/1.1\r\nHost: a b", 400),
            ("GET / HTTP/1.1\r\nHost: a/b", 400),
            ("GET / HTTP/1.1\r\nHost: a@b", 400),
            ("GET / HTTP/1.1\r\nHost: a:b", 400),
            ("GET / HTTP/1.1\r\nHost: %zz", 400),
            ("GET / HTTP/1.1\r\nHost: [::1", 400),
            ("GET / HTTP/1.1\r\nHost: ", 200),
            ("GET / HTTP/1.1\r\nHost: example.com:8080", 200),
            ("GET / HTTP/1.1\r\nHost: [::1]:80", 200),
            ("GET / HTTP/1.1\r\nHost: a%41b.c-d_e~", 200),
            // §5.1, §5.2: no whitespace before the colon, no obs-fold
            ("GET / HTTP/1.1\r\nHost : x", 400),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked",
                400,
            ),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb", 400),
            ("GET / HTTP/1.1\r\n Host: x", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nNo colon", 400),
            // RFC 9110 §5.5: no CTL or NUL in a value; obs-text refused
            ("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: caf\u{e9}", 400),
            // §3: the request line
            ("GET  / HTTP/1.1\r\nHost: x", 400),
            ("GET / HTTP/1.1 \r\nHost: x", 400),
            ("GET /\r\nHost: x", 400),
            ("GET / http/1.1\r\nHost: x", 400),
            ("G(T / HTTP/1.1\r\nHost: x", 400),
            ("GET test HTTP/1.1\r\nHost: x", 400),
            ("GET * HTTP/1.1\r\nHost: x", 400),
            ("OPTIONS * HTTP/1.1\r\nHost: x", 200),
            ("GET http://h/test HTTP/1.1\r\nHost: x", 200),
            ("GET 1http://h/ HTTP/1.1\r\nHost: x", 400),
            ("CONNECT h:443 HTTP/1.1\r\nHost: h:443", 200),
            // §2.3: another major version 505, a higher minor one served as 1.1
            ("GET / HTTP/2.0\r\nHost: x", 505),
            ("PRI * HTTP/2.0", 505),
            ("GET / HTTP/3.0\r\nHost: x", 505),
            ("GET / HTTP/1.2\r\nHost: x", 200),
            ("GET / HTTP/1.10\r\nHost: x", 400),
            // §6.1, §6.3: Transfer-Encoding exactly chunked, once, last
            (&format!("{h}\r\nTransfer-Encoding: chunked"), 200),
            (&format!("{h}\r\nTransfer-Encoding: Chunked"), 200),
            (&format!("{h}\r\nTransfer-Encoding: gzip"), 400),
            (&format!("{h}\r\nTransfer-Encoding: chunked, chunked"), 400),
            (
                &format!("{h}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
                400,
            ),
            (&format!("{h}\r\nTransfer-Encoding: chunked, identity"), 400),
            (&format!("{h}\r\nTransfer-Encoding: chunked;q=1"), 400),
            (&format!("{h}\r\nTransfer-Encoding: xchunked"), 400),
            (&format!("{h}\r\nTransfer-Encoding: "), 400),
            (&format!("{h}\r\nTransfer-Encoding: ,"), 400),
            (&format!("{h}\r\nTransfer-Encoding: gzip, chunked"), 501),
            (
                &format!("{h}\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked"),
                501,
            ),
            (
                &format!("{h}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip"),
                400,
            ),
            (
                &format!("{h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5"),
                400,
            ),
            (
                &format!("{h}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"),
                400,
            ),
            (
                &format!("{h}\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked"),
                400,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
            // §6.3: one Content-Length of digits
            (&format!("{h}\r\nContent-Length: 5"), 200),
            (&format!("{h}\r\nContent-Length: 005"), 200),
            (&format!("{h}\r\nContent-Length:  5  "), 200),
            (
                &format!("{h}\r\nContent-Length: 99999999999999999999999"),
                200,
            ),
            (
                &format!("{h}\r\nContent-Length: 5\r\nContent-Length: 6"),
                400,
            ),
            (
                &format!("{h}\r\nContent-Length: 5\r\nContent-Length: 5"),
                400,
            ),
            (&format!("{h}\r\nContent-Length: 5, 5"), 400),
            (&format!("{h}\r\nContent-Length: 5,"), 400),
            (&format!("{h}\r\nContent-Length: +5"), 400),
            (&format!("{h}\r\nContent-Length: -5"), 400),
            (&format!("{h}\r\nContent-Length: 5 5"), 400),
            (&format!("{h}\r\nContent-Length: 0x5"), 400),
            (&format!("{h}\r\nContent-Length: 5.0"), 400),
            (&format!("{h}\r\nContent-Length: "), 400),
            (&format!("{h}\r\nContent-Length: banana"), 400),
            // RFC 9110 §10.1.1: Expect
            (&format!("{h}\r\nExpect: 100-continue"), 200),
            (&format!("{h}\r\nExpect: 100-Continue"), 200),
            (&format!("{h}\r\nExpect: bogus"), 417),
            ("GET / HTTP/1.0\r\nExpect: bogus", 200),
        ];
        for (text, want) in cases {
            assert_eq!(status(text), *want, "{text:?}");
        }
        // §5: at most MAX_HEADERS field lines
        let fields = |n: usize| -> String {
            let mut t = String::from("GET / HTTP/1.1\r\nHost: x");
            for i in 1..n {
                t.push_str(&format!("\r\nX-{i}: {i}"));
            }
            t
        };
        assert_eq!(status(&fields(MAX_HEADERS)), 200);
        assert_eq!(status(&fields(MAX_HEADERS + 1)), 431);
    }

    #[test]
    fn refusals_say_why() {
        let h = "POST / HTTP/1.1\r\nHost: x";
        let cases: &[(&str, u16, &str)] = &[
            (
                &format!("{h}\r\nContent-Length: 1\r\nContent-Length: 1"),
                400,
                "Content-Length given twice",
            ),
            (
                &format!("{h}\r\nContent-Length: x"),
                400,
                "invalid Content-Length",
            ),
            (
                &format!("{h}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked"),
                400,
                "Content-Length with Transfer-Encoding",
            ),
            (
                &format!("{h}\r\nTransfer-Encoding: gzip, chunked"),
                501,
                "unsupported transfer coding",
            ),
            (&format!("{h}\r\nHost: y"), 400, "Host given twice"),
            ("GET / HTTP/1.1", 400, "no Host in an HTTP/1.1 request"),
            (
                &format!("{h}\r\nX: a\r\n b"),
                400,
                "invalid header field name",
            ),
            (&format!("{h}\r\nExpect: x"), 417, "unsupported expectation"),
            ("GET / HTTP/2.0", 505, "unsupported HTTP version"),
            (
                "GET test HTTP/1.1\r\nHost: x",
                400,
                "invalid request target",
            ),
        ];
        for &(text, code, reason) in cases {
            assert_eq!(
                head(text).unwrap_err(),
                Refusal::new(code, reason),
                "{text:?}"
            );
        }
        let mut d = Dechunker::new();
        assert_eq!(
            d.decode(b"zz\r\n"),
            Decoded::Refused(Refusal::new(400, "invalid chunk size"))
        );
    }

    #[test]
    fn the_request_line_of_a_refused_request() {
        let line = |b: &[u8]| request_line(b);
        let some = |m: &str, t: &str| Some((m.to_string(), t.to_string()));
        assert_eq!(line(b"GET /a?b HTTP/1.1\r\nHost"), some("GET", "/a?b"));
        assert_eq!(
            line(b"CONNECT h:443 HTTP/1.1\r\n"),
            some("CONNECT", "h:443")
        );
        assert_eq!(line(b"GET /a HTTP/1.1"), None); // not complete
        assert_eq!(line(b"GET  /a HTTP/1.1\r\n"), None);
        assert_eq!(line(b"G\x01T /a HTTP/1.1\r\n"), None);
        assert_eq!(line(b"GET /\x1b[2J HTTP/1.1\r\n"), None);
        assert_eq!(line(b"GET /caf\xc3\xa9 HTTP/1.1\r\n"), None);
        assert_eq!(
            line(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n"),
            None
        );
    }

    #[test]
    fn what_a_head_says() {
        let h = head("POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length:  3 \r\nX-Y:  z \t").unwrap();
        assert_eq!((h.method, h.path.as_str()), (Method::Post, "/a?b"));
        assert_eq!(h.version, HTTPVersion(1, 1));
        assert_eq!(h.framing, Framing::Length(3));
        assert_eq!(h.persistence, Persistence::Default);
        assert_eq!(h.headers[2].value.as_str(), "z");
        let persistence = |t: &str| head(t).unwrap().persistence;
        assert_eq!(persistence("GET / HTTP/1.0"), Persistence::Close);
        assert_eq!(
            persistence("GET / HTTP/1.0\r\nConnection: Keep-Alive"),
            Persistence::KeepAlive10
        );
        assert_eq!(
            persistence("GET / HTTP/1.1\r\nHost: x\r\nConnection: te, close"),
            Persistence::Close
        );
        assert_eq!(
            persistence("GET / HTTP/1.0\r\nConnection: keep-alive, close"),
            Persistence::Close
        );
        assert_eq!(
            persistence("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade"),
            Persistence::Default
        );
        assert!(
            !head("GET / HTTP/1.0\r\nExpect: 100-continue")
                .unwrap()
                .expects_continue
        );
        assert!(
            head("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue")
                .unwrap()
                .expects_continue
        );
        assert_eq!(
            head("GET / HTTP/1.2\r\nHost: x").unwrap().version,
            HTTPVersion(1, 1)
        );
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked")
                .unwrap()
                .framing,
            Framing::Chunked
        );
    }

    #[test]
    fn line_ends_are_crlf_only() {
        assert_eq!(
            scan_block(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0, 0),
            Scan::End(24)
        );
        // a CR at the end is looked at again with what follows it
        assert_eq!(
            scan_block(b"GET / HTTP/1.1\r\nA: b\r\n\r", 0, 0),
            Scan::More(22)
        );
        assert_eq!(
            scan_block(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 0, 22),
            Scan::End(24)
        );
        assert_eq!(
            scan_block(b"GET / HTTP/1.1\r\nA: b\r\n", 0, 0),
            Scan::More(22)
        );
        assert_eq!(scan_block(b"GET / HTTP/1.1\nA: b\r\n\r\n", 0, 0), Scan::Bad);
        assert_eq!(
            scan_block(b"GET / HTTP/1.1\r\nA: a\nb\r\n\r\n", 0, 0),
            Scan::Bad
        );
        assert_eq!(scan_block(b"GET / HTTP/1.1\rA: b\r\n\r\n", 0, 0), Scan::Bad);
        assert_eq!(scan_block(b"GET / HTTP/1.1\r\n\n", 0, 0), Scan::Bad);
        // a block that is only its empty line (no trailers)
        assert_eq!(scan_block(b"xx\r\n", 2, 2), Scan::End(4));
    }

    fn dechunk(data: &[u8]) -> (Decoded, Vec<u8>) {
        let mut d = Dechunker::new();
        let r = d.decode(data);
        (r, d.body)
    }

    /// The status of a refused chunked body (0: not refused).
    fn refused(data: &[u8]) -> u16 {
        match dechunk(data).0 {
            Decoded::Refused(r) => r.code,
            _ => 0,
        }
    }

    #[test]
    fn chunked_bodies() {
        let data = b"5\r\nhello\r\n6;ext=1;q=\"a\\\"b\" ; x\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET";
        let (r, body) = dechunk(data);
        assert_eq!(r, Decoded::Done(data.len() - 3));
        assert_eq!(body, b"hello world");
        assert_eq!(dechunk(b"0\r\n\r\n").0, Decoded::Done(5));
        assert_eq!(dechunk(b"000\r\n\r\n").0, Decoded::Done(7));
        // byte by byte, each call going on where the last stopped
        let mut d = Dechunker::new();
        for n in 1..data.len() - 3 {
            assert_eq!(d.decode(&data[..n]), Decoded::More, "{n}");
        }
        assert_eq!(d.decode(data), Decoded::Done(data.len() - 3));
        assert_eq!(d.body, b"hello world");
        // refused: §7.1 sizes, data, extensions; trailers as field lines
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b" 5\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"-5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"+5\r\nhello\r\n",
            b"10000000000000000\r\n",
            b"ffffffffffffffffff\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\nhello\r\n",
            b"5;\r\nhello\r\n",
            b"5;a b\r\nhello\r\n",
            b"5;=b\r\nhello\r\n",
            b"5;a=\r\nhello\r\n",
            b"5;a=\"x\r\nhello\r\n",
            b"5;a=b c\r\nhello\r\n",
            b"5;a\x01\r\nhello\r\n",
            b"0\r\nX : 1\r\n\r\n",
            b"0\r\n X: 1\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            assert_eq!(refused(bad), 400, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(refused(b"10001\r\n"), 413);
        assert_eq!(refused(&[b'1'; MAX_CHUNK_LINE + 2]), 400);
        let mut trailers = b"0\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            trailers.extend_from_slice(format!("T{i}: x\r\n").as_bytes());
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(refused(&trailers), 431);
        // small chunks: the wire size is bounded too
        let many = b"1\r\nx\r\n".repeat(MAX_CHUNKED / 6 + 1);
        assert_eq!(refused(&many), 413);
    }

    /// Random and mutated heads and bodies: the parser never panics, and decoding always
    /// ends (a small xorshift, so the run is the same every time).
    #[test]
    fn mutated_input_never_panics() {
        let seeds: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n",
            b"GET http://[::1]:80/p?q HTTP/1.0\r\nHost: [::1]\r\nConnection: keep-alive\r\n\r\n",
            b"5;a=\"b\"\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        ];
        let alphabet = b"\r\n :;,=\"\\\t\0\x7f\xff/0159aAfFzZ-.HTTP/1.1chunked";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % (input.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 4 {
                    0 if at < input.len() => input[at] = byte,
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    2 => input.insert(at, byte),
                    _ => input.insert(at, (next() & 0xff) as u8),
                }
            }
            if let Scan::End(end) = scan_block(&input, 0, 0) {
                let _ = parse_head(&input[..end]);
            }
            let mut d = Dechunker::new();
            for cut in [input.len() / 2, input.len()] {
                let _ = d.decode(&input[..cut]);
            }
            let _ = chunk_size(&input);
        }
    }
}
