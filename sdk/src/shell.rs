//! The wasm shell: wires a [`Stage`] to proxy-wasm's callbacks and carries out its
//! decisions. This is the one place where the SDK changes the host's state. Built for
//! wasm32 only (the native Envoy module has its own shell, filters/native).
//!
//! Per phase it fetches the header map once, hands the stage a view, replays the
//! view's recorded edits, and then continues, replies, pauses for a delay (resumed
//! from the root context's tick, which all paused streams share) or pauses for a
//! callout (resumed from the callout's response).

use crate::body::{Body, BodyAction, BodyCount};
use crate::config;
use crate::headers::{HeaderMap, HeaderOp};
use crate::host::{self, BufferType, MapType};
use crate::props::HostProperties;
use crate::request::Request;
use crate::stage::{
    Callout, CalloutResult, Decision, GrpcCall, GrpcResult, LocalReply, LogView, Response, Stage,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime};

/// How often the root context ticks while any stream waits on a delay. Delays end on
/// the first tick at or after their deadline, so they overshoot by at most this much.
const DELAY_TICK: Duration = Duration::from_millis(5);

/// The root context: parses and validates the config, owns the shared timer list.
pub struct Root<S: Stage> {
    stage: Option<Rc<S>>,
    timers: Rc<RefCell<Timers>>,
    /// The stage's own tick period and when it last ran.
    stage_tick: Option<(Duration, SystemTime)>,
    /// Background callouts in flight: token → index in the list `on_tick` returned.
    background: HashMap<u32, usize>,
}

impl<S: Stage> Default for Root<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Stage> Root<S> {
    pub fn new() -> Self {
        Self {
            stage: None,
            timers: Rc::new(RefCell::new(Timers::default())),
            stage_tick: None,
            background: HashMap::new(),
        }
    }

    /// The tick period to run at: fast while delays are pending, else the stage's.
    fn wanted_tick_period(&self) -> Duration {
        let stage = self.stage_tick.map(|(p, _)| p);
        if self.timers.borrow().is_empty() {
            stage.unwrap_or(Duration::ZERO)
        } else {
            stage.map_or(DELAY_TICK, |p| p.min(DELAY_TICK))
        }
    }

    fn run_stage_tick(&mut self, now: SystemTime) {
        let (Some(stage), Some((period, last))) = (self.stage.clone(), self.stage_tick) else {
            return;
        };
        if now.duration_since(last).unwrap_or(Duration::ZERO) < period {
            return;
        }
        self.stage_tick = Some((period, now));
        for (index, callout) in stage.on_tick().into_iter().enumerate() {
            match dispatch(&callout) {
                Ok(token) => {
                    self.background.insert(token, index);
                }
                Err(()) => stage.on_background_response(index, CalloutResult::Failed),
            }
        }
    }
}

impl<S: Stage> Context for Root<S> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let result = callout_result(num_headers, body_size);
        if let (Some(stage), Some(index)) = (self.stage.clone(), self.background.remove(&token)) {
            stage.on_background_response(index, result);
            return;
        }
        let owner = self.timers.borrow_mut().callouts.remove(&token);
        if let Some(stream) = owner.and_then(|weak| weak.upgrade()) {
            if host::set_effective_context(stream.id()).is_ok() {
                stream.resume_after_callout(result);
            }
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let owner = self.timers.borrow_mut().grpc_calls.remove(&token);
        if let Some(stream) = owner.and_then(|weak| weak.upgrade()) {
            if host::set_effective_context(stream.id()).is_ok() {
                stream.resume_after_grpc(grpc_result(status, size));
            }
        }
    }
}

