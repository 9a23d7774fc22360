//! `wasmesh traces`: a small Zipkin-compatible trace store, since no Zipkin, Jaeger or
//! OpenTelemetry Collector is installable from the registries this project uses
//! (docs/observability.md). Envoy's Zipkin tracer posts spans to `/api/v2/spans`; the
//! store keeps the newest N traces in memory and serves the read API's core
//! (`/api/v2/services`, `/api/v2/traces`, `/api/v2/trace/{id}`) and two pages: the
//! recent traces, and one trace as a span waterfall drawn on the server.
//!
//! One thread per connection, each answered and closed: Envoy's reporter posts a
//! batch every few seconds per sidecar, so there is no need for more.

pub mod page;
pub mod store;

use anyhow::Result;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::Store;

/// The default address: Zipkin's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9411";
/// The default bound on traces kept.
pub const DEFAULT_MAX_TRACES: usize = 1000;
/// The largest POST body taken; Envoy's batches are far smaller.
pub const MAX_BODY: usize = 8 << 20;
const MAX_HEAD: usize = 16 << 10;

struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// An answer: status line, content type, body.
type Answer = (&'static str, &'static str, String);

fn text(status: &'static str, msg: impl Into<String>) -> Answer {
    (status, "text/plain; charset=utf-8", msg.into())
}

/// Reads one request; `Err` is the answer to give instead (400, 413).
fn read_request(conn: &TcpStream) -> Result<Option<Request>, Answer> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => return Ok(None),
        Ok(_) => {}
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(text("400 Bad Request", "bad request line\n"));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let (mut length, mut chunked, mut expect) = (None, false, false);
    let mut head = line.len();
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return Err(text("400 Bad Request", "incomplete head\n")),
            Ok(n) => head += n,
        }
        if head > MAX_HEAD {
            return Err(text(
                "431 Request Header Fields Too Large",
                "head too large\n",
            ));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Err(text("400 Bad Request", "bad content-length\n")),
            },
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "expect" => expect = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if length.is_some_and(|n| n > MAX_BODY) {
        return Err(text(
            "413 Payload Too Large",
            format!("body over {MAX_BODY} bytes\n"),
        ));
    }
    if expect {
        let _ = (&*conn).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let mut body = vec![0; length.unwrap_or(0)];
        reader
            .read_exact(&mut body)
            .map_err(|_| text("400 Bad Request", "body shorter than content-length\n"))?;
        body
    };
    Ok(Some(Request {
        method,
        target,
        body,
    }))
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, Answer> {
    let bad = || text("400 Bad Request", "bad chunked body\n");
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).map_err(|_| bad())?;
        let size = size.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size, 16).map_err(|_| bad())?;
        if body.len() + n > MAX_BODY {
            return Err(text(
                "413 Payload Too Large",
                format!("body over {MAX_BODY} bytes\n"),
            ));
        }
        if n == 0 {
            // Trailers, up to the blank line.
            let mut l = String::new();
            while reader.read_line(&mut l).is_ok_and(|k| k > 2) {
                l.clear();
            }
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + n + 2, 0);
        reader.read_exact(&mut body[start..]).map_err(|_| bad())?;
        body.truncate(start + n);
    }
}

/// `key`'s value in a query string (no percent-decoding: service names and numbers).
fn param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

fn json(v: &impl serde::Serialize) -> Answer {
    match serde_json::to_string(v) {
        Ok(s) => ("200 OK", "application/json", s),
        Err(e) => text("500 Internal Server Error", e.to_string()),
    }
}

/// The answer to one request.
pub fn answer(store: &Mutex<Store>, method: &str, target: &str, body: &[u8]) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // A panicked handler must not take the store with it: the data stays sound (each
    // change is one insert or removal).
    let mut st = store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let html = "text/html; charset=utf-8";
    match (method, path) {
        ("POST", "/api/v2/spans") => match store::parse(body) {
            Ok(spans) => {
                st.add(spans);
                ("202 Accepted", "text/plain", String::new())
            }
            Err(e) => text("400 Bad Request", format!("{e}\n")),
        },
        (_, "/api/v2/spans") => text("405 Method Not Allowed", "POST spans here\n"),
        ("GET", "/health") => ("200 OK", "application/json", "{\"status\":\"UP\"}".into()),
        ("GET", "/api/v2/services") => json(&st.services()),
        ("GET", "/api/v2/traces") => {
            let limit = param(query, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(10);
            json(&st.traces(param(query, "serviceName"), limit))
        }
        ("GET", "/" | "/index.html") => {
            let limit = param(query, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            (
                "200 OK",
                html,
                page::list(&st.traces(param(query, "serviceName"), limit), st.len()),
            )
        }
        ("GET", p) => {
            let api = p.strip_prefix("/api/v2/trace/");
            match api.or_else(|| p.strip_prefix("/trace/")).map(|id| st.trace(id)) {
                Some(Some(spans)) if api.is_some() => json(&spans),
                Some(Some(spans)) => ("200 OK", html, page::waterfall(&spans)),
                Some(None) => text("404 Not Found", "no such trace (it may have been dropped: the store keeps the newest traces only)\n"),
                None => text("404 Not Found", "not found\n"),
            }
        }
        _ => text("405 Method Not Allowed", "method not allowed\n"),
    }
}

fn handle(store: &Mutex<Store>, conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let (status, ctype, body) = match read_request(&conn) {
        Ok(None) => return,
        Ok(Some(r)) => answer(store, &r.method, &r.target, &r.body),
        Err(a) => a,
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Connections answered at once; past this a client gets 503 (a flood of slow clients
/// must not grow threads without bound).
pub const MAX_CONNECTIONS: usize = 64;

/// Counts a connection's thread while it lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves the store on `listener` until killed.
pub fn serve(listener: TcpListener, max_traces: usize) -> Result<()> {
    let store = Arc::new(Mutex::new(Store::new(max_traces)));
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            let _ = conn.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            refuse_gracefully(conn);
            continue;
        }
        let slot = Slot(Arc::clone(&busy));
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let _slot = slot;
            handle(&store, conn);
        });
    }
    Ok(())
}

