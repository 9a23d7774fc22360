//! The cors filter's configuration as written: Istio's `corsPolicy` in its YAML's
//! camelCase, so a VirtualService route's policy pastes in as JSON, once for every
//! request (`corsPolicy`) and per route (`rules[i]`, the SDK's `match`, first match
//! wins), and its validation into a runtime [`CorsConfig`].

use crate::origin::OriginMatch;
use wasmesh_sdk::config::{validate_list, ConfigError, FromJson};
use wasmesh_sdk::names::{invalid_header_name, is_header_name, is_tchar};
use wasmesh_sdk::{MatchConfig, PathOptions, Rules};

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The policy of requests no rule matches; absent, those get no CORS handling.
    pub cors_policy: Option<PolicyConfig>,
    /// Per-route policies: the first rule whose `match` holds decides.
    pub rules: Vec<RuleConfig>,
    pub path_normalization: PathOptions,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleConfig {
    #[config(rename = "match")]
    pub matches: MatchConfig,
    pub cors_policy: PolicyConfig,
}

/// Istio's CorsPolicy (its deprecated `allowOrigin` list of plain strings is not taken).
#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyConfig {
    pub allow_origins: Vec<StringMatchConfig>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    /// A duration (`24h`, `600s`); sent as whole seconds.
    pub max_age: Option<String>,
    pub allow_credentials: Option<bool>,
    /// Istio's `unmatchedPreflights`: `FORWARD` (default) or `IGNORE`.
    pub unmatched_preflights: Option<String>,
}

/// Istio's StringMatch: exactly one of the three.
#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct StringMatchConfig {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

// ---- runtime ----

/// The validated configuration: policies, and which one a request gets.
#[derive(Debug)]
pub struct CorsConfig {
    /// Every policy; a rule (or the default) names one by index.
    pub policies: Vec<Policy>,
    pub rules: Rules<usize>,
    pub default: Option<usize>,
    pub path_options: PathOptions,
}

/// What happens to a preflight whose origin no entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Passed on to the upstream, untouched (Istio's default).
    Forward,
    /// Answered here with 200 and no CORS headers (the browser then refuses).
    Ignore,
}

/// A list header's value: a fixed list, or `*` (the preflight's own request echoed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListValue {
    Fixed(String),
    EchoRequest,
}

#[derive(Debug)]
pub struct Policy {
    pub origins: Vec<OriginMatch>,
    pub allow_methods: Option<ListValue>,
    pub allow_headers: Option<ListValue>,
    pub expose_headers: Option<String>,
    /// Seconds, as sent in `access-control-max-age`.
    pub max_age: Option<String>,
    pub allow_credentials: bool,
    pub unmatched_preflights: Unmatched,
}

impl Policy {
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|m| m.allows(origin))
    }
}

impl Config {
    pub fn validate(self) -> Result<CorsConfig, ConfigError> {
        let mut policies = Vec::with_capacity(self.rules.len() + 1);
        let rules = Rules::compile(
            "rules",
            &self.rules,
            |r| &r.matches,
            |r| {
                policies.push(
                    r.cors_policy
                        .validate()
                        .map_err(|e| e.within("corsPolicy"))?,
                );
                Ok(policies.len() - 1)
            },
        )?;
        let default = match &self.cors_policy {
            Some(p) => {
                policies.push(p.validate().map_err(|e| e.within("corsPolicy"))?);
                Some(policies.len() - 1)
            }
            None => None,
        };
        Ok(CorsConfig {
            policies,
            rules,
            default,
            path_options: self.path_normalization,
        })
    }
}

impl PolicyConfig {
    fn validate(&self) -> Result<Policy, ConfigError> {
        let origins = validate_list("allowOrigins", &self.allow_origins, |m| {
            OriginMatch::compile(m.exact.as_deref(), m.prefix.as_deref(), m.regex.as_deref())
        })?;
        let methods = validate_list("allowMethods", &self.allow_methods, |m| {
            if m == "*" || (!m.is_empty() && m.bytes().all(is_tchar)) {
                Ok(m.clone())
            } else {
                Err(ConfigError::at("", format!("`{m}` is not an HTTP method")))
            }
        })?;
        let header_list = |field: &str, items: &[String]| {
            validate_list(field, items, |h| {
                if h == "*" || is_header_name(h) {
                    Ok(h.clone())
                } else {
                    Err(invalid_header_name(h))
                }
            })
        };
        let allow_headers = header_list("allowHeaders", &self.allow_headers)?;
        let expose_headers = header_list("exposeHeaders", &self.expose_headers)?;
        let max_age = self
            .max_age
            .as_deref()
            .map(|d| {
                wasmesh_sdk::duration::parse_nanos(d)
                    .map(|ns| (ns / 1_000_000_000).to_string())
                    .map_err(|e| e.within("maxAge"))
            })
            .transpose()?;
        let unmatched_preflights = match self.unmatched_preflights.as_deref() {
            None | Some("FORWARD") | Some("UNSPECIFIED") => Unmatched::Forward,
            Some("IGNORE") => Unmatched::Ignore,
            Some(other) => {
                return Err(ConfigError::at(
                    "unmatchedPreflights",
                    format!("`{other}`: expected FORWARD or IGNORE"),
                ))
            }
        };
        Ok(Policy {
            origins,
            allow_methods: list_value(&methods),
            allow_headers: list_value(&allow_headers),
            expose_headers: (!expose_headers.is_empty()).then(|| expose_headers.join(",")),
            max_age,
            allow_credentials: self.allow_credentials.unwrap_or(false),
            unmatched_preflights,
        })
    }
}

