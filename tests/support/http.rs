//! A minimal HTTP/1.1 client over a raw `TcpStream`.
//!
//! Why not ureq: the crate's ureq is built with `rustls-no-provider`, and
//! tests must be able to send things a proper client never would (odd
//! methods, malformed requests) and see exactly what came back.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Long enough for `/health` waiting on several slow checks on a loaded CI
/// machine; short enough that a daemon that never answers fails the test
/// instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// In arrival order, names as sent; use `header()` to look one up.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with an optional body and `Connection: close`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // Always explicit, so a POST without body is not left waiting for one.
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, &raw, method.eq_ignore_ascii_case("HEAD"))
}

/// Writes `raw` as-is and parses the answer; for malformed-request tests.
/// `head_request` says the answer carries no body whatever its headers say.
pub fn send_raw(addr: SocketAddr, raw: &[u8], head_request: bool) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    (&stream).write_all(raw)?;
    read_response(BufReader::new(stream), head_request)
}

/// The next answer read from `r`: a connection's reader, so that a test can
/// send several requests on one kept-alive connection and read each answer.
/// `head_request` says the answer carries no body whatever its headers say.
pub fn read_response(mut r: impl BufRead, head_request: bool) -> io::Result<Response> {
    let status_line = read_line(&mut r)?;
    if status_line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a status line"));
    }
    // "HTTP/1.1 200 OK"; the reason phrase is optional and ignored.
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line: {status_line:?}")))?;

    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut r)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let resp = Response { status, headers, body: String::new() };

    let no_body = head_request || status / 100 == 1 || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else if resp.header("Transfer-Encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        read_chunked(&mut r)?
    } else if let Some(len) = resp.header("Content-Length") {
        let len: usize = len.parse().map_err(|_| bad(format!("bad Content-Length: {len:?}")))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    } else {
        // No framing: the body ends when the server closes the connection.
        let mut body = Vec::new();
        r.read_to_end(&mut body)?;
        body
    };
    Ok(Response { body: String::from_utf8_lossy(&body).into_owned(), ..resp })
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size line: {line:?}")))?;
        if size == 0 {
            // Trailers, then the empty line ending the message.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        read_line(r)?; // the CRLF after each chunk
    }
}

/// One line without its CRLF; "" at EOF as well as for an empty line, which
/// callers tell apart by context.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf)?;
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
