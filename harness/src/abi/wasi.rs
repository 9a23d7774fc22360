//! WASI preview1, by hand: only what a Proxy-Wasm filter built for wasm32-wasip1 needs, with
//! the harness's deterministic sources. stdout and stderr are captured and also logged at
//! info and error (Envoy does the same); clocks read the manual clock; `random_get` is a
//! seeded generator; there are no files (no preopens, every fd but 0-2 is EBADF).

use super::{read, write, write_u32, write_u64, Defs, Fail, HostResult, C};
use crate::types::{Level, LogEntry};

const MODULE: &str = "wasi_snapshot_preview1";
const ESUCCESS: u32 = 0;
const EBADF: u32 = 8;
const EINVAL: u32 = 28;
const ENOTSUP: u32 = 58;
const ESPIPE: u32 = 70;

/// Trap payload of `proc_exit`, so `_start` ending in `proc_exit(0)` counts as success.
#[derive(Debug)]
pub(crate) struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({}) called", self.0)
    }
}

impl std::error::Error for ProcExit {}

fn errno(result: HostResult) -> wasmtime::Result<u32> {
    match result {
        Ok(()) => Ok(ESUCCESS),
        Err(Fail::Status(_)) => Ok(EINVAL),
        Err(Fail::Trap(e)) => Err(e),
    }
}

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.func(
        MODULE,
        "fd_write",
        |mut c: C<'_>, fd: u32, iovs: u32, n: u32, written_ptr: u32| {
            if !(1..=2).contains(&fd) {
                return Ok(EBADF);
            }
            errno((|| {
                let mut bytes = Vec::new();
                for i in 0..n {
                    let iov = read(&c, iovs + i * 8, 8)?;
                    let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                    let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                    bytes.extend(read(&c, ptr, len)?);
                }
                write_output(&c, fd, &bytes);
                write_u32(&mut c, written_ptr, bytes.len() as u32)
            })())
        },
    )?;
    d.func(
        MODULE,
        "fd_read",
        |mut c: C<'_>, fd: u32, _iovs: u32, _n: u32, read_ptr: u32| {
            if fd != 0 {
                return Ok(EBADF);
            }
            // stdin is empty.
            errno(write_u32(&mut c, read_ptr, 0))
        },
    )?;
    d.func(MODULE, "fd_close", |_c: C<'_>, _fd: u32| Ok(ESUCCESS))?;
    d.func(
        MODULE,
        "fd_seek",
        |_c: C<'_>, fd: u32, _offset: i64, _whence: u32, _ptr: u32| {
            Ok(if fd <= 2 { ESPIPE } else { EBADF })
        },
    )?;
    d.func(
        MODULE,
        "fd_fdstat_get",
        |mut c: C<'_>, fd: u32, ptr: u32| {
            if fd > 2 {
                return Ok(EBADF);
            }
            // filetype character_device (2), no flags, all rights.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            stat[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            errno(write(&mut c, ptr, &stat))
        },
    )?;
    d.func(
        MODULE,
        "fd_fdstat_set_flags",
        |_c: C<'_>, _fd: u32, _f: u32| Ok(ENOTSUP),
    )?;
    d.func(MODULE, "fd_filestat_get", |_c: C<'_>, _fd: u32, _p: u32| {
        Ok(EBADF)
    })?;
    d.func(MODULE, "fd_prestat_get", |_c: C<'_>, _fd: u32, _p: u32| {
        Ok(EBADF)
    })?;
    d.func(
        MODULE,
        "fd_prestat_dir_name",
        |_c: C<'_>, _fd: u32, _p: u32, _l: u32| Ok(EBADF),
    )?;
    d.func(
        MODULE,
        "environ_sizes_get",
        |mut c: C<'_>, count_ptr: u32, size_ptr: u32| {
            let env = strings(&c.data().config.env_strings());
            errno(sizes(&mut c, &env, count_ptr, size_ptr))
        },
    )?;
    d.func(
        MODULE,
        "environ_get",
        |mut c: C<'_>, array: u32, buf: u32| {
            let env = strings(&c.data().config.env_strings());
            errno(fill(&mut c, &env, array, buf))
        },
    )?;
    d.func(
        MODULE,
        "args_sizes_get",
        |mut c: C<'_>, count_ptr: u32, size_ptr: u32| {
            let args = strings(&c.data().config.args);
            errno(sizes(&mut c, &args, count_ptr, size_ptr))
        },
    )?;
    d.func(MODULE, "args_get", |mut c: C<'_>, array: u32, buf: u32| {
        let args = strings(&c.data().config.args);
        errno(fill(&mut c, &args, array, buf))
    })?;
    d.func(
        MODULE,
        "clock_time_get",
        |mut c: C<'_>, id: u32, _precision: i64, ptr: u32| {
            let now = {
                let shared = c.data().shared.lock();
                match id {
                    0 => shared.realtime_ns,
                    1..=3 => shared.monotonic_ns,
                    _ => return Ok(EINVAL),
                }
            };
            errno(write_u64(&mut c, ptr, now))
        },
    )?;
    d.func(
        MODULE,
        "clock_res_get",
        |mut c: C<'_>, id: u32, ptr: u32| {
            if id > 3 {
                return Ok(EINVAL);
            }
            errno(write_u64(&mut c, ptr, 1))
        },
    )?;
    d.func(MODULE, "random_get", |mut c: C<'_>, buf: u32, len: u32| {
        let mut bytes = Vec::with_capacity(len as usize + 8);
        while bytes.len() < len as usize {
            let r = c.data_mut().next_random();
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        bytes.truncate(len as usize);
        errno(write(&mut c, buf, &bytes))
    })?;
    d.func(MODULE, "sched_yield", |_c: C<'_>| Ok(ESUCCESS))?;
    d.func(
        MODULE,
        "poll_oneoff",
        |_c: C<'_>, _in: u32, _out: u32, _n: u32, _ptr: u32| Ok(ENOTSUP),
    )?;
    d.func(
        MODULE,
        "proc_exit",
        |_c: C<'_>, code: u32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code as i32)))
        },
    )?;
    Ok(())
}

