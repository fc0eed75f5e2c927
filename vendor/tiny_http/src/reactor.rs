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
//! hello-path-rs patch 9: requests are framed by RFC 9112, strictly (`parse.rs`). A request
//! that breaks a rule is refused (`refuse`): one answer saying `Connection: close`, after
//! which nothing the client sends on that connection is read as a request.
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

use crate::common::{HTTPVersion, StatusCode};
use crate::parse::{
    head_too_large, parse_head, scan_block, Dechunker, Decoded, Framing, Head, Refusal, Scan,
    MAX_HEAD,
};
use crate::request::{self, Answer, Outbox, Persistence, Request, Writer, MAX_BODY};
use crate::util::{MessagesQueue, RefinedTcpStream, SequentialWriterBuilder};
use crate::{own_answer, Message, Response};

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