/// Istio joins the list with commas; a list of just `*` echoes the request, as Envoy
/// does for the value `*`.
fn list_value(items: &[String]) -> Option<ListValue> {
    match items {
        [] => None,
        [star] if star == "*" => Some(ListValue::EchoRequest),
        _ => Some(ListValue::Fixed(items.join(","))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(json: &str) -> Result<CorsConfig, ConfigError> {
        wasmesh_sdk::config::parse::<Config>(json.as_bytes()).and_then(Config::validate)
    }

    fn refusal(json: &str) -> String {
        match validate(json) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_istio_policy_reads_as_written() {
        let cfg = validate(
            r#"{"corsPolicy":{"allowOrigins":[{"exact":"https://a.example"},{"prefix":"https://b."},{"regex":"https://.*\\.c\\.example"}],
                "allowMethods":["GET","POST"],"allowHeaders":["x-a","content-type"],"exposeHeaders":["x-b"],
                "maxAge":"24h","allowCredentials":true}}"#,
        )
        .unwrap();
        let p = &cfg.policies[cfg.default.unwrap()];
        assert_eq!(p.origins.len(), 3);
        assert_eq!(p.allow_methods, Some(ListValue::Fixed("GET,POST".into())));
        assert_eq!(
            p.allow_headers,
            Some(ListValue::Fixed("x-a,content-type".into()))
        );
        assert_eq!(p.expose_headers.as_deref(), Some("x-b"));
        assert_eq!(p.max_age.as_deref(), Some("86400"));
        assert!(p.allow_credentials);
        assert_eq!(p.unmatched_preflights, Unmatched::Forward);
    }

    #[test]
    fn no_default_policy_and_star_lists() {
        let cfg = validate(
            r#"{"rules":[{"match":{"path":{"prefix":"/api"}},"corsPolicy":{"allowMethods":["*"],"allowHeaders":["*"],"unmatchedPreflights":"IGNORE"}}]}"#,
        )
        .unwrap();
        assert!(cfg.default.is_none());
        assert_eq!(cfg.rules.len(), 1);
        let p = &cfg.policies[0];
        assert_eq!(p.allow_methods, Some(ListValue::EchoRequest));
        assert_eq!(p.allow_headers, Some(ListValue::EchoRequest));
        assert_eq!(p.unmatched_preflights, Unmatched::Ignore);
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            refusal(r#"{"corsPolicy":{"allowOrigins":[{}]}}"#),
            "corsPolicy.allowOrigins[0]: set exactly one of `exact`, `prefix`, `regex`"
        );
        assert!(
            refusal(r#"{"rules":[{"corsPolicy":{"allowOrigins":[{"regex":"("}]}}]}"#)
                .starts_with("rules[0].corsPolicy.allowOrigins[0].regex: invalid regex")
        );
        assert_eq!(
            refusal(r#"{"corsPolicy":{"allowMethods":["GET POST"]}}"#),
            "corsPolicy.allowMethods[0]: `GET POST` is not an HTTP method"
        );
        assert!(refusal(r#"{"corsPolicy":{"allowHeaders":["x a"]}}"#)
            .starts_with("corsPolicy.allowHeaders[0]:"));
        assert!(refusal(r#"{"corsPolicy":{"exposeHeaders":["x\r\ny"]}}"#)
            .starts_with("corsPolicy.exposeHeaders[0]:"));
        assert!(refusal(r#"{"corsPolicy":{"maxAge":"soon"}}"#).starts_with("corsPolicy.maxAge:"));
        assert_eq!(
            refusal(r#"{"corsPolicy":{"unmatchedPreflights":"DROP"}}"#),
            "corsPolicy.unmatchedPreflights: `DROP`: expected FORWARD or IGNORE"
        );
        assert!(refusal(r#"{"corsPolicy":{"allowOrigin":["*"]}}"#)
            .contains("unknown field `allowOrigin`"));
        assert!(refusal(r#"{"rules":[{"match":{"path":{"regex":"("}}}]}"#)
            .starts_with("rules[0].match.path.regex:"));
    }
}
