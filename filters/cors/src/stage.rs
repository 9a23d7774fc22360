//! The cors stage, as Envoy's CORS filter behaves (source/extensions/filters/http/cors):
//! a request with an `Origin` gets the policy of its rule (or the default); a preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is answered
//! here with 200 and the policy's headers; any other request from an allowed origin
//! goes on, and its response gets `access-control-allow-origin` (the origin echoed),
//! `-allow-credentials` and `-expose-headers`. A request from an origin no entry allows
//! gets no CORS header at all, and its preflight is forwarded (or, with
//! `unmatchedPreflights: IGNORE`, answered 200 with no CORS header).

use crate::config::{Config, CorsConfig, ListValue, Policy, Unmatched};
use crate::origin::RequestOrigin;
use wasmesh_sdk::names::is_tchar;
use wasmesh_sdk::request::Request;
use wasmesh_sdk::{ConfigError, Decision, LocalReply, PathOptions, Response, Stage};

/// Envoy's `response_code_details` for its CORS filter's preflight answers.
const DETAILS: &str = "cors_response";

/// A requested header list longer than this is not echoed (Envoy caps a whole
/// header map at 60 KiB; a real list is a few names).
const MAX_ECHOED_LIST: usize = 4096;

pub struct CorsStage {
    cfg: CorsConfig,
}

/// The origin to echo on the response, and which policy allowed it.
#[derive(Debug, Default)]
pub struct Stream {
    allowed: Option<(usize, String)>,
}

impl Stage for CorsStage {
    const NAME: &'static str = "wasmesh-cors";
    type Config = Config;
    type Stream = Stream;

    fn build(config: Config) -> Result<Self, ConfigError> {
        Ok(Self {
            cfg: config.validate()?,
        })
    }

    fn path_options(&self) -> PathOptions {
        self.cfg.path_options
    }

    fn on_request(&self, req: &mut Request<'_>, stream: &mut Stream) -> Decision {
        // Requests without Origin are most requests: answer those before any rule runs.
        let origin = RequestOrigin::of(&req.headers);
        if origin == RequestOrigin::Absent {
            return Decision::Continue;
        }
        let Some(index) = self
            .cfg
            .rules
            .first_match(req)
            .map(|(_, i)| *i)
            .or(self.cfg.default)
        else {
            return Decision::Continue;
        };
        let Some(policy) = self.cfg.policies.get(index) else {
            return Decision::Continue;
        };
        let allowed = match origin {
            RequestOrigin::Valid(o) if policy.allows(o) => Some(o),
            _ => None,
        };
        let preflight = req.method() == "OPTIONS"
            && req
                .headers
                .get("access-control-request-method")
                .is_some_and(|m| !m.is_empty());
        match (preflight, allowed) {
            (true, Some(origin)) => Decision::Reply(preflight_reply(policy, origin, req)),
            (true, None) => match policy.unmatched_preflights {
                Unmatched::Forward => Decision::Continue,
                Unmatched::Ignore => Decision::Reply(empty_ok()),
            },
            (false, Some(origin)) => {
                stream.allowed = Some((index, origin.to_string()));
                Decision::Continue
            }
            (false, None) => Decision::Continue,
        }
    }

    fn on_response(&self, resp: &mut Response<'_>, stream: &mut Stream) -> Decision {
        let Some((index, origin)) = &stream.allowed else {
            return Decision::Continue;
        };
        let Some(policy) = self.cfg.policies.get(*index) else {
            return Decision::Continue;
        };
        resp.headers.set("access-control-allow-origin", origin);
        if policy.allow_credentials {
            resp.headers.set("access-control-allow-credentials", "true");
        }
        if let Some(expose) = &policy.expose_headers {
            resp.headers.set("access-control-expose-headers", expose);
        }
        Decision::Continue
    }
}

fn empty_ok() -> LocalReply {
    LocalReply::new(200, Vec::new()).details(DETAILS)
}

