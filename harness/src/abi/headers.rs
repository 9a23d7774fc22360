//! Header and trailer maps. Maps 0-3 belong to the effective stream context and are
//! reachable only while their phase is in progress (or paused), and read-only in `on_log`;
//! maps 6-7 are the response of the http call being delivered; gRPC metadata (4-5) is never
//! present because the harness does not deliver gRPC responses.

use super::{finish, give, pairs, read, read_string, write_u32, Defs, HostResult, C};
use crate::state::VmState;
use crate::types::HeaderMap;
use crate::Status;

const NAMES: [&str; 8] = [
    "request headers",
    "request trailers",
    "response headers",
    "response trailers",
    "grpc initial metadata",
    "grpc trailing metadata",
    "http call response headers",
    "http call response trailers",
];

/// Reads the map as the filter may see it (None: not reachable now); BadArgument for an
/// unknown map type.
fn map_ref<R>(
    s: &mut VmState,
    ty: u32,
    f: impl FnOnce(&HeaderMap) -> R,
) -> Result<Option<R>, Status> {
    match ty {
        0..=3 => {
            let i = ty as usize;
            let Some(st) = s.stream() else {
                return Ok(None);
            };
            if !(st.live[i] || st.log_phase) {
                return Ok(None);
            }
            let m = match i {
                0 => &st.request_headers,
                1 => &st.request_trailers,
                2 => &st.response_headers,
                _ => &st.response_trailers,
            };
            Ok(m.as_ref().map(f))
        }
        4 | 5 => Ok(None),
        6 => Ok(s.call_response.as_ref().map(|r| f(&r.0))),
        7 => Ok(s.call_response.as_ref().map(|r| f(&r.2))),
        _ => Err(Status::BadArgument),
    }
}

/// Applies a change to a writable map; BadArgument when it is not reachable (as Envoy).
fn with_map_mut(s: &mut VmState, ty: u32, f: impl FnOnce(&mut HeaderMap)) -> HostResult {
    let i = ty as usize;
    let reachable = match s.stream() {
        Some(st) if ty <= 3 && st.live[i] && !st.log_phase => {
            let m = match i {
                0 => &mut st.request_headers,
                1 => &mut st.request_trailers,
                2 => &mut st.response_headers,
                _ => &mut st.response_trailers,
            };
            f(m.get_or_insert_with(HeaderMap::default));
            if ty == 0 {
                st.route_dirty = true;
            }
            true
        }
        _ => false,
    };
    if reachable {
        Ok(())
    } else {
        let name = NAMES.get(i).copied().unwrap_or("unknown map");
        s.incident(format!("{name} not modifiable now: BadArgument"));
        Err(Status::BadArgument.into())
    }
}

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.env(
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, ty: u32, ptr_ptr: u32, size_ptr: u32| {
            finish((|| {
                // A missing map reads as empty, as in Envoy.
                let bytes = map_ref(c.data_mut(), ty, pairs::encode_map)?
                    .unwrap_or_else(|| pairs::encode_map(&HeaderMap::default()));
                give(&mut c, &bytes, ptr_ptr, size_ptr)
            })())
        },
    )?;
    d.env(
        "proxy_get_header_map_value",
        |mut c: C<'_>, ty: u32, kp: u32, kl: u32, ptr_ptr: u32, size_ptr: u32| {
            finish((|| {
                let key = read_string(&c, kp, kl)?;
                let s = c.data_mut();
                let Some(value) = map_ref(s, ty, |m| m.get_bytes(&key).map(<[u8]>::to_vec))? else {
                    let log_phase = s.stream().is_some_and(|st| st.log_phase);
                    if log_phase {
                        return Err(Status::NotFound.into());
                    }
                    let name = NAMES.get(ty as usize).copied().unwrap_or("map");
                    s.incident(format!(
                        "get_header_map_value({key}): {name} not available now: BadArgument"
                    ));
                    return Err(Status::BadArgument.into());
                };
                let value = value.ok_or(Status::NotFound)?;
                give(&mut c, &value, ptr_ptr, size_ptr)
            })())
        },
    )?;
    d.env(
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, ty: u32, ptr: u32, len: u32| {
            finish((|| {
                let new = pairs::decode(&read(&c, ptr, len)?)?;
                with_map_mut(c.data_mut(), ty, |m| *m = HeaderMap::from_pairs(&new))
            })())
        },
    )?;
    d.env(
        "proxy_add_header_map_value",
        |mut c: C<'_>, ty: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            finish((|| {
                let key = read_string(&c, kp, kl)?;
                let value = read(&c, vp, vl)?;
                with_map_mut(c.data_mut(), ty, |m| m.add(&key, &value))
            })())
        },
    )?;
    d.env(
        "proxy_replace_header_map_value",
        |mut c: C<'_>, ty: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            finish((|| {
                let key = read_string(&c, kp, kl)?;
                let value = read(&c, vp, vl)?;
                with_map_mut(c.data_mut(), ty, |m| m.replace(&key, &value))
            })())
        },
    )?;
    d.env(
        "proxy_remove_header_map_value",
        |mut c: C<'_>, ty: u32, kp: u32, kl: u32| {
            finish((|| {
                let key = read_string(&c, kp, kl)?;
                with_map_mut(c.data_mut(), ty, |m| m.remove(&key))
            })())
        },
    )?;
    d.env(
        "proxy_get_header_map_size",
        |mut c: C<'_>, ty: u32, size_ptr: u32| {
            finish((|| {
                let mut size = None;
                with_map_mut(c.data_mut(), ty, |m| size = Some(m.byte_size()))?;
                write_u32(&mut c, size_ptr, size.unwrap_or(0) as u32)
            })())
        },
    )?;
    Ok(())
}
