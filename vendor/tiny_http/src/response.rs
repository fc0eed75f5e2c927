use crate::common::{HTTPVersion, Header, StatusCode};
use crate::request::Persistence;
use httpdate::HttpDate;
use std::sync::mpsc::Receiver;

use std::io::Result as IoResult;
use std::io::{self, Cursor, Read, Write};

use std::fs::File;

use std::str::FromStr;
use std::time::SystemTime;

/// Object representing an HTTP response whose purpose is to be given to a `Request`.
///
/// Some headers cannot be changed. Trying to define the value
/// of one of these will have no effect:
///
///  - `Connection` (hello-path-rs patch 9: but `Connection: close` is honoured: the answer
///    says so and the connection ends after it)
///  - `Trailer`
///  - `Transfer-Encoding`
///  - `Upgrade`
///
/// Some headers have special behaviors:
///
///  - `Content-Encoding`: If you define this header, the library
///     will assume that the data from the `Read` object has the specified encoding
///     and will just pass-through.
///
///  - `Content-Length`: The length of the data should be set manually
///     using the `Reponse` object's API. Attempting to set the value of this
///     header will be equivalent to modifying the size of the data but the header
///     itself may not be present in the final result.
///
///  - `Content-Type`: You may only set this header to one value at a time. If you
///     try to set it more than once, the existing value will be overwritten. This
///     behavior differs from the default for most headers, which is to allow them to
///     be set multiple times in the same response.
///
pub struct Response<R> {
    reader: R,
    status_code: StatusCode,
    headers: Vec<Header>,
    data_length: Option<usize>,
    chunked_threshold: Option<usize>,
    /// hello-path-rs patch 9: the application asked to end the connection after this.
    close: bool,
}

/// A `Response` without a template parameter.
pub type ResponseBox = Response<Box<dyn Read + Send>>;

/// Transfer encoding to use when sending the message.
/// Note that only *supported* encoding are listed here.
#[derive(Copy, Clone)]
enum TransferEncoding {
    Identity,
    Chunked,
}

impl FromStr for TransferEncoding {
    type Err = ();

    fn from_str(input: &str) -> Result<TransferEncoding, ()> {
        if input.eq_ignore_ascii_case("identity") {
            Ok(TransferEncoding::Identity)
        } else if input.eq_ignore_ascii_case("chunked") {
            Ok(TransferEncoding::Chunked)
        } else {
            Err(())
        }
    }
}

// hello-path-rs patch 4: the Date header's value is formatted once per second per thread
// (it was formatted and allocated for every response), and the status line and headers
// are assembled in one buffer (they were ~30 small writes, each through the connection's
// mutex), sent together with a small known-length body in a single write.

/// Responses whose known-length body is at most this many bytes go out in one write.
const ONE_WRITE_BODY: usize = 16 * 1024;

thread_local! {
    /// (seconds since the epoch, `Date` value for that second)
    static DATE: std::cell::RefCell<(u64, String)> = std::cell::RefCell::new((u64::MAX, String::new()));
}

/// Appends the current date in the `Date` header's format (RFC 7231 IMF-fixdate).
fn push_date(buf: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, HttpDate::from(now).to_string());
        }
        buf.extend_from_slice(cached.1.as_bytes());
    });
}

/// Appends `Field: value\r\n`.
fn push_header(buf: &mut Vec<u8>, field: &[u8], value: &[u8]) {
    buf.extend_from_slice(field);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// hello-path-rs patch 9: the body in the chunked coding (RFC 9112 §7.1), one chunk per
/// read of up to 8 KiB, then the last chunk (it replaces the `chunked_transfer` crate).
fn write_chunked<R: Read, W: Write>(reader: &mut R, writer: &mut W) -> IoResult<()> {
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        write!(writer, "{:X}\r\n", n)?;
        writer.write_all(&buf[..n])?;
        writer.write_all(b"\r\n")?;
    }
    writer.write_all(b"0\r\n\r\n")
}

