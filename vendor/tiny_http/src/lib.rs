//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
// hello-path-rs patch 8: `deny`, not `forbid`: the reactor's epoll and eventfd calls
// (`reactor.rs`, module `sys`) are the one place allowed to use `unsafe`.
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use reactor::ServerOptions;
pub use request::{ReadWrite, Refused, Request};
pub use response::{Response, ResponseBox};

// hello-path-rs patch 5: the answers tiny_http writes itself (400 for a malformed request,
// 408, 417, 505, and 500 for a request dropped unanswered) never reach the application, so
// they lacked the headers it puts on every response (`X-Served-By`). The application can now
// name headers for them, once per process.
static OWN_ANSWER_HEADERS: std::sync::OnceLock<Vec<Header>> = std::sync::OnceLock::new();

/// Sets headers added to every answer tiny_http writes on its own (400, 405, 408, 413, 414,
/// 417, 431, 501, 505, and 500 for a request dropped without a response). The first call wins; later calls are
/// ignored.
pub fn set_own_answer_headers(headers: Vec<Header>) {
    let _ = OWN_ANSWER_HEADERS.set(headers);
}

/// `response` with the headers set by `set_own_answer_headers`.
pub(crate) fn own_answer<R: std::io::Read>(mut response: Response<R>) -> Response<R> {
    if let Some(headers) = OWN_ANSWER_HEADERS.get() {
        for header in headers {
            response.add_header(header.clone());
        }
    }
    response
}

/// hello-path-rs patch 8: a thread that cannot be started (a pids limit) is an error of
/// `Server::from_listener` that says so.
fn thread_error(e: IoError) -> IoError {
    IoError::new(e.kind(), format!("cannot start a thread: {}", e))
}

mod common;
mod connection;
mod parse;
mod reactor;
mod request;
mod response;
mod ssl;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // hello-path-rs patch 8: dropped with the server, which ends its reactor threads
    _reader_wake: std::os::unix::net::UnixStream,

    // hello-path-rs patch 10: the reactors' epoll instances and connection tables, set by
    // the first accept thread once it has started them, and the connection tokens, shared
    // with any accept thread started later by `accept_again`.
    reactor: Arc<OnceLock<reactor::Reactors>>,
    next_token: Arc<AtomicU64>,
}

/// hello-path-rs patch 10: an accept thread's share of the server.
struct Accept {
    close: Arc<AtomicBool>,
    messages: Arc<MessagesQueue<Message>>,
    reactor: Arc<OnceLock<reactor::Reactors>>,
    next_token: Arc<AtomicU64>,
}

/// hello-path-rs patch 10: wakes the thread waiting in `Server::recv_until` (or the next one
/// to call it) from any thread. Cheap to clone; several wake-ups before the waiter runs
/// count as one.
#[derive(Clone)]
pub struct Waker(Arc<MessagesQueue<Message>>);

impl Waker {
    /// Makes `recv_until` return `Ok(None)` now, or at its next call.
    pub fn wake(&self) {
        self.0.wake();
    }
}

enum Message {
    Error(IoError),
    NewRequest(Request),
    /// hello-path-rs patch 11: a request tiny_http refused (and answered) on its own.
    Refused(Refused),
}

