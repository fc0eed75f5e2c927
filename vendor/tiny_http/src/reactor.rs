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
//! hello-path-rs patch 9: the request framing of RFC 9112, strictly (a proxy in front that
//! frames a request differently turns any leniency into request smuggling). The request
//! line and the header fields are parsed by `httparse`; this module adds what `httparse`
//! leaves to its caller, each rule with its section in `parse_head` and `Dechunker`. A
//! request that breaks one is refused (`refuse`): one answer saying `Connection: close`,
//! after which nothing the client sends on that connection is read as a request.
//!
//! Line endings: CRLF only. RFC 9112 §2.2 lets a recipient accept a bare LF as a line end;
//! this server refuses it (400), as it does a bare CR: a proxy that keeps a bare LF inside a
//! field value would otherwise see other fields than we do.
//!
//! Timeouts are deadlines (`ServerOptions`): each connection has one, kept in a heap, and
//! the reader sleeps in `epoll_wait` until the nearest (forever when there is none), so an
//! idle server costs no wake-up. A connection with no request in progress is closed
//! silently after `idle_timeout`; a request whose head and body are not complete within
//! `header_timeout` of its first byte gets 408.
//!
//! Closing follows RFC 9112 §9.6: after the last answer the writer closes the sending side
//! only (the client reads the answer, then the end); the reader goes on reading, and
//! dropping, what the client still sends until it closes too or `LINGER` has passed, so
//! that a close with unread data (a TCP reset) cannot destroy the answer before the client
//! has read it.
//!
//! The answers tiny_http gives on its own (400, 408, 413, 414, 417, 431, 501, 505) go the
//! same way as the application's. A `100 Continue` is written by the reader, and only when
//! no earlier answer is pending on that connection (it never waits); a client that gets
//! none sends its body after its own short wait (RFC 9110 §10.1.1).
//!
//! Limits: answers to the requests of one connection must be given in request order (the
//! writer thread writes in the order it is handed them); protocol upgrades are not
//! supported (`Upgrade` is ignored, as RFC 9110 §7.8 allows); HTTPS (the `ssl-*` features)
//! is not supported.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
use crate::request::{self, Answer, Outbox, Persistence, Request, Writer, MAX_BODY};
use crate::util::{MessagesQueue, RefinedTcpStream, SequentialWriterBuilder};
use crate::{own_answer, Message, Response};

/// Longest request head (request line, headers, their CRLFs), in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header field lines in a request head (or trailer lines after a chunked body).
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;
/// Most bytes a chunked body may take on the wire, framing and trailers included.
const MAX_CHUNKED: usize = 2 * MAX_BODY;
/// Longest the reader goes on reading (and dropping) from a connection after its last
/// answer before it closes it.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes asked of `recv` at a time.
const READ_CHUNK: usize = 8 * 1024;
/// epoll token of the wake-up socket (`Server` dropped).
const WAKE: u64 = u64::MAX;
/// epoll token of the event that says a deadline earlier than the reader's sleep was set.
const TIMER: u64 = u64::MAX - 1;

/// How long a server's connections may take (hello-path-rs patch 9); see
/// `Server::from_listener_with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// A connection with no request in progress — just accepted, or after its last request
    /// was answered — is closed silently after this.
    pub idle_timeout: Duration,
    /// Once the first byte of a request has arrived, its head and body must be complete
    /// within this, else it is answered 408 and the connection closed.
    pub header_timeout: Duration,
}

impl Default for ServerOptions {
    /// 75 s idle (nginx's keep-alive default), 10 s for a request.
    fn default() -> ServerOptions {
        ServerOptions {
            idle_timeout: Duration::from_secs(75),
            header_timeout: Duration::from_secs(10),
        }
    }
}

use sys::recv_now;
pub(crate) use sys::Epoll;
use sys::EventFd;