fn choose_transfer_encoding(
    status_code: StatusCode,
    request_headers: &[Header],
    http_version: &HTTPVersion,
    entity_length: &Option<usize>,
    has_additional_headers: bool,
    chunked_threshold: usize,
) -> TransferEncoding {
    use crate::util;

    // HTTP 1.0 doesn't support other encoding
    if *http_version <= (1, 0) {
        return TransferEncoding::Identity;
    }

    // Per section 3.3.1 of RFC7230:
    // A server MUST NOT send a Transfer-Encoding header field in any response with a status code
    // of 1xx (Informational) or 204 (No Content).
    if status_code.0 < 200 || status_code.0 == 204 {
        return TransferEncoding::Identity;
    }

    // hello-path-rs patch 10: the request's `TE` no longer chooses the framing. It lists the
    // codings a client accepts besides chunked (RFC 9110 §10.1.4) and obliges the server to
    // nothing; upstream answered `TE: identity` and `TE: chunked` with that coding, parsing
    // q-values as floats for it (3 kB of float parsing in the binary).
    let _ = request_headers;

    // if we have additional headers, using chunked
    if has_additional_headers {
        return TransferEncoding::Chunked;
    }

    // if we don't have a Content-Length, or if the Content-Length is too big, using chunks writer
    if entity_length
        .as_ref()
        .map_or(true, |val| *val >= chunked_threshold)
    {
        return TransferEncoding::Chunked;
    }

    // Identity by default
    TransferEncoding::Identity
}

