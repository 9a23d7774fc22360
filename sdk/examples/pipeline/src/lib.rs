//! wasmesh-example-pipeline: callouts, delays and a one-VM pipeline with the SDK.
//! `check` asks an auth service per request; `slow` delays flagged requests.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::time::Duration;
use wasmesh_sdk::config::{FromJson, Json};
use wasmesh_sdk::pipeline::{build_stage, AnyStage, Pipeline, Registry};
use wasmesh_sdk::{Callout, CalloutResult, ConfigError, Decision, LocalReply, Request, Stage};

/// Asks `cluster` whether the request may pass: 200 passes (copying `x-user` from the
/// answer onto the request), anything else is 403, and a failed call follows `fail_open`.
pub struct Check {
    cluster: String,
    timeout: Duration,
    fail_open: bool,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct CheckConfig {
    pub cluster: String,
    #[config(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[config(default)]
    pub fail_open: bool,
}

fn default_timeout_ms() -> u64 {
    200
}

impl Stage for Check {
    const NAME: &'static str = "check";
    type Config = CheckConfig;
    type Stream = ();

    fn build(config: CheckConfig) -> Result<Self, ConfigError> {
        if config.cluster.is_empty() {
            return Err(ConfigError::at("cluster", "must name an Envoy cluster"));
        }
        Ok(Self {
            cluster: config.cluster,
            timeout: Duration::from_millis(config.timeout_ms),
            fail_open: config.fail_open,
        })
    }

    fn on_request(&self, req: &mut Request<'_>, _: &mut ()) -> Decision {
        let mut headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), "/check".to_string()),
            (":authority".to_string(), self.cluster.clone()),
            ("x-original-path".to_string(), req.raw_path().to_string()),
        ];
        if let Some(auth) = req.headers.get("authorization") {
            headers.push(("authorization".to_string(), auth.to_string()));
        }
        Decision::Callout(Callout {
            cluster: self.cluster.clone(),
            headers,
            body: None,
            timeout: self.timeout,
        })
    }

    fn on_callout_response(
        &self,
        req: &mut Request<'_>,
        _: &mut (),
        result: CalloutResult,
    ) -> Decision {
        match result {
            CalloutResult::Response {
                status: 200,
                headers,
                ..
            } => {
                if let Some((_, user)) = headers.iter().find(|(k, _)| k == "x-user") {
                    req.headers.set("x-user", user);
                }
                Decision::Continue
            }
            CalloutResult::Response { .. } => {
                Decision::Reply(LocalReply::new(403, "denied by check\n"))
            }
            CalloutResult::Failed if self.fail_open => Decision::Continue,
            CalloutResult::Failed => Decision::Reply(LocalReply::new(503, "check unavailable\n")),
        }
    }
}

/// Delays requests carrying the `x-slow` header by `delay_ms`, then marks them.
pub struct Slow {
    delay: Duration,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct SlowConfig {
    pub delay_ms: u64,
}

impl Stage for Slow {
    const NAME: &'static str = "slow";
    type Config = SlowConfig;
    type Stream = ();

    fn build(config: SlowConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            delay: Duration::from_millis(config.delay_ms),
        })
    }

    fn on_request(&self, req: &mut Request<'_>, _: &mut ()) -> Decision {
        if req.headers.contains("x-slow") {
            Decision::Delay(self.delay)
        } else {
            Decision::Continue
        }
    }

    fn on_request_resumed(&self, req: &mut Request<'_>, _: &mut ()) -> Decision {
        req.headers.set("x-slowed", "true");
        Decision::Continue
    }
}

/// The stages this module offers.
pub struct Stages;

impl Registry for Stages {
    const NAME: &'static str = "pipeline-example";

    fn build(kind: &str, config: &Json) -> Option<Result<Box<dyn AnyStage>, ConfigError>> {
        match kind {
            "check" => Some(build_stage::<Check>(config)),
            "slow" => Some(build_stage::<Slow>(config)),
            _ => None,
        }
    }
}

/// The module's filter: both stages as one pipeline.
pub type Module = Pipeline<Stages>;

wasmesh_sdk::export_stage!(Module);