impl<S: Stage> RootContext for Root<S> {
    fn on_configure(&mut self, _size: usize) -> bool {
        crate::log::set_prefix(S::NAME);
        let bytes = match host::buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(b) => b,
            Err(e) => {
                crate::error!("cannot read the plugin configuration: {e}");
                return false;
            }
        };
        match config::parse::<S::Config>(&bytes).and_then(S::build) {
            Ok(stage) => {
                if let Some(period) = stage.tick_period() {
                    // The epoch as "last run" makes the first tick run the stage at once.
                    self.stage_tick = Some((period, SystemTime::UNIX_EPOCH));
                    let _ = host::set_tick_period(period);
                }
                self.stage = Some(Rc::new(stage));
                true
            }
            Err(e) => {
                crate::error!("invalid configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stage = self.stage.clone()?;
        Some(Box::new(Http {
            shared: Rc::new(StreamShared {
                id: context_id,
                stage,
                state: RefCell::new(StreamState::default()),
                timers: Rc::downgrade(&self.timers),
            }),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn on_tick(&mut self) {
        let now = host::now_or_epoch();
        let due = self.timers.borrow_mut().take_due(now);
        for stream in due {
            if host::set_effective_context(stream.id()).is_ok() {
                stream.resume_after_delay();
            }
        }
        self.run_stage_tick(now);
        let _ = host::set_tick_period(self.wanted_tick_period());
    }
}

/// Streams waiting on a delay, with their deadlines. Weak, so a stream the client
/// abandoned is simply dropped when its turn comes.
#[derive(Default)]
struct Timers {
    waiting: Vec<(SystemTime, Weak<dyn Resumable>)>,
    /// Callouts dispatched while a stream was resumed from the root context's tick:
    /// proxy-wasm routes their answers to the root, which hands them on from here.
    callouts: HashMap<u32, Weak<dyn Resumable>>,
    /// The same for gRPC calls.
    grpc_calls: HashMap<u32, Weak<dyn Resumable>>,
}

impl Timers {
    fn add(&mut self, deadline: SystemTime, stream: Weak<dyn Resumable>) {
        if self.waiting.is_empty() {
            let _ = host::set_tick_period(DELAY_TICK);
        }
        self.waiting.push((deadline, stream));
    }

    fn take_due(&mut self, now: SystemTime) -> Vec<Rc<dyn Resumable>> {
        let mut due = Vec::new();
        self.waiting.retain(|(deadline, weak)| {
            if *deadline > now {
                return weak.strong_count() > 0;
            }
            if let Some(stream) = weak.upgrade() {
                due.push(stream);
            }
            false
        });
        due
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

trait Resumable {
    fn id(&self) -> u32;
    fn resume_after_delay(self: Rc<Self>);
    fn resume_after_callout(self: Rc<Self>, result: CalloutResult);
    fn resume_after_grpc(self: Rc<Self>, result: GrpcResult);
}

impl<S: Stage> Resumable for StreamShared<S> {
    fn id(&self) -> u32 {
        self.id
    }

    fn resume_after_delay(self: Rc<Self>) {
        self.resume_request(|stage, req, stream| stage.on_request_resumed(req, stream));
    }

    fn resume_after_callout(self: Rc<Self>, result: CalloutResult) {
        self.resume_request(|stage, req, stream| stage.on_callout_response(req, stream, result));
    }

    fn resume_after_grpc(self: Rc<Self>, result: GrpcResult) {
        self.resume_request(|stage, req, stream| stage.on_grpc_response(req, stream, result));
    }
}

#[derive(Default)]
struct StreamState<T> {
    stream: T,
    /// A local reply was sent: Envoy refuses a second one.
    replied: bool,
    /// The request waits on a delay or callout: its body is held, unseen by stages.
    paused: bool,
    /// Request body chunks arrived while paused (the stages never see those bytes).
    held_while_paused: bool,
    /// The headers ended the request / response (no body phase follows).
    headers_ended: [bool; 2],
    /// A stage asked for the whole request / response body (WaitForBody): the body
    /// is held until the body phase continues it.
    waiting: [bool; 2],
    counts: [BodyCount; 2],
}

const REQ: usize = 0;
const RESP: usize = 1;

/// What a stream's context shares with the root's timer list.
struct StreamShared<S: Stage> {
    id: u32,
    stage: Rc<S>,
    state: RefCell<StreamState<S::Stream>>,
    timers: Weak<RefCell<Timers>>,
}

/// Whether the request may go on now (`Continue`) or stays paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    Paused,
}

impl<S: Stage> StreamShared<S> {
    fn request_view(&self) -> Request<'static> {
        static PROPS: HostProperties = HostProperties;
        Request::new(host_request_headers(), &PROPS, self.stage.path_options())
    }

    /// Runs one request-phase step of the stage and carries out its decision.
    fn run_request(
        self: &Rc<Self>,
        step: impl FnOnce(&S, &mut Request<'_>, &mut S::Stream) -> Decision,
    ) -> Next {
        let mut req = self.request_view();
        let decision = {
            let mut state = self.state.borrow_mut();
            step(&self.stage, &mut req, &mut state.stream)
        };
        apply_ops(MapType::RequestHeaders, req.headers.take_ops());
        if req.clear_route_cache {
            if let Err(e) = host::foreign_function("clear_route_cache", &[]) {
                crate::warn!("clear_route_cache failed: {e}");
            }
        }
        self.carry_out(decision)
    }

    fn carry_out(self: &Rc<Self>, decision: Decision) -> Next {
        let next = self.carry_out_step(decision);
        self.state.borrow_mut().paused = next == Next::Paused && !self.waiting(REQ);
        next
    }

    fn waiting(&self, dir: usize) -> bool {
        self.state.borrow().waiting[dir]
    }

    /// Prepares the body phase, if a body follows and none went by unseen during a
    /// pause (then the stages could not see it whole: go on). The headers go on now:
    /// Envoy's Wasm host turns a paused headers phase into StopAllIterationAndWatermark
    /// (proxy-wasm-cpp-host), so a filter holding its headers is handed no body until
    /// it continues them, and the request or response would stall. The body is held
    /// instead, and `content-length` goes, since the body may change length (HTTP/1.1
    /// then sends it chunked).
    fn hold_for_body(&self, dir: usize) -> Next {
        {
            let mut state = self.state.borrow_mut();
            if state.headers_ended[dir] || (dir == REQ && state.held_while_paused) {
                return Next::Continue;
            }
            state.waiting[dir] = true;
        }
        apply_ops(
            HEADER_TYPES[dir],
            vec![HeaderOp::Remove("content-length".into())],
        );
        Next::Continue
    }

    fn carry_out_step(self: &Rc<Self>, decision: Decision) -> Next {
        match decision {
            Decision::Continue => Next::Continue,
            Decision::WaitForBody => self.hold_for_body(REQ),
            Decision::Reply(reply) => {
                self.reply(reply);
                Next::Paused
            }
            Decision::Delay(delay) => {
                // A delay too long to represent waits "forever" rather than trapping.
                let now = host::now_or_epoch();
                let deadline = now
                    .checked_add(delay)
                    .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
                match self.timers.upgrade() {
                    Some(timers) => {
                        timers.borrow_mut().add(deadline, self.as_resumable());
                        Next::Paused
                    }
                    None => Next::Continue,
                }
            }
            Decision::Callout(callout) => match dispatch(&callout) {
                Ok(token) => {
                    if let Some(timers) = self.timers.upgrade() {
                        timers
                            .borrow_mut()
                            .callouts
                            .insert(token, self.as_resumable());
                    }
                    Next::Paused
                }
                Err(()) => self.run_request(|stage, req, stream| {
                    stage.on_callout_response(req, stream, CalloutResult::Failed)
                }),
            },
            Decision::GrpcCall(call) => match dispatch_grpc(&call) {
                Ok(token) => {
                    if let Some(timers) = self.timers.upgrade() {
                        timers
                            .borrow_mut()
                            .grpc_calls
                            .insert(token, self.as_resumable());
                    }
                    Next::Paused
                }
                Err(()) => self.run_request(|stage, req, stream| {
                    stage.on_grpc_response(req, stream, GrpcResult::Failed(GRPC_UNAVAILABLE))
                }),
            },
        }
    }

    fn as_resumable(self: &Rc<Self>) -> Weak<dyn Resumable> {
        let strong: Rc<dyn Resumable> = self.clone();
        Rc::downgrade(&strong)
    }

    /// Resumes a paused request after a delay or callout.
    fn resume_request(
        self: &Rc<Self>,
        step: impl FnOnce(&S, &mut Request<'_>, &mut S::Stream) -> Decision,
    ) {
        if self.run_request(step) == Next::Continue {
            // The held body goes on with the headers, past this filter.
            self.state.borrow_mut().counts[REQ].after(&BodyAction::Continue, 0);
            let _ = host::continue_stream(false);
        }
    }

    fn reply(&self, reply: LocalReply) {
        let mut state = self.state.borrow_mut();
        if state.replied {
            crate::warn!("a second local reply ({}) was dropped", reply.status);
            return;
        }
        state.replied = true;
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Err(e) = host::send_local_response(
            u32::from(reply.status),
            &reply.details,
            &reply.body,
            &headers,
        ) {
            crate::error!("local reply {} failed: {e}", reply.status);
        }
    }
}

const BODY_TYPES: [BufferType; 2] = [BufferType::RequestBody, BufferType::ResponseBody];
const HEADER_TYPES: [MapType; 2] = [MapType::RequestHeaders, MapType::ResponseHeaders];

impl<S: Stage> StreamShared<S> {
    /// Runs one body callback through the stage. `size` is what the host holds now;
    /// `None` at trailers, where the body ended without end_of_stream and the held
    /// bytes are read to learn their length.
    fn body_phase(&self, dir: usize, size: Option<usize>, end_of_stream: bool) -> Action {
        let kind = BODY_TYPES[dir];
        let prefetched = match size {
            Some(_) => None,
            None => Some(host::buffer(kind, 0, usize::MAX).unwrap_or_default()),
        };
        let len = size.unwrap_or_else(|| prefetched.as_ref().map_or(0, Vec::len));
        let fetch = |n: usize| match &prefetched {
            Some(bytes) => bytes.clone(),
            None => host::buffer(kind, 0, n).unwrap_or_default(),
        };
        let headers = match dir {
            REQ => HeaderMap::lazy(host_request_headers),
            _ => HeaderMap::lazy(host_response_headers),
        };
        let (chunk, received) = self.state.borrow_mut().counts[dir].on_chunk(len);
        let mut body = Body::new(len, chunk, received, end_of_stream, &fetch, headers);
        let action = {
            let mut state = self.state.borrow_mut();
            match dir {
                REQ => self.stage.on_request_body(&mut body, &mut state.stream),
                _ => self.stage.on_response_body(&mut body, &mut state.stream),
            }
        };
        let (action, replacement) = self.state.borrow_mut().counts[dir].settle(&mut body, action);
        if let Some(bytes) = replacement {
            if let Err(e) = host::set_buffer(kind, len, &bytes) {
                crate::warn!("body replacement failed: {e}");
            }
        }
        match action {
            BodyAction::Continue => {
                // Continuing the data continues the held headers with it.
                self.state.borrow_mut().waiting[dir] = false;
                Action::Continue
            }
            BodyAction::Buffer => Action::Pause,
            BodyAction::Reply(reply) => {
                self.reply(reply);
                Action::Pause
            }
            BodyAction::Reset => {
                if let Err(e) = host::close_stream(dir == RESP) {
                    crate::warn!("stream reset failed: {e}");
                }
                Action::Pause
            }
        }
    }

    /// Trailers end a body without end_of_stream: a stage holding the body gets its
    /// last call here.
    fn trailers_phase(&self, dir: usize) -> Action {
        if !self.waiting(dir) || self.state.borrow().replied {
            return Action::Continue;
        }
        match self.body_phase(dir, None, true) {
            Action::Continue => Action::Continue,
            _ => Action::Pause,
        }
    }
}

/// gRPC status UNAVAILABLE: what a call that could not even be dispatched reports.
const GRPC_UNAVAILABLE: u32 = 14;

/// Dispatches through proxy-wasm, as [`dispatch`] does, so that the answer reaches
/// this stream's context (`on_grpc_call_response`).
fn dispatch_grpc(call: &GrpcCall) -> Result<u32, ()> {
    proxy_wasm::hostcalls::dispatch_grpc_call(
        &call.cluster,
        &call.service,
        &call.method,
        Vec::new(),
        Some(&call.message),
        call.timeout,
    )
    .map_err(|status| {
        crate::warn!(
            "gRPC call to cluster `{}` not dispatched: {status:?}",
            call.cluster
        )
    })
}

/// Status 0 carries the message in the gRPC receive buffer; anything else is a failure.
fn grpc_result(status: u32, size: usize) -> GrpcResult {
    if status != 0 {
        return GrpcResult::Failed(status);
    }
    match host::buffer(BufferType::GrpcReceiveBuffer, 0, size) {
        Ok(message) => GrpcResult::Message(message),
        Err(_) => GrpcResult::Failed(GRPC_UNAVAILABLE),
    }
}

/// Dispatches through proxy-wasm so that its dispatcher routes the response back to
/// this stream's context.
fn dispatch(callout: &Callout) -> Result<u32, ()> {
    let headers: Vec<(&str, &str)> = callout
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    proxy_wasm::hostcalls::dispatch_http_call(
        &callout.cluster,
        headers,
        callout.body.as_deref(),
        Vec::new(),
        callout.timeout,
    )
    .map_err(|status| {
        crate::warn!(
            "callout to cluster `{}` not dispatched: {status:?}",
            callout.cluster
        )
    })
}

/// Replays a view's edits against the host, in order.
fn apply_ops(map: MapType, ops: Vec<HeaderOp>) {
    for op in ops {
        let result = match &op {
            HeaderOp::Set(k, v) => host::replace_header(map, k, v),
            HeaderOp::Add(k, v) => host::add_header(map, k, v),
            HeaderOp::Remove(k) => host::remove_header(map, k),
        };
        if let Err(e) = result {
            crate::warn!("header edit {op:?} failed: {e}");
        }
    }
}

/// Every this many finished streams, the VM's linear memory size is recorded in the
/// gauge `wasmesh_wasm_memory_bytes;filter=NAME`: Envoy 1.40 has no stat for it, and a
/// soak test needs it to show that memory stays flat.
const MEMORY_REPORT_EVERY: u32 = 1024;

thread_local! {
    static STREAMS_SINCE_REPORT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn report_memory() {
    let due = STREAMS_SINCE_REPORT.with(|n| {
        let seen = n.get();
        n.set((seen + 1) % MEMORY_REPORT_EVERY);
        seen == 0
    });
    if due {
        let bytes = (core::arch::wasm32::memory_size(0) as u64) * 65_536;
        let name = crate::metrics::encode_name(
            "wasmesh_wasm_memory_bytes",
            &[(crate::metrics::SDK_LABELS[0], crate::log::prefix())],
        );
        if let Ok(id) = host::define_metric(host::MetricKind::Gauge, &name) {
            let _ = host::record_metric(id, bytes);
        }
    }
}

fn host_request_headers() -> HeaderMap {
    host::header_map(MapType::RequestHeaders).unwrap_or_default()
}

fn host_response_headers() -> HeaderMap {
    host::header_map(MapType::ResponseHeaders).unwrap_or_default()
}

/// One HTTP stream's context.
struct Http<S: Stage> {
    shared: Rc<StreamShared<S>>,
}

impl<S: Stage> Context for Http<S> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(timers) = self.shared.timers.upgrade() {
            timers.borrow_mut().callouts.remove(&token);
        }
        let result = callout_result(num_headers, body_size);
        self.shared
            .resume_request(|stage, req, stream| stage.on_callout_response(req, stream, result));
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(timers) = self.shared.timers.upgrade() {
            timers.borrow_mut().grpc_calls.remove(&token);
        }
        let result = grpc_result(status, size);
        self.shared
            .resume_request(|stage, req, stream| stage.on_grpc_response(req, stream, result));
    }
}

fn callout_result(num_headers: usize, body_size: usize) -> CalloutResult {
    // Envoy delivers a failed call (timeout, reset, no upstream) as zero headers.
    if num_headers == 0 {
        return CalloutResult::Failed;
    }
    let headers = host::header_pairs(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse().ok());
    let Some(status) = status else {
        return CalloutResult::Failed;
    };
    let body = host::buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default();
    if is_envoy_failure_reply(status, &body) {
        return CalloutResult::Failed;
    }
    CalloutResult::Response {
        status,
        headers,
        body,
    }
}

/// Envoy's async client answers some failures of a call itself, as a response rather
/// than as a failed call: a timeout is a 504 `upstream request timeout`, a refused or
/// reset connection a 503 `upstream connect error or disconnect/reset before headers...`,
/// an empty cluster a 503 `no healthy upstream`. Those are failures of the call (so
/// fail-open/fail-closed applies), not answers of the service called.
pub fn is_envoy_failure_reply(status: u16, body: &[u8]) -> bool {
    match status {
        504 => body == b"upstream request timeout",
        503 => {
            body.starts_with(b"upstream connect error or disconnect/reset before headers")
                || body == b"no healthy upstream"
        }
        _ => false,
    }
}

impl<S: Stage> HttpContext for Http<S> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.shared.state.borrow_mut().headers_ended[REQ] = end_of_stream;
        match self
            .shared
            .run_request(|stage, req, stream| stage.on_request(req, stream))
        {
            Next::Continue => Action::Continue,
            Next::Paused => Action::Pause,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        {
            let mut state = self.shared.state.borrow_mut();
            if state.paused {
                // Continue here would let the held headers go on before the stage
                // decided (Envoy continues stopped headers with the data).
                state.held_while_paused = true;
                // Counted, so a stage after the pause sees the true total.
                state.counts[REQ].on_chunk(body_size);
                state.counts[REQ].after(&BodyAction::Buffer, body_size);
                return Action::Pause;
            }
            if state.replied {
                return Action::Pause;
            }
        }
        self.shared.body_phase(REQ, Some(body_size), end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.shared.trailers_phase(REQ)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.shared.state.borrow().replied {
            // Our own local reply's body, on its way out.
            return Action::Continue;
        }
        self.shared.body_phase(RESP, Some(body_size), end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.shared.trailers_phase(RESP)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.shared.state.borrow_mut().headers_ended[RESP] = end_of_stream;
        if !self.shared.stage.wants_response() {
            return Action::Continue;
        }
        static PROPS: HostProperties = HostProperties;
        // Lazy: stages that only set or remove response headers cost no fetch.
        let mut resp = Response::new(HeaderMap::lazy(host_response_headers), &PROPS);
        let decision = {
            let mut state = self.shared.state.borrow_mut();
            self.shared.stage.on_response(&mut resp, &mut state.stream)
        };
        apply_ops(MapType::ResponseHeaders, resp.headers.take_ops());
        self.shared.after_response(decision)
    }

    fn on_log(&mut self) {
        static PROPS: HostProperties = HostProperties;
        let view = LogView::new(
            HeaderMap::lazy(host_request_headers),
            HeaderMap::lazy(host_response_headers),
            &PROPS,
        );
        let mut state = self.shared.state.borrow_mut();
        self.shared.stage.on_log(&view, &mut state.stream);
        report_memory();
    }
}

impl<S: Stage> StreamShared<S> {
    fn after_response(&self, decision: Decision) -> Action {
        match decision {
            Decision::Reply(reply) => {
                self.reply(reply);
                Action::Pause
            }
            Decision::WaitForBody => match self.hold_for_body(RESP) {
                Next::Continue => Action::Continue,
                Next::Paused => Action::Pause,
            },
            // Delays and callouts are request-phase tools; in the response phase they
            // are ignored rather than stalling a response that is already under way.
            _ => Action::Continue,
        }
    }
}
