//! Outgoing calls: `proxy_http_call` and the unary `proxy_grpc_call` (recorded; the test
//! answers or fails them, or they time out) and gRPC streams (recorded and tracked).

use super::{finish, pairs, read, read_string, write_u32, Defs, Fail, HostResult, C};
use crate::types::{CallState, GrpcCall, GrpcState, HeaderMap, HttpCall};
use crate::Status;
use std::time::Duration;

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.env(
        "proxy_http_call",
        |mut c: C<'_>,
         up: u32,
         up_len: u32,
         hp: u32,
         hl: u32,
         bp: u32,
         bl: u32,
         tp: u32,
         tl: u32,
         timeout: u32,
         token_ptr: u32| {
            finish((|| {
                let cluster = read_string(&c, up, up_len)?;
                let headers = pairs::decode(&read(&c, hp, hl)?)?;
                let body = read(&c, bp, bl)?;
                let trailers = pairs::decode(&read(&c, tp, tl)?)?;
                let token = http_call(&mut c, cluster, headers, body, trailers, timeout)?;
                write_u32(&mut c, token_ptr, token)
            })())
        },
    )?;
    d.env(
        "proxy_grpc_call",
        |mut c: C<'_>,
         up: u32,
         up_len: u32,
         sp: u32,
         sl: u32,
         mp: u32,
         ml: u32,
         hp: u32,
         hl: u32,
         msg: u32,
         msg_len: u32,
         timeout: u32,
         token_ptr: u32| {
            finish((|| {
                let call = (
                    read_string(&c, up, up_len)?,
                    read_string(&c, sp, sl)?,
                    read_string(&c, mp, ml)?,
                    pairs::decode(&read(&c, hp, hl)?)?,
                );
                let message = read(&c, msg, msg_len)?;
                let token = grpc_open(&mut c, call, Some(message), timeout)?;
                write_u32(&mut c, token_ptr, token)
            })())
        },
    )?;
    d.env(
        "proxy_grpc_stream",
        |mut c: C<'_>,
         up: u32,
         up_len: u32,
         sp: u32,
         sl: u32,
         mp: u32,
         ml: u32,
         hp: u32,
         hl: u32,
         token_ptr: u32| {
            finish((|| {
                let call = (
                    read_string(&c, up, up_len)?,
                    read_string(&c, sp, sl)?,
                    read_string(&c, mp, ml)?,
                    pairs::decode(&read(&c, hp, hl)?)?,
                );
                let token = grpc_open(&mut c, call, None, 0)?;
                write_u32(&mut c, token_ptr, token)
            })())
        },
    )?;
    d.env(
        "proxy_grpc_send",
        |mut c: C<'_>, token: u32, ptr: u32, len: u32, end: u32| {
            finish((|| {
                let message = read(&c, ptr, len)?;
                grpc_update(&mut c, token, |call| {
                    call.messages.push(message);
                    if end != 0 {
                        call.state = GrpcState::Closed;
                    }
                })
            })())
        },
    )?;
    d.env("proxy_grpc_cancel", |mut c: C<'_>, token: u32| {
        finish(grpc_update(&mut c, token, |call| {
            call.state = GrpcState::Cancelled
        }))
    })?;
    d.env("proxy_grpc_close", |mut c: C<'_>, token: u32| {
        finish(grpc_update(&mut c, token, |call| {
            call.state = GrpcState::Closed
        }))
    })?;
    Ok(())
}

fn http_call(
    c: &mut C<'_>,
    cluster: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
    timeout_ms: u32,
) -> Result<u32, Fail> {
    let s = c.data();
    // Envoy's checks, in its order: timeout sign, known cluster, required headers.
    if (timeout_ms as i32) < 0 {
        return Err(Status::BadArgument.into());
    }
    if !s.config.clusters.is_empty() && !s.config.clusters.contains(&cluster) {
        s.incident(format!(
            "http_call to unknown cluster {cluster:?}: BadArgument"
        ));
        return Err(Status::BadArgument.into());
    }
    let mut headers = HeaderMap::from_pairs(&headers);
    for required in [":path", ":method", ":authority"] {
        if !headers.contains(required) {
            s.incident(format!("http_call without {required} header: BadArgument"));
            return Err(Status::BadArgument.into());
        }
    }
    if !body.is_empty() {
        headers.replace("content-length", body.len().to_string().as_bytes());
    }
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
    let mut shared = s.shared.lock();
    let token = shared.next_token();
    let deadline_ns = timeout.map(|t| shared.monotonic_ns + t.as_nanos() as u64);
    shared.http_calls.push(HttpCall {
        token,
        worker: s.worker,
        context_id: s.effective,
        cluster,
        headers,
        body,
        trailers: HeaderMap::from_pairs(&trailers),
        timeout,
        state: CallState::Pending,
        deadline_ns,
    });
    Ok(token)
}

type GrpcTarget = (String, String, String, Vec<(String, Vec<u8>)>);

fn grpc_open(
    c: &mut C<'_>,
    target: GrpcTarget,
    message: Option<Vec<u8>>,
    timeout_ms: u32,
) -> Result<u32, Fail> {
    let s = c.data();
    let (cluster, service, method, metadata) = target;
    if !s.config.clusters.is_empty() && !s.config.clusters.contains(&cluster) {
        // Envoy answers an unknown cluster with ParseFailure here (an 0.1.x compatibility).
        return Err(Status::ParseFailure.into());
    }
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
    let mut shared = s.shared.lock();
    let token = shared.next_token();
    let deadline_ns = timeout.map(|t| shared.monotonic_ns + t.as_nanos() as u64);
    shared.grpc_calls.push(GrpcCall {
        token,
        worker: s.worker,
        context_id: s.effective,
        service,
        method,
        cluster,
        initial_metadata: HeaderMap::from_pairs(&metadata),
        streaming: message.is_none(),
        messages: message.into_iter().collect(),
        state: GrpcState::Open,
        timeout,
        deadline_ns,
    });
    Ok(token)
}

fn grpc_update(c: &mut C<'_>, token: u32, f: impl FnOnce(&mut GrpcCall)) -> HostResult {
    let s = c.data();
    let mut shared = s.shared.lock();
    let call = shared
        .grpc_calls
        .iter_mut()
        .find(|g| g.token == token && g.worker == s.worker)
        .ok_or(Status::NotFound)?;
    f(call);
    Ok(())
}
