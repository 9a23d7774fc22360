//! Properties. Lookup order: values set on the stream (by the test or the filter), values
//! derived from the stream's headers (`request.path`, `request.headers`, `response.code`...),
//! host-wide values the test set, what Envoy binds on every stream (`response.flags`,
//! `connection.mtls`, the total sizes), then the plugin's own (`plugin_name`,
//! `plugin_root_id`, `plugin_vm_id`). Anything else is NotFound, as in Envoy.

use super::{finish, give, pairs, read, Defs, HostResult, C};
use crate::state::{StreamState, VmState};
use crate::types::{HeaderMap, PropertyValue};
use crate::Status;

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.env(
        "proxy_get_property",
        |mut c: C<'_>, pp: u32, pl: u32, ptr_ptr: u32, size_ptr: u32| {
            finish((|| {
                let path = read(&c, pp, pl)?;
                let value = lookup(c.data_mut(), &path).ok_or(Status::NotFound)?;
                give(&mut c, &value, ptr_ptr, size_ptr)
            })())
        },
    )?;
    d.env(
        "proxy_set_property",
        |mut c: C<'_>, pp: u32, pl: u32, vp: u32, vl: u32| finish(set(&mut c, (pp, pl), (vp, vl))),
    )?;
    Ok(())
}

fn set(c: &mut C<'_>, path: (u32, u32), value: (u32, u32)) -> HostResult {
    let path = read(c, path.0, path.1)?;
    let value = read(c, value.0, value.1)?;
    // Envoy keeps filter-set properties in the stream's filter state: no stream, NotFound.
    let st = c.data_mut().stream().ok_or(Status::NotFound)?;
    st.filter_state.insert(path, value);
    Ok(())
}

fn lookup(s: &mut VmState, path: &[u8]) -> Option<Vec<u8>> {
    if let Some(st) = s.streams.get(&s.effective) {
        if let Some(v) = st.properties.get(path) {
            return Some(v.clone());
        }
        if !path.contains(&0) {
            if let Some(v) = st.filter_state.get(path) {
                return Some(v.clone());
            }
        }
        if let Some(v) = derived(st, path) {
            return Some(v);
        }
    }
    if let Some(v) = s.shared.lock().properties.get(path) {
        return Some(v.clone());
    }
    if let Some(v) = s
        .streams
        .get(&s.effective)
        .and_then(|st| always_bound(st, path))
    {
        return Some(v);
    }
    let config = &s.config;
    match path {
        b"plugin_name" => Some(config.plugin_name.as_bytes().to_vec()),
        b"plugin_root_id" => Some(config.root_id.as_bytes().to_vec()),
        b"plugin_vm_id" => Some(config.vm_id.as_bytes().to_vec()),
        _ => None,
    }
}

/// Properties Envoy computes from the stream itself.
fn derived(st: &StreamState, path: &[u8]) -> Option<Vec<u8>> {
    let path = std::str::from_utf8(path).ok()?;
    let mut parts = path.split('\0');
    let root = parts.next()?;
    let field = parts.next()?;
    let rest = parts.next();
    let (headers, is_request) = match root {
        "request" => (st.request_headers.as_ref()?, true),
        "response" => (st.response_headers.as_ref()?, false),
        _ => return None,
    };
    let text = |s: &str| Some(s.as_bytes().to_vec());
    match (is_request, field, rest) {
        (_, "headers", None) => Some(header_map(headers)),
        (_, "headers", Some(name)) => text(headers.get(name)?),
        (true, "path", None) => text(headers.get(":path")?),
        (true, "url_path", None) => {
            let p = headers.get(":path")?;
            text(p.split('?').next().unwrap_or(p))
        }
        (true, "query", None) => text(headers.get(":path")?.split_once('?')?.1),
        (true, "host", None) => text(headers.get(":authority")?),
        (true, "method", None) => text(headers.get(":method")?),
        (true, "scheme", None) => text(headers.get(":scheme")?),
        (true, "id", None) => text(headers.get("x-request-id")?),
        (true, "referer", None) => text(headers.get("referer")?),
        (true, "useragent", None) => text(headers.get("user-agent")?),
        (false, "code", None) => {
            let code: i64 = headers.get(":status")?.parse().ok()?;
            Some(PropertyValue::int(code).0)
        }
        _ => None,
    }
}

/// What Envoy has a value for on every stream, set or not: no response flags, a
/// plaintext connection, and sizes counted as Envoy counts them (header names and
/// values, plus the body bytes that went through).
fn always_bound(st: &StreamState, path: &[u8]) -> Option<Vec<u8>> {
    let size = |headers: &Option<HeaderMap>, body: &[u8]| {
        let header_bytes: usize = headers
            .iter()
            .flat_map(|h| h.0.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        PropertyValue::int(i64::try_from(header_bytes + body.len()).unwrap_or(i64::MAX)).0
    };
    match path {
        b"response\0flags" => Some(PropertyValue::int(0).0),
        b"connection\0mtls" => Some(PropertyValue::bool(false).0),
        b"request\0total_size" => Some(size(&st.request_headers, &st.forwarded[0])),
        b"response\0total_size" => Some(size(&st.response_headers, &st.forwarded[1])),
        _ => None,
    }
}

/// Envoy's `request.headers` omits nothing: pseudo-headers included, header-map format.
fn header_map(map: &HeaderMap) -> Vec<u8> {
    pairs::encode_map(map)
}