fn write_output(c: &C<'_>, fd: u32, bytes: &[u8]) {
    let s = c.data();
    let text = String::from_utf8_lossy(bytes);
    let message = text.strip_suffix('\n').unwrap_or(&text).to_string();
    let level = if fd == 1 { Level::Info } else { Level::Error };
    let mut shared = s.shared.lock();
    if fd == 1 {
        shared.stdout.extend_from_slice(bytes);
    } else {
        shared.stderr.extend_from_slice(bytes);
    }
    if level >= s.config.log_level {
        shared.logs.push(LogEntry {
            level,
            worker: s.worker,
            context_id: s.active,
            message,
        });
    }
}

/// NUL-terminated strings, as WASI lays out environment and arguments.
fn strings(items: &[String]) -> Vec<Vec<u8>> {
    items
        .iter()
        .map(|s| {
            let mut b = s.as_bytes().to_vec();
            b.push(0);
            b
        })
        .collect()
}

fn sizes(c: &mut C<'_>, items: &[Vec<u8>], count_ptr: u32, size_ptr: u32) -> HostResult {
    write_u32(c, count_ptr, items.len() as u32)?;
    write_u32(
        c,
        size_ptr,
        items.iter().map(Vec::len).sum::<usize>() as u32,
    )
}

fn fill(c: &mut C<'_>, items: &[Vec<u8>], array: u32, buf: u32) -> HostResult {
    let mut at = buf;
    for (i, item) in items.iter().enumerate() {
        write_u32(c, array + 4 * i as u32, at)?;
        write(c, at, item)?;
        at += item.len() as u32;
    }
    Ok(())
}
