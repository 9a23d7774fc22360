//! Stages: host-agnostic filter logic. A stage reads a request or response view and
//! returns a [`Decision`]; it never calls the host, so it is unit-tested natively with
//! plain structs, and the SDK's shell ([`crate::shell`]) carries the decision out.

use crate::body::{Body, BodyAction};
use crate::config::ConfigError;
use crate::headers::HeaderMap;
use crate::path::PathOptions;
use crate::props::{Properties, PropertySource};
use crate::request::Request;
use std::time::Duration;

/// What the stream should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on to the next filter (with any header edits made to the view).
    Continue,
    /// Answer locally and stop the request here.
    Reply(LocalReply),
    /// Pause, then resume through [`Stage::on_request_resumed`] after the delay.
    Delay(Duration),
    /// Pause, call out, and resume through [`Stage::on_callout_response`].
    Callout(Callout),
    /// Hand the whole body to the body phase: the headers go on now without
    /// `content-length` (Envoy gives a Wasm filter that holds its headers no body, so
    /// they cannot wait), and [`Stage::on_request_body`] / [`Stage::on_response_body`]
    /// then buffer until the end and may replace the bytes. Without a body (headers
    /// end the stream) it is `Continue`.
    WaitForBody,
    /// Pause, make a unary gRPC call, and resume through [`Stage::on_grpc_response`].
    GrpcCall(GrpcCall),
}

/// A response the filter answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Envoy's `response_code_details` (shows in access logs), e.g. `wasmesh_ratelimited`.
    pub details: String,
}

impl LocalReply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            details: String::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn details(mut self, details: &str) -> Self {
        self.details = details.to_string();
        self
    }

    /// A 400 answer for a request the filter cannot interpret (e.g. a refused path).
    pub fn bad_request(reason: &str) -> Self {
        Self::new(400, format!("bad request: {reason}\n"))
            .header("content-type", "text/plain")
            .details("wasmesh_bad_request")
    }
}

/// An HTTP call to an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// Envoy cluster name (not a URL).
    pub cluster: String,
    /// Must include `:method`, `:path` and `:authority`.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// A unary gRPC call to an Envoy cluster (Envoy's own gRPC client speaks HTTP/2 to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// Envoy cluster name. Envoy first tries to parse this as a serialised
    /// `GrpcService`; a name that happens to parse would be misread, so names should
    /// not start with a byte that is a valid length-delimited protobuf tag.
    pub cluster: String,
    /// Fully qualified service, e.g. `envoy.service.ratelimit.v3.RateLimitService`.
    pub service: String,
    pub method: String,
    /// The serialised request message.
    pub message: Vec<u8>,
    pub timeout: Duration,
}

/// How a gRPC call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcResult {
    /// Status OK and the serialised response message.
    Message(Vec<u8>),
    /// A non-OK gRPC status (4 is a timeout, 14 an unreachable service), or a call
    /// that could not be dispatched (reported as 14, UNAVAILABLE).
    Failed(u32),
}

/// How a callout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutResult {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Timeout, reset, no healthy upstream, or the call could not be dispatched.
    Failed,
}

/// The response view a stage reads in the response phase.
pub struct Response<'a> {
    pub headers: HeaderMap,
    pub props: Properties<'a>,
}

impl<'a> Response<'a> {
    pub fn new(headers: HeaderMap, props: &'a dyn PropertySource) -> Self {
        Self {
            headers,
            props: Properties::new(props),
        }
    }

    /// The `:status` code.
    pub fn status(&self) -> Option<u16> {
        self.headers.get(":status")?.parse().ok()
    }
}

/// The finished stream, as `on_log` sees it: both header maps and the properties
/// Envoy fills in at the end (`response.code`, `response.flags`, sizes, durations).
/// The shell hands stages lazy maps ([`HeaderMap::lazy`]): a stage that only tidies
/// its own state at the end (fault's slot release) costs no host call.
pub struct LogView<'a> {
    request: HeaderMap,
    response: HeaderMap,
    pub props: Properties<'a>,
}

impl<'a> LogView<'a> {
    pub fn new(request: HeaderMap, response: HeaderMap, props: &'a dyn PropertySource) -> Self {
        Self {
            request,
            response,
            props: Properties::new(props),
        }
    }

    pub fn request(&self) -> &HeaderMap {
        &self.request
    }

    pub fn response(&self) -> &HeaderMap {
        &self.response
    }

    /// `response.code`, else the `:status` header.
    pub fn status(&self) -> Option<u16> {
        self.props
            .int(&["response", "code"])
            .and_then(|c| u16::try_from(c).ok())
            .or_else(|| self.response().get(":status")?.parse().ok())
    }
}

/// A filter's logic. `Stream` is per-request state carried between phases.
pub trait Stage: Sized + 'static {
    /// Name used in logs (`wasmesh-headers: ...`).
    const NAME: &'static str;
    /// The configuration as written (`#[derive(FromJson)]`); see [`crate::config`].
    type Config: crate::config::FromJson;
    /// Per-request state.
    type Stream: Default + 'static;

    /// Validates the configuration into the runtime object, once, in `on_configure`.
    fn build(config: Self::Config) -> Result<Self, ConfigError>;

    /// How this stage's requests normalise their path.
    fn path_options(&self) -> PathOptions {
        PathOptions::default()
    }

    fn on_request(&self, _req: &mut Request<'_>, _stream: &mut Self::Stream) -> Decision {
        Decision::Continue
    }

    /// Called when a [`Decision::Delay`] has elapsed.
    fn on_request_resumed(&self, _req: &mut Request<'_>, _stream: &mut Self::Stream) -> Decision {
        Decision::Continue
    }

    /// Called with the outcome of a [`Decision::Callout`].
    fn on_callout_response(
        &self,
        _req: &mut Request<'_>,
        _stream: &mut Self::Stream,
        _result: CalloutResult,
    ) -> Decision {
        Decision::Continue
    }

    /// Called with the outcome of a [`Decision::GrpcCall`].
    fn on_grpc_response(
        &self,
        _req: &mut Request<'_>,
        _stream: &mut Self::Stream,
        _result: GrpcResult,
    ) -> Decision {
        Decision::Continue
    }

    fn on_response(&self, _resp: &mut Response<'_>, _stream: &mut Self::Stream) -> Decision {
        Decision::Continue
    }

    /// A request body chunk (only when the request went on, or waits for its body).
    fn on_request_body(&self, _body: &mut Body<'_>, _stream: &mut Self::Stream) -> BodyAction {
        BodyAction::Continue
    }

    /// A response body chunk (only after [`Stage::on_response`] let the headers by).
    fn on_response_body(&self, _body: &mut Body<'_>, _stream: &mut Self::Stream) -> BodyAction {
        BodyAction::Continue
    }

    /// Whether [`Stage::on_response`] does anything. A stage that returns false saves
    /// the response phase's header fetch (a host call per request).
    fn wants_response(&self) -> bool {
        true
    }

    /// Called once when the stream ends (also for local replies and resets).
    fn on_log(&self, _log: &LogView<'_>, _stream: &mut Self::Stream) {}

    /// How often [`Stage::on_tick`] runs (per worker), if at all.
    fn tick_period(&self) -> Option<Duration> {
        None
    }

    /// Background work: the callouts returned are dispatched from the root context
    /// and their results delivered to [`Stage::on_background_response`] with the index
    /// of the callout in the returned list.
    fn on_tick(&self) -> Vec<Callout> {
        Vec::new()
    }

    fn on_background_response(&self, _index: usize, _result: CalloutResult) {}
}
