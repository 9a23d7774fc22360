//! Shared data (key-value with CAS) and shared queues: host-global, so every worker VM of
//! the host sees the same entries, as all workers of an Envoy plugin do.

use super::{finish, give, read, read_string, write_u32, Defs, HostResult, C};
use crate::state::Queue;
use crate::Status;

pub(crate) fn define(d: &mut Defs<'_>) -> wasmtime::Result<()> {
    d.env(
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: u32, kl: u32, ptr_ptr: u32, size_ptr: u32, cas_ptr: u32| {
            finish((|| {
                let key = read(&c, kp, kl)?;
                let (value, cas) = c
                    .data()
                    .shared
                    .lock()
                    .shared_data
                    .get(&key)
                    .cloned()
                    .ok_or(Status::NotFound)?;
                give(&mut c, &value, ptr_ptr, size_ptr)?;
                write_u32(&mut c, cas_ptr, cas)
            })())
        },
    )?;
    d.env(
        "proxy_set_shared_data",
        |c: C<'_>, kp: u32, kl: u32, vp: u32, vl: u32, cas: u32| {
            finish((|| {
                let key = read(&c, kp, kl)?;
                let value = read(&c, vp, vl)?;
                let mut shared = c.data().shared.lock();
                // Envoy: cas 0 writes unconditionally; a stale cas on an existing key is a
                // mismatch; a missing key is written whatever the cas.
                if let Some((_, current)) = shared.shared_data.get(&key) {
                    if cas != 0 && cas != *current {
                        return Err(Status::CasMismatch.into());
                    }
                }
                let next = shared.next_cas();
                shared.shared_data.insert(key, (value, next));
                Ok(())
            })())
        },
    )?;
    d.env(
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: u32, nl: u32, id_ptr: u32| {
            finish((|| {
                let name = read_string(&c, np, nl)?;
                let s = c.data();
                let owner = (s.worker, s.root_context);
                let vm_id = s.config.vm_id.clone();
                let id = {
                    let mut shared = s.shared.lock();
                    match find(&shared.queues, &vm_id, &name) {
                        Some(id) => id,
                        None => {
                            shared.queues.push(Queue {
                                vm_id,
                                name,
                                owner,
                                items: Default::default(),
                            });
                            shared.queues.len() as u32
                        }
                    }
                };
                write_u32(&mut c, id_ptr, id)
            })())
        },
    )?;
    d.env(
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: u32, vl: u32, np: u32, nl: u32, id_ptr: u32| {
            finish((|| {
                let mut vm_id = read_string(&c, vp, vl)?;
                let name = read_string(&c, np, nl)?;
                let s = c.data();
                if vm_id.is_empty() {
                    vm_id.clone_from(&s.config.vm_id);
                }
                let id = find(&s.shared.lock().queues, &vm_id, &name).ok_or(Status::NotFound)?;
                write_u32(&mut c, id_ptr, id)
            })())
        },
    )?;
    d.env(
        "proxy_enqueue_shared_queue",
        |c: C<'_>, id: u32, vp: u32, vl: u32| {
            finish((|| {
                let value = read(&c, vp, vl)?;
                let mut shared = c.data().shared.lock();
                let queue = queue_mut(&mut shared.queues, id)?;
                queue.items.push_back(value);
                let (worker, root) = queue.owner;
                // Envoy posts on_queue_ready to the owner's thread: the harness delivers it
                // once the current callback has returned.
                shared.pending_queue_ready.push_back((worker, root, id));
                Ok(())
            })())
        },
    )?;
    d.env(
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: u32, ptr_ptr: u32, size_ptr: u32| {
            finish((|| {
                let item = {
                    let mut shared = c.data().shared.lock();
                    let queue = queue_mut(&mut shared.queues, id)?;
                    queue.items.pop_front().ok_or(Status::Empty)?
                };
                give(&mut c, &item, ptr_ptr, size_ptr)
            })())
        },
    )?;
    Ok(())
}

pub(crate) fn find(queues: &[Queue], vm_id: &str, name: &str) -> Option<u32> {
    queues
        .iter()
        .position(|q| q.vm_id == vm_id && q.name == name)
        .map(|i| i as u32 + 1)
}

fn queue_mut(queues: &mut [Queue], id: u32) -> HostResult<&mut Queue> {
    let index = (id as usize).checked_sub(1).ok_or(Status::NotFound)?;
    Ok(queues.get_mut(index).ok_or(Status::NotFound)?)
}