impl<R> Response<R>
where
    R: Read,
{
    /// Creates a new Response object.
    ///
    /// The `additional_headers` argument is a receiver that
    ///  may provide headers even after the response has been sent.
    ///
    /// All the other arguments are straight-forward.
    pub fn new(
        status_code: StatusCode,
        headers: Vec<Header>,
        data: R,
        data_length: Option<usize>,
        additional_headers: Option<Receiver<Header>>,
    ) -> Response<R> {
        let mut response = Response {
            reader: data,
            status_code,
            headers: Vec::with_capacity(16),
            data_length,
            chunked_threshold: None,
            close: false,
        };

        for h in headers {
            response.add_header(h)
        }

        // dummy implementation
        if let Some(additional_headers) = additional_headers {
            for h in additional_headers.iter() {
                response.add_header(h)
            }
        }

        response
    }

    /// Set a threshold for `Content-Length` where we chose chunked
    /// transfer. Notice that chunked transfer might happen regardless of
    /// this threshold, for instance when the request headers indicate
    /// it is wanted or when there is no `Content-Length`.
    pub fn with_chunked_threshold(mut self, length: usize) -> Response<R> {
        self.chunked_threshold = Some(length);
        self
    }

    /// Convert the response into the underlying `Read` type.
    ///
    /// This is mainly useful for testing as it must consume the `Response`.
    pub fn into_reader(self) -> R {
        self.reader
    }

    /// The current `Content-Length` threshold for switching over to
    /// chunked transfer. The default is 32768 bytes. Notice that
    /// chunked transfer is mutually exclusive with sending a
    /// `Content-Length` header as per the HTTP spec.
    pub fn chunked_threshold(&self) -> usize {
        self.chunked_threshold.unwrap_or(32768)
    }

    /// Adds a header to the list.
    /// Does all the checks.
    pub fn add_header<H>(&mut self, header: H)
    where
        H: Into<Header>,
    {
        let header = header.into();

        // ignoring forbidden headers (hello-path-rs patch 9: a "close" is remembered)
        if header.field.equiv("Connection") {
            self.close |= header
                .value
                .as_str()
                .split(',')
                .any(|o| o.trim().eq_ignore_ascii_case("close"));
            return;
        }
        if header.field.equiv("Trailer")
            || header.field.equiv("Transfer-Encoding")
            || header.field.equiv("Upgrade")
        {
            return;
        }

        // if the header is Content-Length, setting the data length
        if header.field.equiv("Content-Length") {
            if let Ok(val) = usize::from_str(header.value.as_str()) {
                self.data_length = Some(val)
            }

            return;
        // if the header is Content-Type and it's already set, overwrite it
        } else if header.field.equiv("Content-Type") {
            if let Some(content_type_header) = self
                .headers
                .iter_mut()
                .find(|h| h.field.equiv("Content-Type"))
            {
                content_type_header.value = header.value;
                return;
            }
        }

        self.headers.push(header);
    }

    /// Returns the same request, but with an additional header.
    ///
    /// Some headers cannot be modified and some other have a
    ///  special behavior. See the documentation above.
    #[inline]
    pub fn with_header<H>(mut self, header: H) -> Response<R>
    where
        H: Into<Header>,
    {
        self.add_header(header.into());
        self
    }

    /// Returns the same request, but with a different status code.
    #[inline]
    pub fn with_status_code<S>(mut self, code: S) -> Response<R>
    where
        S: Into<StatusCode>,
    {
        self.status_code = code.into();
        self
    }

    /// Returns the same request, but with different data.
    pub fn with_data<S>(self, reader: S, data_length: Option<usize>) -> Response<S>
    where
        S: Read,
    {
        Response {
            reader,
            headers: self.headers,
            status_code: self.status_code,
            data_length,
            chunked_threshold: self.chunked_threshold,
            close: self.close,
        }
    }

    /// Prints the HTTP response to a writer.
    ///
    /// This function is the one used to send the response to the client's socket.
    /// Therefore you shouldn't expect anything pretty-printed or even readable.
    ///
    /// The HTTP version and headers passed as arguments are used to
    ///  decide which features (most notably, encoding) to use.
    ///
    /// Note: does not flush the writer.
    pub fn raw_print<W: Write>(
        self,
        writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
    ) -> IoResult<()> {
        let persistence = if self.close {
            Persistence::Close
        } else {
            Persistence::Default
        };
        self.print_with(
            writer,
            http_version,
            request_headers,
            do_not_send_body,
            upgrade,
            persistence,
        )
    }

    /// hello-path-rs patch 9: true when the application asked to end the connection after
    /// this response (`Connection: close`).
    pub(crate) fn closes(&self) -> bool {
        self.close
    }

    /// hello-path-rs patch 9: `raw_print` with the `Connection` header that `persistence`
    /// calls for (after the framing header).
    pub(crate) fn print<W: Write>(
        self,
        writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        persistence: Persistence,
    ) -> IoResult<()> {
        self.print_with(
            writer,
            http_version,
            request_headers,
            do_not_send_body,
            None,
            persistence,
        )
    }

    fn print_with<W: Write>(
        mut self,
        mut writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
        persistence: Persistence,
    ) -> IoResult<()> {
        let mut transfer_encoding = Some(choose_transfer_encoding(
            self.status_code,
            request_headers,
            &http_version,
            &self.data_length,
            false, /* TODO */
            self.chunked_threshold(),
        ));

        let has_date = self.headers.iter().any(|h| h.field.equiv("Date"));
        let has_server = self.headers.iter().any(|h| h.field.equiv("Server"));

        // handling upgrade
        if upgrade.is_some() {
            transfer_encoding = None;
        }

        // if the transfer encoding is identity, the content length must be known ; therefore if
        // we don't know it, we buffer the entire response first here
        // while this is an expensive operation, it is only ever needed for clients using HTTP 1.0
        let (mut reader, data_length): (Box<dyn Read>, _) =
            match (self.data_length, transfer_encoding) {
                (Some(l), _) => (Box::new(self.reader), Some(l)),
                (None, Some(TransferEncoding::Identity)) => {
                    let mut buf = Vec::new();
                    self.reader.read_to_end(&mut buf)?;
                    let l = buf.len();
                    (Box::new(Cursor::new(buf)), Some(l))
                }
                _ => (Box::new(self.reader), None),
            };

        // checking whether to ignore the body of the response
        let do_not_send_body = do_not_send_body
            || match self.status_code.0 {
                // status code 1xx, 204 and 304 MUST not include a body
                100..=199 | 204 | 304 => true,
                _ => false,
            };

        // status line, then the headers in tiny_http's order: Connection and Upgrade (on an
        // upgrade), Server and Date (unless given), the response's own, then the framing one
        let mut head: Vec<u8> = Vec::with_capacity(256);
        write!(
            &mut head,
            "HTTP/{}.{} {} {}\r\n",
            http_version.0,
            http_version.1,
            self.status_code.0,
            self.status_code.default_reason_phrase()
        )?;
        if let Some(upgrade) = upgrade {
            push_header(&mut head, b"Connection", b"upgrade");
            push_header(&mut head, b"Upgrade", upgrade.as_bytes());
        }
        if !has_server {
            push_header(&mut head, b"Server", b"tiny-http (Rust)");
        }
        if !has_date {
            head.extend_from_slice(b"Date: ");
            push_date(&mut head);
            head.extend_from_slice(b"\r\n");
        }
        for header in self.headers.iter() {
            push_header(
                &mut head,
                header.field.as_str().as_ref(),
                header.value.as_str().as_ref(),
            );
        }
        // hello-path-rs patch 9: no framing header on a 1xx or 204 answer (RFC 9112 §6.1,
        // RFC 9110 §8.6: MUST NOT)
        let bodiless = self.status_code.0 < 200 || self.status_code.0 == 204;
        match transfer_encoding {
            _ if bodiless => (),
            Some(TransferEncoding::Chunked) => {
                push_header(&mut head, b"Transfer-Encoding", b"chunked")
            }
            Some(TransferEncoding::Identity) => {
                assert!(data_length.is_some());
                let data_length = data_length.unwrap();
                write!(&mut head, "Content-Length: {}\r\n", data_length)?;
            }
            _ => (),
        };
        match persistence {
            _ if upgrade.is_some() => (),
            Persistence::Default => (),
            Persistence::KeepAlive10 => push_header(&mut head, b"Connection", b"keep-alive"),
            Persistence::Close => push_header(&mut head, b"Connection", b"close"),
        }
        head.extend_from_slice(b"\r\n");

        // sending the headers and the body
        if do_not_send_body {
            writer.write_all(&head)?;
        } else {
            match transfer_encoding {
                Some(TransferEncoding::Chunked) => {
                    writer.write_all(&head)?;
                    write_chunked(&mut reader, &mut writer)?;
                }

                Some(TransferEncoding::Identity) => {
                    assert!(data_length.is_some());
                    let data_length = data_length.unwrap();

                    if data_length >= 1 && data_length <= ONE_WRITE_BODY {
                        reader.read_to_end(&mut head)?;
                        writer.write_all(&head)?;
                    } else {
                        writer.write_all(&head)?;
                        if data_length >= 1 {
                            io::copy(&mut reader, &mut writer)?;
                        }
                    }
                }

                _ => writer.write_all(&head)?,
            }
        }

        Ok(())
    }

    /// Retrieves the current value of the `Response` status code
    pub fn status_code(&self) -> StatusCode {
        self.status_code
    }

    /// Retrieves the current value of the `Response` data length
    pub fn data_length(&self) -> Option<usize> {
        self.data_length
    }

    /// Retrieves the current list of `Response` headers
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }
}

