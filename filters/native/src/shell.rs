//! The native shell: the same stages the Wasm shell runs (`wasmesh_sdk::shell`), wired
//! to Envoy's dynamic-module hooks instead of proxy-wasm. Safe code only; the hooks in
//! [`crate::abi`] hand it a [`StreamHost`].
//!
//! Per phase it fetches the header map once, gives the stage the SDK's own view
//! ([`Request`], [`Response`], [`LogView`]), replays the view's recorded edits and
//! carries out the decision, exactly as the Wasm shell does.
//!
//! Bodies: as in the Wasm shell, a stage that asks for the whole body
//! ([`Decision::WaitForBody`]) lets its headers go on at once, without
//! `content-length`, and its body is held (`StopIterationAndBuffer`) until its body
//! phase continues it; a stage that only counts lets each chunk through. The stage sees
//! what Envoy holds for this filter (the chunks it buffered and the one just received)
//! as one [`Body`].
//!
//! Threads: Envoy runs a filter's hooks on the worker thread that owns the stream, and
//! several workers at once. Stages are written for the Wasm model (one VM, hence one
//! stage instance, per worker, no locks), so each worker builds its own instance from
//! the validated config, on its first stream ([`worker_stage`]). Per-worker state (a
//! fault stage's RNG) stays per worker, as under Wasm.

use crate::{grpc, stages};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmesh_sdk::body::BodyCount;
use wasmesh_sdk::config::Json;
use wasmesh_sdk::headers::{HeaderMap, HeaderOp};
use wasmesh_sdk::pipeline::AnyStage;
use wasmesh_sdk::PropertySource;
use wasmesh_sdk::{
    Body, BodyAction, Callout, CalloutResult, ConfigError, Decision, GrpcResult, LocalReply,
    LogView, Request, Response,
};

/// Which header map (or body) a host call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Request,
    Response,
}

impl HeaderKind {
    fn index(self) -> usize {
        match self {
            HeaderKind::Request => REQ,
            HeaderKind::Response => RESP,
        }
    }
}

const REQ: usize = 0;
const RESP: usize = 1;

/// What a body hook answers Envoy (`on_http_filter_{request,response}_body_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    /// Pass what Envoy holds on (`Continue`; held headers go on with it).
    Continue,
    /// Keep this chunk with the earlier ones (`StopIterationAndBuffer`).
    Buffer,
    /// The stream was answered or reset, or waits: nothing goes on (`StopIterationNoBuffer`).
    Stop,
}

/// What the shell needs from Envoy for one stream: the dynamic-module callbacks, behind
/// a trait so the shell is tested natively with a fake.
pub trait StreamHost {
    fn headers(&self, kind: HeaderKind) -> Vec<(String, String)>;
    /// The `kind` headers, fetched when a stage first reads them: a stage that only
    /// edits (or a log phase that reads nothing) costs no fetch, as in the Wasm shell.
    fn lazy_headers(&self, kind: HeaderKind) -> HeaderMap {
        HeaderMap::from_pairs(self.headers(kind))
    }
    fn set_header(&self, kind: HeaderKind, name: &str, value: &str) -> bool;
    fn add_header(&self, kind: HeaderKind, name: &str, value: &str) -> bool;
    fn remove_header(&self, kind: HeaderKind, name: &str) -> bool;
    fn send_response(&self, status: u16, headers: &[(String, String)], body: &[u8], details: &str);
    fn clear_route_cache(&self);
    /// Calls [`Filter::on_scheduled`] on this stream's worker once `delay` has passed;
    /// false if it cannot.
    fn resume_after(&self, delay: Duration) -> bool;
    /// Sends `callout`; Envoy answers through [`Filter::on_callout_done`]. False if it
    /// could not be sent (unknown cluster, missing pseudo-headers).
    fn callout(&self, callout: &Callout) -> bool;
    /// Lets a request paused by a delay or callout go on to the next filter.
    fn continue_request(&self);
    /// A property (`source.address`), encoded as Proxy-Wasm encodes it; None if absent.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Bytes of the `kind` body Envoy holds for this filter now: what it buffered for
    /// it and, in a body hook, the chunk just received.
    fn body_len(&self, kind: HeaderKind) -> usize;
    /// Those bytes, in order.
    fn body_bytes(&self, kind: HeaderKind) -> Vec<u8>;
    /// Replaces those bytes with `bytes`; false if Envoy holds no such body.
    fn replace_body(&self, kind: HeaderKind, bytes: &[u8]) -> bool;
    /// Resets the stream (the client sees the connection or HTTP/2 stream cut).
    fn reset_stream(&self);
}

/// A stream's properties, as the SDK's views read them.
struct HostProperties<'a>(&'a dyn StreamHost);

impl PropertySource for HostProperties<'_> {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.0.property(path)
    }
}

/// A filter config Envoy could not accept, with the reason Envoy's log shows.
#[derive(Debug)]
pub enum ConfigRejected {
    /// `filter_name` names no stage of this module.
    UnknownStage(String),
    /// The stage refused its config (the same message the Wasm filter gives).
    Invalid { stage: String, error: ConfigError },
}

