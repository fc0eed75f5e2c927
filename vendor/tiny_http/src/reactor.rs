//! hello-path-rs patch 8, reworked by patch 12: a reactor thread reads its connections,
//! parses their requests and writes their answers, waiting on all of them with epoll
//! (level-triggered) on non-blocking sockets; a server has `REACTORS` of them, the accept
//! thread dealing connections out in turn. No client can make a reactor wait.
//!
//! Reading: each connection that has data is read into its buffer (`READ_CHUNK` at a time,
//! at most `ROUND` bytes a round, so that one client cannot keep the thread), whole
//! requests are parsed out of it — head up to `MAX_HEAD`, body up to `MAX_BODY` — and each
//! round's requests are queued at once for the application's `recv`.
//!
//! Writing (patch 12): the application answers (`respond` builds the whole answer and hands
//! it over through the `Outbox`, which wakes the reactor only when it sleeps), and the
//! reactor writes it in its turn among that connection's answers — the connection's
//! answers wait in `Conn::out`, in request order, and go out together in one `writev`. A
//! socket that takes no more (`EAGAIN`) is watched for `EPOLLOUT` and the reactor moves on:
//! a client that does not read delays nobody else. It is closed when the socket has taken
//! nothing for `send_timeout` while answers wait ("between two successive writes", as
//! nginx's `send_timeout`), not when a long queue takes long.
//!
//! Backpressure (patch 12): a connection has at most `MAX_IN_FLIGHT` requests in flight —
//! read and handed to the application, or answered and not yet sent — holding at most about
//! `MAX_IN_FLIGHT_BYTES`; past that the reactor stops reading it (its descriptor leaves the
//! epoll read set) until answers drain, and what the client sends meanwhile stays in the
//! kernel's socket buffers, not here. What a connection can hold is bounded (see
//! PATCHES.md, patch 12): a client that pipelines and reads gets every answer, however
//! many; one that never reads holds at most that many, and is closed by the send timeout
//! with nothing it sent after them processed.
//!
//! hello-path-rs patch 9: requests are framed by RFC 9112, strictly (`parse.rs`). A request
//! that breaks a rule is refused (`refuse`): one answer saying `Connection: close`, after
//! which nothing the client sends on that connection is read as a request. Patch 11: the
//! application hears of every refusal (`Refused`, through the same queue as the requests),
//! to count and log it. Patch 13: a CONNECT is refused the same way (405, no tunnel).
//!
//! Timeouts are deadlines (`ServerOptions`): each connection has one, kept in a heap, and
//! the reactor sleeps in `epoll_wait` until the nearest (forever when there is none), so an
//! idle server costs no wake-up. A connection with no request in progress is closed
//! silently after `idle_timeout`; a request whose head and body are not complete within
//! `header_timeout` of its first byte gets 408.
//!
//! Closing follows RFC 9112 §9.6: after the last answer the reactor shuts the sending side
//! down only (the client reads the answer, then the end), and goes on reading, and
//! dropping, what the client still sends until it closes too or `LINGER` has passed, so
//! that a close with unread data (a TCP reset) cannot destroy the answer before the client
//! has read it.
//!
//! A `100 Continue` is written only when no earlier answer is pending on that connection;
//! a client that gets none sends its body after its own short wait (RFC 9110 §10.1.1).
//!
//! Limits: protocol upgrades and tunnels are not supported (`Upgrade` is ignored, as RFC
//! 9110 §7.8 allows; CONNECT gets 405); HTTPS (the `ssl-*` features) is not supported.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Cursor, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::io::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::connection::Connection;
use crate::parse::{
    head_too_large, parse_head, request_line, scan_block, Dechunker, Decoded, Framing, Head,
    Refusal, Scan, MAX_HEAD,
};
use crate::request::{self, Persistence, Refused, ReplyTo, Request, MAX_BODY};
use crate::util::MessagesQueue;
use crate::{own_answer, Message, Response};

/// Longest the reactor goes on reading (and dropping) from a connection after its last
/// answer before it closes it.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes asked of `read` at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Most bytes read from one connection in one round (the others' turn comes first).
const ROUND: usize = 64 * 1024;
/// hello-path-rs patch 12: most requests of one connection in flight (read and handed to
/// the application, or answered and not yet sent) before the reactor stops reading it.
pub(crate) const MAX_IN_FLIGHT: usize = 32;
/// hello-path-rs patch 12: most bytes those may hold (requests as they came on the wire
/// until answered, then their answers until sent) before the reactor stops reading; one
/// request more than this, at most, is admitted (it is counted once parsed).
pub(crate) const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024;
/// hello-path-rs patch 12: most bytes a TCP socket holds not yet sent (`TCP_NOTSENT_LOWAT`),
/// so that a client that does not read costs the kernel (and the pod's memory cgroup,
/// which socket buffers are charged to) this much at most, not a send buffer that
/// autotuning grows to `net.ipv4.tcp_wmem`'s maximum (4 MiB); bytes sent and not yet
/// acknowledged are not counted, so a fast link is not slowed down.
const NOTSENT_LOWAT: usize = 16 * 1024;
/// A read buffer that grew beyond this (a large request) is given back once empty.
const KEEP_BUFFER: usize = 16 * 1024;
/// Most answers gathered into one `writev`.
const MAX_IOV: usize = MAX_IN_FLIGHT + 2;
/// hello-path-rs patch 12: reactor threads per server, each with its own connections (the
/// accept thread deals them out in turn). Two, as the reader and the writer thread were:
/// writing an answer is most of a reactor's work (on loopback, `writev` runs the receiving
/// side's TCP too), and one reactor alone served 5–13 % fewer requests a second than the
/// reader and writer of patch 8 on two cores.
pub(crate) const REACTORS: usize = 2;
/// epoll token of the wake-up socket (`Server` dropped).
const WAKE: u64 = u64::MAX;
/// epoll token of the event that says a deadline earlier than the reactor's sleep was set.
const TIMER: u64 = u64::MAX - 1;
/// epoll token of the event that says the application handed answers over.
const ANSWERS: u64 = u64::MAX - 2;

