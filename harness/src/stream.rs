//! An HTTP stream driven through one worker VM: the test feeds each phase, the filter acts
//! through host calls, and the test inspects what the filter left behind.

use crate::host::Host;
use crate::state::StreamState;
use crate::types::{Action, HeaderMap, LocalResponse, PropertyValue};
use crate::vm::Vm;

/// A stream (Envoy's per-request filter context). Created by [`Host::stream`]; dropping it
/// finishes it (runs `on_log`, `on_done`, `on_delete`) if the test did not.
pub struct Stream<'h> {
    host: &'h Host,
    worker: usize,
    id: u32,
    /// The state after `finish`, moved out of the VM so a finished stream costs nothing.
    finished: Option<StreamState>,
}

const REQ: usize = 0;
const RESP: usize = 1;

impl<'h> Stream<'h> {
    pub(crate) fn new(host: &'h Host, worker: usize, id: u32) -> Stream<'h> {
        Stream {
            host,
            worker,
            id,
            finished: None,
        }
    }

    /// The context id the guest knows this stream by.
    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Sets a property on this stream only (e.g. `connection.uri_san_peer_certificate`).
    pub fn set_property(&self, path: &[&str], value: impl Into<PropertyValue>) {
        let key = crate::types::property_key(path);
        let value = value.into().0;
        self.with_state_mut(|st| {
            st.properties.insert(key, value);
        });
    }

    fn with_state<R: Default>(&self, f: impl FnOnce(&StreamState) -> R) -> R {
        if let Some(st) = &self.finished {
            return f(st);
        }
        let vm = self.host.vm(self.worker);
        vm.store
            .data()
            .streams
            .get(&self.id)
            .map(f)
            .unwrap_or_default()
    }

    fn with_state_mut(&self, f: impl FnOnce(&mut StreamState)) {
        if self.finished.is_some() {
            return;
        }
        let mut vm = self.host.vm(self.worker);
        if let Some(st) = vm.store.data_mut().streams.get_mut(&self.id) {
            f(st);
        }
    }

    /// Runs a phase: `prepare` sets up state; the callback runs unless the stream or VM
    /// has failed; `after` updates state from the action.
    fn phase(
        &mut self,
        request_side: bool,
        prepare: impl FnOnce(&mut StreamState) -> (u32, u32),
        call: impl FnOnce(&mut Vm, u32, (u32, u32)) -> Result<Option<u32>, String>,
        after: impl FnOnce(&mut StreamState, Action),
    ) -> Action {
        if self.finished.is_some() {
            return Action::Continue;
        }
        let action = {
            let mut guard = self.host.vm(self.worker);
            let vm = &mut *guard;
            let Some(st) = vm.store.data_mut().streams.get_mut(&self.id) else {
                return Action::Continue;
            };
            if st.local_reply_encoded {
                // A local reply ended the stream: Envoy neither decodes more of the request
                // nor delivers an upstream response.
                return if request_side {
                    Action::Pause
                } else {
                    Action::Continue
                };
            }
            let args = prepare(st);
            let stream_failed = st.failure.is_some();
            if let (false, Some(vm_failure)) = (stream_failed, vm.failed.clone()) {
                vm.fail_stream(self.id, vm_failure);
            }
            if stream_failed || vm.failed.is_some() {
                // FAIL_CLOSED: the request side stops (a 503 went out); the response side
                // passes through without calling the VM, as Envoy skips it.
                vm.fail_stream(self.id, String::new());
                return if request_side {
                    Action::Pause
                } else {
                    Action::Continue
                };
            }
            let action = match call(vm, self.id, args) {
                Ok(raw) => raw.map(Action::from_raw).unwrap_or(Action::Continue),
                Err(message) => {
                    vm.fail_stream(self.id, message);
                    Action::Pause
                }
            };
            if let Some(st) = vm.store.data_mut().streams.get_mut(&self.id) {
                after(st, action);
            }
            vm.encode_local_reply(self.id);
            action
        };
        self.host.deliver_notifications();
        action
    }

    fn headers_phase<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        which: usize,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Action {
        let map = HeaderMap::from_pairs(headers);
        let n = map.len() as u32;
        let eos = u32::from(end_of_stream);
        self.phase(
            which < 2,
            |st| {
                let slot = match which {
                    0 => &mut st.request_headers,
                    1 => &mut st.request_trailers,
                    2 => &mut st.response_headers,
                    _ => &mut st.response_trailers,
                };
                *slot = Some(map);
                st.live[which] = true;
                (n, eos)
            },
            |vm, id, (n, eos)| match which {
                0 => vm.call(
                    vm.ex.request_headers.clone(),
                    id,
                    (id, n, eos),
                    "proxy_on_request_headers",
                ),
                1 => vm.call(
                    vm.ex.request_trailers.clone(),
                    id,
                    (id, n),
                    "proxy_on_request_trailers",
                ),
                2 => vm.call(
                    vm.ex.response_headers.clone(),
                    id,
                    (id, n, eos),
                    "proxy_on_response_headers",
                ),
                _ => vm.call(
                    vm.ex.response_trailers.clone(),
                    id,
                    (id, n),
                    "proxy_on_response_trailers",
                ),
            },
            |st, action| {
                if action == Action::Continue {
                    // Envoy forgets a map once its phase continues.
                    st.live[which] = false;
                    if which % 2 == 1 {
                        // Trailers continuing release the buffered body with them.
                        let dir = which / 2;
                        let body = std::mem::take(&mut st.bodies[dir]);
                        st.forwarded[dir].extend_from_slice(&body);
                        st.body_live[dir] = false;
                        st.buffering[dir] = false;
                    }
                }
            },
        )
    }

    fn body_phase(&mut self, dir: usize, chunk: &[u8], end_of_stream: bool) -> Action {
        let eos = u32::from(end_of_stream);
        self.phase(
            dir == REQ,
            |st| {
                // Envoy hands the filter the new chunk, or everything buffered so far if
                // the previous call paused (StopIterationAndBuffer).
                if st.buffering[dir] {
                    st.bodies[dir].extend_from_slice(chunk);
                } else {
                    st.bodies[dir] = chunk.to_vec();
                }
                st.body_live[dir] = true;
                (st.bodies[dir].len() as u32, eos)
            },
            |vm, id, (size, eos)| {
                let (f, name) = if dir == REQ {
                    (vm.ex.request_body.clone(), "proxy_on_request_body")
                } else {
                    (vm.ex.response_body.clone(), "proxy_on_response_body")
                };
                vm.call(f, id, (id, size, eos), name)
            },
            |st, action| match action {
                Action::Continue => {
                    let body = std::mem::take(&mut st.bodies[dir]);
                    st.forwarded[dir].extend_from_slice(&body);
                    st.body_live[dir] = false;
                    st.buffering[dir] = false;
                }
                Action::Pause => st.buffering[dir] = true,
            },
        )
    }

    /// Delivers request headers (pass pseudo-headers `:method`, `:path`, `:authority`,
    /// `:scheme` as Envoy would; see [`crate::request`]).
    pub fn request_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Action {
        self.headers_phase(0, headers, end_of_stream)
    }
    /// Delivers a request body chunk.
    pub fn request_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Action {
        self.body_phase(REQ, chunk.as_ref(), end_of_stream)
    }
    /// Delivers request trailers (the body then never sees end_of_stream, as in Envoy).
    pub fn request_trailers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        trailers: &[(K, V)],
    ) -> Action {
        self.headers_phase(1, trailers, true)
    }
    /// Delivers response headers (include `:status`; see [`crate::response`]).
    pub fn response_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Action {
        self.headers_phase(2, headers, end_of_stream)
    }
    pub fn response_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Action {
        self.body_phase(RESP, chunk.as_ref(), end_of_stream)
    }
    pub fn response_trailers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        trailers: &[(K, V)],
    ) -> Action {
        self.headers_phase(3, trailers, true)
    }

    /// Ends the stream as Envoy does: `on_log` (maps readable, not writable), `on_done`,
    /// `on_delete`; outstanding callouts are cancelled. Returns `on_done`'s answer (true
    /// when the export is missing or the VM failed). Further calls do nothing.
    pub fn finish(&mut self) -> bool {
        if let Some(st) = &self.finished {
            return st.done_result.unwrap_or(true);
        }
        let state = {
            let mut guard = self.host.vm(self.worker);
            let vm = &mut *guard;
            let id = self.id;
            let created = vm
                .store
                .data()
                .streams
                .get(&id)
                .is_some_and(|st| st.failure.is_none());
            if created && vm.failed.is_none() {
                set_log_phase(vm, id, true);
                let log = vm.call(vm.ex.log.clone(), id, id, "proxy_on_log");
                set_log_phase(vm, id, false);
                let done = log.and_then(|_| vm.call(vm.ex.done.clone(), id, id, "proxy_on_done"));
                if let Some(st) = vm.store.data_mut().streams.get_mut(&id) {
                    st.done_result = done.as_ref().ok().map(|d| d.is_none_or(|v| v != 0));
                }
                let deleted =
                    done.and_then(|_| vm.call(vm.ex.delete.clone(), id, id, "proxy_on_delete"));
                if let Err(message) = deleted {
                    vm.fail_stream(id, message);
                }
            }
            vm.store.data_mut().streams.remove(&id).unwrap_or_default()
        };
        self.host.cancel_calls_of(self.worker, self.id);
        self.host.deliver_notifications();
        let done = state.done_result.unwrap_or(true);
        self.finished = Some(state);
        done
    }

    // ---- what the filter left ----

    /// Request headers as the filter left them (what goes upstream).
    pub fn request_header_map(&self) -> HeaderMap {
        self.with_state(|st| st.request_headers.clone().unwrap_or_default())
    }
    pub fn request_trailer_map(&self) -> HeaderMap {
        self.with_state(|st| st.request_trailers.clone().unwrap_or_default())
    }
    /// Response headers as the filter left them (what goes downstream).
    pub fn response_header_map(&self) -> HeaderMap {
        self.with_state(|st| st.response_headers.clone().unwrap_or_default())
    }
    pub fn response_trailer_map(&self) -> HeaderMap {
        self.with_state(|st| st.response_trailers.clone().unwrap_or_default())
    }
    /// The request body as the filter left it: bytes passed upstream, then bytes still
    /// buffered.
    pub fn request_body_bytes(&self) -> Vec<u8> {
        self.with_state(|st| [st.forwarded[REQ].as_slice(), &st.bodies[REQ]].concat())
    }
    pub fn response_body_bytes(&self) -> Vec<u8> {
        self.with_state(|st| [st.forwarded[RESP].as_slice(), &st.bodies[RESP]].concat())
    }
    /// Bytes still held back by the filter (buffered after a paused body callback).
    pub fn request_body_buffered(&self) -> Vec<u8> {
        self.with_state(|st| {
            if st.buffering[REQ] {
                st.bodies[REQ].clone()
            } else {
                Vec::new()
            }
        })
    }
    pub fn response_body_buffered(&self) -> Vec<u8> {
        self.with_state(|st| {
            if st.buffering[RESP] {
                st.bodies[RESP].clone()
            } else {
                Vec::new()
            }
        })
    }
    /// The local response the filter sent (or the 503 of a failed stream).
    pub fn local_response(&self) -> Option<LocalResponse> {
        self.with_state(|st| st.local_response.clone())
    }
    /// How many times the filter resumed the request (`continue_stream`).
    pub fn request_resumed(&self) -> u32 {
        self.with_state(|st| st.resumed[REQ])
    }
    pub fn response_resumed(&self) -> u32 {
        self.with_state(|st| st.resumed[RESP])
    }
    /// Whether the filter reset the request / response (`close_stream`).
    pub fn request_closed(&self) -> bool {
        self.with_state(|st| st.closed[REQ])
    }
    pub fn response_closed(&self) -> bool {
        self.with_state(|st| st.closed[RESP])
    }
    /// Whether Envoy would choose the route again from the final request headers: the
    /// filter edited request headers or called `clear_route_cache` (Envoy 1.40 clears the
    /// route cache on every request-header edit).
    pub fn route_cache_dirty(&self) -> bool {
        self.with_state(|st| st.route_dirty)
    }
    /// Whether a local reply went through the filter's response callbacks (then
    /// [`Stream::response_header_map`] and the response body show it as the client got it).
    pub fn local_reply_encoded(&self) -> bool {
        self.with_state(|st| st.local_reply_encoded)
    }
    /// How many times the filter called `clear_route_cache`.
    pub fn route_cache_cleared(&self) -> u32 {
        self.with_state(|st| st.route_cache_cleared)
    }
    /// Why the stream failed (a trap in one of its callbacks, or its VM had failed).
    pub fn failure(&self) -> Option<String> {
        self.with_state(|st| st.failure.clone())
    }
    /// Host-call misuse on this stream, e.g. a second `send_local_response`.
    pub fn errors(&self) -> Vec<String> {
        self.with_state(|st| st.errors.clone())
    }
    /// A property the filter set on this stream (`proxy_set_property`) or the test did.
    pub fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = crate::types::property_key(path);
        self.with_state(|st| {
            st.properties
                .get(&key)
                .or_else(|| st.filter_state.get(&key))
                .cloned()
        })
    }
}

fn set_log_phase(vm: &mut Vm, id: u32, on: bool) {
    if let Some(st) = vm.store.data_mut().streams.get_mut(&id) {
        st.log_phase = on;
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}