impl fmt::Display for ConfigRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigRejected::UnknownStage(name) => write!(
                f,
                "unknown filter_name `{name}`; this module offers {}",
                stages::names().join(", ")
            ),
            ConfigRejected::Invalid { stage, error } => {
                write!(f, "{stage}: invalid configuration: {error}")
            }
        }
    }
}

/// One `DynamicModuleFilter` config: the stage kind and its validated config. Shared
/// by every worker (it is created on the main thread), so it holds data only.
pub struct FilterConfig {
    /// Tells this config's per-worker stage instances apart from other configs'.
    id: u64,
    /// Envoy's handle of this config, as a number: its metrics are defined on it.
    metrics_scope: usize,
    kind: String,
    config: Json,
}

static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(0);

impl FilterConfig {
    /// Validates `config` (JSON, the Wasm filter's config) for stage `filter_name` by
    /// building the stage once, so a bad config is refused at load, not per worker.
    pub fn new(
        filter_name: &str,
        config: &[u8],
        metrics_scope: usize,
    ) -> Result<FilterConfig, ConfigRejected> {
        let invalid = |error| ConfigRejected::Invalid {
            stage: filter_name.to_string(),
            error,
        };
        let config: Json = wasmesh_sdk::config::parse(config).map_err(invalid)?;
        match stages::build(filter_name, &config) {
            None => Err(ConfigRejected::UnknownStage(filter_name.to_string())),
            Some(Err(e)) => Err(invalid(e)),
            Some(Ok(_)) => Ok(FilterConfig {
                id: NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed),
                metrics_scope,
                kind: filter_name.to_string(),
                config,
            }),
        }
    }
}

thread_local! {
    /// This worker's stage instance per config id.
    static WORKER_STAGES: RefCell<HashMap<u64, Rc<dyn AnyStage>>> = RefCell::new(HashMap::new());
}

/// This worker's instance of `config`'s stage, built on first use.
fn worker_stage(config: &FilterConfig) -> Option<Rc<dyn AnyStage>> {
    WORKER_STAGES.with(|stages| {
        let mut stages = stages.borrow_mut();
        if let Some(stage) = stages.get(&config.id) {
            return Some(stage.clone());
        }
        // The config was validated by building it once already, so this cannot fail
        // unless the stage's `build` is not deterministic.
        let stage: Rc<dyn AnyStage> = Rc::from(stages::build(&config.kind, &config.config)?.ok()?);
        stages.insert(config.id, stage.clone());
        Some(stage)
    })
}

/// One HTTP stream.
pub struct Filter {
    stage: Rc<dyn AnyStage>,
    /// The config's [`FilterConfig::metrics_scope`].
    metrics_scope: usize,
    stream: Box<dyn Any>,
    /// A local reply was sent: Envoy refuses a second one.
    replied: bool,
    /// The request waits on a delay or callout: its body is held, unseen by the stage.
    paused: bool,
    /// The callout in flight carries a gRPC call (see [`grpc`]).
    pending_grpc: bool,
    /// Request body chunks (or trailers) arrived while paused: the stage never saw them.
    held_while_paused: bool,
    /// The headers ended the request / response (no body phase follows).
    headers_ended: [bool; 2],
    /// The stage asked for the whole request / response body (WaitForBody): the body is
    /// held until its body phase continues it.
    waiting: [bool; 2],
    counts: [BodyCount; 2],
}

impl Filter {
    pub fn new(config: &FilterConfig) -> Option<Filter> {
        let stage = worker_stage(config)?;
        let stream = stage.new_stream();
        Some(Filter {
            stage,
            metrics_scope: config.metrics_scope,
            stream,
            replied: false,
            paused: false,
            pending_grpc: false,
            held_while_paused: false,
            headers_ended: [false; 2],
            waiting: [false; 2],
            counts: [BodyCount::default(); 2],
        })
    }

    /// Where this stream's metrics are defined (see [`FilterConfig::metrics_scope`]).
    pub fn metrics_scope(&self) -> usize {
        self.metrics_scope
    }

    /// Runs the stage's request phase; false when the stream must stop here.
    /// `end_of_stream`: the headers are the whole request (no body follows).
    pub fn on_request_headers(&mut self, host: &dyn StreamHost, end_of_stream: bool) -> bool {
        self.headers_ended[REQ] = end_of_stream;
        self.run_request(host, |stage, req, stream| stage.on_request(req, stream))
    }

    /// A delay the stage asked for has passed: resume it, and let the request go on
    /// if it says so.
    pub fn on_scheduled(&mut self, host: &dyn StreamHost) {
        self.resume(host, |stage, req, stream| {
            stage.on_request_resumed(req, stream)
        });
    }

    /// A callout the stage asked for has ended: give it the result, as above.
    /// A callout carrying a gRPC call is read back as the call's result.
    pub fn on_callout_done(&mut self, host: &dyn StreamHost, result: CalloutResult) {
        if std::mem::take(&mut self.pending_grpc) {
            let result = grpc::result_of(result);
            self.resume(host, |stage, req, stream| {
                stage.on_grpc_response(req, stream, result)
            });
            return;
        }
        self.resume(host, |stage, req, stream| {
            stage.on_callout_response(req, stream, result)
        });
    }

