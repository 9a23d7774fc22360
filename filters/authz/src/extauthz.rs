//! CUSTOM action: an external authorizer reached over an HTTP callout, like Envoy's
//! ext_authz HTTP service (Istio's `envoyExtAuthzHttp` provider).
//!
//! The check request carries the original method, `pathPrefix` + the original path,
//! the original authority, `authorization` and the headers listed in
//! `includeRequestHeadersInCheck`, with an empty body. A 200 answer allows (copying
//! `headersToUpstreamOnAllow` onto the request); any other answer denies with that
//! status and body (copying `headersToDownstreamOnDeny`). A callout that fails (timeout,
//! reset, no cluster) is an error: allowed with `failOpen`, else `statusOnError`.

use crate::config::{duration_or, ExtAuthzHttpConfig};
use std::time::Duration;
use wasmesh_sdk::config::ConfigError;
use wasmesh_sdk::{Callout, CalloutResult, LocalReply, Request};

#[derive(Debug)]
pub struct ExtAuthz {
    pub name: String,
    cluster: String,
    path_prefix: String,
    timeout: Duration,
    fail_open: bool,
    status_on_error: u16,
    include_headers: Vec<String>,
    additional_headers: Vec<(String, String)>,
    to_upstream: Vec<String>,
    to_downstream_on_deny: Vec<String>,
}

/// What the authorizer decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; these headers go onto the upstream request.
    Allow(Vec<(String, String)>),
    Deny(LocalReply),
}

fn lower(list: &[String]) -> Vec<String> {
    list.iter().map(|h| h.to_ascii_lowercase()).collect()
}