/// epoll events.
const IN: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const BROKEN: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

/// How long a server's connections may take (hello-path-rs patch 9), and what its own
/// refusals say (patch 13); see `Server::from_listener_with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// A connection with no request in progress — just accepted, or after its last request
    /// was answered — is closed silently after this.
    pub idle_timeout: Duration,
    /// Once the first byte of a request has arrived, its head and body must be complete
    /// within this, else it is answered 408 and the connection closed.
    pub header_timeout: Duration,
    /// hello-path-rs patch 12: a connection whose answers wait to be sent is closed when
    /// its socket has taken nothing for this long (the client does not read).
    pub send_timeout: Duration,
    /// hello-path-rs patch 13: the `Allow` value of the 405 that refuses a CONNECT (the
    /// methods the application serves).
    pub allow: &'static str,
}

impl Default for ServerOptions {
    /// 75 s idle (nginx's keep-alive default), 10 s for a request, 2 s without progress
    /// for a send, `GET, HEAD`.
    fn default() -> ServerOptions {
        ServerOptions {
            idle_timeout: Duration::from_secs(75),
            header_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(2),
            allow: "GET, HEAD",
        }
    }
}

pub(crate) use sys::Epoll;
use sys::EventFd;

/// The system calls of the reactor: epoll and an eventfd. The only `unsafe` code of this
/// crate.
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

        fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
            let mut event = libc::epoll_event { events, u64: token };
            // SAFETY: `event` is a valid epoll_event for the duration of the call.
            let rc = unsafe { libc::epoll_ctl(self.0, op, fd, &mut event) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Watches `fd` for `events` (level-triggered), reported with `token`.
        pub(crate) fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
            self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
        }

        /// Watches `fd` for other `events` (none: only errors and hang-ups).
        pub(crate) fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
            self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
        }

        pub(crate) fn delete(&self, fd: RawFd) {
            // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL (Linux ≥ 2.6.9).
            unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        }

        /// The tokens and events of the descriptors that are ready, waiting at most
        /// `timeout_ms` milliseconds (-1: as long as it takes).
        pub(crate) fn wait(
            &self,
            events: &mut [libc::epoll_event],
            fired: &mut Vec<(u64, u32)>,
            timeout_ms: libc::c_int,
        ) -> io::Result<()> {
            fired.clear();
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
            // `epoll_event` is packed on x86_64: copy the fields out, never borrow them.
            fired.extend(events[..n as usize].iter().map(|e| {
                let (token, events) = (e.u64, e.events);
                (token, events)
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

    /// A non-blocking eventfd: another thread's way to wake the reactor.
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

    /// Sets `TCP_NOTSENT_LOWAT`: the socket takes no more from `write` (and reports itself
    /// writable again only below half of it) while it holds this many bytes not yet sent.
    pub(crate) fn set_notsent_lowat(fd: RawFd, bytes: usize) -> io::Result<()> {
        let value = bytes as libc::c_int;
        // SAFETY: the option value is a valid int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Bytes the socket still holds for the peer, sent and not yet acknowledged or not yet
    /// sent (`SIOCOUTQ`, the same request as `TIOCOUTQ`); `None` when it does not say.
    pub(crate) fn unsent(fd: RawFd) -> Option<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int through the pointer, which is valid.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
        (rc == 0 && n >= 0).then_some(n as usize)
    }

    impl Drop for EventFd {
        fn drop(&mut self) {
            // SAFETY: the descriptor is owned by this value and closed once.
            unsafe { libc::close(self.0) };
        }
    }
}

/// Locks `m`; a lock poisoned by a panic elsewhere (which ends the process) is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// hello-path-rs patch 12: an answer on its way from the application to the reactor.
pub(crate) struct Answer {
    /// The connection (its token in the table).
    pub(crate) token: u64,
    /// The request's number on its connection.
    pub(crate) seq: u64,
    pub(crate) bytes: Vec<u8>,
    /// The connection ends after it.
    pub(crate) close: bool,
}

/// hello-path-rs patch 12: the answers the application gives, for the reactor to write.
/// `send` wakes the reactor (an eventfd) only when it sleeps: a busy reactor takes them on
/// its next round at no cost to the application's thread.
pub(crate) struct Outbox {
    queue: Mutex<Queued>,
    bell: EventFd,
}

struct Queued {
    answers: Vec<Answer>,
    /// The reactor waits in `epoll_wait` (or is about to) with nothing queued.
    sleeping: bool,
}

impl Outbox {
    fn new() -> io::Result<Outbox> {
        Ok(Outbox {
            queue: Mutex::new(Queued {
                answers: Vec::new(),
                sleeping: false,
            }),
            bell: EventFd::new()?,
        })
    }

    /// Hands an answer over to the reactor.
    pub(crate) fn send(&self, answer: Answer) {
        let mut queue = lock(&self.queue);
        queue.answers.push(answer);
        if queue.sleeping {
            queue.sleeping = false;
            drop(queue);
            self.bell.notify();
        }
    }

    /// The reactor is about to wait: true when nothing is queued, and then the next `send`
    /// rings the bell.
    fn may_sleep(&self) -> bool {
        let mut queue = lock(&self.queue);
        queue.sleeping = queue.answers.is_empty();
        queue.sleeping
    }

    /// The reactor is awake: takes what is queued (into the empty `into`).
    fn take(&self, into: &mut Vec<Answer>) {
        let mut queue = lock(&self.queue);
        queue.sleeping = false;
        std::mem::swap(&mut queue.answers, into);
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
    /// No more requests are read: what the client still sends is read and dropped, the
    /// answers already due are written, then the connection ends.
    Closing,
}

/// A request whose head was parsed, waiting for its body.
struct Pending {
    head: Head,
    /// Where its body starts, from the start of the request.
    body_start: usize,
    /// The chunked decoder, for a chunked body.
    chunked: Option<Dechunker>,
}

/// hello-path-rs patch 12: one answer of a connection, in its place among the others.
struct Slot {
    /// The request's number on the connection; `None` for what the reactor writes on its
    /// own (a refusal, a `100 Continue`).
    seq: Option<u64>,
    /// The answer, once given.
    bytes: Option<Vec<u8>>,
    /// The sending side is shut down after it.
    close: bool,
    /// What it counts in `Conn::in_flight_bytes`: the request's size on the wire until it
    /// is answered, then the answer's.
    weight: usize,
}

/// What a round of the reactor shares with the connection it acts on.
struct Round<'a> {
    now: Instant,
    options: &'a ServerOptions,
    outbox: &'a Arc<Outbox>,
    /// The requests and refusals of this round, queued for `recv` at its end.
    ready: &'a mut Vec<Message>,
}

/// A connection as the reactor sees it.
pub(crate) struct Conn {
    stream: Connection,
    fd: RawFd,
    /// Its key in the table (set on insert).
    token: u64,
    remote_addr: Option<SocketAddr>,
    /// Bytes received: `buf[pos..]` is not yet parsed into a request.
    buf: Vec<u8>,
    pos: usize,
    /// How much of the head at `pos` is known to hold no end of head (so that a head
    /// arriving a byte at a time is not searched again from its start every time).
    scanned: usize,
    continue_sent: bool,
    state: State,
    /// The client sent its end: nothing more is read.
    eof: bool,
    /// The answers due, in request order; the first is being written.
    out: VecDeque<Slot>,
    /// Bytes of the first answer already written.
    written: usize,
    /// The sum of the slots' weights.
    in_flight_bytes: usize,
    /// The number of the next request handed over.
    next_seq: u64,
    /// The sending side is shut down: the last answer is out.
    shut: bool,
    /// The events asked of epoll now.
    interest: u32,
    /// When the state times out: idle, header, linger.
    timer: Instant,
    /// While answers wait on a socket that takes none: when the connection is given up,
    /// unless the client has taken something from the socket meanwhile.
    send_deadline: Option<Instant>,
    /// What the socket held for the client when `send_deadline` was set.
    unsent: Option<usize>,
    /// The earliest entry of this connection in the reactor's timer heap, if any.
    scheduled: Option<Instant>,
}

impl Conn {
    /// A connection just accepted; its socket becomes non-blocking.
    pub(crate) fn new(stream: Connection, remote_addr: Option<SocketAddr>) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        let fd = stream.as_raw_fd();
        if let Connection::Tcp(_) = stream {
            // (a kernel without the option buffers more, as it did before)
            sys::set_notsent_lowat(fd, NOTSENT_LOWAT).ok();
        }
        Ok(Conn {
            fd,
            stream,
            token: 0,
            remote_addr,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            continue_sent: false,
            state: State::Idle,
            eof: false,
            out: VecDeque::new(),
            written: 0,
            in_flight_bytes: 0,
            next_seq: 0,
            shut: false,
            interest: IN,
            timer: Instant::now(),
            send_deadline: None,
            unsent: None,
            scheduled: None,
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// The events to watch for a new connection.
    pub(crate) fn interest(&self) -> u32 {
        self.interest
    }

    /// Too much in flight: no request is read until answers drain.
    fn paused(&self) -> bool {
        self.out.len() >= MAX_IN_FLIGHT || self.in_flight_bytes >= MAX_IN_FLIGHT_BYTES
    }

    /// Whether the socket is read now: not after its end, and not while paused (except
    /// when closing, where what arrives is dropped).
    fn reads(&self) -> bool {
        !self.eof && (matches!(self.state, State::Closing) || !self.paused())
    }

    /// The epoll events this connection waits for.
    fn wanted(&self) -> u32 {
        let mut events = 0;
        if self.reads() {
            events |= IN;
        }
        if self.send_deadline.is_some() {
            events |= OUT;
        }
        events
    }

    fn deadline(&self) -> Instant {
        self.send_deadline.map_or(self.timer, |t| t.min(self.timer))
    }

    /// Nothing more to read, nothing more to write: the connection can go.
    fn done(&self) -> bool {
        matches!(self.state, State::Closing) && self.eof && self.out.is_empty()
    }

    /// epoll reported `events`. False: forget (close) the connection.
    fn on_event(&mut self, events: u32, r: &mut Round<'_>) -> bool {
        if events & BROKEN != 0 {
            // a reset, or both sides closed: nothing can be sent any more
            return false;
        }
        let was_paused = self.paused();
        if events & OUT != 0 && !self.flush(r) {
            return false;
        }
        if events & IN != 0 || (was_paused && !self.paused()) {
            if !self.pump(r) {
                return false;
            }
            if !self.flush(r) {
                return false;
            }
        }
        !self.done()
    }

    /// The application's answer to request `seq`. False: forget the connection.
    fn deliver(&mut self, answer: Answer, r: &mut Round<'_>) -> bool {
        let was_paused = self.paused();
        // (none after the connection's last answer: the answer is dropped)
        let Some(slot) = self.out.iter_mut().find(|s| s.seq == Some(answer.seq)) else {
            return true;
        };
        self.in_flight_bytes = self.in_flight_bytes - slot.weight + answer.bytes.len();
        slot.weight = answer.bytes.len();
        slot.close = answer.close;
        slot.bytes = Some(answer.bytes);
        if !self.flush(r) {
            return false;
        }
        if was_paused && !self.paused() {
            // answers drained: read on, from what is buffered first
            if !self.pump(r) || !self.flush(r) {
                return false;
            }
        }
        !self.done()
    }

    /// Parses what is buffered and reads what has arrived while the connection may take
    /// more (or drops it, when closing). False: forget the connection.
    fn pump(&mut self, r: &mut Round<'_>) -> bool {
        let mut chunk = [0u8; READ_CHUNK];
        let mut read = 0;
        loop {
            self.parse(r);
            if !self.reads() || read >= ROUND {
                break;
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    read += n;
                    if !matches!(self.state, State::Closing) {
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                    if n == chunk.len() {
                        continue;
                    }
                    // (most likely all there was: parse it, and spare a read that would block)
                    self.parse(r);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
            break;
        }
        if self.eof && !self.paused() && !matches!(self.state, State::Closing) {
            // the end came: what was complete is answered (parse stopped short of the
            // rest), what is not never will be
            self.state = State::Closing;
            self.release_buffer();
        }
        true
    }

    /// Hands over the complete requests in the buffer while the connection may have more
    /// in flight; refuses one that breaks a rule.
    fn parse(&mut self, r: &mut Round<'_>) {
        while !self.paused() && !matches!(self.state, State::Closing) {
            match self.next_request(r) {
                Ok(Some(rq)) => {
                    let last = rq.persistence() == Persistence::Close;
                    r.ready.push(rq.into());
                    if last {
                        self.closing(r);
                    }
                }
                Ok(None) => break,
                Err(refusal) => self.refuse(refusal, r),
            }
        }
        if self.pos == self.buf.len() && self.buf.capacity() > KEEP_BUFFER {
            self.release_buffer();
        }
    }

    /// Empties the buffer and gives its memory back.
    fn release_buffer(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
    }

    /// No request is read from this connection any more; it ends once the answers due
    /// are written.
    fn closing(&mut self, r: &Round<'_>) {
        self.state = State::Closing;
        self.release_buffer();
        // (the answers due are the application's: they come, or the connection goes)
        self.timer = r.now + r.options.idle_timeout;
    }

    /// Refuses the request being received with one of tiny_http's own answers, in turn
    /// after the answers due; nothing after it is read as a request. The application hears
    /// of it (`Refused`), to count and log it.
    fn refuse(&mut self, refusal: Refusal, r: &mut Round<'_>) {
        let line = match &self.state {
            State::Body(pending) => {
                Some((pending.head.method.to_string(), pending.head.path.clone()))
            }
            _ => request_line(&self.buf[self.pos..]),
        };
        let mut response = if refusal.code == 505 {
            Response::from_data(b"This server only supports HTTP/1.0 and HTTP/1.1".to_vec())
        } else {
            Response::from_data(Vec::new())
        }
        .with_status_code(StatusCode(refusal.code));
        if refusal.code == 405 {
            if let Ok(allow) = Header::from_bytes(&b"Allow"[..], r.options.allow.as_bytes()) {
                response.add_header(allow);
            }
        }
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
        self.in_flight_bytes += bytes.len();
        self.out.push_back(Slot {
            seq: None,
            weight: bytes.len(),
            bytes: Some(bytes),
            close: true,
        });
        r.ready.push(Message::Refused(Refused {
            status: refusal.code,
            reason: refusal.reason,
            line,
            remote_addr: self.remote_addr,
        }));
        self.closing(r);
    }

    /// Takes the first complete request out of the buffer, if there is one; `Err`: it
    /// breaks a rule.
    fn next_request(&mut self, r: &mut Round<'_>) -> Result<Option<Request>, Refusal> {
        if let State::Idle = self.state {
            // RFC 9112 §2.2: empty lines before a request line are ignored
            let empty = self.buf[self.pos..]
                .chunks(2)
                .take_while(|p| *p == b"\r\n")
                .count();
            self.pos += empty * 2;
            if self.pos == self.buf.len() {
                return Ok(None);
            }
            self.state = State::Head;
            self.scanned = 0;
            self.timer = r.now + r.options.header_timeout;
        }
        let data = &self.buf[self.pos..];
        if let State::Head = self.state {
            let end = match scan_block(data, 0, self.scanned) {
                Scan::Bad => return Err(Refusal::new(400, "bare CR or LF in the head")),
                Scan::End(end) if end <= MAX_HEAD => end,
                Scan::More(at) if data.len() < MAX_HEAD => {
                    self.scanned = at;
                    return Ok(None);
                }
                Scan::End(_) | Scan::More(_) => return Err(head_too_large(data)),
            };
            let head = parse_head(&data[..end])?;
            if head.method == Method::Connect {
                // patch 13: a 2xx to CONNECT would be a tunnel (RFC 9110 §9.3.6)
                return Err(Refusal::new(405, "CONNECT is not served (no tunnel)"));
            }
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
        let State::Body(pending) = &mut self.state else {
            return Ok(None);
        };
        let start = pending.body_start;
        let (body, consumed) = match (&pending.head.framing, &mut pending.chunked) {
            (_, Some(dechunker)) => match dechunker.decode(&data[start..]) {
                Decoded::Done(used) => (Some(std::mem::take(&mut dechunker.body)), start + used),
                Decoded::More => {
                    let expects = pending.head.expects_continue;
                    self.wait_for_body(expects);
                    return Ok(None);
                }
                Decoded::Refused(refusal) => return Err(refusal),
            },
            (Framing::Length(len), None) => {
                let len = *len;
                if len > MAX_BODY {
                    return Err(Refusal::new(413, "body longer than 64 KiB"));
                }
                if data.len() < start + len {
                    let expects = pending.head.expects_continue;
                    self.wait_for_body(expects);
                    return Ok(None);
                }
                (Some(data[start..start + len].to_vec()), start + len)
            }
            (_, None) => (None, start),
        };
        let State::Body(pending) = std::mem::replace(&mut self.state, State::Idle) else {
            unreachable!("matched above");
        };
        self.pos += consumed;
        self.scanned = 0;
        self.continue_sent = false;
        self.timer = r.now + r.options.idle_timeout;

        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight_bytes += consumed;
        self.out.push_back(Slot {
            seq: Some(seq),
            bytes: None,
            close: false,
            weight: consumed,
        });
        let head = pending.head;
        let reader: Box<dyn Read + Send> = match body {
            Some(b) => Box::new(Cursor::new(b)),
            None => Box::new(io::empty()),
        };
        let content_length = match head.framing {
            Framing::Length(len) => Some(len),
            _ => None,
        };
        Ok(Some(request::from_parts(
            head.method,
            head.path,
            head.version,
            head.headers,
            self.remote_addr,
            content_length,
            reader,
            ReplyTo {
                token: self.token,
                seq,
                outbox: Arc::clone(r.outbox),
            },
            head.persistence,
        )))
    }

    /// The head is complete, the body is not: say `100 Continue` once if asked and if no
    /// earlier answer is due, and wait for more.
    fn wait_for_body(&mut self, expects_continue: bool) {
        if expects_continue && !self.continue_sent && self.out.is_empty() {
            let bytes = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            self.in_flight_bytes += bytes.len();
            self.out.push_back(Slot {
                seq: None,
                weight: bytes.len(),
                bytes: Some(bytes),
                close: false,
            });
            self.continue_sent = true;
        }
    }

    /// Writes the answers that are ready, in order, as far as the socket takes them; when
    /// it takes no more, the send timeout runs until it takes some again. False: the
    /// connection is broken.
    fn flush(&mut self, r: &Round<'_>) -> bool {
        loop {
            let result = {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for slot in &self.out {
                    let Some(bytes) = &slot.bytes else {
                        break;
                    };
                    slices[n] = IoSlice::new(if n == 0 {
                        &bytes[self.written..]
                    } else {
                        bytes
                    });
                    n += 1;
                    if n == MAX_IOV || slot.close {
                        break;
                    }
                }
                if n == 0 {
                    // nothing ready: waiting for the application is not the client's fault
                    self.send_deadline = None;
                    return true;
                }
                self.stream.write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => return false,
                Ok(sent) => {
                    self.send_deadline = None;
                    self.consume(sent, r);
                    if self.shut {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.send_deadline.is_none() {
                        self.send_deadline = Some(r.now + r.options.send_timeout);
                        self.unsent = sys::unsent(self.fd);
                    }
                    return true;
                }
                Err(_) => return false,
            }
        }
    }

    /// `sent` bytes of the answers went out: the answers written whole leave.
    fn consume(&mut self, mut sent: usize, r: &Round<'_>) {
        while let Some(Slot {
            bytes: Some(bytes), ..
        }) = self.out.front()
        {
            let left = bytes.len() - self.written;
            if sent < left {
                self.written += sent;
                return;
            }
            sent -= left;
            self.written = 0;
            let Some(slot) = self.out.pop_front() else {
                return;
            };
            self.in_flight_bytes -= slot.weight;
            if slot.close {
                self.shut_down(r);
                return;
            }
        }
    }

    /// The last answer is out: the sending side is shut down (RFC 9112 §9.6), the answers
    /// behind it are dropped, and the client has `LINGER` to close its side.
    fn shut_down(&mut self, r: &Round<'_>) {
        self.stream.shutdown(Shutdown::Write).ok();
        self.shut = true;
        self.out.clear();
        self.in_flight_bytes = 0;
        self.written = 0;
        self.send_deadline = None;
        self.state = State::Closing;
        self.release_buffer();
        self.timer = r.now + LINGER;
    }

    /// A deadline has passed. False: forget the connection.
    fn expire(&mut self, r: &mut Round<'_>) -> bool {
        if self.send_deadline.is_some_and(|t| t <= r.now) {
            // The socket took nothing for `send_timeout`. A client that reads, however
            // slowly, has taken bytes from it meanwhile (the socket wakes a writer only once
            // a third of its buffer is free, which at a slow client's pace can take longer):
            // it gets another `send_timeout`. One that took nothing is given up, with
            // whatever it sent unread.
            let unsent = sys::unsent(self.fd);
            match (self.unsent, unsent) {
                (Some(before), Some(now)) if now < before => {
                    self.unsent = unsent;
                    self.send_deadline = Some(r.now + r.options.send_timeout);
                    return true;
                }
                _ => return false,
            }
        }
        if self.timer > r.now {
            return true;
        }
        match self.state {
            // idle: closed silently, once every answer is written
            State::Idle if self.out.is_empty() => false,
            State::Idle => {
                self.timer = r.now + r.options.idle_timeout;
                true
            }
            State::Head | State::Body(_) => {
                self.refuse(
                    Refusal::new(408, "request not complete within the header timeout"),
                    r,
                );
                self.flush(r) && !self.done()
            }
            // the linger is over (or the answers due never came)
            State::Closing => false,
        }
    }
}

/// The connections of one reactor, shared by the accept thread (which adds them) and the
/// reactor thread, with their deadlines.
pub(crate) type Conns = Arc<Mutex<Table>>;

/// A server's reactors: each one's epoll instance and connections.
pub(crate) type Reactors = Vec<(Arc<Epoll>, Conns)>;

/// The connections and their deadlines.
pub(crate) struct Table {
    conns: HashMap<u64, Conn>,
    /// (deadline, token), earliest first. An entry is stale when its connection is gone or
    /// has another `scheduled` time; one whose connection's deadline has moved later is
    /// moved along when it comes up.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    options: ServerOptions,
    /// Until when the reactor sleeps (`None`: until something arrives).
    sleeping_until: Option<Instant>,
    /// Wakes the reactor when a deadline earlier than `sleeping_until` is set.
    early: EventFd,
}

impl Table {
    /// Adds a connection just accepted: it is idle from now on.
    pub(crate) fn insert(&mut self, token: u64, mut conn: Conn) {
        let now = Instant::now();
        conn.token = token;
        conn.timer = now + self.options.idle_timeout;
        conn.scheduled = Some(conn.timer);
        self.timers.push(Reverse((conn.timer, token)));
        if self.sleeping_until.map_or(true, |t| conn.timer < t) {
            self.sleeping_until = Some(conn.timer);
            self.early.notify();
        }
        self.conns.insert(token, conn);
    }

    pub(crate) fn remove(&mut self, token: &u64) -> Option<Conn> {
        self.conns.remove(token)
    }

    /// After a connection was acted on: closed when `keep` is false, else its epoll events
    /// and its timer follow what it waits for now.
    fn settle(&mut self, token: u64, keep: bool, epoll: &Epoll) {
        if !keep {
            if let Some(conn) = self.conns.remove(&token) {
                epoll.delete(conn.fd);
                // (dropped here: the socket closes)
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let wanted = conn.wanted();
        if wanted != conn.interest && epoll.modify(conn.fd, token, wanted).is_ok() {
            conn.interest = wanted;
        }
        let deadline = conn.deadline();
        if conn.scheduled.map_or(true, |s| deadline < s) {
            conn.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, token)));
        }
    }

    /// Acts on the deadlines that have passed; returns how long the reactor may sleep (in
    /// milliseconds for `epoll_wait`, -1 for no limit).
    fn expire(&mut self, epoll: &Epoll, r: &mut Round<'_>) -> libc::c_int {
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
            let deadline = conn.deadline();
            if deadline > at {
                // moved later: the entry follows it (so no wake-up before it)
                self.timers.pop();
                conn.scheduled = Some(deadline);
                self.timers.push(Reverse((deadline, token)));
                continue;
            }
            if at > r.now {
                self.sleeping_until = Some(at);
                let ms = (at - r.now).as_nanos().div_ceil(1_000_000);
                return ms.min(i32::MAX as u128) as libc::c_int;
            }
            self.timers.pop();
            conn.scheduled = None;
            let keep = conn.expire(r);
            self.settle(token, keep, epoll);
        }
    }
}

/// Starts the reactor threads of a server, one per epoll instance; returns each one's
/// epoll instance and connection table, for the accept thread to add connections to.
/// They all end when `wake`'s other end is dropped (with the `Server`).
pub(crate) fn start(
    epolls: Vec<Epoll>,
    wake: std::os::unix::net::UnixStream,
    messages: Arc<MessagesQueue<Message>>,
    options: ServerOptions,
) -> io::Result<Reactors> {
    let wake = Arc::new(wake);
    let mut reactors = Vec::with_capacity(epolls.len());
    for epoll in epolls {
        let epoll = Arc::new(epoll);
        let early = EventFd::new()?;
        epoll.add(early.fd(), TIMER, IN)?;
        let outbox = Arc::new(Outbox::new()?);
        epoll.add(outbox.bell.fd(), ANSWERS, IN)?;
        let conns: Conns = Arc::new(Mutex::new(Table {
            conns: HashMap::new(),
            timers: BinaryHeap::new(),
            options,
            sleeping_until: None,
            early,
        }));
        let (e, c, w, m) = (epoll.clone(), conns.clone(), wake.clone(), messages.clone());
        std::thread::Builder::new()
            .name("tiny-http-reactor".into())
            .spawn(move || run(e, c, w, m, outbox))
            .map_err(crate::thread_error)?;
        reactors.push((epoll, conns));
    }
    Ok(reactors)
}

/// The reactor thread: until `wake` says the `Server` is gone, writes the answers handed
/// over, reads every connection that has data and queues its requests, and acts on the
/// deadlines.
fn run(
    epoll: Arc<Epoll>,
    conns: Conns,
    wake: Arc<std::os::unix::net::UnixStream>,
    messages: Arc<MessagesQueue<Message>>,
    outbox: Arc<Outbox>,
) {
    use std::os::unix::io::AsRawFd;
    if epoll.add(wake.as_raw_fd(), WAKE, IN).is_err() {
        return;
    }
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut fired = Vec::with_capacity(events.len());
    let mut answers = Vec::new();
    // the requests of one round, queued together: one wake-up of the application's thread
    let mut ready = Vec::with_capacity(events.len());
    let mut timeout = -1;
    loop {
        let wait = if outbox.may_sleep() { timeout } else { 0 };
        if epoll.wait(&mut events, &mut fired, wait).is_err() {
            return;
        }
        let now = Instant::now();
        {
            let mut guard = lock(&conns);
            let table = &mut *guard;
            let options = table.options;
            let mut round = Round {
                now,
                options: &options,
                outbox: &outbox,
                ready: &mut ready,
            };
            for &(token, events) in &fired {
                match token {
                    WAKE => return,
                    TIMER => table.early.clear(),
                    ANSWERS => outbox.bell.clear(),
                    _ => {
                        if let Some(conn) = table.conns.get_mut(&token) {
                            let keep = conn.on_event(events, &mut round);
                            table.settle(token, keep, &epoll);
                        }
                    }
                }
            }
        }
        // what was read goes to the application now; the answers given meanwhile are
        // written while it works on it
        messages.push_all(&mut ready);
        outbox.take(&mut answers);
        let mut guard = lock(&conns);
        let table = &mut *guard;
        let options = table.options;
        let mut round = Round {
            now,
            options: &options,
            outbox: &outbox,
            ready: &mut ready,
        };
        for answer in answers.drain(..) {
            let token = answer.token;
            if let Some(conn) = table.conns.get_mut(&token) {
                let keep = conn.deliver(answer, &mut round);
                table.settle(token, keep, &epoll);
            }
        }
        timeout = table.expire(&epoll, &mut round);
        drop(guard);
        // (requests read where answers made room, and 408s)
        messages.push_all(&mut ready);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A connection on one end of a socket pair; the test is the client on the other.
    fn connection() -> (Conn, UnixStream, Arc<Outbox>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let conn = Conn::new(Connection::from(ours), None).unwrap();
        (conn, theirs, Arc::new(Outbox::new().unwrap()))
    }

    fn requests(ready: &mut Vec<Message>) -> Vec<Request> {
        ready
            .drain(..)
            .map(|m| match m {
                Message::NewRequest(rq) => rq,
                _ => panic!("not a request"),
            })
            .collect()
    }

    /// Answers `rq` with `body` and hands the answer to the connection, as the reactor's
    /// loop does.
    fn answer(conn: &mut Conn, r: &mut Round<'_>, rq: Request, body: Vec<u8>) -> bool {
        rq.respond(Response::from_data(body)).unwrap();
        let mut answers = Vec::new();
        r.outbox.take(&mut answers);
        answers.into_iter().all(|a| conn.deliver(a, r))
    }

    #[test]
    fn a_connection_has_at_most_max_in_flight_requests() {
        let (mut conn, mut peer, outbox) = connection();
        let options = ServerOptions::default();
        let mut ready = Vec::new();
        peer.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100).as_slice())
            .unwrap();
        let mut r = Round {
            now: Instant::now(),
            options: &options,
            outbox: &outbox,
            ready: &mut ready,
        };
        assert!(conn.pump(&mut r));
        let mut waiting = requests(r.ready);
        assert_eq!(waiting.len(), MAX_IN_FLIGHT);
        assert!(!conn.reads() && conn.wanted() & IN == 0, "still reading");
        // the answer to a later request does not make room: it waits for the first
        let last = waiting.pop().unwrap();
        assert!(answer(&mut conn, &mut r, last, b"last".to_vec()));
        assert!(r.ready.is_empty() && !conn.reads());
        // the first one's answer goes out (and the last's stays in its place): one more in
        let first = waiting.remove(0);
        assert!(answer(&mut conn, &mut r, first, b"first".to_vec()));
        assert_eq!(requests(r.ready).len(), 1);
        let mut got = [0u8; 512];
        let n = peer.read(&mut got).unwrap();
        let text = String::from_utf8_lossy(&got[..n]);
        assert!(
            text.ends_with("\r\n\r\nfirst") && !text.contains("last"),
            "{text:?}"
        );
    }

    #[test]
    fn a_client_that_takes_nothing_is_given_up_after_the_send_timeout() {
        let (mut conn, mut peer, outbox) = connection();
        let options = ServerOptions::default();
        let mut ready = Vec::new();
        peer.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n".repeat(8).as_slice())
            .unwrap();
        let now = Instant::now();
        let mut r = Round {
            now,
            options: &options,
            outbox: &outbox,
            ready: &mut ready,
        };
        assert!(conn.pump(&mut r));
        // answers far larger than the socket's buffer, which the client never reads
        for rq in requests(r.ready) {
            assert!(answer(&mut conn, &mut r, rq, vec![b'a'; 256 * 1024]));
        }
        assert_eq!(conn.send_deadline, Some(now + options.send_timeout));
        assert!(conn.wanted() & OUT != 0, "not waiting for the socket");
        // the reactor holds the answers it could not send, and reads nothing meanwhile
        assert!(conn.in_flight_bytes >= MAX_IN_FLIGHT_BYTES && !conn.reads());
        r.now = now + options.send_timeout;
        assert!(!conn.expire(&mut r), "kept a client that took nothing");
    }

    /// The same over TCP on loopback (what a socket holds for a client is what TCP has not
    /// had acknowledged yet).
    fn tcp_connection() -> (Conn, std::net::TcpStream, Arc<Outbox>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, addr) = listener.accept().unwrap();
        let conn = Conn::new(Connection::from(ours), Some(addr)).unwrap();
        (conn, peer, Arc::new(Outbox::new().unwrap()))
    }

    #[test]
    fn a_client_that_takes_some_gets_more_time() {
        let (mut conn, mut peer, outbox) = tcp_connection();
        let options = ServerOptions::default();
        let mut ready = Vec::new();
        peer.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let now = Instant::now();
        let mut r = Round {
            now,
            options: &options,
            outbox: &outbox,
            ready: &mut ready,
        };
        assert!(conn.pump(&mut r));
        let rq = requests(r.ready).remove(0);
        assert!(answer(&mut conn, &mut r, rq, vec![b'a'; 1024 * 1024]));
        assert!(conn.send_deadline.is_some());
        // the client reads some, not enough for the socket to say it is writable again
        let mut buf = vec![0u8; 128 * 1024];
        peer.read_exact(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // (the acknowledgements)
        assert_eq!(conn.wanted() & OUT, OUT);
        r.now = now + options.send_timeout;
        assert!(conn.expire(&mut r), "gave up on a client that reads");
        assert_eq!(conn.send_deadline, Some(r.now + options.send_timeout));
        // and nothing more: given up
        r.now += options.send_timeout;
        assert!(!conn.expire(&mut r));
    }
}