    fn resume(
        &mut self,
        host: &dyn StreamHost,
        step: impl FnOnce(&dyn AnyStage, &mut Request<'_>, &mut dyn Any) -> Decision,
    ) {
        if self.run_request(host, step) {
            // The held body goes on with the headers, past this filter.
            self.counts[REQ].after(&BodyAction::Continue, 0);
            host.continue_request();
        }
    }

    /// Runs one request-phase step of the stage on a fresh view of the request headers,
    /// replays its edits and carries out its decision; false while the request waits.
    fn run_request(
        &mut self,
        host: &dyn StreamHost,
        step: impl FnOnce(&dyn AnyStage, &mut Request<'_>, &mut dyn Any) -> Decision,
    ) -> bool {
        wasmesh_sdk::log::set_prefix(self.stage.name());
        let props = HostProperties(host);
        let headers = HeaderMap::from_pairs(host.headers(HeaderKind::Request));
        let mut req = Request::new(headers, &props, self.stage.path_options());
        let decision = step(self.stage.as_ref(), &mut req, self.stream.as_mut());
        apply_ops(host, HeaderKind::Request, req.headers.take_ops());
        if req.clear_route_cache {
            host.clear_route_cache();
        }
        self.carry_out(host, decision)
    }

    /// Runs the stage's response phase; false when the stream must stop here.
    pub fn on_response_headers(&mut self, host: &dyn StreamHost, end_of_stream: bool) -> bool {
        self.headers_ended[RESP] = end_of_stream;
        if !self.stage.wants_response() {
            return true;
        }
        wasmesh_sdk::log::set_prefix(self.stage.name());
        let props = HostProperties(host);
        let mut resp = Response::new(host.lazy_headers(HeaderKind::Response), &props);
        let decision = self.stage.on_response(&mut resp, self.stream.as_mut());
        apply_ops(host, HeaderKind::Response, resp.headers.take_ops());
        match decision {
            Decision::Reply(reply) => {
                self.reply(host, reply);
                false
            }
            Decision::WaitForBody => self.hold_for_body(host, RESP),
            // As in the Wasm shell: delays and callouts are request-phase tools.
            _ => true,
        }
    }

    /// A chunk of the request body arrived (Envoy holds it with any it buffered for us).
    pub fn on_request_body(&mut self, host: &dyn StreamHost, end_of_stream: bool) -> BodyStatus {
        if self.paused {
            // Continue here would let the stopped headers go on before the stage
            // decided (Envoy continues stopped headers with the data): hold it. Counted,
            // so the stage after the pause sees the true total.
            self.held_while_paused = true;
            let len = host.body_len(HeaderKind::Request);
            self.counts[REQ].on_chunk(len);
            self.counts[REQ].after(&BodyAction::Buffer, len);
            return BodyStatus::Buffer;
        }
        if self.replied {
            return BodyStatus::Stop;
        }
        self.body_phase(host, HeaderKind::Request, end_of_stream)
    }

    /// A chunk of the response body arrived.
    pub fn on_response_body(&mut self, host: &dyn StreamHost, end_of_stream: bool) -> BodyStatus {
        if self.replied {
            // Our own local reply's body, on its way out.
            return BodyStatus::Continue;
        }
        self.body_phase(host, HeaderKind::Response, end_of_stream)
    }

    /// The request's trailers arrived; false when they must wait (Envoy's
    /// `StopIteration`). They end a held body: the stage gets its last call here.
    pub fn on_request_trailers(&mut self, host: &dyn StreamHost) -> bool {
        if self.paused {
            // As body chunks: continuing would let the stopped headers go on.
            self.held_while_paused = true;
            return false;
        }
        self.trailers_phase(host, HeaderKind::Request)
    }

    /// The response's trailers arrived; as [`Filter::on_request_trailers`].
    pub fn on_response_trailers(&mut self, host: &dyn StreamHost) -> bool {
        self.trailers_phase(host, HeaderKind::Response)
    }

    fn trailers_phase(&mut self, host: &dyn StreamHost, kind: HeaderKind) -> bool {
        if !self.waiting[kind.index()] || self.replied {
            return true;
        }
        self.body_phase(host, kind, true) == BodyStatus::Continue
    }

    /// Runs one body callback through the stage and carries out its action.
    fn body_phase(
        &mut self,
        host: &dyn StreamHost,
        kind: HeaderKind,
        end_of_stream: bool,
    ) -> BodyStatus {
        wasmesh_sdk::log::set_prefix(self.stage.name());
        let dir = kind.index();
        let len = host.body_len(kind);
        let fetch = |_: usize| host.body_bytes(kind);
        let (chunk, received) = self.counts[dir].on_chunk(len);
        let mut body = Body::new(
            len,
            chunk,
            received,
            end_of_stream,
            &fetch,
            host.lazy_headers(kind),
        );
        let action = match kind {
            HeaderKind::Request => self.stage.on_request_body(&mut body, self.stream.as_mut()),
            HeaderKind::Response => self.stage.on_response_body(&mut body, self.stream.as_mut()),
        };
        let (action, replacement) = self.counts[dir].settle(&mut body, action);
        if let Some(bytes) = replacement {
            if !host.replace_body(kind, &bytes) {
                eprintln!(
                    "wasmesh-native: {}: body replacement failed",
                    self.stage.name()
                );
            }
        }
        match action {
            BodyAction::Continue => {
                // Continuing the data continues the held headers with it.
                self.waiting[dir] = false;
                BodyStatus::Continue
            }
            BodyAction::Buffer => BodyStatus::Buffer,
            BodyAction::Reply(reply) => {
                self.reply(host, reply);
                BodyStatus::Stop
            }
            BodyAction::Reset => {
                host.reset_stream();
                BodyStatus::Stop
            }
        }
    }

    /// Prepares the body phase, if a body follows and none went by unseen during a
    /// pause (then the stage could not see it whole: go on). The headers go on now, as
    /// in the Wasm shell (docs/filters/body.md): the body is held instead, and
    /// `content-length` goes, since the body may change length (HTTP/1.1 then sends it
    /// chunked).
    fn hold_for_body(&mut self, host: &dyn StreamHost, dir: usize) -> bool {
        if self.headers_ended[dir] || (dir == REQ && self.held_while_paused) {
            return true;
        }
        self.waiting[dir] = true;
        let kind = if dir == REQ {
            HeaderKind::Request
        } else {
            HeaderKind::Response
        };
        apply_ops(host, kind, vec![HeaderOp::Remove("content-length".into())]);
        true
    }

    /// The stream ended (also after a local reply or a reset): the stage's `on_log`.
    pub fn on_stream_complete(&mut self, host: &dyn StreamHost) {
        wasmesh_sdk::log::set_prefix(self.stage.name());
        let props = HostProperties(host);
        let view = LogView::new(
            host.lazy_headers(HeaderKind::Request),
            host.lazy_headers(HeaderKind::Response),
            &props,
        );
        self.stage.on_log(&view, self.stream.as_mut());
    }

    fn carry_out(&mut self, host: &dyn StreamHost, decision: Decision) -> bool {
        let proceed = self.carry_out_step(host, decision);
        self.paused = !proceed && !self.waiting[REQ];
        proceed
    }

    fn carry_out_step(&mut self, host: &dyn StreamHost, decision: Decision) -> bool {
        match decision {
            Decision::Continue => true,
            Decision::WaitForBody => self.hold_for_body(host, REQ),
            Decision::Reply(reply) => {
                self.reply(host, reply);
                false
            }
            Decision::Delay(delay) => {
                if host.resume_after(delay) {
                    return false;
                }
                // Never skip a delay the stage asked for: answer, loudly.
                let stage = self.stage.name();
                eprintln!("wasmesh-native: {stage}: a delay could not be scheduled; answering 500");
                let reply =
                    LocalReply::new(500, format!("{stage}: the delay could not be scheduled\n"))
                        .header("content-type", "text/plain")
                        .details("wasmesh_native_delay_failed");
                self.reply(host, reply);
                false
            }
            // As in the Wasm shell: a callout that cannot be sent is a failed callout,
            // and the stage decides what that means (fail open or closed).
            Decision::Callout(callout) => {
                if host.callout(&callout) {
                    return false;
                }
                self.run_request(host, |stage, req, stream| {
                    stage.on_callout_response(req, stream, CalloutResult::Failed)
                })
            }
            // The ABI has no gRPC client: the unary call goes as an HTTP/2 callout
            // (see [`grpc`]); as in the Wasm shell, one that cannot be sent is
            // UNAVAILABLE, and the stage decides what that means.
            Decision::GrpcCall(call) => {
                if host.callout(&grpc::callout_for(&call)) {
                    self.pending_grpc = true;
                    return false;
                }
                self.run_request(host, |stage, req, stream| {
                    stage.on_grpc_response(req, stream, GrpcResult::Failed(grpc::UNAVAILABLE))
                })
            }
        }
    }

    fn reply(&mut self, host: &dyn StreamHost, reply: LocalReply) {
        if self.replied {
            eprintln!(
                "wasmesh-native: a second local reply ({}) was dropped",
                reply.status
            );
            return;
        }
        self.replied = true;
        host.send_response(reply.status, &reply.headers, &reply.body, &reply.details);
    }
}

/// Replays a view's edits against the host, in order.
fn apply_ops(host: &dyn StreamHost, kind: HeaderKind, ops: Vec<HeaderOp>) {
    for op in ops {
        let done = match &op {
            HeaderOp::Set(k, v) => host.set_header(kind, k, v),
            HeaderOp::Add(k, v) => host.add_header(kind, k, v),
            HeaderOp::Remove(k) => host.remove_header(kind, k),
        };
        if !done {
            eprintln!("wasmesh-native: header edit {op:?} failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Records what the shell asks of Envoy, and keeps each direction's body as Envoy
    /// does for a filter: what it buffered for it, the chunk of the running body hook,
    /// and what went on past it.
    #[derive(Default)]
    struct FakeHost {
        request: Vec<(String, String)>,
        response: Vec<(String, String)>,
        calls: RefCell<Vec<String>>,
        callouts_work: bool,
        buffered: RefCell<[Vec<u8>; 2]>,
        received: RefCell<[Option<Vec<u8>>; 2]>,
        forwarded: RefCell<[Vec<u8>; 2]>,
    }

    impl FakeHost {
        /// Envoy hands the filter `chunk`, then does with it what the filter answered.
        fn chunk(
            &self,
            filter: &mut Filter,
            kind: HeaderKind,
            chunk: &[u8],
            end_of_stream: bool,
        ) -> BodyStatus {
            let dir = kind.index();
            self.received.borrow_mut()[dir] = Some(chunk.to_vec());
            let status = match kind {
                HeaderKind::Request => filter.on_request_body(self, end_of_stream),
                HeaderKind::Response => filter.on_response_body(self, end_of_stream),
            };
            let received = self.received.borrow_mut()[dir].take().unwrap_or_default();
            match status {
                BodyStatus::Buffer => self.buffered.borrow_mut()[dir].extend(received),
                BodyStatus::Continue => {
                    let held = std::mem::take(&mut self.buffered.borrow_mut()[dir]);
                    let mut forwarded = self.forwarded.borrow_mut();
                    forwarded[dir].extend(held);
                    forwarded[dir].extend(received);
                }
                BodyStatus::Stop => {}
            }
            status
        }

        /// Trailers arrive; if they go on, so does the buffered body before them.
        fn trailers(&self, filter: &mut Filter, kind: HeaderKind) -> bool {
            let proceed = match kind {
                HeaderKind::Request => filter.on_request_trailers(self),
                HeaderKind::Response => filter.on_response_trailers(self),
            };
            if proceed {
                let held = std::mem::take(&mut self.buffered.borrow_mut()[kind.index()]);
                self.forwarded.borrow_mut()[kind.index()].extend(held);
            }
            proceed
        }

        fn forwarded(&self, kind: HeaderKind) -> String {
            String::from_utf8(self.forwarded.borrow()[kind.index()].clone()).unwrap()
        }
    }

    impl StreamHost for FakeHost {
        fn headers(&self, kind: HeaderKind) -> Vec<(String, String)> {
            match kind {
                HeaderKind::Request => self.request.clone(),
                HeaderKind::Response if self.response.is_empty() => {
                    vec![(":status".into(), "200".into())]
                }
                HeaderKind::Response => self.response.clone(),
            }
        }
        fn set_header(&self, kind: HeaderKind, name: &str, value: &str) -> bool {
            self.calls
                .borrow_mut()
                .push(format!("set {kind:?} {name}={value}"));
            true
        }
        fn add_header(&self, kind: HeaderKind, name: &str, value: &str) -> bool {
            self.calls
                .borrow_mut()
                .push(format!("add {kind:?} {name}={value}"));
            true
        }
        fn remove_header(&self, kind: HeaderKind, name: &str) -> bool {
            self.calls
                .borrow_mut()
                .push(format!("remove {kind:?} {name}"));
            true
        }
        fn send_response(&self, status: u16, _: &[(String, String)], _: &[u8], details: &str) {
            self.calls
                .borrow_mut()
                .push(format!("reply {status} {details}"));
        }
        fn clear_route_cache(&self) {
            self.calls.borrow_mut().push("clear_route_cache".into());
        }
        fn resume_after(&self, delay: Duration) -> bool {
            self.calls
                .borrow_mut()
                .push(format!("resume_after {delay:?}"));
            true
        }
        fn callout(&self, callout: &Callout) -> bool {
            self.calls
                .borrow_mut()
                .push(format!("callout {}", callout.cluster));
            self.callouts_work
        }
        fn continue_request(&self) {
            self.calls.borrow_mut().push("continue".into());
        }
        fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
            None
        }
        fn body_len(&self, kind: HeaderKind) -> usize {
            let dir = kind.index();
            self.buffered.borrow()[dir].len()
                + self.received.borrow()[dir].as_ref().map_or(0, Vec::len)
        }
        fn body_bytes(&self, kind: HeaderKind) -> Vec<u8> {
            let dir = kind.index();
            let mut bytes = self.buffered.borrow()[dir].clone();
            bytes.extend(self.received.borrow()[dir].iter().flatten());
            bytes
        }
        fn replace_body(&self, kind: HeaderKind, bytes: &[u8]) -> bool {
            // As the ABI shell does: drain both, append to the received chunk if any.
            let dir = kind.index();
            self.buffered.borrow_mut()[dir].clear();
            match &mut self.received.borrow_mut()[dir] {
                Some(received) => *received = bytes.to_vec(),
                None => self.buffered.borrow_mut()[dir] = bytes.to_vec(),
            }
            true
        }
        fn reset_stream(&self) {
            self.calls.borrow_mut().push("reset".into());
        }
    }

    fn config(name: &str, config: serde_json::Value) -> Result<FilterConfig, ConfigRejected> {
        FilterConfig::new(name, config.to_string().as_bytes(), 0)
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn host(pairs: &[(&str, &str)]) -> FakeHost {
        FakeHost {
            request: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..FakeHost::default()
        }
    }

    #[test]
    fn headers_stage_edits_reach_the_host_in_order() {
        let config = config(
            "headers",
            json!({"request": {"set": [{"name": "x-wasmesh", "value": "hello"}], "remove": ["x-secret"]}}),
        )
        .unwrap();
        let mut filter = Filter::new(&config).unwrap();
        let host = host(&[(":method", "GET"), (":path", "/"), ("x-secret", "s")]);
        assert!(filter.on_request_headers(&host, false));
        // The headers stage's own order (removes first), and it asks Envoy to route
        // again after editing request headers, as its Wasm build does.
        assert_eq!(
            *host.calls.borrow(),
            [
                "remove Request x-secret",
                "set Request x-wasmesh=hello",
                "clear_route_cache"
            ]
        );
    }

    #[test]
    fn fault_abort_is_a_local_reply_that_stops_the_stream() {
        let config = config(
            "fault",
            json!({"abort": {"http_status": 503, "percentage": 100}}),
        )
        .unwrap();
        let mut filter = Filter::new(&config).unwrap();
        let host = host(&[(":method", "GET"), (":path", "/")]);
        assert!(!filter.on_request_headers(&host, false));
        let calls = host.calls.borrow();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].starts_with("reply 503"), "{calls:?}");
    }

    #[test]
    fn a_delay_pauses_the_request_until_the_scheduled_resume() {
        let config = config(
            "fault",
            json!({"delay": {"fixed_delay": "10ms", "percentage": 100}}),
        )
        .unwrap();
        let mut filter = Filter::new(&config).unwrap();
        let host = host(&[(":method", "GET"), (":path", "/")]);
        assert!(
            !filter.on_request_headers(&host, false),
            "the request must wait"
        );
        assert_eq!(*host.calls.borrow(), ["resume_after 10ms"]);
        filter.on_scheduled(&host);
        assert_eq!(*host.calls.borrow(), ["resume_after 10ms", "continue"]);
    }

    /// A request with a token from `https://idp` (`{"alg":"RS256"}.{"iss":"https://idp"}.sig`).
    const TOKEN: &str = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcCJ9.c2ln";

    /// A JWKS fetch for a JWT provider: the authz stage's callout, then its answer.
    fn authz_with_remote_jwks() -> FilterConfig {
        config(
            "authz",
            json!({"jwtRules": [{"issuer": "https://idp", "jwksUri": "https://idp/jwks",
                                 "cluster": "idp_jwks"}]}),
        )
        .unwrap()
    }

    #[test]
    fn a_callout_pauses_the_request_and_its_answer_resumes_the_stage() {
        let config = authz_with_remote_jwks();
        let mut filter = Filter::new(&config).unwrap();
        let mut host = host(&[
            (":method", "GET"),
            (":path", "/"),
            (":authority", "a"),
            ("authorization", TOKEN),
        ]);
        host.callouts_work = true;
        assert!(
            !filter.on_request_headers(&host, false),
            "the request must wait"
        );
        assert_eq!(*host.calls.borrow(), ["callout idp_jwks"]);
        // The JWKS fetch failed: without keys the token cannot be checked (503 by default).
        filter.on_callout_done(&host, CalloutResult::Failed);
        let calls = host.calls.borrow();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls[1].starts_with("reply 503"), "{calls:?}");
    }

    #[test]
    fn a_callout_that_cannot_be_sent_is_a_failed_callout() {
        let config = authz_with_remote_jwks();
        let mut filter = Filter::new(&config).unwrap();
        let host = host(&[
            (":method", "GET"),
            (":path", "/"),
            (":authority", "a"),
            ("authorization", TOKEN),
        ]);
        assert!(!filter.on_request_headers(&host, false));
        let calls = host.calls.borrow();
        assert_eq!(calls[0], "callout idp_jwks");
        assert!(calls[1].starts_with("reply 503"), "{calls:?}");
    }

    /// A ratelimit stage with one global rule, failing closed.
    fn global_ratelimit() -> FilterConfig {
        config(
            "ratelimit",
            json!({"rate_limit_service": {"cluster": "wasmesh_ratelimit_service",
                                          "failure_mode_deny": true},
                   "rules": [{"name": "all", "global": true}]}),
        )
        .unwrap()
    }

    fn get_host() -> FakeHost {
        host(&[(":method", "GET"), (":path", "/"), (":authority", "a")])
    }

    #[test]
    fn a_grpc_call_goes_as_a_callout_and_its_reply_resumes_the_stage() {
        let config = global_ratelimit();
        let mut filter = Filter::new(&config).unwrap();
        let mut host = get_host();
        host.callouts_work = true;
        assert!(
            !filter.on_request_headers(&host, true),
            "the request must wait"
        );
        assert_eq!(*host.calls.borrow(), ["callout wasmesh_ratelimit_service"]);
        // ShouldRateLimitResponse { overall_code: OK }, framed, status 200.
        filter.on_callout_done(
            &host,
            CalloutResult::Response {
                status: 200,
                headers: vec![("content-type".into(), "application/grpc".into())],
                body: grpc::frame(&[0x08, 0x01]),
            },
        );
        assert_eq!(host.calls.borrow()[1..], ["continue"]);
    }

    #[test]
    fn a_failed_grpc_callout_takes_the_stages_failure_mode() {
        let config = global_ratelimit();
        let mut filter = Filter::new(&config).unwrap();
        let mut host = get_host();
        host.callouts_work = true;
        assert!(!filter.on_request_headers(&host, true));
        filter.on_callout_done(&host, CalloutResult::Failed);
        let calls = host.calls.borrow();
        assert!(calls[1].starts_with("reply 500"), "{calls:?}");
        // One that cannot be sent at all, likewise.
        let mut filter = Filter::new(&config).unwrap();
        let host = get_host();
        assert!(!filter.on_request_headers(&host, true));
        let calls = host.calls.borrow();
        assert!(calls[1].starts_with("reply 500"), "{calls:?}");
    }

    #[test]
    fn bad_configs_are_refused_naming_stage_and_field() {
        let err = config(
            "headers",
            json!({"request": {"set": [{"name": "bad name", "value": "1"}]}}),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("headers: invalid configuration: request.set[0].name"),
            "{err}"
        );
        let err = config("nope", json!({})).err().unwrap().to_string();
        assert_eq!(
            err,
            "unknown filter_name `nope`; this module offers authz, body, cors, fault, headers, mesh, ratelimit, telemetry"
        );
    }

    /// The body config of the Envoy tests' JSON and limit rules (scenarios::body).
    fn body_config() -> FilterConfig {
        let rewrite = json!({
            "remove": ["/password"],
            "rename": [{"from": "/user_name", "to": "/user/name"}],
            "set": [{"pointer": "/source", "value": "mesh"}],
        });
        config(
            "body",
            json!({"rules": [
                {"match": {"path": {"prefix": "/limit"}}, "limit": {"maxRequestBytes": 10, "maxResponseBytes": 8}},
                {"match": {"path": {"prefix": "/json"}}, "json": {"request": rewrite, "maxBytes": 64, "malformed": "REJECT"}},
                {"match": {"path": {"prefix": "/out"}}, "json": {"response": {"set": [{"pointer": "/rewritten", "value": true}]}}},
            ]}),
        )
        .unwrap()
    }

    fn json_post(path: &str) -> FakeHost {
        host(&[
            (":method", "POST"),
            (":path", path),
            ("content-type", "application/json"),
            ("content-length", "41"),
        ])
    }

    #[test]
    fn a_json_rewrite_holds_the_body_and_forwards_the_rewrite() {
        let config = body_config();
        let mut filter = Filter::new(&config).unwrap();
        let host = json_post("/json");
        // The headers go on at once, without their length.
        assert!(filter.on_request_headers(&host, false));
        assert_eq!(*host.calls.borrow(), ["remove Request content-length"]);
        let req = HeaderKind::Request;
        let first = br#"{"user_name":"ann","#;
        assert_eq!(
            host.chunk(&mut filter, req, first, false),
            BodyStatus::Buffer
        );
        assert_eq!(host.forwarded(req), "", "nothing goes on before the end");
        let rest = br#""password":"x","n":1}"#;
        assert_eq!(
            host.chunk(&mut filter, req, rest, true),
            BodyStatus::Continue
        );
        assert_eq!(
            host.forwarded(req),
            r#"{"n":1,"source":"mesh","user":{"name":"ann"}}"#
        );
    }

    #[test]
    fn trailers_end_a_held_body_and_it_is_rewritten_there() {
        let config = body_config();
        let mut filter = Filter::new(&config).unwrap();
        let host = json_post("/json");
        assert!(filter.on_request_headers(&host, false));
        let req = HeaderKind::Request;
        let body = br#"{"password":"x","n":2}"#;
        assert_eq!(
            host.chunk(&mut filter, req, body, false),
            BodyStatus::Buffer
        );
        assert!(host.trailers(&mut filter, req));
        assert_eq!(host.forwarded(req), r#"{"n":2,"source":"mesh"}"#);
    }

    #[test]
    fn malformed_json_refused_in_the_body_phase_is_a_400() {
        let config = body_config();
        let mut filter = Filter::new(&config).unwrap();
        let host = json_post("/json");
        assert!(filter.on_request_headers(&host, false));
        let req = HeaderKind::Request;
        assert_eq!(
            host.chunk(&mut filter, req, b"{\"a\":", true),
            BodyStatus::Stop
        );
        assert_eq!(host.forwarded(req), "");
        let calls = host.calls.borrow();
        assert_eq!(calls.last().unwrap(), "reply 400 wasmesh_body_not_json");
    }

    #[test]
    fn a_headers_only_request_asks_for_no_body() {
        let config = body_config();
        let mut filter = Filter::new(&config).unwrap();
        let host = json_post("/json");
        assert!(filter.on_request_headers(&host, true));
        assert!(host.calls.borrow().is_empty(), "{:?}", host.calls.borrow());
    }

    #[test]
    fn a_chunked_body_is_counted_as_it_streams_and_refused_past_the_limit() {
        let config = body_config();
        let mut filter = Filter::new(&config).unwrap();
        let host = host(&[(":method", "POST"), (":path", "/limit")]);
        assert!(filter.on_request_headers(&host, false));
        let req = HeaderKind::Request;
        // Each chunk goes on at once, never buffered.
        assert_eq!(
            host.chunk(&mut filter, req, b"0123", false),
            BodyStatus::Continue
        );
        assert_eq!(
            host.chunk(&mut filter, req, b"4567", false),
            BodyStatus::Continue
        );
        assert_eq!(host.forwarded(req), "01234567");
        assert_eq!(
            host.chunk(&mut filter, req, b"89AB", false),
            BodyStatus::Stop
        );
        assert_eq!(host.forwarded(req), "01234567");
        assert_eq!(*host.calls.borrow(), ["reply 413 wasmesh_body_too_large"]);
        // Further chunks of an answered request go nowhere.
        assert_eq!(host.chunk(&mut filter, req, b"C", true), BodyStatus::Stop);
    }

    #[test]
    fn a_response_counted_over_its_limit_is_reset() {
        let config = body_config();
        let mut filter = Filter::new(&config).unwrap();
        let mut host = host(&[(":method", "GET"), (":path", "/limit")]);
        host.response = pairs(&[(":status", "200")]);
        assert!(filter.on_request_headers(&host, true));
        assert!(filter.on_response_headers(&host, false));
        let resp = HeaderKind::Response;
        assert_eq!(
            host.chunk(&mut filter, resp, b"0123", false),
            BodyStatus::Continue
        );
        assert_eq!(
            host.chunk(&mut filter, resp, b"45678", true),
            BodyStatus::Stop
        );
        assert_eq!(*host.calls.borrow(), ["reset"]);
        assert_eq!(host.forwarded(resp), "0123");
    }

    #[test]
    fn a_json_response_is_held_and_rewritten() {
        let config = body_config();
        let mut filter = Filter::new(&config).unwrap();
        let mut host = host(&[(":method", "GET"), (":path", "/out")]);
        host.response = pairs(&[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", "8"),
        ]);
        assert!(filter.on_request_headers(&host, true));
        assert!(filter.on_response_headers(&host, false));
        assert_eq!(*host.calls.borrow(), ["remove Response content-length"]);
        let resp = HeaderKind::Response;
        assert_eq!(
            host.chunk(&mut filter, resp, b"{\"a\":", false),
            BodyStatus::Buffer
        );
        assert_eq!(
            host.chunk(&mut filter, resp, b"1}", true),
            BodyStatus::Continue
        );
        assert_eq!(host.forwarded(resp), r#"{"a":1,"rewritten":true}"#);
    }

    #[test]
    fn a_paused_request_holds_its_body_and_trailers_until_it_resumes() {
        let config = config(
            "fault",
            json!({"delay": {"fixed_delay": "10ms", "percentage": 100}}),
        )
        .unwrap();
        let mut filter = Filter::new(&config).unwrap();
        let host = host(&[(":method", "POST"), (":path", "/")]);
        assert!(!filter.on_request_headers(&host, false));
        let req = HeaderKind::Request;
        // Continuing either would let the stopped headers go on before the delay ends.
        assert_eq!(
            host.chunk(&mut filter, req, b"abc", false),
            BodyStatus::Buffer
        );
        assert!(!host.trailers(&mut filter, req));
        filter.on_scheduled(&host);
        assert_eq!(*host.calls.borrow(), ["resume_after 10ms", "continue"]);
    }

    #[test]
    fn the_body_stage_runs_alone_and_in_a_pipeline() {
        assert!(config("body", json!({"limit": {"maxRequestBytes": 1}})).is_ok());
        let pipeline = config(
            "mesh",
            json!({"stages": [{"name": "cors"}, {"name": "body", "config": {"limit": {"maxRequestBytes": 4}}}]}),
        )
        .unwrap();
        let mut filter = Filter::new(&pipeline).unwrap();
        let host = host(&[(":method", "POST"), (":path", "/")]);
        assert!(filter.on_request_headers(&host, false));
        let req = HeaderKind::Request;
        assert_eq!(
            host.chunk(&mut filter, req, b"0123", false),
            BodyStatus::Continue
        );
        assert_eq!(host.chunk(&mut filter, req, b"4", true), BodyStatus::Stop);
        assert_eq!(
            host.calls.borrow().last().unwrap(),
            "reply 413 wasmesh_body_too_large"
        );
    }
}
