//! The authz filter's configuration as written. Field names follow Istio's YAML
//! (camelCase), so the `spec` of an AuthorizationPolicy or a RequestAuthentication
//! pastes in as JSON; what Istio has no field for (API keys, basic auth, the Envoy
//! cluster of a remote JWKS) is added under names in the same style.
//! Validation into runtime types lives beside each feature ([`crate::policy`],
//! [`crate::jwt`], [`crate::consumers`], [`crate::extauthz`]).

use std::collections::BTreeMap;
use std::time::Duration;
use wasmesh_sdk::config::{ConfigError, FromJson, Json};
use wasmesh_sdk::PathOptions;

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// AuthorizationPolicies, each with a `name` (used in metrics, logs and replies).
    pub policies: Vec<PolicyConfig>,
    /// RequestAuthentication `jwtRules`.
    pub jwt_rules: Vec<JwtRuleConfig>,
    pub api_keys: Option<ApiKeysConfig>,
    pub basic_auth: Option<BasicAuthConfig>,
    /// Istio mesh config `extensionProviders` (only `envoyExtAuthzHttp` is supported),
    /// named by CUSTOM policies' `provider.name`.
    pub extension_providers: Vec<ExtensionProviderConfig>,
    /// Proxies in front of this one whose `x-forwarded-for` entry is trusted
    /// (Istio's `numTrustedProxies`); decides `remoteIpBlocks`.
    pub xff_num_trusted_hops: u32,
    /// Allowed clock difference for `exp`, `nbf` and `iat` (Envoy: 60 s).
    pub clock_skew_seconds: Option<u64>,
    /// Status for a denied request that carried no credential at all, when any
    /// authentication is configured: 401 (default, with `www-authenticate`) or 403
    /// (exactly Istio's behaviour).
    pub missing_credential_status: Option<u16>,
    /// Verified tokens kept, so a repeated token costs a hash lookup (0 disables).
    pub token_cache_size: Option<usize>,
    /// Request headers larger than this (names plus values, bytes) get 431.
    pub max_request_headers_bytes: Option<usize>,
    /// A token longer than this is refused unparsed (401).
    pub max_token_bytes: Option<usize>,
    /// `realm` of `www-authenticate` challenges.
    pub realm: Option<String>,
    pub path_normalization: PathOptions,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyConfig {
    pub name: String,
    /// ALLOW (default, as in Istio), DENY, AUDIT or CUSTOM.
    pub action: Option<String>,
    /// For CUSTOM: which extension provider decides.
    pub provider: Option<ProviderRef>,
    /// No `rules` means the policy matches nothing (an ALLOW of nothing denies all).
    pub rules: Option<Vec<RuleConfig>>,
    /// Istio's `istio.io/dry-run` annotation: evaluated and counted, not enforced.
    pub dry_run: bool,
    /// Istio's `selector` and `targetRefs` pick workloads; here the filter is the
    /// workload, so they are accepted and ignored.
    pub selector: Option<Json>,
    pub target_refs: Option<Json>,
}

