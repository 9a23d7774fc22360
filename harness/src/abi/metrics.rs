//! Metrics: host-global, keyed by kind and name, so the same metric defined in several
//! worker VMs is one metric (Envoy's stats are process-wide). Ids carry the kind in their
//! low two bits, as Envoy's do, so a histogram id is recognisable without a lookup.

use super::{finish, read_string, write_u32, write_u64, Defs, HostResult, C};
use crate::state::{MetricState, SharedState};
use crate::types::MetricKind;
use crate::Status;

fn kind_of(raw: u32) -> Option<MetricKind> {
    match raw {
        0 => Some(MetricKind::Counter),
        1 => Some(MetricKind::Gauge),
        2 => Some(MetricKind::Histogram),
        _ => None,
    }
}

fn metric_mut(shared: &mut SharedState, id: u32) -> HostResult<&mut MetricState> {
    let index = ((id >> 2) as usize)
        .checked_sub(1)
        .ok_or(Status::NotFound)?;
    let m = shared.metrics.get_mut(index).ok_or(Status::NotFound)?;
    if m.kind as u32 != id & 3 {
        return Err(Status::NotFound.into());
    }
    Ok(m)
}

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.env(
        "proxy_define_metric",
        |mut c: C<'_>, kind: u32, np: u32, nl: u32, id_ptr: u32| {
            finish((|| {
                let kind = kind_of(kind).ok_or(Status::BadArgument)?;
                let name = read_string(&c, np, nl)?;
                let id = {
                    let mut shared = c.data().shared.lock();
                    let index = match shared
                        .metrics
                        .iter()
                        .position(|m| m.kind == kind && m.name == name)
                    {
                        Some(i) => i,
                        None => {
                            shared.metrics.push(MetricState {
                                name,
                                kind,
                                value: 0,
                                samples: Vec::new(),
                            });
                            shared.metrics.len() - 1
                        }
                    };
                    ((index as u32 + 1) << 2) | kind as u32
                };
                write_u32(&mut c, id_ptr, id)
            })())
        },
    )?;
    d.env(
        "proxy_increment_metric",
        |c: C<'_>, id: u32, offset: i64| {
            finish((|| {
                let mut shared = c.data().shared.lock();
                let m = metric_mut(&mut shared, id)?;
                match m.kind {
                    // Envoy refuses a counter increment that is not positive.
                    MetricKind::Counter if offset > 0 => m.value += offset as u64,
                    MetricKind::Gauge => m.value = m.value.wrapping_add_signed(offset),
                    _ => return Err(Status::BadArgument.into()),
                }
                Ok(())
            })())
        },
    )?;
    d.env("proxy_record_metric", |c: C<'_>, id: u32, value: u64| {
        finish((|| {
            let mut shared = c.data().shared.lock();
            let m = metric_mut(&mut shared, id)?;
            match m.kind {
                MetricKind::Counter => m.value += value,
                MetricKind::Gauge => m.value = value,
                MetricKind::Histogram => {
                    m.value += 1;
                    m.samples.push(value);
                }
            }
            Ok(())
        })())
    })?;
    d.env("proxy_get_metric", |mut c: C<'_>, id: u32, ptr: u32| {
        finish((|| {
            let value = {
                let mut shared = c.data().shared.lock();
                let m = metric_mut(&mut shared, id)?;
                if m.kind == MetricKind::Histogram {
                    return Err(Status::BadArgument.into());
                }
                m.value
            };
            write_u64(&mut c, ptr, value)
        })())
    })?;
    Ok(())
}