impl<R> Response<R>
where
    R: Read + Send + 'static,
{
    /// Turns this response into a `Response<Box<Read + Send>>`.
    pub fn boxed(self) -> ResponseBox {
        Response {
            reader: Box::new(self.reader) as Box<dyn Read + Send>,
            status_code: self.status_code,
            headers: self.headers,
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
            close: self.close,
        }
    }
}

impl Response<File> {
    /// Builds a new `Response` from a `File`.
    ///
    /// The `Content-Type` will **not** be automatically detected,
    ///  you must set it yourself.
    pub fn from_file(file: File) -> Response<File> {
        let file_size = file.metadata().ok().map(|v| v.len() as usize);

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            file,
            file_size,
            None,
        )
    }
}

impl Response<Cursor<Vec<u8>>> {
    pub fn from_data<D>(data: D) -> Response<Cursor<Vec<u8>>>
    where
        D: Into<Vec<u8>>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            Cursor::new(data),
            Some(data_len),
            None,
        )
    }

    pub fn from_string<S>(data: S) -> Response<Cursor<Vec<u8>>>
    where
        S: Into<String>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            vec![
                Header::from_bytes(&b"Content-Type"[..], &b"text/plain; charset=UTF-8"[..])
                    .unwrap(),
            ],
            Cursor::new(data.into_bytes()),
            Some(data_len),
            None,
        )
    }
}

impl Response<io::Empty> {
    /// Builds an empty `Response` with the given status code.
    pub fn empty<S>(status_code: S) -> Response<io::Empty>
    where
        S: Into<StatusCode>,
    {
        Response::new(
            status_code.into(),
            Vec::with_capacity(0),
            io::empty(),
            Some(0),
            None,
        )
    }

    /// DEPRECATED. Use `empty` instead.
    pub fn new_empty(status_code: StatusCode) -> Response<io::Empty> {
        Response::empty(status_code)
    }
}

impl Clone for Response<io::Empty> {
    fn clone(&self) -> Response<io::Empty> {
        Response {
            reader: io::empty(),
            status_code: self.status_code,
            headers: self.headers.clone(),
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
            close: self.close,
        }
    }
}
