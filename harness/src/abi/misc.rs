//! Logging, time, ticks, context switching, and stream control (continue, close, local
//! response), plus foreign functions and the 0.1.0-era names some SDKs still link.

use super::{finish, read, read_string, write_u32, write_u64, Defs, Fail, HostResult, C};
use crate::state::StreamState;
use crate::types::{HeaderMap, Level, LocalResponse, LogEntry};
use crate::{ForeignCall, Status};

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.env(
        "proxy_log",
        |mut c: C<'_>, level: u32, ptr: u32, len: u32| finish(log(&mut c, level, ptr, len)),
    )?;
    d.env("proxy_get_log_level", |mut c: C<'_>, ptr: u32| {
        let level = c.data().config.log_level as u32;
        finish(write_u32(&mut c, ptr, level))
    })?;
    d.env("proxy_set_effective_context", |mut c: C<'_>, id: u32| {
        let s = c.data_mut();
        if id == s.root_context || s.streams.contains_key(&id) {
            s.effective = id;
            Ok(Status::Ok as u32)
        } else {
            Ok(Status::BadArgument as u32)
        }
    })?;
    d.env("proxy_done", |_c: C<'_>| Ok(Status::Ok as u32))?;
    d.env(
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ptr: u32| {
            let now = c.data().shared.lock().realtime_ns;
            finish(write_u64(&mut c, ptr, now))
        },
    )?;
    d.env(
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: u32| {
            // One period per root context; a stream context's call applies to its root.
            let now = c.data().shared.lock().monotonic_ns;
            let s = c.data_mut();
            if ms == 0 {
                s.tick_period_ns = None;
            } else {
                let period = u64::from(ms) * 1_000_000;
                s.tick_period_ns = Some(period);
                s.next_tick_ns = now + period;
            }
            Ok(Status::Ok as u32)
        },
    )?;
    d.env("proxy_continue_stream", |mut c: C<'_>, ty: u32| {
        finish(continue_stream(&mut c, ty))
    })?;
    d.env("proxy_close_stream", |mut c: C<'_>, ty: u32| {
        finish(close_stream(&mut c, ty))
    })?;
    // 0.1.0 names, still linked by some SDKs.
    d.env("proxy_continue_request", |mut c: C<'_>| {
        finish(continue_stream(&mut c, 0))
    })?;
    d.env("proxy_continue_response", |mut c: C<'_>| {
        finish(continue_stream(&mut c, 1))
    })?;
    d.env("proxy_clear_route_cache", |mut c: C<'_>| {
        if let Some(st) = c.data_mut().stream() {
            st.route_cache_cleared += 1;
            st.route_dirty = true;
        }
        Ok(Status::Ok as u32)
    })?;
    d.env(
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: u32,
         details_ptr: u32,
         details_len: u32,
         body_ptr: u32,
         body_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         grpc_status: i32| {
            let details = read_string(&c, details_ptr, details_len);
            let body = read(&c, body_ptr, body_len);
            let headers = read(&c, headers_ptr, headers_len);
            finish((|| {
                let headers = super::pairs::decode(&headers?)?;
                local_response(&mut c, status, details?, body?, headers, grpc_status)
            })())
        },
    )?;
    d.env(
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: u32, msg_ptr_ptr: u32, msg_size_ptr: u32| {
            // Only meaningful inside gRPC callbacks, which the harness never delivers.
            finish((|| {
                write_u32(&mut c, code_ptr, 0)?;
                write_u32(&mut c, msg_ptr_ptr, 0)?;
                write_u32(&mut c, msg_size_ptr, 0)
            })())
        },
    )?;
    d.env(
        "proxy_call_foreign_function",
        |mut c: C<'_>,
         name_ptr: u32,
         name_len: u32,
         args_ptr: u32,
         args_len: u32,
         res_ptr_ptr: u32,
         res_size_ptr: u32| {
            finish(foreign(
                &mut c,
                (name_ptr, name_len),
                (args_ptr, args_len),
                (res_ptr_ptr, res_size_ptr),
            ))
        },
    )?;
    Ok(())
}

