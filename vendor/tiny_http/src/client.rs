use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::connection::Connection;
use crate::limits::{Counted, Limits, ReadDeadline, Waiting};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // kubernary: see `crate::Limits`.
    limits: Limits,
    deadline: Arc<ReadDeadline>,
    requests_in_progress: Arc<AtomicUsize>,
    // Held from the first byte of a request until it is answered.
    in_progress: Option<Counted>,
    requests_read: usize,
    // Since the accept, then since the latest answer; and where the
    // connection is listed while it waits for a request.
    waiting_since: Instant,
    waiting: Option<(Arc<Waiting>, Weak<Connection>)>,
    // Set when the connection must end after its current answer (a body
    // that could not be read to its end).
    end: Arc<AtomicBool>,
    // The server's: set once it is shutting down.
    closing: Arc<AtomicBool>,
}

/// kubernary: after an error answer on a connection whose client may still
/// be sending, what it sends is read and dropped for this long before the
/// connection is closed: closing with unread bytes resets the connection,
/// and the reset can destroy the answer before the client reads it (Go's
/// `net/http` waits for the same reason).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    // kubernary: the request line and headers are over `max_header_bytes`.
    HeaderTooLarge(HTTPVersion),
    // kubernary: the body is over `max_body_bytes`.
    BodyTooLarge(HTTPVersion),
    // kubernary: no byte of a next request came within the idle timeout (or
    // the header timeout, for a connection's first request).
    Idle,
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    // kubernary: with limits; `deadline` is the one `read_socket` reads
    // under; `waiting` lists the connection while it waits for a request.
    pub(crate) fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
        deadline: Arc<ReadDeadline>,
        requests_in_progress: Arc<AtomicUsize>,
        waiting: Option<(Arc<Waiting>, Weak<Connection>)>,
        closing: Arc<AtomicBool>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            deadline,
            requests_in_progress,
            in_progress: None,
            requests_read: 0,
            waiting_since: Instant::now(),
            waiting,
            end: Arc::new(AtomicBool::new(false)),
            closing,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    // kubernary: counts the bytes read against `left` (what
    // `max_header_bytes` still allows), starting with `first`.
    fn read_next_line(
        &mut self,
        mut first: Option<u8>,
        left: &mut Option<usize>,
        version: HTTPVersion,
    ) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            if let Some(left) = left {
                if *left == 0 {
                    return Err(ReadError::HeaderTooLarge(version));
                }
                *left -= 1;
            }
            let byte = match first.take() {
                Some(b) => Some(Ok(b)),
                None => self.next_header_source.by_ref().bytes().next(),
            };

            let byte = match byte {
                Some(b) => b.map_err(ReadError::ReadIoError)?,
                None => {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
            };

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| {
                    ReadError::ReadIoError(IoError::new(
                        ErrorKind::InvalidInput,
                        "Header is not in ASCII",
                    ))
                });
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // kubernary: a connection waits for a request's first byte under
        // the idle timeout (a new one, since the accept), then reads the
        // request line and headers under one header deadline.
        if self.requests_read > 0 {
            self.waiting_since = Instant::now();
            let idle = self.limits.idle_timeout;
            self.deadline.set(idle.map(|t| Instant::now() + t));
        }
        self.requests_read += 1;
        let mut swept = false;
        let id = self.waiting.as_ref().map(|(waiting, conn)| {
            let id = waiting.id();
            swept = !waiting.enter(id, self.waiting_since, conn);
            id
        });
        let mut first = [0u8];
        let got = loop {
            // The shutdown has closed the waiting connections already.
            if swept {
                break Err(ReadError::Idle);
            }
            match self.next_header_source.read(&mut first) {
                Ok(0) => break Err(ReadError::Idle),
                Ok(_) => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::TimedOut => break Err(ReadError::Idle),
                Err(e) => break Err(ReadError::ReadIoError(e)),
            }
        };
        if let (Some((waiting, _)), Some(id)) = (&self.waiting, id) {
            waiting.leave(id);
        }
        got?;
        if self.in_progress.is_none() {
            self.in_progress = Some(Counted::new(&self.requests_in_progress));
        }
        let header = self.limits.header_timeout;
        self.deadline.set(header.map(|t| Instant::now() + t));
        let mut left = self.limits.max_header_bytes;

        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self.read_next_line(Some(first[0]), &mut left, HTTPVersion(1, 1))?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self.read_next_line(None, &mut left, version.clone())?;

                    if line.is_empty() {
                        break;
                    };
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // kubernary: the body is read under a deadline of its own.
        let header = self.limits.header_timeout;
        self.deadline.set(header.map(|t| Instant::now() + t));

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            // kubernary: a client gone already has no address, and upstream
            // unwrapped that (a panic on the connection's thread).
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
            self.limits.max_body_bytes,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version.clone())
                }
                request::RequestCreationError::BodyTooLarge => {
                    ReadError::BodyTooLarge(version.clone())
                }
            }
        })?;

        // return the request
        Ok(request.counted(self.in_progress.take()).ending(self.end.clone(), self.closing.clone()))
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        // kubernary: or the previous answer ended the connection.
        if self.no_more_requests {
            return None;
        }
        // (A new connection's first request is read and answered even so.)
        let closing = self.requests_read > 0 && self.closing.load(Ordering::SeqCst);
        if self.end.load(Ordering::Relaxed) || closing {
            self.linger();
            return None;
        }

        loop {
            let rq = match self.read() {
                // kubernary: the error answers go through `refuse`, which
                // says `Connection: close` and lingers (upstream's said
                // neither, and the close could reset the answer away).
                Err(ReadError::WrongRequestLine) => {
                    self.refuse(400, HTTPVersion(1, 1), "Bad request\n");
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(400, ver, "Bad request\n");
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    // request timeout
                    self.refuse(408, HTTPVersion(1, 1), "Request timeout\n");
                    return None; // closing the connection
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    self.refuse(417, ver, "Expectation failed\n");
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                // kubernary: closed without an answer, as there was no
                // request to answer.
                Err(ReadError::Idle) => return None,

                // kubernary: answered, then closed.
                Err(ReadError::HeaderTooLarge(ver)) => {
                    self.refuse(431, ver, "Request header fields too large\n");
                    return None;
                }
                Err(ReadError::BodyTooLarge(ver)) => {
                    self.refuse(413, ver, "Request body too large\n");
                    return None;
                }

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                // kubernary: the answer goes through the request's own
                // writer. Upstream took the next one, which waits for the
                // request's writer to be dropped, which it is only after
                // that wait: the connection's thread hung for good.
                // It is flushed at once, as the connection goes on.
                let mut writer = rq.into_writer();
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                response
                    .raw_print(writer.by_ref(), HTTPVersion(1, 1), &[], false, None)
                    .and_then(|()| writer.flush())
                    .ok();
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

impl ClientConnection {
    // kubernary: answers `status` with `Connection: close` (written here:
    // `Response` drops a `Connection` header), then reads and drops what
    // the client still sends for a moment (see `LINGER`).
    fn refuse(&mut self, status: u16, version: HTTPVersion, body: &str) {
        let mut writer = self.sink.next().unwrap();
        let answer = format!(
            "HTTP/{}.{} {} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n{}",
            version.0,
            version.1,
            status,
            crate::StatusCode(status).default_reason_phrase(),
            body.len(),
            body
        );
        if writer.write_all(answer.as_bytes()).and_then(|()| writer.flush()).is_err() {
            return;
        }
        drop(writer);
        self.linger();
    }

    // kubernary: see `LINGER`.
    fn linger(&mut self) {
        self.deadline.set(Some(Instant::now() + LINGER));
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match self.next_header_source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
