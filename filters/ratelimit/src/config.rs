//! The rate limit's configuration, as written (snake_case, like Envoy's
//! `local_ratelimit`), and its validation into a runtime [`RateLimitConfig`].

use crate::bucket::Limit;
use crate::key::{KeyPart, KeySpec};
use crate::table::Table;
use wasmesh_sdk::config::{validate_list, ConfigError, FromJson};
use wasmesh_sdk::matcher::Template;
use wasmesh_sdk::names;
use wasmesh_sdk::{MatchConfig, PathOptions, Rules};

/// Envoy refuses shorter fill intervals; so do we, for the same reason (a fill per
/// request would make the bucket meaningless and the shared slot hot).
const MIN_FILL_INTERVAL_NS: u64 = 50_000_000;
const DEFAULT_MAX_KEYS: u32 = 10_000;
/// Bounds the slot table (and so shared memory) per rule.
const MAX_MAX_KEYS: u32 = 1_000_000;

#[derive(Debug, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct Config {
    /// Namespaces the shared-data keys, so two rate-limit filters in one VM id keep
    /// separate buckets.
    pub domain: String,
    /// Proxies in front of Envoy whose `x-forwarded-for` entries are trusted.
    pub xff_num_trusted_hops: u32,
    /// The limit of rules that have none; with no `rules`, one global limit.
    pub token_bucket: Option<TokenBucketConfig>,
    pub rules: Vec<RuleConfig>,
    /// Status of a limited request's reply.
    pub status: u16,
    /// Body of a limited request's reply.
    pub body: String,
    pub enable_x_ratelimit_headers: XRateLimitHeaders,
    /// Add `retry-after` to 429 replies.
    pub retry_after: bool,
    /// Count would-be rejections, reject nothing (every rule).
    pub shadow: bool,
    /// Default per-rule cap on keys tracked at once.
    pub max_keys: u32,
    pub on_table_full: OnTableFull,
    /// The header carrying the verified JWT payload (Envoy jwt_authn
    /// `forward_payload_header`), for `jwt_claim:` key parts.
    pub jwt_payload_header: String,
    pub path_normalization: PathOptions,
    /// The Envoy rate limit service that `global` rules ask.
    pub rate_limit_service: Option<RateLimitServiceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domain: "default".into(),
            xff_num_trusted_hops: 0,
            token_bucket: None,
            rules: Vec::new(),
            status: 429,
            body: "local_rate_limited".into(),
            enable_x_ratelimit_headers: XRateLimitHeaders::DraftVersion03,
            retry_after: true,
            shadow: false,
            max_keys: DEFAULT_MAX_KEYS,
            on_table_full: OnTableFull::OverflowBucket,
            jwt_payload_header: "x-jwt-payload".into(),
            path_normalization: PathOptions::default(),
            rate_limit_service: None,
        }
    }
}

/// Where and how `global` rules ask `envoy.service.ratelimit.v3.RateLimitService`
/// (field names as in Envoy's `envoy.filters.http.ratelimit`).
#[derive(Debug, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct RateLimitServiceConfig {
    /// The Envoy cluster (HTTP/2) the service is reached through.
    pub cluster: String,
    /// The service's domain; defaults to the filter's `domain`.
    pub domain: Option<String>,
    /// How long a request waits for the answer (Envoy's default: 20ms).
    pub timeout: String,
    /// Refuse requests when the service fails or times out (else let them through).
    pub failure_mode_deny: bool,
    /// The status of a request refused because the service failed.
    pub failure_status: u16,
}

