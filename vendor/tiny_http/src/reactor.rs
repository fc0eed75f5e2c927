//! hello-path-rs patch 8: one reader thread per `Server` that waits on all its connections
//! with epoll, instead of one thread per connection blocked in `recv`; the answers are
//! written by one writer thread (`request::write_answers`).
//!
//! With a thread per connection, every request woke a thread (its connection's, out of
//! `recv`): 1.25 context switches per request at 100 connections where Go's netpoller needs
//! about 0.2, and the application's thread also paid for every `send` (on loopback, the
//! receiver's TCP path too). Here one thread reads every connection that has data
//! (level-triggered epoll; `recv` with `MSG_DONTWAIT` on sockets that otherwise stay
//! blocking), parses whole requests out of its buffer — head up to `MAX_HEAD`, body up to
//! `MAX_BODY` — and queues each round's requests at once for the application's `recv`. The
//! application answers (`respond` builds the whole answer) and the writer thread sends it
//! through the connection's `SequentialWriter`, so answers keep their order and a client
//! that does not read stalls the writer (at most the send timeout), never the application.
//! Idle keep-alive connections cost a buffer, not a thread.
//!
//! The answers tiny_http gives on its own (400, 413, 414, 417, 431, 505) go the same way.
//! A `100 Continue` is written by the reader, and only when no earlier answer is pending
//! on that connection (it never waits); a client that gets none sends its body after its
//! own short wait (RFC 9110 §10.1.1).
//!
//! Limits: answers to the requests of one connection must be given in request order (the
//! writer thread writes in the order it is handed them); `Connection: upgrade` ends the
//! reading of that connection (the upgraded stream has no reader); HTTPS (the `ssl-*`
//! features) is not supported.

use std::collections::HashMap;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use ascii::AsciiString;

use crate::client::parse_request_line;
use crate::common::{HTTPVersion, Header, StatusCode};
use crate::request::{self, Outbox, Request, MAX_BODY};
use crate::util::{MessagesQueue, RefinedTcpStream, SequentialWriter, SequentialWriterBuilder};
use crate::{own_answer, Message, Response};

/// Longest request head (request line, headers, their CRLFs), in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Bytes asked of `recv` at a time.
const READ_CHUNK: usize = 8 * 1024;
/// epoll token of the wake-up socket (`Server` dropped).
const WAKE: u64 = u64::MAX;

type Writer = SequentialWriter<BufWriter<RefinedTcpStream>>;

use sys::recv_now;
pub(crate) use sys::Epoll;

/// The system calls of the reader: epoll and a `recv` that never blocks. The only `unsafe`
/// code of this crate.
#[allow(unsafe_code)]
pub(crate) mod sys {
    use std::io;
    use std::os::unix::io::RawFd;

    /// An epoll instance (the descriptor is closed on drop).
    pub(crate) struct Epoll(RawFd);

    impl Epoll {
        pub(crate) fn new() -> io::Result<Epoll> {
            // SAFETY: plain system call, no pointers.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Epoll(fd))
        }

        /// Watches `fd` for input (level-triggered), reported with `token`.
        pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
            let mut event = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                u64: token,
            };
            // SAFETY: `event` is a valid epoll_event for the duration of the call.
            let rc = unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut event) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        pub(crate) fn delete(&self, fd: RawFd) {
            // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL (Linux ≥ 2.6.9).
            unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        }

        /// The tokens of the descriptors that are ready, waiting as long as it takes.
        pub(crate) fn wait(
            &self,
            events: &mut [libc::epoll_event],
            tokens: &mut Vec<u64>,
        ) -> io::Result<()> {
            tokens.clear();
            // SAFETY: `events` is valid for `events.len()` entries; the kernel writes at most
            // that many.
            let n = unsafe {
                libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as libc::c_int, -1)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            // `epoll_event` is packed on x86_64: copy the field out, never borrow it.
            tokens.extend(events[..n as usize].iter().map(|e| {
                let token = e.u64;
                token
            }));
            Ok(())
        }
    }

    impl Drop for Epoll {
        fn drop(&mut self) {
            // SAFETY: the descriptor is owned by this value and closed once.
            unsafe { libc::close(self.0) };
        }
    }

    /// `recv` that never blocks (`MSG_DONTWAIT`), on a socket that stays blocking for writers.
    pub(crate) fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// A connection as the reader sees it.