impl ExtAuthz {
    pub fn compile(name: &str, c: &ExtAuthzHttpConfig) -> Result<Self, ConfigError> {
        if c.cluster.is_empty() {
            return Err(ConfigError::at(
                "cluster",
                "the Envoy cluster of the authorizer is required",
            ));
        }
        if !c.path_prefix.is_empty() && !c.path_prefix.starts_with('/') {
            return Err(ConfigError::at("pathPrefix", "must start with `/`"));
        }
        let timeout = duration_or("timeout", c.timeout.as_deref(), Duration::from_millis(600))?;
        let status_on_error = match &c.status_on_error {
            Some(s) => s
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|s| (200..=599).contains(s))
                .ok_or_else(|| {
                    ConfigError::at("statusOnError", format!("`{s}` is not an HTTP status"))
                })?,
            None => 403,
        };
        Ok(Self {
            name: name.to_string(),
            cluster: c.cluster.clone(),
            path_prefix: c.path_prefix.trim_end_matches('/').to_string(),
            timeout,
            fail_open: c.fail_open,
            status_on_error,
            include_headers: lower(&c.include_request_headers_in_check),
            additional_headers: c
                .include_additional_headers_in_check
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            to_upstream: lower(&c.headers_to_upstream_on_allow),
            to_downstream_on_deny: lower(&c.headers_to_downstream_on_deny),
        })
    }

    /// The check request for `req`.
    pub fn check(&self, req: &Request<'_>) -> Callout {
        let authority = req
            .headers
            .get(":authority")
            .or_else(|| req.headers.get("host"))
            .unwrap_or("");
        let mut headers = vec![
            (":method".to_string(), req.method().to_string()),
            (
                ":path".to_string(),
                format!("{}{}", self.path_prefix, req.raw_path()),
            ),
            (":authority".to_string(), authority.to_string()),
            ("content-length".to_string(), "0".to_string()),
        ];
        let mut names: Vec<&str> = vec!["authorization"];
        names.extend(self.include_headers.iter().map(String::as_str));
        names.dedup();
        for name in names {
            if name.starts_with(':') {
                continue;
            }
            for value in req.headers.get_all(name) {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        headers.extend(self.additional_headers.iter().cloned());
        Callout {
            cluster: self.cluster.clone(),
            headers,
            body: None,
            timeout: self.timeout,
        }
    }

    pub fn interpret(&self, result: &CalloutResult) -> Verdict {
        let CalloutResult::Response {
            status,
            headers,
            body,
        } = result
        else {
            return if self.fail_open {
                Verdict::Allow(Vec::new())
            } else {
                Verdict::Deny(
                    LocalReply::new(self.status_on_error, "RBAC: access denied")
                        .header("content-type", "text/plain")
                        .details("ext_authz_error"),
                )
            };
        };
        let pick = |names: &[String]| -> Vec<(String, String)> {
            headers
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n.eq_ignore_ascii_case(k)))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        };
        if *status == 200 {
            return Verdict::Allow(pick(&self.to_upstream));
        }
        // A 1xx-3xx answer is not a grant; denials keep the authorizer's 4xx/5xx.
        let status = if *status >= 400 { *status } else { 403 };
        let mut reply = LocalReply::new(status, body.clone()).details("ext_authz_denied");
        for (k, v) in pick(&self.to_downstream_on_deny) {
            reply = reply.header(&k, &v);
        }
        Verdict::Deny(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{HeaderMap, PathOptions, StaticProperties};

    fn provider(extra: serde_json::Value) -> ExtAuthz {
        let mut c = serde_json::json!({
            "cluster": "authz", "pathPrefix": "/check", "timeout": "250ms",
            "includeRequestHeadersInCheck": ["x-user"],
            "headersToUpstreamOnAllow": ["x-authz-user"],
            "headersToDownstreamOnDeny": ["x-reason"],
        });
        if let (Some(base), Some(more)) = (c.as_object_mut(), extra.as_object()) {
            base.extend(more.clone());
        }
        ExtAuthz::compile("ext", &wasmesh_sdk::config::from_value(&c).unwrap()).unwrap()
    }

    #[test]
    fn check_request_carries_only_allowed_headers() {
        let p = StaticProperties::new();
        let req = Request::new(
            HeaderMap::from_pairs(
                [
                    (":method", "POST"),
                    (":path", "/a?b=1"),
                    (":authority", "shop"),
                    ("x-user", "u"),
                    ("cookie", "secret"),
                    ("authorization", "Bearer t"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            &p,
            PathOptions::default(),
        );
        let c = provider(serde_json::json!({})).check(&req);
        assert_eq!(c.cluster, "authz");
        assert_eq!(c.timeout, Duration::from_millis(250));
        let get = |n: &str| {
            c.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(":path"), Some("/check/a?b=1"));
        assert_eq!(get(":method"), Some("POST"));
        assert_eq!(get("x-user"), Some("u"));
        assert_eq!(get("authorization"), Some("Bearer t"));
        assert_eq!(get("cookie"), None);
    }

    #[test]
    fn verdicts_follow_status_and_failure_mode() {
        let p = provider(serde_json::json!({}));
        let ok = CalloutResult::Response {
            status: 200,
            headers: vec![
                ("x-authz-user".into(), "alice".into()),
                ("x-other".into(), "no".into()),
            ],
            body: Vec::new(),
        };
        assert_eq!(
            p.interpret(&ok),
            Verdict::Allow(vec![("x-authz-user".into(), "alice".into())])
        );
        let no = CalloutResult::Response {
            status: 401,
            headers: vec![("x-reason".into(), "expired".into())],
            body: b"nope".to_vec(),
        };
        let Verdict::Deny(reply) = p.interpret(&no) else {
            panic!()
        };
        assert_eq!((reply.status, reply.body.as_slice()), (401, &b"nope"[..]));
        assert_eq!(
            reply.headers,
            vec![("x-reason".to_string(), "expired".to_string())]
        );
        let Verdict::Deny(reply) = p.interpret(&CalloutResult::Failed) else {
            panic!()
        };
        assert_eq!(reply.status, 403);
        let open = provider(serde_json::json!({"failOpen": true}));
        assert_eq!(
            open.interpret(&CalloutResult::Failed),
            Verdict::Allow(Vec::new())
        );
        let status = provider(serde_json::json!({"statusOnError": "503"}));
        let Verdict::Deny(reply) = status.interpret(&CalloutResult::Failed) else {
            panic!()
        };
        assert_eq!(reply.status, 503);
    }
}