/// The system calls of the reader: epoll, an eventfd and a `recv` that never blocks. The
/// only `unsafe` code of this crate.
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

        /// The tokens of the descriptors that are ready, waiting at most `timeout_ms`
        /// milliseconds (-1: as long as it takes).
        pub(crate) fn wait(
            &self,
            events: &mut [libc::epoll_event],
            tokens: &mut Vec<u64>,
            timeout_ms: libc::c_int,
        ) -> io::Result<()> {
            tokens.clear();
            // SAFETY: `events` is valid for `events.len()` entries; the kernel writes at most
            // that many.
            let n = unsafe {
                libc::epoll_wait(
                    self.0,
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    timeout_ms,
                )
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

    /// A non-blocking eventfd: the accept thread's way to wake the reader early.
    pub(crate) struct EventFd(RawFd);

    impl EventFd {
        pub(crate) fn new() -> io::Result<EventFd> {
            // SAFETY: plain system call, no pointers.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(EventFd(fd))
        }

        pub(crate) fn fd(&self) -> RawFd {
            self.0
        }

        /// Makes the descriptor readable.
        pub(crate) fn notify(&self) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64.
            unsafe { libc::write(self.0, &one as *const u64 as *const libc::c_void, 8) };
        }

        /// Makes it unreadable again.
        pub(crate) fn clear(&self) {
            let mut count: u64 = 0;
            // SAFETY: reads at most 8 bytes into a valid u64.
            unsafe { libc::read(self.0, &mut count as *mut u64 as *mut libc::c_void, 8) };
        }
    }

    impl Drop for EventFd {
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

/// Where a connection is in its life.
enum State {
    /// No request in progress: just accepted, or its last request handed over.
    Idle,
    /// A request's first byte has arrived, its head is not complete.
    Head,
    /// The head is complete (and checked), the body is not.
    Body(Box<Pending>),
    /// Its last answer is given: what the client still sends is read and dropped.
    Closing,
}

/// A request whose head was parsed, waiting for its body.
struct Pending {
    head: Head,
    /// Where its body starts in the buffer.
    body_start: usize,
    /// The chunked decoder, for a chunked body.
    chunked: Option<Dechunker>,
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
    /// How much of the head in `buf` is known to hold no end of head (so that a head
    /// arriving a byte at a time is not searched again from its start every time).
    scanned: usize,
    /// The writer of the request being received, taken early for its `100 Continue`.
    writer: Option<Writer>,
    continue_sent: bool,
    state: State,
    /// When the current state times out.
    deadline: Instant,
    /// The earliest entry of this connection in the reader's timer heap, if any.
    scheduled: Option<Instant>,
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
            writer: None,
            continue_sent: false,
            state: State::Idle,
            deadline: Instant::now(),
            scheduled: None,
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

    /// Refuses the request being received with one of tiny_http's own answers, in order
    /// after the pending ones, and ends the connection (the reader never waits for a
    /// client).
    fn refuse(&mut self, response: Response<Cursor<Vec<u8>>>, now: Instant, outbox: &Outbox) {
        let writer = self.writer();
        let mut bytes = Vec::new();
        own_answer(response)
            .print(
                &mut bytes,
                HTTPVersion(1, 1),
                &[],
                false,
                Persistence::Close,
            )
            .ok();
        outbox
            .send(Answer {
                bytes,
                writer,
                close: true,
            })
            .ok();
        self.closing(now);
    }

    /// An empty refusal with this status.
    fn refuse_with(&mut self, code: u16, now: Instant, outbox: &Outbox) {
        let response = Response::from_data(Vec::new()).with_status_code(StatusCode(code));
        self.refuse(response, now, outbox);
    }

    /// No request is read from this connection any more.
    fn closing(&mut self, now: Instant) {
        self.state = State::Closing;
        self.buf = Vec::new();
        self.deadline = now + LINGER;
    }

    /// Reads what is there and queues the complete requests. False: forget the connection
    /// (answers already handed over are still written: the writers outlive the reader).
    fn on_readable(
        &mut self,
        now: Instant,
        options: &ServerOptions,
        ready: &mut Vec<Message>,
        outbox: &Outbox,
    ) -> bool {
        let mut chunk = [0u8; READ_CHUNK];
        let mut open = true;
        let closing = matches!(self.state, State::Closing);
        // (bounded per round, also while dropping: one client cannot keep the reader)
        let mut read = 0;
        loop {
            match recv_now(self.fd, &mut chunk) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => {
                    if !closing {
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                    read += n;
                    if n < chunk.len()
                        || self.buf.len() > MAX_HEAD + MAX_BODY
                        || read > MAX_HEAD + MAX_BODY
                    {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if closing {
            return open;
        }
        // requests that arrived before the end are answered
        while let Some(rq) = self.next_request(now, options, outbox) {
            let last = rq.persistence() == Persistence::Close;
            ready.push(rq.into());
            if last {
                self.closing(now);
                break;
            }
        }
        open
    }

    /// Takes the first complete request out of the buffer, if there is one. Refuses a
    /// request that breaks a rule (the state is then `Closing`).
    fn next_request(
        &mut self,
        now: Instant,
        options: &ServerOptions,
        outbox: &Outbox,
    ) -> Option<Request> {
        if let State::Idle = self.state {
            // RFC 9112 §2.2: empty lines before a request line are ignored
            let empty = self.buf.chunks(2).take_while(|p| *p == b"\r\n").count();
            if empty > 0 {
                self.buf.drain(..empty * 2);
            }
            if self.buf.is_empty() {
                return None;
            }
            self.state = State::Head;
            self.scanned = 0;
            self.deadline = now + options.header_timeout;
        }
        if let State::Head = self.state {
            let end = match scan_block(&self.buf, 0, self.scanned) {
                Scan::Bad => {
                    self.refuse_with(400, now, outbox);
                    return None;
                }
                Scan::End(end) if end <= MAX_HEAD => end,
                Scan::More(at) if self.buf.len() < MAX_HEAD => {
                    self.scanned = at;
                    return None;
                }
                Scan::End(_) | Scan::More(_) => {
                    let code = head_too_large(&self.buf);
                    self.refuse_with(code, now, outbox);
                    return None;
                }
            };
            match parse_head(&self.buf[..end]) {
                Ok(head) => {
                    let chunked = match head.framing {
                        Framing::Chunked => Some(Dechunker::new()),
                        _ => None,
                    };
                    self.state = State::Body(Box::new(Pending {
                        head,
                        body_start: end,
                        chunked,
                    }));
                }
                Err(Refusal::Status(code)) => {
                    self.refuse_with(code, now, outbox);
                    return None;
                }
                Err(Refusal::Version) => {
                    let response =
                        Response::from_string("This server only supports HTTP/1.0 and HTTP/1.1")
                            .with_status_code(StatusCode(505));
                    self.refuse(response, now, outbox);
                    return None;
                }
            }
        }
        let State::Body(pending) = &mut self.state else {
            return None;
        };
        let start = pending.body_start;
        let (body, consumed) = match (&pending.head.framing, &mut pending.chunked) {
            (_, Some(dechunker)) => match dechunker.decode(&self.buf[start..]) {
                Decoded::Done(used) => (Some(std::mem::take(&mut dechunker.body)), start + used),
                Decoded::More => {
                    let expects = pending.head.expects_continue;
                    self.wait_for_body(expects);
                    return None;
                }
                Decoded::Refused(code) => {
                    self.refuse_with(code, now, outbox);
                    return None;
                }
            },
            (Framing::Length(len), None) => {
                let len = *len;
                if len > MAX_BODY {
                    self.refuse_with(413, now, outbox);
                    return None;
                }
                if self.buf.len() < start + len {
                    let expects = pending.head.expects_continue;
                    self.wait_for_body(expects);
                    return None;
                }
                (Some(self.buf[start..start + len].to_vec()), start + len)
            }
            (_, None) => (None, start),
        };
        let State::Body(pending) = std::mem::replace(&mut self.state, State::Idle) else {
            unreachable!("matched above");
        };
        self.buf.drain(..consumed);
        self.scanned = 0;
        self.continue_sent = false;
        self.deadline = now + options.idle_timeout;

        let head = pending.head;
        let writer = self.writer();
        let reader: Box<dyn Read + Send> = match body {
            Some(b) => Box::new(Cursor::new(b)),
            None => Box::new(io::empty()),
        };
        let content_length = match head.framing {
            Framing::Length(len) => Some(len),
            _ => None,
        };
        Some(request::from_parts(
            head.method,
            head.path,
            head.version,
            head.headers,
            self.remote_addr,
            content_length,
            reader,
            writer,
            outbox.clone(),
            head.persistence,
        ))
    }

    /// The head is complete, the body is not: say `100 Continue` once if asked and if no
    /// earlier answer is pending, and wait for more.
    fn wait_for_body(&mut self, expects_continue: bool) {
        if expects_continue && !self.continue_sent {
            let mut writer = self.writer();
            if writer.is_ready() {
                writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok();
                writer.flush().ok();
                self.continue_sent = true;
            }
            self.writer = Some(writer);
        }
    }

    /// The deadline has passed. False: forget the connection.
    fn expire(&mut self, now: Instant, options: &ServerOptions, outbox: &Outbox) -> bool {
        match self.state {
            // idle: closed silently, once every answer is written
            State::Idle if self.sink.is_idle() => false,
            State::Idle => {
                self.deadline = now + options.idle_timeout;
                true
            }
            State::Head | State::Body(_) => {
                self.refuse_with(408, now, outbox);
                true
            }
            State::Closing => false,
        }
    }
}

/// 414 when the request line alone is too long, else 431.
fn head_too_large(buf: &[u8]) -> u16 {
    let line = &buf[..buf.len().min(MAX_HEAD)];
    if line.windows(2).any(|w| w == b"\r\n") {
        431
    } else {
        414
    }
}

/// What `scan_block` found.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
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
fn scan_block(buf: &[u8], start: usize, from: usize) -> Scan {
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
enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// A request head that passed every check.
#[derive(Debug)]
struct Head {
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    framing: Framing,
    expects_continue: bool,
    persistence: Persistence,
}

/// Why a head is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Status(u16),
    /// another major version than 1 (505)
    Version,
}

const BAD: Refusal = Refusal::Status(400);

/// Parses and checks a complete head (up to and including its empty line).
fn parse_head(head: &[u8]) -> Result<Head, Refusal> {
    // (left uninitialised: httparse writes the ones it fills, 3 KiB not cleared per request)
    let mut slots = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(BAD),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::Status(431)),
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
                Some(_) => Err(Refusal::Version),
                None => Err(BAD),
            };
        }
        Err(_) => return Err(BAD),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(BAD);
    };
    let version = HTTPVersion(1, minor);
    let method: Method = method.parse().map_err(|_| BAD)?;
    if !valid_target(&method, target) {
        return Err(BAD); // RFC 9112 §3.2: none of the four forms
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
            .ok_or(BAD)?
            .trim_matches(|c| c == ' ' || c == '\t');
        let name = h.name;
        if name.eq_ignore_ascii_case("Host") {
            // RFC 9112 §3.2: exactly one, valid
            hosts += 1;
            if hosts > 1 || !valid_host(value) {
                return Err(BAD);
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
            field: HeaderField::from_bytes(name).map_err(|_| BAD)?,
            value: AsciiString::from_ascii(value).map_err(|_| BAD)?,
        });
    }
    if hosts == 0 && minor == 1 {
        return Err(BAD); // RFC 9112 §3.2
    }

    let framing = if transfer_encoding {
        // RFC 9112 §6.1: not in HTTP/1.0, never with Content-Length (§6.3: both is an
        // attempt at smuggling), chunked exactly once and last (§6.3: else the length
        // cannot be determined, 400); a coding we do not implement before it: 501
        let Some((last, before)) = codings.split_last() else {
            return Err(BAD);
        };
        if minor == 0 || !lengths.is_empty() || !last.eq_ignore_ascii_case("chunked") {
            return Err(BAD);
        }
        if before.iter().any(|c| c.eq_ignore_ascii_case("chunked")) {
            return Err(BAD);
        }
        if !before.is_empty() {
            return Err(Refusal::Status(501));
        }
        Framing::Chunked
    } else {
        // RFC 9112 §6.3: one Content-Length field of digits only (a list, even of equal
        // values, and a repeated field are refused: what a proxy makes of them varies)
        match lengths.as_slice() {
            [] => Framing::None,
            [value] => Framing::Length(content_length(value).ok_or(BAD)?),
            _ => return Err(BAD),
        }
    };
    if unknown_expectation {
        return Err(Refusal::Status(417));
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
enum Decoded {
    /// the body is complete and took this many bytes (trailers included)
    Done(usize),
    More,
    /// refused with this status (400 invalid, 413 too large, 431 too many trailers)
    Refused(u16),
}

/// A chunked body (RFC 9112 §7.1), decoded as it arrives: each call goes on where the last
/// one stopped.
#[derive(Debug)]
struct Dechunker {
    /// the decoded body so far
    body: Vec<u8>,
    /// bytes of the encoded body decoded so far
    at: usize,
    /// in the trailer section (after the last chunk)
    trailers: bool,
}

impl Dechunker {
    fn new() -> Dechunker {
        Dechunker {
            body: Vec::new(),
            at: 0,
            trailers: false,
        }
    }

    /// Decodes what `buf` (the encoded body, from its start) holds beyond `self.at`.
    fn decode(&mut self, buf: &[u8]) -> Decoded {
        if buf.len() > MAX_CHUNKED {
            return Decoded::Refused(413);
        }
        loop {
            if self.trailers {
                // RFC 9112 §7.1.2: field lines, then an empty line; read, then dropped
                return match scan_block(buf, self.at, self.at) {
                    Scan::Bad => Decoded::Refused(400),
                    Scan::More(_) => Decoded::More,
                    Scan::End(end) => {
                        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                        match httparse::parse_headers(&buf[self.at..end], &mut slots) {
                            Ok(httparse::Status::Complete(_)) => Decoded::Done(end),
                            Err(httparse::Error::TooManyHeaders) => Decoded::Refused(431),
                            _ => Decoded::Refused(400),
                        }
                    }
                };
            }
            let rest = &buf[self.at..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return if rest.len() > MAX_CHUNK_LINE || rest.contains(&b'\n') {
                    Decoded::Refused(400)
                } else {
                    Decoded::More
                };
            };
            if eol > MAX_CHUNK_LINE {
                return Decoded::Refused(400);
            }
            let Some(size) = chunk_size(&rest[..eol]) else {
                return Decoded::Refused(400);
            };
            if size == 0 {
                self.at += eol + 2;
                self.trailers = true;
                continue;
            }
            if size > (MAX_BODY - self.body.len()) as u64 {
                return Decoded::Refused(413);
            }
            let size = size as usize;
            let data = eol + 2;
            if rest.len() < data + size + 2 {
                return Decoded::More;
            }
            if &rest[data + size..data + size + 2] != b"\r\n" {
                return Decoded::Refused(400);
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

/// The connections of one `Server`, shared by its accept thread (which adds them) and its
/// reader thread, with their deadlines.
pub(crate) type Conns = Arc<Mutex<Table>>;

/// The connections and their deadlines.
pub(crate) struct Table {
    conns: HashMap<u64, Conn>,
    /// (deadline, token), earliest first. An entry is stale when its connection is gone or
    /// has another `scheduled` time; one whose connection's deadline has moved later is
    /// moved along when it comes up.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    options: ServerOptions,
    /// Until when the reader sleeps (`None`: until something arrives).
    sleeping_until: Option<Instant>,
    /// Wakes the reader when a deadline earlier than `sleeping_until` is set.
    early: EventFd,
}

impl Table {
    /// Adds a connection just accepted: it is idle from now on.
    pub(crate) fn insert(&mut self, token: u64, mut conn: Conn) {
        let now = Instant::now();
        conn.deadline = now + self.options.idle_timeout;
        conn.scheduled = Some(conn.deadline);
        self.timers.push(Reverse((conn.deadline, token)));
        if self.sleeping_until.map_or(true, |t| conn.deadline < t) {
            self.sleeping_until = Some(conn.deadline);
            self.early.notify();
        }
        self.conns.insert(token, conn);
    }

    pub(crate) fn remove(&mut self, token: &u64) -> Option<Conn> {
        self.conns.remove(token)
    }

    /// After a connection's deadline may have changed: an entry for it if it is earlier
    /// than the one it has.
    fn reschedule(&mut self, token: u64) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if conn.scheduled.map_or(true, |s| conn.deadline < s) {
                conn.scheduled = Some(conn.deadline);
                self.timers.push(Reverse((conn.deadline, token)));
            }
        }
    }

    /// Acts on the deadlines that have passed; returns how long the reader may sleep (in
    /// milliseconds for `epoll_wait`, -1 for no limit).
    fn expire(&mut self, now: Instant, epoll: &Epoll, outbox: &Outbox) -> libc::c_int {
        loop {
            let Some(&Reverse((at, token))) = self.timers.peek() else {
                self.sleeping_until = None;
                return -1;
            };
            let Some(conn) = self.conns.get_mut(&token) else {
                self.timers.pop();
                continue;
            };
            if conn.scheduled != Some(at) {
                self.timers.pop(); // an older entry, superseded
                continue;
            }
            if conn.deadline > at {
                // moved later: the entry follows it (so no wake-up before it)
                self.timers.pop();
                conn.scheduled = Some(conn.deadline);
                self.timers.push(Reverse((conn.deadline, token)));
                continue;
            }
            if at > now {
                self.sleeping_until = Some(at);
                let ms = (at - now).as_nanos().div_ceil(1_000_000);
                return ms.min(i32::MAX as u128) as libc::c_int;
            }
            self.timers.pop();
            conn.scheduled = None;
            if conn.expire(now, &self.options, outbox) {
                self.reschedule(token);
            } else if let Some(conn) = self.conns.remove(&token) {
                epoll.delete(conn.fd);
            }
        }
    }
}

/// Starts the writer and the reader thread of a server; returns the reader's epoll
/// instance and connection table, for the accept thread to add connections to.
pub(crate) fn start(
    epoll: Epoll,
    wake: std::os::unix::net::UnixStream,
    messages: Arc<MessagesQueue<Message>>,
    options: ServerOptions,
) -> io::Result<(Arc<Epoll>, Conns)> {
    let epoll = Arc::new(epoll);
    let early = EventFd::new()?;
    epoll.add(early.fd(), TIMER)?;
    let conns: Conns = Arc::new(Mutex::new(Table {
        conns: HashMap::new(),
        timers: BinaryHeap::new(),
        options,
        sleeping_until: None,
        early,
    }));
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
/// has data, queues its requests, and acts on the deadlines.
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
    let mut timeout = -1;
    loop {
        if epoll.wait(&mut events, &mut tokens, timeout).is_err() {
            return;
        }
        let now = Instant::now();
        {
            let mut guard = conns.lock().unwrap();
            let table = &mut *guard;
            for &token in &tokens {
                match token {
                    WAKE => return,
                    TIMER => table.early.clear(),
                    _ => {
                        let keep = match table.conns.get_mut(&token) {
                            Some(conn) => {
                                conn.on_readable(now, &table.options, &mut ready, &outbox)
                            }
                            None => continue,
                        };
                        if keep {
                            table.reschedule(token);
                        } else if let Some(conn) = table.conns.remove(&token) {
                            epoll.delete(conn.fd);
                        }
                    }
                }
            }
            timeout = table.expire(now, &epoll, &outbox);
        }
        messages.push_all(&mut ready);
    }
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
        match head(text) {
            Ok(_) => 200,
            Err(Refusal::Status(code)) => code,
            Err(Refusal::Version) => 505,
        }
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
            assert_eq!(
                dechunk(bad).0,
                Decoded::Refused(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(dechunk(b"10001\r\n").0, Decoded::Refused(413));
        assert_eq!(
            dechunk(&[b'1'; MAX_CHUNK_LINE + 2]).0,
            Decoded::Refused(400)
        );
        let mut trailers = b"0\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            trailers.extend_from_slice(format!("T{i}: x\r\n").as_bytes());
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(dechunk(&trailers).0, Decoded::Refused(431));
        // small chunks: the wire size is bounded too
        let many = b"1\r\nx\r\n".repeat(MAX_CHUNKED / 6 + 1);
        assert_eq!(dechunk(&many).0, Decoded::Refused(413));
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
