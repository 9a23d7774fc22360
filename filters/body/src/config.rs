//! The body filter's configuration as written (camelCase, as the mesh file's other
//! route-level fields): a default policy (`limit`, `json`) and per-route `rules[i]`
//! (the SDK's `match`, first match wins), validated into a runtime [`BodyConfig`].

use crate::pointer::Pointer;
use crate::transform::{Edit, Transform};
use wasmesh_sdk::config::{validate_list, ConfigError, FromJson, Json};
use wasmesh_sdk::{MatchConfig, PathOptions, Rules};

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The policy of requests no rule matches.
    pub limit: Option<LimitConfig>,
    pub json: Option<JsonConfig>,
    pub rules: Vec<RuleConfig>,
    pub path_normalization: PathOptions,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleConfig {
    #[config(rename = "match")]
    pub matches: MatchConfig,
    pub limit: Option<LimitConfig>,
    pub json: Option<JsonConfig>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitConfig {
    pub max_request_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
    /// The answer to a request over the limit: 413 and Envoy's words by default.
    pub status: Option<u16>,
    pub body: Option<String>,
    /// `REPLY` (default): a response whose content-length is over becomes
    /// `responseStatus` (502); one counted over mid-body is reset. `RESET`: always reset.
    pub response_over_limit: Option<String>,
    pub response_status: Option<u16>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct JsonConfig {
    pub request: Option<TransformConfig>,
    pub response: Option<TransformConfig>,
    /// Bodies longer than this are not buffered (default 64 KiB).
    pub max_bytes: Option<u64>,
    /// `PASS` (default): a longer body goes on untouched. `REJECT`: 413 (request);
    /// a response is 502 if its content-length is over, reset if found over mid-body.
    pub over_max_bytes: Option<String>,
    /// `PASS` (default): a body that is not JSON goes on untouched. `REJECT`: 400
    /// (request); a response is reset (its headers went on before the body).
    pub malformed: Option<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct TransformConfig {
    pub remove: Vec<String>,
    pub rename: Vec<RenameConfig>,
    pub set: Vec<SetConfig>,
}

#[derive(Debug, Default, FromJson)]
#[config(deny_unknown_fields)]
pub struct RenameConfig {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Default, FromJson)]
#[config(deny_unknown_fields)]
pub struct SetConfig {
    pub pointer: String,
    pub value: Json,
}

// ---- runtime ----

pub const DEFAULT_MAX_JSON_BYTES: u64 = 64 * 1024;

#[derive(Debug)]
pub struct BodyConfig {
    pub policies: Vec<Policy>,
    pub rules: Rules<usize>,
    pub default: Option<usize>,
    pub path_options: PathOptions,
}

#[derive(Debug, Default)]
pub struct Policy {
    pub limit: Option<Limit>,
    pub json: Option<JsonPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseOverLimit {
    Reply,
    Reset,
}

#[derive(Debug)]
pub struct Limit {
    pub max_request: Option<u64>,
    pub max_response: Option<u64>,
    pub status: u16,
    pub body: String,
    pub response_over_limit: ResponseOverLimit,
    pub response_status: u16,
}

/// What to do with a body the rewrite cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Pass,
    Reject,
}

#[derive(Debug)]
pub struct JsonPolicy {
    pub request: Option<Transform>,
    pub response: Option<Transform>,
    pub max_bytes: u64,
    pub over_max_bytes: Refusal,
    pub malformed: Refusal,
}

impl Config {
    pub fn validate(self) -> Result<BodyConfig, ConfigError> {
        let mut policies = Vec::with_capacity(self.rules.len() + 1);
        let rules = Rules::compile(
            "rules",
            &self.rules,
            |r| &r.matches,
            |r| {
                policies.push(policy(r.limit.as_ref(), r.json.as_ref())?);
                Ok(policies.len() - 1)
            },
        )?;
        let default = if self.limit.is_some() || self.json.is_some() {
            policies.push(policy(self.limit.as_ref(), self.json.as_ref())?);
            Some(policies.len() - 1)
        } else {
            None
        };
        Ok(BodyConfig {
            policies,
            rules,
            default,
            path_options: self.path_normalization,
        })
    }
}

fn policy(limit: Option<&LimitConfig>, json: Option<&JsonConfig>) -> Result<Policy, ConfigError> {
    Ok(Policy {
        limit: limit
            .map(|l| l.validate().map_err(|e| e.within("limit")))
            .transpose()?,
        json: json
            .map(|j| j.validate().map_err(|e| e.within("json")))
            .transpose()?,
    })
}

fn status(field: &str, value: Option<u16>, default: u16) -> Result<u16, ConfigError> {
    match value.unwrap_or(default) {
        s @ 200..=599 => Ok(s),
        s => Err(ConfigError::at(
            field,
            format!("{s} is not an HTTP status (200-599)"),
        )),
    }
}

impl LimitConfig {
    fn validate(&self) -> Result<Limit, ConfigError> {
        if self.max_request_bytes.is_none() && self.max_response_bytes.is_none() {
            return Err(ConfigError::at(
                "",
                "set maxRequestBytes, maxResponseBytes or both",
            ));
        }
        let response_over_limit = match self.response_over_limit.as_deref() {
            None | Some("REPLY") => ResponseOverLimit::Reply,
            Some("RESET") => ResponseOverLimit::Reset,
            Some(other) => {
                return Err(ConfigError::at(
                    "responseOverLimit",
                    format!("`{other}`: expected REPLY or RESET"),
                ))
            }
        };
        Ok(Limit {
            max_request: self.max_request_bytes,
            max_response: self.max_response_bytes,
            status: status("status", self.status, 413)?,
            body: self
                .body
                .clone()
                .unwrap_or_else(|| "Payload Too Large".to_string()),
            response_over_limit,
            response_status: status("responseStatus", self.response_status, 502)?,
        })
    }
}

fn refusal(field: &str, value: Option<&str>) -> Result<Refusal, ConfigError> {
    match value {
        None | Some("PASS") => Ok(Refusal::Pass),
        Some("REJECT") => Ok(Refusal::Reject),
        Some(other) => Err(ConfigError::at(
            field,
            format!("`{other}`: expected PASS or REJECT"),
        )),
    }
}

impl JsonConfig {
    fn validate(&self) -> Result<JsonPolicy, ConfigError> {
        let side = |field: &str, t: &Option<TransformConfig>| {
            t.as_ref()
                .map(|t| t.validate().map_err(|e| e.within(field)))
                .transpose()
        };
        let request = side("request", &self.request)?;
        let response = side("response", &self.response)?;
        if request.is_none() && response.is_none() {
            return Err(ConfigError::at("", "set request, response or both"));
        }
        let max_bytes = self.max_bytes.unwrap_or(DEFAULT_MAX_JSON_BYTES);
        if max_bytes == 0 {
            return Err(ConfigError::at("maxBytes", "must be at least 1"));
        }
        Ok(JsonPolicy {
            request,
            response,
            max_bytes,
            over_max_bytes: refusal("overMaxBytes", self.over_max_bytes.as_deref())?,
            malformed: refusal("malformed", self.malformed.as_deref())?,
        })
    }
}

impl TransformConfig {
    fn validate(&self) -> Result<Transform, ConfigError> {
        let pointer = |p: &String| Pointer::parse(p);
        let mut edits = validate_list("remove", &self.remove, |p| pointer(p).map(Edit::Remove))?;
        edits.extend(validate_list("rename", &self.rename, |r| {
            let from = Pointer::parse(&r.from).map_err(|e| e.within("from"))?;
            let to = Pointer::parse(&r.to).map_err(|e| e.within("to"))?;
            if from.contains(&to) {
                return Err(ConfigError::at("to", "must not lie inside `from`"));
            }
            Ok(Edit::Rename(from, to))
        })?);
        edits.extend(validate_list("set", &self.set, |s| {
            let to = Pointer::parse(&s.pointer).map_err(|e| e.within("pointer"))?;
            Ok(Edit::Set(to, serde_json::Value::from(s.value.clone())))
        })?);
        if edits.is_empty() {
            return Err(ConfigError::at(
                "",
                "list at least one remove, rename or set",
            ));
        }
        Ok(Transform { edits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(json: &str) -> Result<BodyConfig, ConfigError> {
        wasmesh_sdk::config::parse::<Config>(json.as_bytes()).and_then(Config::validate)
    }

    fn err(json: &str) -> String {
        validate(json).err().unwrap().to_string()
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(err(r#"{"limit":{}}"#).starts_with("limit: set maxRequestBytes"));
        assert!(err(r#"{"limit":{"maxRequestBytes":1,"status":99}}"#).starts_with("limit.status"));
        assert!(
            err(r#"{"limit":{"maxRequestBytes":1,"responseOverLimit":"DROP"}}"#)
                .starts_with("limit.responseOverLimit")
        );
        assert!(
            err(r#"{"json":{"request":{"remove":["a"]}}}"#).starts_with("json.request.remove[0]")
        );
        assert!(
            err(r#"{"json":{"request":{"rename":[{"from":"/a","to":"/a/b"}]}}}"#)
                .starts_with("json.request.rename[0].to")
        );
        assert!(err(r#"{"json":{"request":{}}}"#).starts_with("json.request: list at least one"));
        assert!(
            err(r#"{"json":{"request":{"remove":["/a"]},"malformed":"DROP"}}"#)
                .starts_with("json.malformed")
        );
        assert!(
            err(r#"{"json":{"response":{"remove":["/a"]},"maxBytes":0}}"#)
                .starts_with("json.maxBytes")
        );
        assert!(err(r#"{"rules":[{"match":{},"json":{}}]}"#).starts_with("rules[0].json"));
        assert!(err(r#"{"limits":{}}"#).contains("limits"));
    }

    #[test]
    fn defaults_are_envoys() {
        let cfg =
            validate(r#"{"limit":{"maxRequestBytes":10},"json":{"response":{"remove":["/a"]}}}"#)
                .unwrap();
        let policy = &cfg.policies[cfg.default.unwrap()];
        let limit = policy.limit.as_ref().unwrap();
        assert_eq!(
            (limit.status, limit.body.as_str()),
            (413, "Payload Too Large")
        );
        assert_eq!(limit.response_over_limit, ResponseOverLimit::Reply);
        let json = policy.json.as_ref().unwrap();
        assert_eq!(json.max_bytes, DEFAULT_MAX_JSON_BYTES);
        assert_eq!(
            (json.over_max_bytes, json.malformed),
            (Refusal::Pass, Refusal::Pass)
        );
    }
}
