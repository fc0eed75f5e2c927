use std::io::Error as IoError;
use std::io::{BufWriter, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;

use std::sync::mpsc::Sender;

use crate::util::{RefinedTcpStream, SequentialWriter};
use crate::{HTTPVersion, Header, Method, Response};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// hello-path-rs patch 9: after a request with `Connection: close` (or an HTTP/1.0 one
/// without `keep-alive`), nothing more is read from its connection as a request.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Writer>,

    remote_addr: Option<SocketAddr>,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // hello-path-rs patch 8: `respond` hands the answer to the writer thread
    outbox: Outbox,

    // hello-path-rs patch 9: what the answer says of the connection
    persistence: Persistence,
}

/// hello-path-rs patch 9: whether the connection goes on after a request's answer (RFC 9112
/// §9.3), and so what the answer's `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// HTTP/1.1 persistence: no `Connection` header.
    Default,
    /// An HTTP/1.0 request that asked to persist: `Connection: keep-alive`.
    KeepAlive10,
    /// The connection ends after this answer: `Connection: close`.
    Close,
}

/// The writer of one answer on its connection (answers are written in request order).
pub(crate) type Writer = SequentialWriter<BufWriter<RefinedTcpStream>>;

/// hello-path-rs patch 8: an answer for the writer thread, with the connection's writer for
/// that request. Patch 9: `close`, the connection's sending side is shut down after it.
pub(crate) struct Answer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) writer: Writer,
    pub(crate) close: bool,
}

/// hello-path-rs patch 8: the answers `respond` hands to the server's writer thread (answered
/// in request order per connection, as hello-path-rs's single loop does, the writer never
/// waits for an earlier answer).
pub(crate) type Outbox = Sender<Answer>;

/// hello-path-rs patch 8: the writer thread. A send to a client that does not read blocks it
/// at most the socket's send timeout (`refined_tcp_stream.rs`), never the application.
///
/// Patch 9: it never waits for an answer's turn either. An answer can arrive before the
/// one it follows on its connection (the reader refuses a pipelined request while the
/// application is still answering the one before it): such an answer is parked, and
/// written once the answer before it has been (waiting for it instead would wait forever,
/// since that answer comes through this same thread).
pub(crate) fn write_answers(answers: std::sync::mpsc::Receiver<Answer>) {
    let mut parked: Vec<Answer> = Vec::new();
    for answer in answers {
        let mut next = Some(answer);
        while let Some(mut answer) = next.take() {
            if answer.writer.is_ready() {
                write_answer(answer);
                // its connection's next answer may be parked
                next = parked
                    .iter_mut()
                    .position(|a| a.writer.is_ready())
                    .map(|i| parked.swap_remove(i));
            } else {
                parked.push(answer);
            }
        }
    }
}

fn write_answer(mut answer: Answer) {
    if answer.writer.write_all(&answer.bytes).is_ok() {
        answer.writer.flush().ok();
    }
    if answer.close {
        // RFC 9112 §9.6: the sending side first; the reader reads on until the client
        // closes too (see reactor.rs)
        answer.writer.shutdown_write();
    }
    // dropping the writer lets the connection's next answer go
}

/// hello-path-rs patch 6: bodies are read whole before the request is handed over (by the
/// reader thread since patch 8), up to this many bytes; a longer one gets 413 and the
/// connection is closed.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// hello-path-rs patch 8: a request parsed whole by the reader thread (`reactor.rs`), its
/// body (if any) already read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn from_parts(
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    body_length: Option<usize>,
    data_reader: Box<dyn Read + Send + 'static>,
    response_writer: Writer,
    outbox: Outbox,
    persistence: Persistence,
) -> Request {
    Request {
        outbox,
        data_reader: Some(data_reader),
        response_writer: Some(response_writer),
        remote_addr,
        method,
        path,
        http_version: version,
        headers,
        body_length,
        persistence,
    }
}

impl Request {
    /// Returns true if the request was made through HTTPS (never: the reader thread serves
    /// plain HTTP only).
    #[inline]
    pub fn secure(&self) -> bool {
        false
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// hello-path-rs patch 9: whether the connection ends after this request's answer.
    pub(crate) fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// Allows to read the body of the request (read whole before the request was handed
    /// over; a `100 Continue` asked for was sent then).
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        Box::new(self.extract_writer_impl())
    }

    /// Extract the response `Writer` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Writer {
        self.response_writer
            .take()
            .expect("the writer is taken once")
    }

    /// Sends a response to this request.
    ///
    /// hello-path-rs patch 9: a response with a `Connection: close` header ends the
    /// connection after it (its sending side is shut down once it is written).
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let writer = self.extract_writer_impl();
        let do_not_send_body = self.method == Method::Head;
        let persistence = if response.closes() {
            Persistence::Close
        } else {
            self.persistence
        };
        // the whole answer, handed to the writer thread
        let mut bytes = Vec::with_capacity(256);
        response.print(
            &mut bytes,
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            persistence,
        )?;
        self.outbox
            .send(Answer {
                bytes,
                writer,
                close: persistence == Persistence::Close,
            })
            .map_err(|_| IoError::new(ErrorKind::BrokenPipe, "the writer thread has ended"))
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = crate::own_answer(Response::empty(500));
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