/// The preflight answer: 200, no body, the policy's headers.
fn preflight_reply(policy: &Policy, origin: &str, req: &Request<'_>) -> LocalReply {
    let mut reply = empty_ok().header("access-control-allow-origin", origin);
    if policy.allow_credentials {
        reply = reply.header("access-control-allow-credentials", "true");
    }
    let requested = |name: &str, ok: fn(&str) -> bool| {
        req.headers
            .get(name)
            .filter(|v| v.len() <= MAX_ECHOED_LIST && ok(v))
    };
    let methods = match &policy.allow_methods {
        Some(ListValue::Fixed(list)) => Some(list.as_str()),
        Some(ListValue::EchoRequest) => requested("access-control-request-method", is_token),
        None => None,
    };
    if let Some(methods) = methods {
        reply = reply.header("access-control-allow-methods", methods);
    }
    let headers = match &policy.allow_headers {
        Some(ListValue::Fixed(list)) => Some(list.as_str()),
        Some(ListValue::EchoRequest) => requested("access-control-request-headers", is_token_list),
        None => None,
    };
    if let Some(headers) = headers {
        reply = reply.header("access-control-allow-headers", headers);
    }
    if let Some(max_age) = &policy.max_age {
        reply = reply.header("access-control-max-age", max_age);
    }
    // Envoy's answer also passes its own response path, which adds this one too.
    if let Some(expose) = &policy.expose_headers {
        reply = reply.header("access-control-expose-headers", expose);
    }
    reply
}

