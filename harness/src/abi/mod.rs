//! Host functions of Proxy-Wasm ABI 0.2.1 (module `env`) and WASI preview1, one file per
//! area. Each function reads its arguments out of guest memory, acts on `VmState` or the
//! shared state, and answers with a status code; data handed to the guest is copied into
//! memory the guest's own allocator returned, as Envoy does.

pub(crate) mod buffers;
pub(crate) mod calls;
pub(crate) mod headers;
pub(crate) mod metrics;
pub(crate) mod misc;
pub(crate) mod pairs;
pub(crate) mod properties;
pub(crate) mod shared;
pub(crate) mod wasi;

use crate::state::VmState;
use crate::Status;
use std::collections::HashSet;
use wasmtime::{Caller, IntoFunc, Linker};

/// How a host function ends: a status for the guest, or a trap that fails the VM.
pub(crate) enum Fail {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for Fail {
    fn from(s: Status) -> Fail {
        Fail::Status(s)
    }
}

impl From<wasmtime::Error> for Fail {
    fn from(e: wasmtime::Error) -> Fail {
        Fail::Trap(e)
    }
}

pub(crate) type HostResult<T = ()> = Result<T, Fail>;

/// Converts a host function's outcome to the i32 status the ABI returns.
pub(crate) fn finish(result: HostResult) -> wasmtime::Result<u32> {
    match result {
        Ok(()) => Ok(Status::Ok as u32),
        Err(Fail::Status(s)) => Ok(s as u32),
        Err(Fail::Trap(e)) => Err(e),
    }
}

pub(crate) type C<'a> = Caller<'a, VmState>;

fn memory(c: &C<'_>) -> HostResult<wasmtime::Memory> {
    c.data().memory.ok_or(Fail::Status(Status::InternalFailure))
}

fn range(ptr: u32, len: u32, size: usize) -> HostResult<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(Fail::Status(Status::InvalidMemoryAccess))?;
    if end > size {
        return Err(Fail::Status(Status::InvalidMemoryAccess));
    }
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(c: &C<'_>, ptr: u32, len: u32) -> HostResult<Vec<u8>> {
    let mem = memory(c)?;
    let data = mem.data(c);
    let r = range(ptr, len, data.len())?;
    Ok(data[r].to_vec())
}

pub(crate) fn read_string(c: &C<'_>, ptr: u32, len: u32) -> HostResult<String> {
    Ok(String::from_utf8_lossy(&read(c, ptr, len)?).into_owned())
}

pub(crate) fn write(c: &mut C<'_>, ptr: u32, bytes: &[u8]) -> HostResult {
    let mem = memory(c)?;
    let data = mem.data_mut(c);
    let r = range(ptr, bytes.len() as u32, data.len())?;
    data[r].copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(c: &mut C<'_>, ptr: u32, v: u32) -> HostResult {
    write(c, ptr, &v.to_le_bytes())
}

pub(crate) fn write_u64(c: &mut C<'_>, ptr: u32, v: u64) -> HostResult {
    write(c, ptr, &v.to_le_bytes())
}

/// Hands bytes to the guest: allocates with its allocator, copies, and writes pointer and
/// size through the return pointers. Empty data is returned as a null pointer and size 0
/// without allocating, as Envoy does (the Rust SDK maps that to None / empty).
pub(crate) fn give(c: &mut C<'_>, bytes: &[u8], ptr_ptr: u32, size_ptr: u32) -> HostResult {
    let mut ptr = 0;
    if !bytes.is_empty() {
        let alloc = c
            .data()
            .alloc
            .clone()
            .ok_or(Fail::Status(Status::InternalFailure))?;
        ptr = alloc.call(&mut *c, bytes.len() as u32)?;
        if ptr == 0 {
            return Err(Fail::Status(Status::InvalidMemoryAccess));
        }
        write(c, ptr, bytes)?;
    }
    write_u32(c, ptr_ptr, ptr)?;
    write_u32(c, size_ptr, bytes.len() as u32)
}

/// The linker being filled, plus the names defined so far: load compares a module's
/// imports against them to name every unsupported import at once.
pub(crate) struct Defs<'a> {
    pub linker: &'a mut Linker<VmState>,
    pub names: HashSet<(String, String)>,
}

impl Defs<'_> {
    pub fn func<Params, Results>(
        &mut self,
        module: &str,
        name: &str,
        f: impl IntoFunc<VmState, Params, Results>,
    ) -> wasmtime::Result<()> {
        self.names.insert((module.to_string(), name.to_string()));
        self.linker.func_wrap(module, name, f)?;
        Ok(())
    }
    pub fn env<Params, Results>(
        &mut self,
        name: &str,
        f: impl IntoFunc<VmState, Params, Results>,
    ) -> wasmtime::Result<()> {
        self.func("env", name, f)
    }
}

/// Defines every host function the harness implements.
pub(crate) fn define_all(defs: &mut Defs<'_>) -> wasmtime::Result<()> {
    misc::define(defs)?;
    headers::define(defs)?;
    buffers::define(defs)?;
    calls::define(defs)?;
    shared::define(defs)?;
    metrics::define(defs)?;
    properties::define(defs)?;
    wasi::define(defs)?;
    Ok(())
}
