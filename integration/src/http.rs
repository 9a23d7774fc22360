//! A small blocking HTTP/1.1 client for tests.
//!
//! Hand-rolled over `std::net::TcpStream` rather than hyper because tests also need to
//! send bytes exactly as written (`//admin`, `%2e%2e`, odd header casing): a real
//! client normalises those away. One connection per request (`connection: close`), so
//! a test never sees state left over from an earlier request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// How long a request may take, end to end, before the client gives up. Generous:
/// tests that want an upstream timeout set Envoy's timeout, not this one.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A response, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// In wire order, names as sent (Envoy lower-cases them); repeats are kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy: tests compare it, they do not trust it).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response> {
    request("GET", url, &[], b"")
}

/// `GET url` with extra request headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Result<Response> {
    request("GET", url, headers, b"")
}

/// Sends one request to an `http://host:port/path?query` URL.
///
/// Adds `host` (unless given), `content-length` (when there is a body and neither
/// `content-length` nor `transfer-encoding` is given) and `connection: close`.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response> {
    let (authority, path) = split_url(url)?;
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));

    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("host: {authority}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body_expected = matches!(method, "POST" | "PUT" | "PATCH");
    if (!body.is_empty() || body_expected) && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");

    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let addr = resolve(authority)?;
    exchange(addr, &bytes, method.eq_ignore_ascii_case("HEAD"))
        .with_context(|| format!("{method} {url}"))
}

/// Writes `bytes` verbatim to `addr` and reads one response.
///
/// The bytes should carry `connection: close` or a complete request that makes the
/// server answer; a response without a length is read until the server closes.
pub fn raw_request(addr: impl ToSocketAddrs, bytes: &[u8]) -> Result<Response> {
    let addr = addr
        .to_socket_addrs()
        .context("resolving address")?
        .next()
        .ok_or_else(|| anyhow!("address resolves to nothing"))?;
    let is_head = bytes.starts_with(b"HEAD ");
    exchange(addr, bytes, is_head).with_context(|| format!("raw request to {addr}"))
}

/// `http://127.0.0.1:8080/x?y` -> ("127.0.0.1:8080", "/x?y").
fn split_url(url: &str) -> Result<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported, got {url:?}"))?;
    match rest.find('/') {
        Some(i) => Ok((&rest[..i], &rest[i..])),
        None => Ok((rest, "/")),
    }
}

fn resolve(authority: &str) -> Result<SocketAddr> {
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} resolves to nothing"))
}

fn exchange(addr: SocketAddr, bytes: &[u8], is_head: bool) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(bytes).context("sending request")?;
    let mut reader = Reader {
        stream,
        buf: Vec::new(),
    };
    final_response(&mut reader, is_head)
}

/// The response after any 1xx (100 Continue) that precede it.
fn final_response<S: Read>(reader: &mut Reader<S>, is_head: bool) -> Result<Response> {
    loop {
        let response = read_response(reader, is_head)?;
        if !(100..200).contains(&response.status) || response.status == 101 {
            return Ok(response);
        }
    }
}

/// One kept-alive HTTP/1.1 connection over any byte stream (a TLS session, for tests
/// that need a connection to outlive something): one request at a time, each response
/// read whole before the next request goes out.
pub struct Connection<S: Read + Write> {
    reader: Reader<S>,
}

impl<S: Read + Write> Connection<S> {
    pub fn new(stream: S) -> Connection<S> {
        Connection {
            reader: Reader {
                stream,
                buf: Vec::new(),
            },
        }
    }

    /// `GET path` with `host`, keeping the connection open.
    pub fn get(&mut self, path: &str, host: &str) -> Result<Response> {
        let head = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n");
        self.reader
            .stream
            .write_all(head.as_bytes())
            .and_then(|()| self.reader.stream.flush())
            .context("sending request")?;
        final_response(&mut self.reader, false)
    }

    /// The underlying stream (a TLS session's peer certificate, say).
    pub fn stream(&self) -> &S {
        &self.reader.stream
    }
}

/// A buffered reader that can hand back "everything so far" and "until EOF".
struct Reader<S: Read> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: Read> Reader<S> {
    /// Reads more bytes; false at EOF.
    fn fill(&mut self) -> Result<bool> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).context("reading response")?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Takes bytes up to and including `delim`.
    fn take_until(&mut self, delim: &[u8]) -> Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(i) = find(&self.buf[searched..], delim) {
                let end = searched + i + delim.len();
                return Ok(self.buf.drain(..end).collect());
            }
            searched = self.buf.len().saturating_sub(delim.len());
            if !self.fill()? {
                bail!(
                    "connection closed mid-response (had {:?})",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    fn take_exact(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill()? {
                bail!(
                    "connection closed after {} of {n} body bytes",
                    self.buf.len()
                );
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn take_to_eof(&mut self) -> Result<Vec<u8>> {
        while self.fill()? {}
        Ok(std::mem::take(&mut self.buf))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn read_response<S: Read>(reader: &mut Reader<S>, is_head: bool) -> Result<Response> {
    let head = reader.take_until(b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };

    let no_body = is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else if header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .with_context(|| format!("bad content-length {len:?}"))?;
        reader.take_exact(len)?
    } else {
        reader.take_to_eof()?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn read_chunked<S: Read>(reader: &mut Reader<S>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = reader.take_until(b"\r\n")?;
        let line = String::from_utf8_lossy(&line);
        // Chunk extensions (";name=value") are allowed and ignored.
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size.trim(), 16)
            .with_context(|| format!("bad chunk size line {line:?}"))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let trailer = reader.take_until(b"\r\n")?;
                if trailer == b"\r\n" {
                    return Ok(body);
                }
            }
        }
        body.extend(reader.take_exact(size)?);
        reader.take_exact(2)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:1/a?b").unwrap(),
            ("127.0.0.1:1", "/a?b")
        );
        assert_eq!(split_url("http://h:2").unwrap(), ("h:2", "/"));
        assert!(split_url("https://h/").is_err());
    }
}