impl Default for RateLimitServiceConfig {
    fn default() -> Self {
        Self {
            cluster: String::new(),
            domain: None,
            timeout: "20ms".into(),
            failure_mode_deny: false,
            failure_status: 500,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, FromJson)]
pub enum XRateLimitHeaders {
    #[config(rename = "OFF")]
    Off,
    #[config(rename = "DRAFT_VERSION_03")]
    DraftVersion03,
}

/// What a key gets when its rule's table has no slot for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromJson)]
#[config(rename_all = "snake_case")]
pub enum OnTableFull {
    /// Share one extra bucket (with the rule's limit) among all such keys.
    OverflowBucket,
    /// Let the request through, unlimited.
    Allow,
    /// Reject the request.
    Deny,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct TokenBucketConfig {
    pub max_tokens: u64,
    #[config(default = "one")]
    pub tokens_per_fill: u64,
    /// `1s`, `0.5s`, `250ms`, `1m`, `1h`.
    pub fill_interval: String,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[config(rename = "match")]
    pub matches: MatchConfig,
    /// Key parts; empty means one bucket for every request the rule matches.
    pub key: Vec<String>,
    /// Templates for the `path_template` key part.
    pub path_templates: Vec<String>,
    pub token_bucket: Option<TokenBucketConfig>,
    pub shadow: Option<bool>,
    pub max_keys: Option<u32>,
    /// Ask the rate limit service instead of a local bucket: the rule's key parts
    /// become one descriptor, and the service holds the limit for every Envoy.
    pub global: bool,
}

// ---- runtime ----

#[derive(Debug)]
pub struct RateLimitConfig {
    pub rules: Rules<Rule>,
    pub status: u16,
    pub body: String,
    pub x_ratelimit_headers: bool,
    pub retry_after: bool,
    pub on_table_full: OnTableFull,
    pub xff_num_trusted_hops: u32,
    pub jwt_payload_header: String,
    pub path_options: PathOptions,
    /// Set when any rule is global.
    pub service: Option<RateLimitService>,
}

#[derive(Debug)]
pub struct RateLimitService {
    pub cluster: String,
    pub domain: String,
    pub timeout: std::time::Duration,
    pub failure_mode_deny: bool,
    pub failure_status: u16,
}

/// Where a rule's limit lives.
#[derive(Debug)]
pub enum RuleLimit {
    /// A token bucket per key in shared data (exact per Envoy).
    Local { table: Table, overflow: Table },
    /// The rate limit service's counter for the rule's descriptor.
    Global,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub key: KeySpec,
    pub limit: RuleLimit,
    pub shadow: bool,
}

impl Config {
    pub fn validate(self) -> Result<RateLimitConfig, ConfigError> {
        names::rule_name(&self.domain).map_err(|e| e.within("domain"))?;
        if !(400..=599).contains(&self.status) {
            return Err(ConfigError::at("status", "must be 400-599"));
        }
        // Used as written: lower case, as the request's header map holds names.
        if !names::is_lower_case_header_name(&self.jwt_payload_header) {
            return Err(
                names::invalid_header_name(&self.jwt_payload_header).within("jwt_payload_header")
            );
        }
        max_keys(self.max_keys).map_err(|e| e.within("max_keys"))?;
        let default_limit = self
            .token_bucket
            .as_ref()
            .map(|b| b.validate().map_err(|e| e.within("token_bucket")))
            .transpose()?;
        let service = self
            .rate_limit_service
            .map(|s| s.validate(&self.domain))
            .transpose()
            .map_err(|e| e.within("rate_limit_service"))?;
        let mut rule_configs = self.rules;
        if let Some(i) = rule_configs.iter().position(|r| r.global) {
            if service.is_none() {
                return Err(ConfigError::at(
                    format!("rules[{i}].global"),
                    "a global rule needs `rate_limit_service`",
                ));
            }
        }
        if rule_configs.is_empty() {
            if default_limit.is_none() {
                return Err(ConfigError::at(
                    "",
                    "set `token_bucket` (one global limit) or `rules`",
                ));
            }
            rule_configs.push(RuleConfig {
                name: "default".into(),
                ..RuleConfig::default()
            });
        }
        names::unique_rule_names("rules", rule_configs.iter().map(|r| r.name.as_str()))?;
        let domain = self.domain;
        let (shadow, default_max_keys) = (self.shadow, self.max_keys);
        let rules = Rules::compile(
            "rules",
            &rule_configs,
            |r| &r.matches,
            |r| r.validate(&domain, default_limit, shadow, default_max_keys),
        )?;
        Ok(RateLimitConfig {
            rules,
            status: self.status,
            body: self.body,
            x_ratelimit_headers: self.enable_x_ratelimit_headers
                == XRateLimitHeaders::DraftVersion03,
            retry_after: self.retry_after,
            on_table_full: self.on_table_full,
            xff_num_trusted_hops: self.xff_num_trusted_hops,
            jwt_payload_header: self.jwt_payload_header,
            path_options: self.path_normalization,
            service,
        })
    }
}

impl RuleConfig {
    fn validate(
        &self,
        domain: &str,
        default_limit: Option<Limit>,
        shadow: bool,
        default_max_keys: u32,
    ) -> Result<Rule, ConfigError> {
        names::rule_name(&self.name).map_err(|e| e.within("name"))?;
        let templates = validate_list("path_templates", &self.path_templates, |t| {
            Template::parse(t).map(|parsed| (t.clone(), parsed))
        })?;
        let parts = validate_list("key", &self.key, |k| KeyPart::parse(k))?;
        if parts.contains(&KeyPart::PathTemplate) && templates.is_empty() {
            return Err(ConfigError::at(
                "path_templates",
                "the `path_template` key part needs at least one template",
            ));
        }
        let key = KeySpec { parts, templates };
        let shadow = self.shadow.unwrap_or(shadow);
        if self.global {
            // The service holds the limit: a bucket or table here would be ignored.
            if self.token_bucket.is_some() {
                return Err(ConfigError::at(
                    "token_bucket",
                    "a global rule's limit is set in the rate limit service",
                ));
            }
            if self.max_keys.is_some() {
                return Err(ConfigError::at("max_keys", "not used by a global rule"));
            }
            return Ok(Rule {
                name: self.name.clone(),
                key,
                limit: RuleLimit::Global,
                shadow,
            });
        }
        let limit = match &self.token_bucket {
            Some(b) => b.validate().map_err(|e| e.within("token_bucket"))?,
            None => default_limit.ok_or_else(|| {
                ConfigError::at("token_bucket", "missing: set it here or at the top level")
            })?,
        };
        let slots = max_keys(self.max_keys.unwrap_or(default_max_keys))
            .map_err(|e| e.within("max_keys"))?;
        let table = Table {
            prefix: wasmesh_sdk::shared::key("ratelimit", &format!("{domain}/{}", self.name)),
            slots,
            limit,
        };
        Ok(Rule {
            name: self.name.clone(),
            key,
            limit: RuleLimit::Local {
                overflow: table.overflow(),
                table,
            },
            shadow,
        })
    }
}

impl RateLimitServiceConfig {
    fn validate(self, filter_domain: &str) -> Result<RateLimitService, ConfigError> {
        if self.cluster.is_empty() {
            return Err(ConfigError::at(
                "cluster",
                "name the Envoy cluster of the service",
            ));
        }
        let domain = self.domain.unwrap_or_else(|| filter_domain.to_string());
        if domain.is_empty() {
            return Err(ConfigError::at("domain", "must not be empty"));
        }
        let timeout_ns =
            wasmesh_sdk::duration::parse_nanos(&self.timeout).map_err(|e| e.within("timeout"))?;
        // Envoy takes the timeout in whole milliseconds; zero would mean "none".
        if !(1_000_000..=60_000_000_000).contains(&timeout_ns) {
            return Err(ConfigError::at("timeout", "must be 1ms-60s"));
        }
        if !(400..=599).contains(&self.failure_status) {
            return Err(ConfigError::at("failure_status", "must be 400-599"));
        }
        Ok(RateLimitService {
            cluster: self.cluster,
            domain,
            timeout: std::time::Duration::from_nanos(timeout_ns),
            failure_mode_deny: self.failure_mode_deny,
            failure_status: self.failure_status,
        })
    }
}

impl TokenBucketConfig {
    fn validate(&self) -> Result<Limit, ConfigError> {
        if self.max_tokens == 0 {
            return Err(ConfigError::at("max_tokens", "must be at least 1"));
        }
        if self.tokens_per_fill == 0 {
            return Err(ConfigError::at("tokens_per_fill", "must be at least 1"));
        }
        let fill_interval_ns = wasmesh_sdk::duration::parse_nanos(&self.fill_interval)
            .map_err(|e| e.within("fill_interval"))?;
        if fill_interval_ns < MIN_FILL_INTERVAL_NS {
            return Err(ConfigError::at(
                "fill_interval",
                "must be at least 50ms (as in Envoy)",
            ));
        }
        Ok(Limit {
            max_tokens: self.max_tokens,
            tokens_per_fill: self.tokens_per_fill,
            fill_interval_ns,
        })
    }
}

fn max_keys(n: u32) -> Result<u32, ConfigError> {
    if (1..=MAX_MAX_KEYS).contains(&n) {
        Ok(n)
    } else {
        Err(ConfigError::at("", format!("must be 1-{MAX_MAX_KEYS}")))
    }
}
