//! One worker VM: a wasmtime `Store` and instance of the module, the guest's callback
//! exports resolved once, and the failure flag Envoy keeps per VM (a trap fails the VM for
//! good: later callbacks are not delivered and new streams get a 503).

use crate::abi::wasi::ProcExit;
use crate::error::HarnessError;
use crate::module::{engine, Allocator, Module};
use crate::state::{HostConfig, Phase, Shared, VmState};
use crate::types::{HeaderMap, Incident, LocalResponse};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

type F<P, R> = Option<TypedFunc<P, R>>;

/// Callback exports; a missing one is skipped like Envoy does (the stream continues).
#[derive(Clone)]
pub(crate) struct Exports {
    pub start: F<(), ()>,
    pub context_create: F<(u32, u32), ()>,
    pub vm_start: F<(u32, u32), u32>,
    pub configure: F<(u32, u32), u32>,
    pub tick: F<u32, ()>,
    pub queue_ready: F<(u32, u32), ()>,
    pub request_headers: F<(u32, u32, u32), u32>,
    pub request_body: F<(u32, u32, u32), u32>,
    pub request_trailers: F<(u32, u32), u32>,
    pub response_headers: F<(u32, u32, u32), u32>,
    pub response_body: F<(u32, u32, u32), u32>,
    pub response_trailers: F<(u32, u32), u32>,
    pub http_call_response: F<(u32, u32, u32, u32, u32), ()>,
    pub grpc_receive: F<(u32, u32, u32), ()>,
    pub grpc_close: F<(u32, u32, u32), ()>,
    pub log: F<u32, ()>,
    pub done: F<u32, u32>,
    pub delete: F<u32, ()>,
}

fn typed<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut Store<VmState>,
    name: &'static str,
) -> Result<F<P, R>, HarnessError> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(f) => f
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| HarnessError::BadExport {
                name,
                message: format!("{e:#}"),
            }),
    }
}

pub(crate) struct Vm {
    pub store: Store<VmState>,
    pub ex: Exports,
    pub failed: Option<String>,
    pub next_id: u32,
}

