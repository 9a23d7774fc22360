//! The native shell: the same stages the Wasm shell runs (`wasmesh_sdk::shell`), wired
//! to Envoy's dynamic-module hooks instead of proxy-wasm. Safe code only; the hooks in
//! [`crate::abi`] hand it a [`StreamHost`].
//!
//! Per phase it fetches the header map once, gives the stage the SDK's own view
//! ([`Request`], [`Response`], [`LogView`]), replays the view's recorded edits and
//! carries out the decision, exactly as the Wasm shell does.
//!
//! Threads: Envoy runs a filter's hooks on the worker thread that owns the stream, and
//! several workers at once. Stages are written for the Wasm model (one VM, hence one
//! stage instance, per worker, no locks), so each worker builds its own instance from
//! the validated config, on its first stream ([`worker_stage`]). Per-worker state (a
//! fault stage's RNG) stays per worker, as under Wasm.

use crate::stages;
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmesh_sdk::config::Json;
use wasmesh_sdk::headers::{HeaderMap, HeaderOp};
use wasmesh_sdk::pipeline::AnyStage;
use wasmesh_sdk::PropertySource;
use wasmesh_sdk::{
    Callout, CalloutResult, ConfigError, Decision, GrpcResult, LocalReply, LogView, Request,
    Response,
};

/// gRPC status UNIMPLEMENTED, what a gRPC call reports in the native module.
const GRPC_UNIMPLEMENTED: u32 = 12;

/// Which header map a host call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Request,
    Response,
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
        })
    }

    /// Where this stream's metrics are defined (see [`FilterConfig::metrics_scope`]).
    pub fn metrics_scope(&self) -> usize {
        self.metrics_scope
    }

    /// Runs the stage's request phase; false when the stream must stop here.
    pub fn on_request_headers(&mut self, host: &dyn StreamHost) -> bool {
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
    pub fn on_callout_done(&mut self, host: &dyn StreamHost, result: CalloutResult) {
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
    pub fn on_response_headers(&mut self, host: &dyn StreamHost) -> bool {
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
            // As in the Wasm shell: delays and callouts are request-phase tools.
            _ => true,
        }
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
        match decision {
            // No body phase here (see stages::build, which refuses the body stage):
            // nothing asks for one.
            Decision::Continue | Decision::WaitForBody => true,
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
            // The dynamic-module ABI this module is built on has no gRPC client yet: the
            // call fails as UNIMPLEMENTED and the stage's failure mode decides (the
            // generator keeps global rate limits off the native target).
            Decision::GrpcCall(call) => {
                let stage = self.stage.name();
                eprintln!(
                    "wasmesh-native: {stage}: gRPC call to `{}` unsupported in the native module",
                    call.cluster
                );
                self.run_request(host, |stage, req, stream| {
                    stage.on_grpc_response(req, stream, GrpcResult::Failed(GRPC_UNIMPLEMENTED))
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

    /// Records what the shell asks of Envoy.
    #[derive(Default)]
    struct FakeHost {
        request: Vec<(String, String)>,
        calls: RefCell<Vec<String>>,
        callouts_work: bool,
    }

    impl StreamHost for FakeHost {
        fn headers(&self, kind: HeaderKind) -> Vec<(String, String)> {
            match kind {
                HeaderKind::Request => self.request.clone(),
                HeaderKind::Response => vec![(":status".into(), "200".into())],
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
    }

    fn config(name: &str, config: serde_json::Value) -> Result<FilterConfig, ConfigRejected> {
        FilterConfig::new(name, config.to_string().as_bytes(), 0)
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
        assert!(filter.on_request_headers(&host));
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
        assert!(!filter.on_request_headers(&host));
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
        assert!(!filter.on_request_headers(&host), "the request must wait");
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
        assert!(!filter.on_request_headers(&host), "the request must wait");
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
        assert!(!filter.on_request_headers(&host));
        let calls = host.calls.borrow();
        assert_eq!(calls[0], "callout idp_jwks");
        assert!(calls[1].starts_with("reply 503"), "{calls:?}");
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
        let err = config("body", json!({"limit": {"maxRequestBytes": 1}}))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("needs the body phase"), "{err}");
        let err = config(
            "mesh",
            json!({"stages": [{"name": "cors"}, {"name": "body", "config": {}}]}),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("mesh: invalid configuration: stages[1].name: the body stage needs"),
            "{err}"
        );
        let err = config("nope", json!({})).err().unwrap().to_string();
        assert_eq!(
            err,
            "unknown filter_name `nope`; this module offers authz, body, cors, fault, headers, mesh, ratelimit, telemetry"
        );
    }
}
