//! Buffers: request/response bodies of the effective stream, the http call response body,
//! VM and plugin configuration, and foreign-function call data.

use super::{finish, give, read, write_u32, Defs, HostResult, C};
use crate::state::{Phase, VmState};
use crate::Status;

/// Runs `f` on the readable buffer of a type; Ok(None) when it does not exist now.
fn with_buffer<R>(
    s: &mut VmState,
    ty: u32,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>, Status> {
    Ok(match ty {
        0 | 1 => {
            let dir = ty as usize;
            s.stream()
                .filter(|st| st.body_live[dir])
                .map(|st| f(&st.bodies[dir]))
        }
        2 | 3 => None,
        5 => s.grpc_receive.as_deref().map(f),
        4 => s.call_response.as_ref().map(|r| f(&r.1)),
        6 => Some(f(&s.config.vm_config)),
        // Envoy exposes the plugin configuration only while on_configure runs.
        7 => (s.phase == Phase::Configure).then(|| f(&s.config.plugin_config)),
        8 => s.call_data.as_deref().map(f),
        _ => return Err(Status::BadArgument),
    })
}

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.env(
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, ty: u32, start: u32, max: u32, ptr_ptr: u32, size_ptr: u32| {
            finish((|| {
                let bytes = with_buffer(c.data_mut(), ty, |b| {
                    // Envoy clamps an over-long read to the end of the buffer.
                    let start = (start as usize).min(b.len());
                    let end = start.saturating_add(max as usize).min(b.len());
                    b[start..end].to_vec()
                })?
                .ok_or(Status::NotFound)?;
                if bytes.is_empty() {
                    // Nothing to copy: Envoy returns Ok without touching the return pointers.
                    return Ok(());
                }
                give(&mut c, &bytes, ptr_ptr, size_ptr)
            })())
        },
    )?;
    d.env(
        "proxy_get_buffer_status",
        |mut c: C<'_>, ty: u32, len_ptr: u32, flags_ptr: u32| {
            finish((|| {
                let len = with_buffer(c.data_mut(), ty, |b| b.len())?.ok_or(Status::NotFound)?;
                write_u32(&mut c, len_ptr, len as u32)?;
                write_u32(&mut c, flags_ptr, 0)
            })())
        },
    )?;
    d.env(
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, ty: u32, start: u32, size: u32, ptr: u32, len: u32| {
            finish((|| {
                let data = read(&c, ptr, len)?;
                set_buffer(c.data_mut(), ty, start as usize, size as usize, &data)
            })())
        },
    )?;
    Ok(())
}

/// Envoy's `Buffer::copyFrom`: start 0 replaces the first `size` bytes (size 0 prepends);
/// start at or past the end appends; anything else is a BadArgument.
fn set_buffer(s: &mut VmState, ty: u32, start: usize, size: usize, data: &[u8]) -> HostResult {
    if ty > 8 {
        return Err(Status::BadArgument.into());
    }
    if ty > 1 {
        // Call data, configuration and callout bodies are immutable.
        return Err(Status::BadArgument.into());
    }
    let dir = ty as usize;
    let st = s
        .stream()
        .filter(|st| st.body_live[dir])
        .ok_or(Status::NotFound)?;
    let body = &mut st.bodies[dir];
    if start == 0 {
        let drain = size.min(body.len());
        body.splice(0..drain, data.iter().copied());
        Ok(())
    } else if start >= body.len() {
        body.extend_from_slice(data);
        Ok(())
    } else {
        Err(Status::BadArgument.into())
    }
}