#[derive(Debug, Default, FromJson)]
#[config(deny_unknown_fields)]
pub struct ProviderRef {
    pub name: String,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct RuleConfig {
    pub from: Vec<FromConfig>,
    pub to: Vec<ToConfig>,
    pub when: Vec<ConditionConfig>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct FromConfig {
    pub source: SourceConfig,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct ToConfig {
    pub operation: OperationConfig,
}

/// `from.source`: every field present must hold; a list holds when any entry does.
#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceConfig {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
    /// Extension: API-key or basic-auth consumer names.
    pub consumers: Vec<String>,
    pub not_consumers: Vec<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationConfig {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ConditionConfig {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

/// A RequestAuthentication `jwtRules` entry.
#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtRuleConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Inline JWKS: a JSON string (as in Istio) or the JSON object itself.
    pub jwks: Option<Json>,
    /// Remote JWKS, fetched through `cluster`; the URI gives `:authority` and `:path`.
    pub jwks_uri: Option<String>,
    /// Extension: the Envoy cluster that serves `jwksUri`.
    pub cluster: Option<String>,
    /// Fetch timeout, Istio duration syntax (`5s`, `500ms`); default 5 s.
    pub timeout: Option<String>,
    /// Extension: how long fetched keys are used before a refetch; default `300s`.
    pub jwks_refresh_interval: Option<String>,
    /// Extension: status while no keys could be fetched yet; 503 (default) or 401.
    pub jwks_unavailable_status: Option<u16>,
    /// Extension: after a failed fetch, requests do not refetch for this long; default `5s`.
    pub jwks_retry_interval: Option<String>,
    pub from_headers: Vec<JwtHeaderConfig>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    pub output_payload_to_header: Option<String>,
    pub output_claim_to_headers: Vec<ClaimToHeaderConfig>,
    pub forward_original_token: bool,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct JwtHeaderConfig {
    pub name: String,
    pub prefix: String,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct ClaimToHeaderConfig {
    pub header: String,
    pub claim: String,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeysConfig {
    /// Where keys are read from; default the `x-api-key` header.
    pub from_headers: Vec<String>,
    pub from_params: Vec<String>,
    pub consumers: Vec<ApiKeyConsumerConfig>,
    /// Keep the key header on the upstream request (removed by default).
    pub forward_key: bool,
    /// Request header carrying the consumer name upstream; default `x-wasmesh-consumer`.
    pub consumer_header: Option<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeyConsumerConfig {
    pub name: String,
    /// The key in clear, or its SHA-256 in hex (`keySha256`) to keep it out of config.
    pub key: Option<String>,
    pub key_sha256: Option<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthConfig {
    pub consumers: Vec<BasicConsumerConfig>,
    /// Request header carrying the consumer name upstream; default `x-wasmesh-consumer`.
    pub consumer_header: Option<String>,
    /// Keep the `authorization` header upstream (removed by default).
    pub forward_credentials: bool,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicConsumerConfig {
    pub username: String,
    pub password: Option<String>,
    /// SHA-256 of the password, hex.
    pub password_sha256: Option<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtensionProviderConfig {
    pub name: String,
    pub envoy_ext_authz_http: Option<ExtAuthzHttpConfig>,
}

/// Istio's `envoyExtAuthzHttp` provider, with `cluster` in place of `service`/`port`.
#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtAuthzHttpConfig {
    pub cluster: String,
    /// Accepted for paste compatibility; `cluster` decides where calls go.
    pub service: Option<String>,
    pub port: Option<u16>,
    /// Default `0.6s` (Istio's).
    pub timeout: Option<String>,
    pub path_prefix: String,
    /// Envoy's `failure_mode_allow`: let requests through when the service fails.
    #[config(alias = "failureModeAllow")]
    pub fail_open: bool,
    /// Status when the service fails and `failOpen` is off; default 403.
    pub status_on_error: Option<String>,
    /// Request headers sent to the service (besides `:method`, `:path`, `:authority`).
    pub include_request_headers_in_check: Vec<String>,
    /// Extra headers sent to the service, fixed values.
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Service response headers copied onto the upstream request when allowed.
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Service response headers copied onto the denial sent downstream.
    pub headers_to_downstream_on_deny: Vec<String>,
}

/// A duration field as Istio writes it (`5s`, `0.6s`, `500ms`, `2m`, `1h`), or
/// `default` when it is left out.
pub fn duration_or(
    field: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    text.map_or(Ok(default), |t| {
        wasmesh_sdk::duration::parse(t).map_err(|e| e.within(field))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_istio_syntax() {
        let second = Duration::from_secs(1);
        assert_eq!(
            duration_or("t", Some("0.6s"), second),
            Ok(Duration::from_millis(600))
        );
        assert_eq!(
            duration_or("t", Some("500ms"), second),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            duration_or("t", Some("2m"), second),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(duration_or("t", None, second), Ok(second));
        assert!(duration_or("t", Some("5"), second).is_err());
        assert_eq!(
            duration_or("t", Some("-1s"), second)
                .unwrap_err()
                .to_string(),
            "t: `-1s` is not a duration like `1s`, `0.5s` or `250ms`"
        );
    }

    #[test]
    fn istio_spec_pastes_in() {
        let c: Config = wasmesh_sdk::config::parse(
            br#"{"policies":[{"name":"p","action":"ALLOW","selector":{"matchLabels":{"app":"x"}},
                 "rules":[{"from":[{"source":{"principals":["cluster.local/ns/a/sa/b"]}}],
                           "to":[{"operation":{"methods":["GET"],"paths":["/info*"]}}],
                           "when":[{"key":"request.auth.claims[iss]","values":["https://a"]}]}]}],
                 "jwtRules":[{"issuer":"https://a","jwksUri":"https://a/jwks","cluster":"idp",
                              "fromHeaders":[{"name":"x-jwt","prefix":"Bearer "}],
                              "outputClaimToHeaders":[{"header":"x-sub","claim":"sub"}]}]}"#,
        )
        .unwrap();
        assert_eq!(c.policies[0].rules.as_ref().unwrap().len(), 1);
        assert_eq!(c.jwt_rules[0].from_headers[0].prefix, "Bearer ");
    }
}
