use std::io::Error as IoError;
use std::io::{Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::reactor::{Answer, Outbox};
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
/// in which you call `respond`. (hello-path-rs patch 12: at most `MAX_IN_FLIGHT` of one
/// connection at a time; its next requests are read once answers have gone out.)
///
/// hello-path-rs patch 9: after a request with `Connection: close` (or an HTTP/1.0 one
/// without `keep-alive`), nothing more is read from its connection as a request.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `respond` being called (hello-path-rs patch 12:
/// `into_writer` is gone, the reactor writes every answer),
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // hello-path-rs patch 12: where the answer goes; empty once answered
    reply: Option<ReplyTo>,

    remote_addr: Option<SocketAddr>,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

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

/// hello-path-rs patch 12: where a request's answer goes: the reactor (`reactor.rs`), which
/// writes it in its turn among its connection's answers.
pub(crate) struct ReplyTo {
    /// The connection.
    pub(crate) token: u64,
    /// The request's number on it.
    pub(crate) seq: u64,
    pub(crate) outbox: Arc<Outbox>,
}

/// hello-path-rs patch 11: a request that tiny_http refused on its own — a framing error
/// (400, 413, 414, 417, 431, 501, 505), a timeout (408), a CONNECT (405) — and has
/// already answered (`Connection: close`). `Server::recv_until` hands it over so that the
/// application can count and log it; nothing is to be done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
    /// The method and target of its request line, when it had one that parses.
    pub(crate) line: Option<(String, String)>,
    pub(crate) remote_addr: Option<SocketAddr>,
}

impl Refused {
    /// The status of the answer given.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Why, in a few words (`"Content-Length given twice"`).
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The method of the request line, when it could be read.
    pub fn method(&self) -> Option<&str> {
        self.line.as_ref().map(|(m, _)| m.as_str())
    }

    /// The target of the request line, as sent, when it could be read.
    pub fn url(&self) -> Option<&str> {
        self.line.as_ref().map(|(_, t)| t.as_str())
    }

    /// The address of the client (`None` on a UNIX socket).
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }
}

/// hello-path-rs patch 6: bodies are read whole before the request is handed over (by the
/// reactor thread since patch 8), up to this many bytes; a longer one gets 413 and the
/// connection is closed.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// hello-path-rs patch 8: a request parsed whole by the reactor thread (`reactor.rs`), its
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
    reply: ReplyTo,
    persistence: Persistence,
) -> Request {
    Request {
        data_reader: Some(data_reader),
        reply: Some(reply),
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
        let Some(reply) = self.reply.take() else {
            return Ok(()); // answered already
        };
        let do_not_send_body = self.method == Method::Head;
        let persistence = if response.closes() {
            Persistence::Close
        } else {
            self.persistence
        };
        // the whole answer, handed to the reactor
        let mut bytes = Vec::with_capacity(256);
        response.print(
            &mut bytes,
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            persistence,
        )?;
        reply.outbox.send(Answer {
            token: reply.token,
            seq: reply.seq,
            bytes,
            close: persistence == Persistence::Close,
        });
        Ok(())
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
        if self.reply.is_some() {
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
