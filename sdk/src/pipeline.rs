//! Several stages in one module: one VM and one context per request for the whole
//! chain, instead of one per filter. This is what the one-VM `mesh` module is made
//! of: a chain of five separately loaded Wasm filters pays the fixed per-request cost
//! of a Wasm filter five times; a pipeline pays it once.
//!
//! Order follows Envoy's filter chain: requests go through the stages in config
//! order; responses come back through them in reverse, and only through the stages
//! that saw the request (a stage that answered locally stops the ones after it).
//! A delay or callout pauses the chain at the stage that asked for it and resumes
//! there. Each stage keeps its own path normalisation options.

use crate::body::{Body, BodyAction};
use crate::config::{ConfigError, FromJson, Json};
use crate::path::PathOptions;
use crate::request::Request;
use crate::stage::{CalloutResult, Decision, GrpcResult, LogView, Response, Stage};
use std::any::Any;
use std::marker::PhantomData;

/// A stage with its types erased, so stages of different types share one list.
pub trait AnyStage {
    fn name(&self) -> &'static str;
    fn path_options(&self) -> PathOptions;
    fn new_stream(&self) -> Box<dyn Any>;
    fn on_request(&self, req: &mut Request<'_>, stream: &mut dyn Any) -> Decision;
    fn on_request_resumed(&self, req: &mut Request<'_>, stream: &mut dyn Any) -> Decision;
    fn on_callout_response(
        &self,
        req: &mut Request<'_>,
        stream: &mut dyn Any,
        result: CalloutResult,
    ) -> Decision;
    fn on_grpc_response(
        &self,
        req: &mut Request<'_>,
        stream: &mut dyn Any,
        result: GrpcResult,
    ) -> Decision;
    fn on_response(&self, resp: &mut Response<'_>, stream: &mut dyn Any) -> Decision;
    fn on_request_body(&self, body: &mut Body<'_>, stream: &mut dyn Any) -> BodyAction;
    fn on_response_body(&self, body: &mut Body<'_>, stream: &mut dyn Any) -> BodyAction;
    fn wants_response(&self) -> bool;
    fn on_log(&self, log: &LogView<'_>, stream: &mut dyn Any);
}

struct Erased<S: Stage>(S);

/// A stream of the wrong type cannot happen (the pipeline creates each stage's stream
/// itself); if it ever did, the stage is skipped rather than trapping the VM.
fn with_stream<S: Stage, R>(
    stream: &mut dyn Any,
    default: R,
    f: impl FnOnce(&mut S::Stream) -> R,
) -> R {
    match stream.downcast_mut::<S::Stream>() {
        Some(s) => f(s),
        None => default,
    }
}

impl<S: Stage> AnyStage for Erased<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn path_options(&self) -> PathOptions {
        self.0.path_options()
    }
    fn new_stream(&self) -> Box<dyn Any> {
        Box::new(S::Stream::default())
    }
    fn on_request(&self, req: &mut Request<'_>, stream: &mut dyn Any) -> Decision {
        with_stream::<S, _>(stream, Decision::Continue, |s| self.0.on_request(req, s))
    }
    fn on_request_resumed(&self, req: &mut Request<'_>, stream: &mut dyn Any) -> Decision {
        with_stream::<S, _>(stream, Decision::Continue, |s| {
            self.0.on_request_resumed(req, s)
        })
    }
    fn on_callout_response(
        &self,
        req: &mut Request<'_>,
        stream: &mut dyn Any,
        result: CalloutResult,
    ) -> Decision {
        with_stream::<S, _>(stream, Decision::Continue, |s| {
            self.0.on_callout_response(req, s, result)
        })
    }
    fn on_grpc_response(
        &self,
        req: &mut Request<'_>,
        stream: &mut dyn Any,
        result: GrpcResult,
    ) -> Decision {
        with_stream::<S, _>(stream, Decision::Continue, |s| {
            self.0.on_grpc_response(req, s, result)
        })
    }
    fn on_response(&self, resp: &mut Response<'_>, stream: &mut dyn Any) -> Decision {
        with_stream::<S, _>(stream, Decision::Continue, |s| self.0.on_response(resp, s))
    }
    fn on_request_body(&self, body: &mut Body<'_>, stream: &mut dyn Any) -> BodyAction {
        with_stream::<S, _>(stream, BodyAction::Continue, |s| {
            self.0.on_request_body(body, s)
        })
    }
    fn on_response_body(&self, body: &mut Body<'_>, stream: &mut dyn Any) -> BodyAction {
        with_stream::<S, _>(stream, BodyAction::Continue, |s| {
            self.0.on_response_body(body, s)
        })
    }
    fn wants_response(&self) -> bool {
        self.0.wants_response()
    }
    fn on_log(&self, log: &LogView<'_>, stream: &mut dyn Any) {
        with_stream::<S, _>(stream, (), |s| self.0.on_log(log, s))
    }
}

/// Builds stage `S` from its part of the pipeline's config, reporting errors with
/// field paths relative to it, as the standalone filter would.
pub fn build_stage<S: Stage>(config: &Json) -> Result<Box<dyn AnyStage>, ConfigError> {
    let parsed: S::Config = crate::config::from_json(config)?;
    Ok(Box::new(Erased(S::build(parsed)?)))
}

/// The stage kinds a pipeline module offers, by name.
pub trait Registry: 'static {
    /// The module's name, for logs.
    const NAME: &'static str;
    /// Builds the stage called `kind`, or `None` if this module has no such stage.
    fn build(kind: &str, config: &Json) -> Option<Result<Box<dyn AnyStage>, ConfigError>>;
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct PipelineConfig {
    pub stages: Vec<StageEntry>,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct StageEntry {
    /// The stage kind, e.g. `headers`.
    pub name: String,
    /// That stage's usual configuration.
    #[config(default)]
    pub config: Json,
}

/// A chain of stages that is itself a stage.
pub struct Pipeline<R: Registry> {
    stages: Vec<Box<dyn AnyStage>>,
    _registry: PhantomData<R>,
}

/// Per-request state: each stage's own stream, and how far the request got.
#[derive(Default)]
pub struct PipelineStream {
    streams: Vec<Box<dyn Any>>,
    /// Index of the stage the request is at (paused there, or the last that saw it).
    at: usize,
    /// A stage asked to hold the request headers until its body phase decides.
    request_waits_for_body: bool,
}

impl<R: Registry> Pipeline<R> {
    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// Runs the request phase from stage `from`, stopping at the first stage that
    /// does not continue.
    fn run_from(
        &self,
        from: usize,
        req: &mut Request<'_>,
        stream: &mut PipelineStream,
    ) -> Decision {
        for i in from..self.stages.len() {
            stream.at = i;
            let stage = &self.stages[i];
            req.set_path_options(stage.path_options());
            let Some(s) = stream.streams.get_mut(i) else {
                return Decision::Continue;
            };
            match stage.on_request(req, s.as_mut()) {
                Decision::Continue => {}
                // The later stages still see the headers; the hold applies at the end.
                Decision::WaitForBody => stream.request_waits_for_body = true,
                other => return other,
            }
        }
        if stream.request_waits_for_body {
            Decision::WaitForBody
        } else {
            Decision::Continue
        }
    }

    /// Finishes a paused stage's step, then runs the rest of the chain.
    fn resume(
        &self,
        req: &mut Request<'_>,
        stream: &mut PipelineStream,
        step: impl FnOnce(&dyn AnyStage, &mut Request<'_>, &mut dyn Any) -> Decision,
    ) -> Decision {
        let at = stream.at;
        let (Some(stage), Some(s)) = (self.stages.get(at), stream.streams.get_mut(at)) else {
            return Decision::Continue;
        };
        req.set_path_options(stage.path_options());
        match step(stage.as_ref(), req, s.as_mut()) {
            Decision::Continue => self.run_from(at + 1, req, stream),
            other => other,
        }
    }
}

impl<R: Registry> Stage for Pipeline<R> {
    const NAME: &'static str = R::NAME;
    type Config = PipelineConfig;
    type Stream = PipelineStream;

    fn build(config: PipelineConfig) -> Result<Self, ConfigError> {
        if config.stages.is_empty() {
            return Err(ConfigError::at("stages", "list at least one stage"));
        }
        let mut stages = Vec::with_capacity(config.stages.len());
        for (i, entry) in config.stages.into_iter().enumerate() {
            let stage = match R::build(&entry.name, &entry.config) {
                None => {
                    return Err(ConfigError::at(
                        format!("stages[{i}].name"),
                        format!("unknown stage `{}`", entry.name),
                    ))
                }
                Some(built) => built.map_err(|e| e.within(&format!("stages[{i}].config")))?,
            };
            stages.push(stage);
        }
        Ok(Self {
            stages,
            _registry: PhantomData,
        })
    }

    fn path_options(&self) -> PathOptions {
        self.stages
            .first()
            .map(|s| s.path_options())
            .unwrap_or_default()
    }

    fn on_request(&self, req: &mut Request<'_>, stream: &mut PipelineStream) -> Decision {
        stream.streams = self.stages.iter().map(|s| s.new_stream()).collect();
        self.run_from(0, req, stream)
    }

    fn on_request_resumed(&self, req: &mut Request<'_>, stream: &mut PipelineStream) -> Decision {
        self.resume(req, stream, |stage, req, s| {
            stage.on_request_resumed(req, s)
        })
    }

    fn on_callout_response(
        &self,
        req: &mut Request<'_>,
        stream: &mut PipelineStream,
        result: CalloutResult,
    ) -> Decision {
        self.resume(req, stream, |stage, req, s| {
            stage.on_callout_response(req, s, result)
        })
    }

    fn on_grpc_response(
        &self,
        req: &mut Request<'_>,
        stream: &mut PipelineStream,
        result: GrpcResult,
    ) -> Decision {
        self.resume(req, stream, |stage, req, s| {
            stage.on_grpc_response(req, s, result)
        })
    }

    fn on_response(&self, resp: &mut Response<'_>, stream: &mut PipelineStream) -> Decision {
        let mut outcome = Decision::Continue;
        let seen = stream.at.min(self.stages.len().saturating_sub(1));
        for i in (0..=seen).rev() {
            let (Some(stage), Some(s)) = (self.stages.get(i), stream.streams.get_mut(i)) else {
                continue;
            };
            if !stage.wants_response() {
                continue;
            }
            let decision = stage.on_response(resp, s.as_mut());
            // A reply wins over a hold; the first of each kind stands.
            if outcome == Decision::Continue
                || (outcome == Decision::WaitForBody && matches!(decision, Decision::Reply(_)))
            {
                outcome = decision;
            }
        }
        outcome
    }

    /// Every stage sees each chunk, in request order: a counting stage after a
    /// buffering one still counts as the bytes arrive. A reply or reset stops the
    /// chain; otherwise the body is held if any stage holds it.
    fn on_request_body(&self, body: &mut Body<'_>, stream: &mut PipelineStream) -> BodyAction {
        let stages = self.stages.iter().zip(stream.streams.iter_mut());
        body_chain(stages, body, |stage, body, s| {
            stage.on_request_body(body, s)
        })
    }

    /// As the request body, in response order, through the stages that saw the request.
    fn on_response_body(&self, body: &mut Body<'_>, stream: &mut PipelineStream) -> BodyAction {
        let seen = (stream.at + 1).min(self.stages.len());
        let stages = self.stages[..seen]
            .iter()
            .zip(stream.streams.iter_mut())
            .rev();
        body_chain(stages, body, |stage, body, s| {
            stage.on_response_body(body, s)
        })
    }

    fn wants_response(&self) -> bool {
        self.stages.iter().any(|s| s.wants_response())
    }

    fn on_log(&self, log: &LogView<'_>, stream: &mut PipelineStream) {
        for (stage, s) in self.stages.iter().zip(stream.streams.iter_mut()) {
            stage.on_log(log, s.as_mut());
        }
    }
}

fn body_chain<'s>(
    stages: impl Iterator<Item = (&'s Box<dyn AnyStage>, &'s mut Box<dyn Any>)>,
    body: &mut Body<'_>,
    step: impl Fn(&dyn AnyStage, &mut Body<'_>, &mut dyn Any) -> BodyAction,
) -> BodyAction {
    let mut outcome = BodyAction::Continue;
    for (stage, s) in stages {
        match step(stage.as_ref(), body, s.as_mut()) {
            BodyAction::Continue => {}
            BodyAction::Buffer => outcome = BodyAction::Buffer,
            stop => return stop,
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderMap;
    use crate::props::StaticProperties;
    use crate::stage::LocalReply;
    use std::time::Duration;

    /// Tags requests and responses; replies 403 to `/deny`; delays `/slow`.
    struct Tag(String);

    #[derive(Debug, FromJson)]
    struct TagConfig {
        tag: String,
    }

    impl Stage for Tag {
        const NAME: &'static str = "tag";
        type Config = TagConfig;
        type Stream = Vec<&'static str>;

        fn build(config: TagConfig) -> Result<Self, ConfigError> {
            if config.tag.is_empty() {
                return Err(ConfigError::at("tag", "must not be empty"));
            }
            Ok(Tag(config.tag))
        }

        fn on_request(&self, req: &mut Request<'_>, stream: &mut Self::Stream) -> Decision {
            stream.push("request");
            req.headers.add("x-seen", &self.0);
            match req.path() {
                Ok("/deny") if self.0 == "authz" => Decision::Reply(LocalReply::new(403, "no")),
                Ok("/slow") if self.0 == "fault" => Decision::Delay(Duration::from_millis(5)),
                _ => Decision::Continue,
            }
        }

        fn on_request_resumed(&self, req: &mut Request<'_>, stream: &mut Self::Stream) -> Decision {
            stream.push("resumed");
            req.headers.add("x-resumed", &self.0);
            Decision::Continue
        }

        fn on_response(&self, resp: &mut Response<'_>, stream: &mut Self::Stream) -> Decision {
            stream.push("response");
            resp.headers.add("x-seen", &self.0);
            Decision::Continue
        }
    }

    struct Mesh;
    impl Registry for Mesh {
        const NAME: &'static str = "test-mesh";
        fn build(kind: &str, config: &Json) -> Option<Result<Box<dyn AnyStage>, ConfigError>> {
            (kind == "tag").then(|| build_stage::<Tag>(config))
        }
    }

    fn pipeline() -> Pipeline<Mesh> {
        let cfg: PipelineConfig = crate::config::parse(
            br#"{"stages":[{"name":"tag","config":{"tag":"authz"}},{"name":"tag","config":{"tag":"fault"}},{"name":"tag","config":{"tag":"headers"}}]}"#,
        )
        .unwrap();
        Pipeline::build(cfg).unwrap()
    }

    fn request<'a>(props: &'a StaticProperties, path: &str) -> Request<'a> {
        Request::new(
            HeaderMap::from_pairs(vec![(":path".into(), path.into())]),
            props,
            PathOptions::default(),
        )
    }

    #[test]
    fn requests_run_in_order_and_responses_in_reverse() {
        let p = pipeline();
        let props = StaticProperties::new();
        let mut req = request(&props, "/ok");
        let mut stream = PipelineStream::default();
        assert_eq!(p.on_request(&mut req, &mut stream), Decision::Continue);
        assert_eq!(
            req.headers.get_all("x-seen").collect::<Vec<_>>(),
            ["authz", "fault", "headers"]
        );
        let mut resp = Response::new(HeaderMap::default(), &props);
        p.on_response(&mut resp, &mut stream);
        assert_eq!(
            resp.headers.get_all("x-seen").collect::<Vec<_>>(),
            ["headers", "fault", "authz"]
        );
    }

    #[test]
    fn a_local_reply_stops_the_chain_and_only_earlier_stages_see_the_response() {
        let p = pipeline();
        let props = StaticProperties::new();
        let mut req = request(&props, "/deny");
        let mut stream = PipelineStream::default();
        assert!(
            matches!(p.on_request(&mut req, &mut stream), Decision::Reply(r) if r.status == 403)
        );
        assert_eq!(req.headers.get_all("x-seen").count(), 1);
        let mut resp = Response::new(HeaderMap::default(), &props);
        p.on_response(&mut resp, &mut stream);
        assert_eq!(
            resp.headers.get_all("x-seen").collect::<Vec<_>>(),
            ["authz"]
        );
    }

    #[test]
    fn a_delay_resumes_at_the_stage_that_asked() {
        let p = pipeline();
        let props = StaticProperties::new();
        let mut req = request(&props, "/slow");
        let mut stream = PipelineStream::default();
        assert_eq!(
            p.on_request(&mut req, &mut stream),
            Decision::Delay(Duration::from_millis(5))
        );
        assert_eq!(
            req.headers.get_all("x-seen").collect::<Vec<_>>(),
            ["authz", "fault"]
        );
        let mut resumed = request(&props, "/slow");
        assert_eq!(
            p.on_request_resumed(&mut resumed, &mut stream),
            Decision::Continue
        );
        assert_eq!(resumed.headers.get("x-resumed"), Some("fault"));
        assert_eq!(
            resumed.headers.get_all("x-seen").collect::<Vec<_>>(),
            ["headers"]
        );
    }

    #[test]
    fn config_errors_name_the_stage() {
        let bad: PipelineConfig =
            crate::config::parse(br#"{"stages":[{"name":"tag","config":{"tag":"a"}},{"name":"tag","config":{"tag":""}}]}"#).unwrap();
        let err = Pipeline::<Mesh>::build(bad).err().unwrap();
        assert_eq!(err.to_string(), "stages[1].config.tag: must not be empty");
        let unknown: PipelineConfig =
            crate::config::parse(br#"{"stages":[{"name":"nope"}]}"#).unwrap();
        assert_eq!(
            Pipeline::<Mesh>::build(unknown).err().unwrap().to_string(),
            "stages[0].name: unknown stage `nope`"
        );
        let typo: PipelineConfig =
            crate::config::parse(br#"{"stages":[{"name":"tag","config":{"tga":"x"}}]}"#).unwrap();
        assert!(Pipeline::<Mesh>::build(typo)
            .err()
            .unwrap()
            .to_string()
            .starts_with("stages[0].config: missing field `tag`"));
    }
}