/// hello-path-rs patch 11: what `Server::recv_until` hands over: a request to answer, or
/// one that tiny_http refused and answered itself (for the application's count and log).
#[derive(Debug)]
pub enum Incoming {
    Request(Request),
    Refused(Refused),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with(listener, ssl_config, ServerOptions::default())
    }

    /// hello-path-rs patch 9: `from_listener`, with the timeouts of its connections.
    pub fn from_listener_with<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        options: ServerOptions,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // hello-path-rs patch 10: the reader thread (patch 8) reads plain sockets only; the
        // accept loop that wrapped connections in TLS is gone.
        if ssl_config.is_some() {
            return Err("this tiny_http fork does not support HTTPS (see PATCHES.md)".into());
        }

        // the queue of requests (and accept errors) for `recv`
        let messages = MessagesQueue::with_capacity(8);

        // hello-path-rs patch 8: reactor threads read and write the connections (reactor.rs,
        // patch 12); the accept thread deals out the connections it accepts. The reactors
        // are started by the accept thread, off the caller's path (a server answers sooner
        // after start); one it cannot start is a panic there, which hello-path-rs turns into
        // exit 1, never a server that accepts and never answers.
        let (reader_wake, wake) = std::os::unix::net::UnixStream::pair()?;
        // (descriptors are taken here, where running out of them is an error to return)
        let epolls = (0..reactor::REACTORS)
            .map(|_| reactor::Epoll::new())
            .collect::<IoResult<Vec<_>>>()?;

        let reactor = Arc::new(OnceLock::new());
        let next_token = Arc::new(AtomicU64::new(0));
        Accept {
            close: close_trigger.clone(),
            messages: messages.clone(),
            reactor: Arc::clone(&reactor),
            next_token: Arc::clone(&next_token),
        }
        .spawn(server, Some((epolls, wake, options)))?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            _reader_wake: reader_wake,
            reactor,
            next_token,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        unimplemented!()
        //self.requests_receiver.lock().len()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    ///
    /// hello-path-rs patch 11: refused requests (answered by tiny_http) are skipped; see
    /// `recv_until`.
    pub fn recv(&self) -> IoResult<Request> {
        loop {
            return match self.messages.pop() {
                Some(Message::Error(err)) => Err(err),
                Some(Message::NewRequest(rq)) => Ok(rq),
                Some(Message::Refused(_)) => continue,
                None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
            };
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        loop {
            return match self.messages.pop_timeout(timeout) {
                Some(Message::Error(err)) => Err(err),
                Some(Message::NewRequest(rq)) => Ok(Some(rq)),
                Some(Message::Refused(_)) => continue,
                None => Ok(None),
            };
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        loop {
            return match self.messages.try_pop() {
                Some(Message::Error(err)) => Err(err),
                Some(Message::NewRequest(rq)) => Ok(Some(rq)),
                Some(Message::Refused(_)) => continue,
                None => Ok(None),
            };
        }
    }

    /// hello-path-rs patch 10: the next request, or `Ok(None)` when `deadline` passed or a
    /// `Waker` woke the caller; with no deadline it waits with no timeout at all (no
    /// periodic wake-up). An `Err` is a failed `accept()`: the accept thread has ended, the
    /// connections it accepted are still read and answered, and `accept_again` starts a
    /// new one. Patch 11: also each request tiny_http refused on its own, in its turn.
    pub fn recv_until(&self, deadline: Option<std::time::Instant>) -> IoResult<Option<Incoming>> {
        match self.messages.pop_until(deadline) {
            util::Popped::Elem(Message::Error(err)) => Err(err),
            util::Popped::Elem(Message::NewRequest(rq)) => Ok(Some(Incoming::Request(rq))),
            util::Popped::Elem(Message::Refused(r)) => Ok(Some(Incoming::Refused(r))),
            util::Popped::Woken | util::Popped::TimedOut => Ok(None),
        }
    }

    /// hello-path-rs patch 10: a handle that wakes `recv_until` from another thread.
    pub fn waker(&self) -> Waker {
        Waker(Arc::clone(&self.messages))
    }

    /// hello-path-rs patch 10: starts a new accept thread on `listener` (typically a handle
    /// on the same socket, after `recv_until` reported that `accept()` failed), feeding the
    /// same reader, connection table and request queue: nothing accepted before is lost,
    /// and there is still one queue to wait on. Plain TCP only.
    pub fn accept_again<L: Into<Listener>>(&self, listener: L) -> IoResult<()> {
        if self.reactor.get().is_none() {
            return Err(IoError::new(
                IoErrorKind::Other,
                "the server's reader has not started",
            ));
        }
        let accept = Accept {
            close: self.close.clone(),
            messages: self.messages.clone(),
            reactor: Arc::clone(&self.reactor),
            next_token: Arc::clone(&self.next_token),
        };
        accept.spawn(listener.into(), None)
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Accept {
    /// Starts the accept thread; with `reader`, it first starts the reactor (off the
    /// caller's path: a server answers sooner after start). One it cannot start is
    /// a panic there, which hello-path-rs turns into exit 1, never a server that accepts
    /// and never answers.
    fn spawn(
        self,
        server: Listener,
        reader: Option<(
            Vec<reactor::Epoll>,
            std::os::unix::net::UnixStream,
            ServerOptions,
        )>,
    ) -> IoResult<()> {
        thread::Builder::new()
            .name("tiny-http-accept".into())
            .spawn(move || {
                if let Some((epolls, wake, options)) = reader {
                    let started = reactor::start(epolls, wake, self.messages.clone(), options)
                        .unwrap_or_else(|e| panic!("tiny_http cannot start its reader: {}", e));
                    let _ = self.reactor.set(started);
                }
                self.run(server);
            })
            .map_err(thread_error)?;
        Ok(())
    }

    /// Accepts connections and hands them to the reader until the server is dropped or
    /// `accept()` fails; the failure is reported once through `recv`.
    fn run(self, server: Listener) {
        let Some(reactors) = self.reactor.get() else {
            return;
        };
        log::debug!("Running accept thread");
        while !self.close.load(Relaxed) {
            let new_client = match server.accept() {
                // hello-path-rs patch 12: one descriptor per connection (patch 2's second
                // one, for the writer thread, went with it), made non-blocking; a socket
                // that refuses is closed, and the loop goes on
                Ok((sock, remote_addr)) => match reactor::Conn::new(sock, remote_addr) {
                    Ok(conn) => Ok(conn),
                    Err(e) => {
                        log::error!("Error setting up a new client: {}", e);
                        continue;
                    }
                },
                Err(e) => Err(e),
            };
            match new_client {
                Ok(conn) => {
                    let token = self.next_token.fetch_add(1, Relaxed) + 1;
                    // (the reactors in turn)
                    let (epoll, conns) = &reactors[token as usize % reactors.len()];
                    let (fd, interest) = (conn.fd(), conn.interest());
                    conns.lock().unwrap().insert(token, conn);
                    if let Err(e) = epoll.add(fd, token, interest) {
                        log::error!("Error watching a new client: {}", e);
                        conns.lock().unwrap().remove(&token);
                    }
                }
                Err(e) => {
                    log::error!("Error accepting new client: {}", e);
                    self.messages.push(e.into());
                    break;
                }
            }
        }
        log::debug!("Terminating accept thread");
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