/// Closes a refused connection without resetting it: closing a socket with the
/// client's request still unread sends a TCP reset, and the client then loses the 503
/// it was sent. So the write side is shut, and what the client sent is drained
/// briefly before the close.
fn refuse_gracefully(mut conn: TcpStream) {
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match conn.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn post(store: &Mutex<Store>, body: &str) -> &'static str {
        answer(store, "POST", "/api/v2/spans", body.as_bytes()).0
    }

    const SPANS: &str = r#"[{"traceId":"00000000000000aa","id":"0000000000000001","name":"get","timestamp":10,"duration":5,"localEndpoint":{"serviceName":"gw"}},
        {"traceId":"00000000000000aa","id":"0000000000000002","parentId":"0000000000000001","timestamp":11,"duration":2,"localEndpoint":{"serviceName":"pp"}}]"#;

    #[test]
    fn the_read_api_answers_what_was_posted() {
        let store = Mutex::new(Store::new(10));
        assert_eq!(post(&store, SPANS), "202 Accepted");
        let (s, _, b) = answer(&store, "GET", "/api/v2/services", b"");
        assert_eq!((s, b.as_str()), ("200 OK", "[\"gw\",\"pp\"]"));
        let (_, _, b) = answer(&store, "GET", "/api/v2/traces?serviceName=pp&limit=5", b"");
        let traces: Vec<Vec<serde_json::Value>> = serde_json::from_str(&b).unwrap();
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].len(), 2);
        let (_, _, b) = answer(&store, "GET", "/api/v2/traces?serviceName=nobody", b"");
        assert_eq!(b, "[]");
        let (s, _, b) = answer(&store, "GET", "/api/v2/trace/00000000000000AA", b"");
        assert_eq!(s, "200 OK");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&b).unwrap()[1]["parentId"],
            "0000000000000001"
        );
        assert_eq!(
            answer(&store, "GET", "/api/v2/trace/00000000000000ab", b"").0,
            "404 Not Found"
        );
        let (s, ctype, page) = answer(&store, "GET", "/trace/00000000000000aa", b"");
        assert_eq!((s, ctype), ("200 OK", "text/html; charset=utf-8"));
        assert!(page.contains("gw get server") || page.contains("gw get"));
        assert!(answer(&store, "GET", "/", b"")
            .2
            .contains("/trace/00000000000000aa"));
        assert_eq!(answer(&store, "GET", "/health", b"").0, "200 OK");
    }

    #[test]
    fn malformed_posts_get_400_and_change_nothing() {
        let store = Mutex::new(Store::new(10));
        for bad in [
            "",
            "{",
            "[{}]",
            "[{\"traceId\":\"zz\",\"id\":\"0000000000000001\"}]",
            "\u{0}",
        ] {
            assert_eq!(post(&store, bad), "400 Bad Request", "{bad:?}");
        }
        assert!(store.lock().unwrap().is_empty());
        assert_eq!(
            answer(&store, "GET", "/api/v2/spans", b"").0,
            "405 Method Not Allowed"
        );
    }

    /// Over a socket: an oversized body is refused before it is read, a chunked body
    /// is taken.
    #[test]
    fn over_a_socket_oversized_is_413_and_chunked_is_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, 10));
        let send = |raw: &[u8]| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(raw).unwrap();
            let mut out = String::new();
            let _ = c.read_to_string(&mut out);
            out
        };
        let big = format!(
            "POST /api/v2/spans HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(send(big.as_bytes()).starts_with("HTTP/1.1 413"));
        let chunked = format!(
            "POST /api/v2/spans HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{SPANS}\r\n0\r\n\r\n",
            SPANS.len()
        );
        assert!(send(chunked.as_bytes()).starts_with("HTTP/1.1 202"));
        assert!(send(b"garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        let got = crate::localhttp::get(
            &format!("http://{addr}/api/v2/services"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(got.text(), "[\"gw\",\"pp\"]");
    }

    #[test]
    fn connections_past_the_cap_get_503_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, 10));
        // Idle clients hold every slot.
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut extra = TcpStream::connect(addr).unwrap();
        let mut out = String::new();
        extra.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        drop(idle);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Until a slot frees, the answer is a 503 (or, on a loaded machine, a
            // connection closed before the request was read).
            let r = crate::localhttp::get(&format!("http://{addr}/health"), Duration::from_secs(5));
            if r.is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "slots never freed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
