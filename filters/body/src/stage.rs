//! The body stage. Per request it picks a policy (first matching rule, else the
//! default) and then, per direction:
//!
//! - limit: a declared `content-length` over the limit is refused at the headers,
//!   before any body byte is read; a body of unknown length is counted as it streams,
//!   each chunk let through at once (never buffered), and refused on the chunk that
//!   passes the limit. A request then gets `status` (413) while the response has not
//!   started; Envoy resets the upstream request, which may have seen the bytes before
//!   the limit. A response whose `content-length` is over becomes `responseStatus`
//!   (502) at its headers (or is reset, with `RESET`); one counted over mid-body is
//!   reset (its headers already went to the client, so no status can replace them).
//! - json: a JSON body (by `content-type`, not content-encoded) of at most `maxBytes`
//!   is buffered whole and rewritten. The shell sends the headers on first without
//!   `content-length` (Envoy gives a Wasm filter holding its headers no body), so the
//!   length set here applies only where the headers are still at hand (unit tests).

use crate::config::{BodyConfig, Config, JsonPolicy, Limit, Policy, Refusal, ResponseOverLimit};
use crate::transform::{is_json, Transform};
use wasmesh_sdk::headers::HeaderMap;
use wasmesh_sdk::request::Request;
use wasmesh_sdk::{
    Body, BodyAction, ConfigError, Decision, LocalReply, PathOptions, Response, Stage,
};

/// `response_code_details` of our answers (Envoy's buffer filter says
/// `request_payload_too_large`).
pub const TOO_LARGE: &str = "wasmesh_body_too_large";
pub const RESPONSE_TOO_LARGE: &str = "wasmesh_response_body_too_large";
pub const NOT_JSON: &str = "wasmesh_body_not_json";

pub struct BodyStage {
    cfg: BodyConfig,
}

/// Per request: the policy chosen at the request headers, and each direction's state.
#[derive(Debug, Default)]
pub struct Stream {
    policy: Option<usize>,
    /// The JSON rewrite holds this direction's headers and body.
    rewriting: [bool; 2],
    /// The response is over its limit by its content-length; reset on its first chunk.
    reset_response: bool,
}

const REQ: usize = 0;
const RESP: usize = 1;

impl Stage for BodyStage {
    const NAME: &'static str = "wasmesh-body";
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
        stream.policy = self
            .cfg
            .rules
            .first_match(req)
            .map(|(_, i)| *i)
            .or(self.cfg.default);
        let Some(policy) = self.policy(stream) else {
            return Decision::Continue;
        };
        let length = content_length(&req.headers);
        if let Some(limit) = &policy.limit {
            if over(limit.max_request, length) {
                return Decision::Reply(too_large(limit));
            }
        }
        match &policy.json {
            Some(json) if json.request.is_some() => {
                start_rewrite(json, &req.headers, length, REQ, stream)
            }
            _ => Decision::Continue,
        }
    }

    fn on_response(&self, resp: &mut Response<'_>, stream: &mut Stream) -> Decision {
        let Some(policy) = self.policy(stream) else {
            return Decision::Continue;
        };
        let length = content_length(&resp.headers);
        if let Some(limit) = &policy.limit {
            if over(limit.max_response, length) {
                match limit.response_over_limit {
                    ResponseOverLimit::Reply => return Decision::Reply(response_too_large(limit)),
                    ResponseOverLimit::Reset => {
                        stream.reset_response = true;
                        return Decision::Continue;
                    }
                }
            }
        }
        match &policy.json {
            Some(json) if json.response.is_some() => {
                start_rewrite(json, &resp.headers, length, RESP, stream)
            }
            _ => Decision::Continue,
        }
    }

    fn on_request_body(&self, body: &mut Body<'_>, stream: &mut Stream) -> BodyAction {
        let Some(policy) = self.policy(stream) else {
            return BodyAction::Continue;
        };
        if let Some(limit) = &policy.limit {
            if over(limit.max_request, Some(body.received())) {
                return BodyAction::Reply(too_large(limit));
            }
        }
        self.rewrite_step(policy, body, stream, REQ)
    }

    fn on_response_body(&self, body: &mut Body<'_>, stream: &mut Stream) -> BodyAction {
        if stream.reset_response {
            return BodyAction::Reset;
        }
        let Some(policy) = self.policy(stream) else {
            return BodyAction::Continue;
        };
        if let Some(limit) = &policy.limit {
            if over(limit.max_response, Some(body.received())) {
                // Its headers went on (a Wasm filter cannot hold them for the body):
                // too late for a status.
                return BodyAction::Reset;
            }
        }
        self.rewrite_step(policy, body, stream, RESP)
    }
}