fn log(c: &mut C<'_>, level: u32, ptr: u32, len: u32) -> HostResult {
    let level = Level::from_raw(level).ok_or(Status::BadArgument)?;
    let message = read_string(c, ptr, len)?;
    let s = c.data();
    if level >= s.config.log_level {
        let entry = LogEntry {
            level,
            worker: s.worker,
            context_id: s.active,
            message,
        };
        s.shared.lock().logs.push(entry);
    }
    Ok(())
}

/// Envoy forgets the request side once it continues: maps become unreachable and any
/// buffered body is passed on.
pub(crate) fn resume(st: &mut StreamState, dir: usize) {
    st.resumed[dir] += 1;
    st.live[dir * 2] = false;
    st.live[dir * 2 + 1] = false;
    let body = std::mem::take(&mut st.bodies[dir]);
    st.forwarded[dir].extend_from_slice(&body);
    st.buffering[dir] = false;
    st.body_live[dir] = false;
}

fn continue_stream(c: &mut C<'_>, ty: u32) -> HostResult {
    let dir = match ty {
        0 | 1 => ty as usize,
        2 => return Ok(()),
        3 => return Err(Status::Unimplemented.into()),
        _ => return Err(Status::BadArgument.into()),
    };
    if let Some(st) = c.data_mut().stream() {
        resume(st, dir);
    }
    Ok(())
}

fn close_stream(c: &mut C<'_>, ty: u32) -> HostResult {
    if ty > 3 {
        return Err(Status::BadArgument.into());
    }
    if ty < 2 {
        if let Some(st) = c.data_mut().stream() {
            st.closed[ty as usize] = true;
        }
    }
    Ok(())
}

fn local_response(
    c: &mut C<'_>,
    status: u32,
    details: String,
    body: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    grpc_status: i32,
) -> HostResult {
    let s = c.data_mut();
    let Some(st) = s.stream() else {
        // Envoy ignores a local response from a context without a stream (root context).
        return Ok(());
    };
    if let Some(first) = &st.local_response {
        // Envoy's second sendLocalReply on a stream is a bug in the filter; we keep the
        // first, record the second, and tell the test.
        let message = format!(
            "send_local_response called twice: first {}, then {} (ignored)",
            first.status, status
        );
        st.errors.push(message.clone());
        s.incident(message);
        return Ok(());
    }
    st.local_response = Some(LocalResponse {
        status,
        headers: HeaderMap::from_pairs(&headers),
        body,
        details: details
            .chars()
            .map(|ch| if ch.is_whitespace() { '_' } else { ch })
            .collect(),
        grpc_status: u32::try_from(grpc_status).ok().filter(|g| *g <= 16),
    });
    Ok(())
}

fn foreign(c: &mut C<'_>, name: (u32, u32), args: (u32, u32), result: (u32, u32)) -> HostResult {
    let name = read_string(c, name.0, name.1)?;
    let args = read(c, args.0, args.1)?;
    let s = c.data_mut();
    s.shared.lock().foreign_calls.push(ForeignCall {
        worker: s.worker,
        context_id: s.effective,
        name: name.clone(),
        args: args.clone(),
    });
    let f = s.config.foreign.get(&name).cloned();
    let out = match f {
        Some(f) => f(&args).map_err(Fail::Status)?,
        None if name == "clear_route_cache" => {
            if let Some(st) = s.stream() {
                st.route_cache_cleared += 1;
                st.route_dirty = true;
            }
            Vec::new()
        }
        None if name == "verify_signature" => {
            crate::signature::verify_signature(&args).map_err(Fail::Status)?
        }
        None => return Err(Status::NotFound.into()),
    };
    super::give(c, &out, result.0, result.1)
}