/// An HTTP token (a method name), so an echoed value cannot carry anything else.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// `a, b,c`: tokens separated by commas and optional spaces.
fn is_token_list(s: &str) -> bool {
    s.split(',').all(|item| is_token(item.trim_matches(' ')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::config;
    use wasmesh_sdk::{HeaderMap, StaticProperties};

    fn stage(json: &str) -> CorsStage {
        CorsStage::build(config::parse(json.as_bytes()).unwrap()).unwrap()
    }

    const POLICY: &str = r#"{"corsPolicy":{
        "allowOrigins":[{"exact":"https://good.example"},{"prefix":"https://app."},{"regex":"https://[a-z]+\\.corp\\.example"}],
        "allowMethods":["GET","POST"],"allowHeaders":["content-type","x-token"],
        "exposeHeaders":["x-request-id"],"maxAge":"10m","allowCredentials":true}}"#;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Runs one request (and, unless answered, a 200 response) through the stage.
    fn run(s: &CorsStage, pairs: &[(&str, &str)]) -> (Decision, Option<HeaderMap>) {
        let props = StaticProperties::new();
        let mut req = Request::new(headers(pairs), &props, s.path_options());
        let mut stream = Stream::default();
        let decision = s.on_request(&mut req, &mut stream);
        if decision != Decision::Continue {
            return (decision, None);
        }
        let mut resp = Response::new(headers(&[(":status", "200")]), &props);
        assert_eq!(s.on_response(&mut resp, &mut stream), Decision::Continue);
        (decision, Some(resp.headers))
    }

    fn preflight(origin: &str) -> Vec<(&str, &str)> {
        vec![
            (":method", "OPTIONS"),
            (":path", "/api/items"),
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ]
    }

    fn reply_header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn cors_headers(h: &HeaderMap) -> Vec<(String, String)> {
        h.iter()
            .filter(|(k, _)| k.starts_with("access-control-"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_answered_with_the_policy() {
        let s = stage(POLICY);
        let (decision, _) = run(&s, &preflight("https://good.example"));
        let Decision::Reply(reply) = decision else {
            panic!("not answered: {decision:?}")
        };
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty());
        assert_eq!(reply.details, "cors_response");
        assert_eq!(
            reply.headers,
            [
                ("access-control-allow-origin", "https://good.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET,POST"),
                ("access-control-allow-headers", "content-type,x-token"),
                ("access-control-max-age", "600"),
                ("access-control-expose-headers", "x-request-id"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn an_allowed_simple_request_gets_the_response_headers() {
        let s = stage(POLICY);
        let (decision, resp) = run(
            &s,
            &[
                (":method", "GET"),
                (":path", "/x"),
                ("origin", "https://app.example.com"),
            ],
        );
        assert_eq!(decision, Decision::Continue);
        assert_eq!(
            cors_headers(&resp.unwrap()),
            [
                ("access-control-allow-origin", "https://app.example.com"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-request-id"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn hostile_origins_get_no_cors_headers_and_their_preflights_are_forwarded() {
        let s = stage(POLICY);
        let huge = format!("https://good.example{}", "x".repeat(100_000));
        for origin in [
            "https://good.example.evil.com",
            "https://GOOD.example",
            "https://good.example/",
            "https://good.example, https://evil.example",
            "null",
            "https://good.example\u{fffd}",
            "https://evil.example",
            "https://app",
            "https://x.corp.example.evil.com",
            huge.as_str(),
        ] {
            let (decision, _) = run(&s, &preflight(origin));
            assert_eq!(decision, Decision::Continue, "preflight from {origin:?}");
            let (_, resp) = run(&s, &[(":method", "GET"), ("origin", origin)]);
            assert!(
                cors_headers(&resp.unwrap()).is_empty(),
                "response to {origin:?}"
            );
        }
        let two = [
            (":method", "GET"),
            ("origin", "https://good.example"),
            ("origin", "https://evil.example"),
        ];
        let (_, resp) = run(&s, &two);
        assert!(
            cors_headers(&resp.unwrap()).is_empty(),
            "two Origin headers"
        );
    }

    #[test]
    fn requests_without_origin_and_plain_options_are_left_alone() {
        let s = stage(POLICY);
        let (decision, resp) = run(&s, &[(":method", "OPTIONS"), (":path", "/")]);
        assert_eq!(decision, Decision::Continue);
        assert!(cors_headers(&resp.unwrap()).is_empty());
        // OPTIONS without Access-Control-Request-Method is a simple request.
        let (decision, resp) = run(
            &s,
            &[(":method", "OPTIONS"), ("origin", "https://good.example")],
        );
        assert_eq!(decision, Decision::Continue);
        assert_eq!(cors_headers(&resp.unwrap()).len(), 3);
    }

    #[test]
    fn ignore_answers_unmatched_preflights_without_cors_headers() {
        let s = stage(
            r#"{"corsPolicy":{"allowOrigins":[{"exact":"https://good.example"}],"allowMethods":["GET"],"unmatchedPreflights":"IGNORE"}}"#,
        );
        let (decision, _) = run(&s, &preflight("https://evil.example"));
        let Decision::Reply(reply) = decision else {
            panic!("not answered: {decision:?}")
        };
        assert_eq!(reply.status, 200);
        assert!(reply.headers.is_empty(), "{:?}", reply.headers);
    }

    #[test]
    fn rules_pick_the_policy_per_route_and_unmatched_routes_get_none() {
        let s = stage(
            r#"{"rules":[
                {"match":{"path":{"prefix":"/public"}},"corsPolicy":{"allowOrigins":[{"exact":"*"}]}},
                {"match":{"hosts":["api.example"]},"corsPolicy":{"allowOrigins":[{"exact":"https://good.example"}],"allowMethods":["PUT"]}}]}"#,
        );
        let get = |path: &str, host: &str, origin: &str| {
            let (_, resp) = run(
                &s,
                &[
                    (":method", "GET"),
                    (":path", path),
                    (":authority", host),
                    ("origin", origin),
                ],
            );
            resp.unwrap()
                .get("access-control-allow-origin")
                .map(str::to_string)
        };
        assert_eq!(
            get("/public/a", "other", "https://any.example").as_deref(),
            Some("https://any.example")
        );
        assert_eq!(get("/private", "other", "https://good.example"), None);
        assert_eq!(
            get("/private", "api.example", "https://good.example").as_deref(),
            Some("https://good.example")
        );
        assert_eq!(get("/private", "api.example", "https://any.example"), None);
    }

    #[test]
    fn star_lists_echo_only_well_formed_requests() {
        let s = stage(
            r#"{"corsPolicy":{"allowOrigins":[{"exact":"*"}],"allowMethods":["*"],"allowHeaders":["*"]}}"#,
        );
        let answer = |method: &str, hdrs: &str| {
            let pairs = [
                (":method", "OPTIONS"),
                ("origin", "https://a.example"),
                ("access-control-request-method", method),
                ("access-control-request-headers", hdrs),
            ];
            match run(&s, &pairs).0 {
                Decision::Reply(r) => r,
                other => panic!("{other:?}"),
            }
        };
        let ok = answer("PATCH", "x-a, content-type");
        assert_eq!(
            reply_header(&ok, "access-control-allow-methods"),
            Some("PATCH")
        );
        assert_eq!(
            reply_header(&ok, "access-control-allow-headers"),
            Some("x-a, content-type")
        );
        let bad = answer("GET\u{fffd}", "x-a;evil=1");
        assert_eq!(reply_header(&bad, "access-control-allow-methods"), None);
        assert_eq!(reply_header(&bad, "access-control-allow-headers"), None);
    }

    #[test]
    fn null_is_allowed_only_by_name() {
        let s = stage(r#"{"corsPolicy":{"allowOrigins":[{"exact":"null"}]}}"#);
        let (_, resp) = run(&s, &[(":method", "GET"), ("origin", "null")]);
        assert_eq!(
            resp.unwrap().get("access-control-allow-origin"),
            Some("null")
        );
    }
}