impl Vm {
    pub fn new(
        module: &Module,
        worker: usize,
        shared: Arc<Shared>,
        config: Arc<HostConfig>,
    ) -> Result<Vm, HarnessError> {
        let seed = config.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9);
        let state = VmState {
            worker,
            shared,
            config,
            memory: None,
            alloc: None,
            active: 0,
            effective: 0,
            root_context: 1,
            phase: Phase::Idle,
            streams: HashMap::new(),
            tick_period_ns: None,
            next_tick_ns: 0,
            call_response: None,
            grpc_receive: None,
            call_data: None,
            rng: seed,
            host_calls: 0,
            guest_entries: 0,
        };
        let mut store = Store::new(engine(), state);
        store.call_hook(|mut ctx, hook| {
            match hook {
                wasmtime::CallHook::CallingHost => ctx.data_mut().host_calls += 1,
                wasmtime::CallHook::CallingWasm => ctx.data_mut().guest_entries += 1,
                _ => {}
            }
            Ok(())
        });
        let inst_err = |e: wasmtime::Error| HarnessError::Instantiate {
            worker,
            message: format!("{e:#}"),
        };
        let instance = module.inner.pre.instantiate(&mut store).map_err(inst_err)?;
        let alloc_name = match module.inner.allocator {
            Allocator::ProxyOnMemoryAllocate => "proxy_on_memory_allocate",
            Allocator::Malloc => "malloc",
        };
        let alloc = typed::<u32, u32>(&instance, &mut store, alloc_name)?;
        let memory = instance.get_memory(&mut store, "memory");
        store.data_mut().alloc = alloc;
        store.data_mut().memory = memory;
        let i = &instance;
        let s = &mut store;
        let ex = Exports {
            start: match module.inner.start {
                Some(name) => typed(i, s, name)?,
                None => None,
            },
            context_create: typed(i, s, "proxy_on_context_create")?,
            vm_start: typed(i, s, "proxy_on_vm_start")?,
            configure: typed(i, s, "proxy_on_configure")?,
            tick: typed(i, s, "proxy_on_tick")?,
            queue_ready: typed(i, s, "proxy_on_queue_ready")?,
            request_headers: typed(i, s, "proxy_on_request_headers")?,
            request_body: typed(i, s, "proxy_on_request_body")?,
            request_trailers: typed(i, s, "proxy_on_request_trailers")?,
            response_headers: typed(i, s, "proxy_on_response_headers")?,
            response_body: typed(i, s, "proxy_on_response_body")?,
            response_trailers: typed(i, s, "proxy_on_response_trailers")?,
            http_call_response: typed(i, s, "proxy_on_http_call_response")?,
            grpc_receive: typed(i, s, "proxy_on_grpc_receive")?,
            grpc_close: typed(i, s, "proxy_on_grpc_close")?,
            log: typed(i, s, "proxy_on_log")?,
            done: typed(i, s, "proxy_on_done")?,
            delete: typed(i, s, "proxy_on_delete")?,
        };
        Ok(Vm {
            store,
            ex,
            failed: None,
            next_id: 2,
        })
    }

    /// Runs the start function and configures the root context, as Envoy does when it
    /// creates a worker's VM. Returns whether the plugin accepted its configuration.
    pub fn start(&mut self) -> bool {
        if let Some(start) = self.ex.start.clone() {
            if let Err(e) = start.call(&mut self.store, ()) {
                // A command module's _start may end with proc_exit(0): that is success.
                if !matches!(e.downcast_ref::<ProcExit>(), Some(ProcExit(0))) {
                    self.fail("_start/_initialize", &e);
                    return false;
                }
            }
        }
        let root = self.store.data().root_context;
        let vm_len = self.store.data().config.vm_config.len() as u32;
        let plugin_len = self.store.data().config.plugin_config.len() as u32;
        if self
            .call(
                self.ex.context_create.clone(),
                root,
                (root, 0),
                "proxy_on_context_create",
            )
            .is_err()
        {
            return false;
        }
        let started = self.call(
            self.ex.vm_start.clone(),
            root,
            (root, vm_len),
            "proxy_on_vm_start",
        );
        self.store.data_mut().phase = Phase::Configure;
        let configured = self.call(
            self.ex.configure.clone(),
            root,
            (root, plugin_len),
            "proxy_on_configure",
        );
        self.store.data_mut().phase = Phase::Idle;
        // A missing export counts as success, as in Envoy.
        matches!(started, Ok(None) | Ok(Some(1..)))
            && matches!(configured, Ok(None) | Ok(Some(1..)))
    }

    /// Calls a guest callback for context `ctx`. A trap fails the VM and comes back as the
    /// message; calls on a failed VM are not made (Err with the original failure).
    pub fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        f: F<P, R>,
        ctx: u32,
        params: P,
        what: &'static str,
    ) -> Result<Option<R>, String> {
        if let Some(failed) = &self.failed {
            return Err(failed.clone());
        }
        let Some(f) = f else {
            return Ok(None);
        };
        let s = self.store.data_mut();
        s.active = ctx;
        s.effective = ctx;
        match f.call(&mut self.store, params) {
            Ok(r) => Ok(Some(r)),
            Err(e) => Err(self.fail(what, &e)),
        }
    }

    fn fail(&mut self, what: &str, e: &wasmtime::Error) -> String {
        let message = format!("{what} trapped: {e:#}");
        let s = self.store.data();
        s.shared.lock().incidents.push(Incident {
            worker: s.worker,
            context_id: s.active,
            message: message.clone(),
        });
        self.failed = Some(message.clone());
        message
    }

    /// Envoy sends a local reply through the encoder filters once the callback that asked
    /// for it has returned, so the filter's own `on_response_headers` (and
    /// `on_response_body`, for a body) see it and may edit it. The map is what Envoy builds:
    /// `:status`, the filter's headers, `content-length`, and `content-type: text/plain`
    /// when there is a body. Only before any response has started, and only once.
    pub fn encode_local_reply(&mut self, id: u32) {
        let Some(st) = self.store.data_mut().streams.get_mut(&id) else {
            return;
        };
        let Some(local) = st.local_response.clone() else {
            return;
        };
        if st.local_reply_encoded || st.response_headers.is_some() || st.failure.is_some() {
            return;
        }
        st.local_reply_encoded = true;
        let mut map = HeaderMap::default();
        map.add(":status", local.status.to_string().as_bytes());
        for (k, v) in local.headers.pairs() {
            map.add(k, v);
        }
        map.add("content-length", local.body.len().to_string().as_bytes());
        if !local.body.is_empty() {
            map.add("content-type", b"text/plain");
        }
        let n = map.len() as u32;
        let eos = u32::from(local.body.is_empty());
        st.response_headers = Some(map);
        st.live[2] = true;
        // Decoding is over: Envoy no longer offers the request side.
        st.live[0] = false;
        st.live[1] = false;
        let f = self.ex.response_headers.clone();
        let result = self.call(f, id, (id, n, eos), "proxy_on_response_headers");
        if let Err(message) = result {
            self.fail_stream(id, message);
            return;
        }
        let Some(st) = self.store.data_mut().streams.get_mut(&id) else {
            return;
        };
        st.live[2] = false;
        if local.body.is_empty() {
            return;
        }
        let size = local.body.len() as u32;
        st.bodies[1] = local.body;
        st.body_live[1] = true;
        let f = self.ex.response_body.clone();
        let result = self.call(f, id, (id, size, 1u32), "proxy_on_response_body");
        if let Err(message) = result {
            self.fail_stream(id, message);
            return;
        }
        if let Some(st) = self.store.data_mut().streams.get_mut(&id) {
            let body = std::mem::take(&mut st.bodies[1]);
            st.forwarded[1].extend_from_slice(&body);
            st.body_live[1] = false;
            st.buffering[1] = false;
        }
    }

    /// Fails a stream as Envoy's FAIL_CLOSED policy does: a 503 local reply with details
    /// `wasm_fail_stream` (unless the filter already sent one) and no further callbacks.
    pub fn fail_stream(&mut self, id: u32, message: String) {
        if let Some(st) = self.store.data_mut().streams.get_mut(&id) {
            if st.failure.is_none() {
                st.failure = Some(message);
            }
            if st.local_response.is_none() {
                st.local_response = Some(LocalResponse {
                    status: 503,
                    headers: HeaderMap::default(),
                    body: Vec::new(),
                    details: "wasm_fail_stream".into(),
                    grpc_status: Some(14),
                });
            }
        }
    }
}