impl BodyStage {
    fn policy(&self, stream: &Stream) -> Option<&Policy> {
        self.cfg.policies.get(stream.policy?)
    }

    /// One chunk of a body being rewritten: hold it until the end, then rewrite.
    fn rewrite_step(
        &self,
        policy: &Policy,
        body: &mut Body<'_>,
        stream: &mut Stream,
        dir: usize,
    ) -> BodyAction {
        let Some(json) = policy.json.as_ref().filter(|_| stream.rewriting[dir]) else {
            return BodyAction::Continue;
        };
        let transform = if dir == REQ {
            &json.request
        } else {
            &json.response
        };
        let Some(transform) = transform else {
            return BodyAction::Continue;
        };
        if body.received() > json.max_bytes {
            stream.rewriting[dir] = false;
            return match json.over_max_bytes {
                // Held bytes go on as they came.
                Refusal::Pass => BodyAction::Continue,
                Refusal::Reject if dir == REQ => BodyAction::Reply(too_large_json(dir)),
                // The response's headers went on before its body: too late for a 502.
                Refusal::Reject => BodyAction::Reset,
            };
        }
        if !body.end_of_stream() {
            return BodyAction::Buffer;
        }
        stream.rewriting[dir] = false;
        finish_rewrite(json, transform, body, dir)
    }
}

fn finish_rewrite(
    json: &JsonPolicy,
    transform: &Transform,
    body: &mut Body<'_>,
    dir: usize,
) -> BodyAction {
    match transform.rewrite(body.bytes()) {
        Ok(out) => {
            if body.headers.get("content-length").is_some() {
                body.headers.set("content-length", &out.len().to_string());
            }
            body.replace(out);
            BodyAction::Continue
        }
        Err(_) => match json.malformed {
            Refusal::Pass => BodyAction::Continue,
            Refusal::Reject if dir == REQ => BodyAction::Reply(
                LocalReply::new(400, "request body is not valid JSON\n")
                    .header("content-type", "text/plain")
                    .details(NOT_JSON),
            ),
            // The response's headers went on before its body: too late for a 502.
            Refusal::Reject => BodyAction::Reset,
        },
    }
}

/// Whether the rewrite takes this message: JSON, not content-encoded, not known to be
/// over the cap. Asks for the body then; answers or lets it by otherwise.
fn start_rewrite(
    json: &JsonPolicy,
    headers: &HeaderMap,
    length: Option<u64>,
    dir: usize,
    stream: &mut Stream,
) -> Decision {
    let encoded = headers
        .get("content-encoding")
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    if encoded || !headers.get("content-type").is_some_and(is_json) || length == Some(0) {
        return Decision::Continue;
    }
    if over(Some(json.max_bytes), length) {
        return match json.over_max_bytes {
            Refusal::Pass => Decision::Continue,
            Refusal::Reject => Decision::Reply(too_large_json(dir)),
        };
    }
    stream.rewriting[dir] = true;
    Decision::WaitForBody
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get("content-length")?.trim().parse().ok()
}

/// A size over the limit; exactly the limit is allowed.
fn over(limit: Option<u64>, size: Option<u64>) -> bool {
    matches!((limit, size), (Some(limit), Some(size)) if size > limit)
}

fn too_large(limit: &Limit) -> LocalReply {
    LocalReply::new(limit.status, limit.body.clone())
        .header("content-type", "text/plain")
        .details(TOO_LARGE)
}

fn response_too_large(limit: &Limit) -> LocalReply {
    LocalReply::new(limit.response_status, "upstream response body too large\n")
        .header("content-type", "text/plain")
        .details(RESPONSE_TOO_LARGE)
}

