//! wasmesh-example-hello: the smallest useful wasmesh filter.
//! Greets every response, blocks requests that match a rule, and counts both.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use wasmesh_sdk::config::FromJson;
use wasmesh_sdk::metrics::Counter;
use wasmesh_sdk::{
    ConfigError, Decision, LocalReply, MatchConfig, Request, Response, Rules, Stage,
};

/// The configuration, as written in Envoy's `configuration` field (JSON).
#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct Config {
    /// Value of the `x-hello` response header.
    pub greeting: String,
    /// Requests matching any of these are answered 403.
    #[config(default)]
    pub block: Vec<BlockRule>,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct BlockRule {
    pub name: String,
    #[config(rename = "match", default)]
    pub matches: MatchConfig,
}

/// The runtime object, validated once in `on_configure`.
pub struct Hello {
    greeting: String,
    block: Rules<String>,
    requests: Counter,
}

impl Stage for Hello {
    const NAME: &'static str = "hello";
    type Config = Config;
    type Stream = ();

    fn build(config: Config) -> Result<Self, ConfigError> {
        if config.greeting.is_empty() {
            return Err(ConfigError::at("greeting", "must not be empty"));
        }
        Ok(Self {
            greeting: config.greeting,
            block: Rules::compile(
                "block",
                &config.block,
                |r| &r.matches,
                |r| Ok(r.name.clone()),
            )?,
            requests: Counter::new("wasmesh_hello_requests_total", &["outcome", "rule"]),
        })
    }

    fn on_request(&self, req: &mut Request<'_>, _: &mut ()) -> Decision {
        if let Err(e) = req.path() {
            return Decision::Reply(LocalReply::bad_request(&e.to_string()));
        }
        match self.block.first_match(req) {
            Some((_, rule)) => {
                self.requests.inc(&["blocked", rule]);
                Decision::Reply(LocalReply::new(403, format!("blocked by {rule}\n")))
            }
            None => {
                self.requests.inc(&["passed", ""]);
                Decision::Continue
            }
        }
    }

    fn on_response(&self, resp: &mut Response<'_>, _: &mut ()) -> Decision {
        resp.headers.set("x-hello", &self.greeting);
        Decision::Continue
    }
}

wasmesh_sdk::export_stage!(Hello);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{HeaderMap, PathOptions, StaticProperties};

    fn hello() -> Hello {
        let cfg = wasmesh_sdk::config::parse(
            br#"{"greeting":"hi","block":[{"name":"admin","match":{"path":{"prefix":"/admin"}}}]}"#,
        )
        .unwrap();
        Hello::build(cfg).unwrap()
    }

    fn request<'a>(props: &'a StaticProperties, path: &str) -> Request<'a> {
        let headers = HeaderMap::from_pairs(vec![(":path".into(), path.into())]);
        Request::new(headers, props, PathOptions::default())
    }

    #[test]
    fn blocks_matching_requests_natively() {
        let props = StaticProperties::new();
        let decision = hello().on_request(&mut request(&props, "//admin/x"), &mut ());
        assert!(matches!(decision, Decision::Reply(r) if r.status == 403));
        let decision = hello().on_request(&mut request(&props, "/public"), &mut ());
        assert_eq!(decision, Decision::Continue);
    }

    #[test]
    fn empty_greeting_is_refused_by_name() {
        let cfg = wasmesh_sdk::config::parse(br#"{"greeting":""}"#).unwrap();
        assert_eq!(
            Hello::build(cfg).err().unwrap().to_string(),
            "greeting: must not be empty"
        );
    }
}