pub(crate) struct Conn {
    /// The read half, held for its drop (which shuts reading down); read through `fd`.
    _read: RefinedTcpStream,
    fd: RawFd,
    /// The writers of the answers, in request order.
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,
    remote_addr: Option<SocketAddr>,
    /// Bytes received and not yet parsed into a request.
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no end of head (so that a head arriving a byte at
    /// a time is not searched again from its start every time).
    scanned: usize,
    /// `buf.len()` when a chunked body was last found incomplete (decoded again only once
    /// more has arrived).
    chunked_tried: usize,
    /// The writer of the request being received, taken early for its `100 Continue`.
    writer: Option<Writer>,
    continue_sent: bool,
}

impl Conn {
    pub(crate) fn new(
        read: RefinedTcpStream,
        write: RefinedTcpStream,
        remote_addr: Option<SocketAddr>,
    ) -> Conn {
        let fd = read.raw_fd();
        Conn {
            _read: read,
            fd,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write)),
            remote_addr,
            buf: Vec::new(),
            scanned: 0,
            chunked_tried: 0,
            writer: None,
            continue_sent: false,
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// The writer for the request at the head of the buffer.
    fn writer(&mut self) -> Writer {
        match self.writer.take() {
            Some(w) => w,
            None => self.sink.next().unwrap(), // the builder never ends
        }
    }

    /// Hands one of tiny_http's own answers to the writer thread, in order after the
    /// pending ones (the reader never waits for a client).
    fn answer<R: Read>(&mut self, response: Response<R>, version: HTTPVersion, outbox: &Outbox) {
        let writer = self.writer();
        let mut bytes = Vec::new();
        own_answer(response)
            .raw_print(&mut bytes, version, &[], false, None)
            .ok();
        outbox.send((bytes, Box::new(writer))).ok();
    }

    /// An empty answer with this status.
    fn refuse(&mut self, code: u16, version: HTTPVersion, outbox: &Outbox) {
        self.answer(Response::new_empty(StatusCode(code)), version, outbox);
    }