fn too_large_json(dir: usize) -> LocalReply {
    let (status, body) = if dir == REQ {
        (413, "request body too large to rewrite\n")
    } else {
        (502, "upstream response body too large to rewrite\n")
    };
    LocalReply::new(status, body)
        .header("content-type", "text/plain")
        .details(TOO_LARGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::StaticProperties;

    fn stage(json: &str) -> BodyStage {
        BodyStage::build(wasmesh_sdk::config::parse(json.as_bytes()).unwrap()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn request(s: &BodyStage, pairs: &[(&str, &str)]) -> (Decision, Stream) {
        let props = StaticProperties::new();
        let mut all = vec![(":path", "/"), (":method", "POST")];
        all.extend_from_slice(pairs);
        let mut req = Request::new(headers(&all), &props, PathOptions::default());
        let mut stream = Stream::default();
        (s.on_request(&mut req, &mut stream), stream)
    }

    fn chunk(
        s: &BodyStage,
        stream: &mut Stream,
        received: u64,
        bytes: &[u8],
        eos: bool,
    ) -> (BodyAction, Vec<u8>, HeaderMap) {
        let owned = bytes.to_vec();
        let fetch = move |_: usize| owned.clone();
        let mut body = Body::new(
            bytes.len(),
            bytes.len(),
            received,
            eos,
            &fetch,
            headers(&[("content-length", "99")]),
        );
        let action = s.on_request_body(&mut body, stream);
        let out = body.bytes().to_vec();
        (action, out, body.headers)
    }

    const LIMIT: &str = r#"{"limit":{"maxRequestBytes":10}}"#;

    #[test]
    fn content_length_over_the_limit_is_413_and_exactly_the_limit_passes() {
        let s = stage(LIMIT);
        assert!(
            matches!(request(&s, &[("content-length", "11")]).0, Decision::Reply(r) if r.status == 413)
        );
        assert_eq!(
            request(&s, &[("content-length", "10")]).0,
            Decision::Continue
        );
    }

    #[test]
    fn streamed_bodies_are_counted_not_buffered() {
        let s = stage(LIMIT);
        let (d, mut stream) = request(&s, &[]);
        assert_eq!(d, Decision::Continue);
        assert_eq!(
            chunk(&s, &mut stream, 6, b"aaaaaa", false).0,
            BodyAction::Continue
        );
        assert_eq!(
            chunk(&s, &mut stream, 10, b"aaaa", false).0,
            BodyAction::Continue
        );
        assert!(
            matches!(chunk(&s, &mut stream, 11, b"a", false).0, BodyAction::Reply(r) if r.status == 413)
        );
    }

    const JSON: &str = r#"{"json":{"request":{"set":[{"pointer":"/v","value":2}]},"maxBytes":20,"malformed":"REJECT"}}"#;

    #[test]
    fn json_is_held_then_rewritten_with_its_length_fixed() {
        let s = stage(JSON);
        let (d, mut stream) = request(&s, &[("content-type", "application/json")]);
        assert_eq!(d, Decision::WaitForBody);
        assert_eq!(
            chunk(&s, &mut stream, 3, b"{\"a", false).0,
            BodyAction::Buffer
        );
        let (action, out, h) = chunk(&s, &mut stream, 8, b"{\"a\":1}", true);
        assert_eq!(action, BodyAction::Continue);
        assert_eq!(out, br#"{"a":1,"v":2}"#);
        assert_eq!(h.get("content-length"), Some("13"));
    }

    #[test]
    fn only_json_is_rewritten_and_malformed_json_is_refused_when_configured() {
        let s = stage(JSON);
        assert_eq!(
            request(&s, &[("content-type", "text/plain")]).0,
            Decision::Continue
        );
        assert_eq!(
            request(
                &s,
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip")
                ]
            )
            .0,
            Decision::Continue
        );
        let (_, mut stream) = request(&s, &[("content-type", "application/json")]);
        assert!(
            matches!(chunk(&s, &mut stream, 2, b"{x", true).0, BodyAction::Reply(r) if r.status == 400)
        );
    }

    #[test]
    fn bodies_over_the_cap_pass_untouched() {
        let s = stage(JSON);
        assert_eq!(
            request(
                &s,
                &[
                    ("content-type", "application/json"),
                    ("content-length", "21")
                ]
            )
            .0,
            Decision::Continue
        );
        let (_, mut stream) = request(&s, &[("content-type", "application/json")]);
        let big = [b' '; 21];
        let (action, out, _) = chunk(&s, &mut stream, 21, &big, false);
        assert_eq!(action, BodyAction::Continue);
        assert_eq!(out, big);
        // Later chunks are no longer held.
        assert_eq!(
            chunk(&s, &mut stream, 30, b"x", true).0,
            BodyAction::Continue
        );
    }

    #[test]
    fn response_over_the_limit_is_502_at_the_headers_and_reset_mid_body() {
        let s = stage(r#"{"limit":{"maxResponseBytes":4}}"#);
        let props = StaticProperties::new();
        let (_, mut stream) = request(&s, &[]);
        let mut resp = Response::new(
            headers(&[(":status", "200"), ("content-length", "5")]),
            &props,
        );
        assert!(
            matches!(s.on_response(&mut resp, &mut stream), Decision::Reply(r) if r.status == 502)
        );
        let mut resp = Response::new(headers(&[(":status", "200")]), &props);
        assert_eq!(s.on_response(&mut resp, &mut stream), Decision::Continue);
        let fetch = |_: usize| Vec::new();
        let mut body = Body::new(5, 5, 5, false, &fetch, HeaderMap::default());
        assert_eq!(
            s.on_response_body(&mut body, &mut stream),
            BodyAction::Reset
        );
    }
}