    /// Reads what is there and queues the complete requests. False: close the connection.
    fn on_readable(&mut self, ready: &mut Vec<Message>, outbox: &Outbox) -> bool {
        let mut chunk = [0u8; READ_CHUNK];
        let mut open = true;
        loop {
            match recv_now(self.fd, &mut chunk) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() || self.buf.len() > MAX_HEAD + MAX_BODY {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        // requests that arrived before the end are answered (the writers outlive the reader)
        loop {
            match self.parse_one(outbox) {
                Parsed::Request(rq, last) => {
                    ready.push(rq.into());
                    if last {
                        return false;
                    }
                }
                Parsed::Skipped => continue,
                Parsed::Incomplete => return open,
                Parsed::Close => return false,
            }
        }
    }

    /// Takes the first complete request out of the buffer.
    fn parse_one(&mut self, outbox: &Outbox) -> Parsed {
        let from = self.scanned.saturating_sub(3);
        let head_end = match find(&self.buf[from..], b"\r\n\r\n").map(|i| from + i) {
            Some(i) if i + 4 <= MAX_HEAD => i,
            Some(_) => return self.head_too_large(outbox),
            None if self.buf.len() >= MAX_HEAD => return self.head_too_large(outbox),
            None => {
                self.scanned = self.buf.len();
                return Parsed::Incomplete;
            }
        };
        let mut lines = self.buf[..head_end].split_crlf();
        // a head that is not ASCII closes the connection without an answer, as before
        let Some(Ok(request_line)) = lines.next().map(ascii) else {
            return Parsed::Close;
        };
        let Ok((method, path, version)) = parse_request_line(request_line.as_str().trim()) else {
            self.refuse(400, HTTPVersion(1, 1), outbox);
            return Parsed::Close;
        };
        let mut headers = Vec::with_capacity(8);
        for line in lines {
            let Ok(line) = ascii(line) else {
                return Parsed::Close;
            };
            match Header::from_str(line.as_str().trim()) {
                Ok(h) => headers.push(h),
                Err(()) => {
                    self.refuse(400, version, outbox);
                    return Parsed::Close;
                }
            }
        }
        let find_header = |name: &'static str| headers.iter().find(|h| h.field.equiv(name));
        let chunked = find_header("Transfer-Encoding").is_some();
        let content_length: Option<usize> = if chunked {
            None // RFC 9112 §6.3: Transfer-Encoding wins
        } else {
            find_header("Content-Length").and_then(|h| h.value.as_str().parse().ok())
        };
        let expects_continue = match find_header("Expect").map(|h| h.value.as_str()) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            Some(_) => {
                self.refuse(417, version, outbox);
                return Parsed::Close;
            }
        };
        let connection = find_header("Connection").map(|h| h.value.as_str().to_ascii_lowercase());
        let upgrade = connection.as_deref().is_some_and(|v| v.contains("upgrade"));

        // the body, whole
        let body_start = head_end + 4;
        let (body, consumed): (Option<Vec<u8>>, usize) = if upgrade {
            (None, body_start) // what follows is no longer HTTP: reading stops here
        } else if chunked {
            // decoded again once 1 KiB more has arrived, or when what arrived may end it (a
            // chunked body ends with an empty line): a body trickling in is not decoded from
            // its start for every byte
            if self.chunked_tried != 0
                && self.buf.len() < self.chunked_tried + 1024
                && !self.buf.ends_with(b"\r\n\r\n")
            {
                return Parsed::Incomplete;
            }
            match dechunk(&self.buf[body_start..]) {
                Dechunked::Done(body, used) => (Some(body), body_start + used),
                Dechunked::Incomplete => {
                    self.chunked_tried = self.buf.len();
                    return self.wait_for_body(expects_continue);
                }
                Dechunked::TooLarge => {
                    self.refuse(413, version, outbox);
                    return Parsed::Close;
                }
                Dechunked::Invalid => return Parsed::Close,
            }
        } else if let Some(len) = content_length.filter(|&l| l > 0) {
            if len > MAX_BODY {
                self.refuse(413, version, outbox);
                return Parsed::Close;
            }
            if self.buf.len() < body_start + len {
                return self.wait_for_body(expects_continue);
            }
            (
                Some(self.buf[body_start..body_start + len].to_vec()),
                body_start + len,
            )
        } else {
            (None, body_start)
        };
        self.buf.drain(..consumed);
        self.scanned = 0;
        self.chunked_tried = 0;
        self.continue_sent = false;

        if version > (1, 1) {
            // answered here, in this request's turn; the connection goes on
            let response =
                Response::from_string("This server only supports HTTP versions 1.0 and 1.1")
                    .with_status_code(StatusCode(505));
            self.answer(response, HTTPVersion(1, 1), outbox);
            return Parsed::Skipped;
        }
        let writer = self.writer();

        let last = upgrade
            || match connection.as_deref() {
                Some(v) if v.contains("close") => true,
                Some(v) => !v.contains("keep-alive") && version == (1, 0),
                None => version == (1, 0),
            };
        let reader: Box<dyn Read + Send> = match body {
            Some(b) => Box::new(Cursor::new(b)),
            None => Box::new(io::empty()),
        };
        let rq = request::from_parts(
            method,
            path,
            version,
            headers,
            self.remote_addr,
            content_length,
            reader,
            Box::new(writer),
            outbox.clone(),
        );
        Parsed::Request(rq, last)
    }

    /// The head is complete, the body is not: say `100 Continue` once if asked and if no
    /// earlier answer is pending, and wait for more.
    fn wait_for_body(&mut self, expects_continue: bool) -> Parsed {
        if expects_continue && !self.continue_sent {
            let mut writer = self.writer();
            if writer.is_ready() {
                writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok();
                writer.flush().ok();
                self.continue_sent = true;
            }
            self.writer = Some(writer);
        }
        Parsed::Incomplete
    }

    fn head_too_large(&mut self, outbox: &Outbox) -> Parsed {
        let in_request_line = find(&self.buf[..self.buf.len().min(MAX_HEAD)], b"\r\n").is_none();
        let code = if in_request_line { 414 } else { 431 };
        self.refuse(code, HTTPVersion(1, 1), outbox);
        Parsed::Close
    }
}

enum Parsed {
    /// a request, and whether it is the connection's last
    Request(Request, bool),
    /// a request answered here (505): look for the next one
    Skipped,
    Incomplete,
    Close,
}

fn ascii(line: &[u8]) -> Result<AsciiString, ()> {
    AsciiString::from_ascii(line.to_vec()).map_err(|_| ())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

trait SplitCrlf {
    /// The lines of a head: split on CRLF only (a bare LF stays in its line).
    fn split_crlf(&self) -> CrlfLines<'_>;
}

impl SplitCrlf for [u8] {
    fn split_crlf(&self) -> CrlfLines<'_> {
        CrlfLines { rest: Some(self) }
    }
}

struct CrlfLines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CrlfLines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find(rest, b"\r\n") {
            Some(i) => {
                self.rest = Some(&rest[i + 2..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

enum Dechunked {
    /// the body, and the bytes of the buffer it took (trailers included)
    Done(Vec<u8>, usize),
    Incomplete,
    TooLarge,
    Invalid,
}

/// Decodes a complete chunked body at the start of `buf` (RFC 9112 §7.1).
fn dechunk(buf: &[u8]) -> Dechunked {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return if buf.len() - at > 1024 {
                Dechunked::Invalid
            } else {
                Dechunked::Incomplete
            };
        };
        let line = &buf[at..at + eol];
        let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let Some(size) = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            return Dechunked::Invalid;
        };
        at += eol + 2;
        if size == 0 {
            // trailers, up to an empty line
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    return Dechunked::Incomplete;
                };
                at += eol + 2;
                if eol == 0 {
                    return Dechunked::Done(body, at);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Dechunked::TooLarge;
        }
        if buf.len() < at + size + 2 {
            return Dechunked::Incomplete;
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Dechunked::Invalid;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// The connections of one `Server`, shared by its accept thread (which adds them) and its
/// reader thread.
pub(crate) type Conns = Arc<Mutex<HashMap<u64, Conn>>>;

/// Starts the writer and the reader thread of a server; returns the reader's epoll
/// instance and connection table, for the accept thread to add connections to.
pub(crate) fn start(
    epoll: Epoll,
    wake: std::os::unix::net::UnixStream,
    messages: Arc<MessagesQueue<Message>>,
) -> io::Result<(Arc<Epoll>, Conns)> {
    let epoll = Arc::new(epoll);
    let conns: Conns = Arc::new(Mutex::new(HashMap::new()));
    let (outbox, answers) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("tiny-http-writer".into())
        .spawn(move || request::write_answers(answers))
        .map_err(crate::thread_error)?;
    let (e, c) = (epoll.clone(), conns.clone());
    std::thread::Builder::new()
        .name("tiny-http-reader".into())
        .spawn(move || run(e, c, wake, messages, outbox))
        .map_err(crate::thread_error)?;
    Ok((epoll, conns))
}

/// The reader thread: until `wake` says the `Server` is gone, reads every connection that
/// has data and queues its requests.
fn run(
    epoll: Arc<Epoll>,
    conns: Conns,
    wake: std::os::unix::net::UnixStream,
    messages: Arc<MessagesQueue<Message>>,
    outbox: Outbox,
) {
    use std::os::unix::io::AsRawFd;
    if epoll.add(wake.as_raw_fd(), WAKE).is_err() {
        return;
    }
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut tokens = Vec::with_capacity(events.len());
    // the requests of one round, queued together: one wake-up of the application's thread
    let mut ready = Vec::with_capacity(events.len());
    loop {
        if epoll.wait(&mut events, &mut tokens).is_err() {
            return;
        }
        let mut conns = conns.lock().unwrap();
        for &token in &tokens {
            if token == WAKE {
                return;
            }
            let keep = match conns.get_mut(&token) {
                Some(conn) => conn.on_readable(&mut ready, &outbox),
                None => continue,
            };
            if !keep {
                if let Some(conn) = conns.remove(&token) {
                    epoll.delete(conn.fd);
                }
            }
        }
        drop(conns);
        messages.push_all(&mut ready);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dechunk_whole_and_partial() {
        let data = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET";
        match dechunk(data) {
            Dechunked::Done(body, used) => {
                assert_eq!(body, b"hello world");
                assert_eq!(&data[used..], b"GET");
            }
            _ => panic!("not decoded"),
        }
        assert!(matches!(dechunk(b"5\r\nhel"), Dechunked::Incomplete));
        assert!(matches!(dechunk(b"zz\r\n"), Dechunked::Invalid));
        assert!(matches!(dechunk(b"5\r\nhelloXX"), Dechunked::Invalid));
    }

    #[test]
    fn crlf_lines_keep_bare_lf() {
        let lines: Vec<&[u8]> = b"GET / HTTP/1.1\r\nA: a\nb\r\nB: c".split_crlf().collect();
        assert_eq!(lines, [&b"GET / HTTP/1.1"[..], b"A: a\nb", b"B: c"]);
    }
}
