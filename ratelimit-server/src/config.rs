//! The service's configuration, shaped like envoyproxy/ratelimit's YAML: a domain
//! and a tree of descriptors, each matched by key (and, optionally, value), each
//! node with an optional `rate_limit`. One file per domain; pass several files for
//! several domains.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub domain: String,
    #[serde(default)]
    pub descriptors: Vec<DescriptorConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorConfig {
    pub key: String,
    /// Matches only this value; without it, each distinct value has its own counter.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub descriptors: Vec<DescriptorConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub unit: Unit,
    pub requests_per_unit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
}

impl Unit {
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
            Unit::Week => 604_800,
        }
    }

    /// The `RateLimit.Unit` wire value.
    pub fn wire(self) -> i32 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 2,
            Unit::Hour => 3,
            Unit::Day => 4,
            Unit::Week => 7,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

/// Every domain's descriptor tree, ready to match.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    domains: HashMap<String, Vec<DescriptorConfig>>,
}

/// What a descriptor matched: its limit and the node path that names its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub limit: u32,
    pub unit: Unit,
}

impl Limits {
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Self, ConfigError> {
        let mut limits = Limits::default();
        for path in paths {
            let path = path.as_ref();
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            limits.add(&shown, &text)?;
        }
        Ok(limits)
    }

    /// Adds one domain's YAML (`path` names it in errors).
    pub fn add(&mut self, path: &str, yaml: &str) -> Result<(), ConfigError> {
        let config: DomainConfig = serde_norway::from_str(yaml).map_err(|e| ConfigError::Read {
            path: path.into(),
            message: e.to_string(),
        })?;
        let invalid = |field: String, message: &str| ConfigError::Invalid {
            path: path.into(),
            field,
            message: message.into(),
        };
        if config.domain.is_empty() {
            return Err(invalid("domain".into(), "must not be empty"));
        }
        if self.domains.contains_key(&config.domain) {
            return Err(invalid(
                "domain".into(),
                "already configured by another file",
            ));
        }
        check(&config.descriptors, "descriptors", &invalid)?;
        self.domains.insert(config.domain, config.descriptors);
        Ok(())
    }

    /// The limit for one descriptor's entries: every entry must match a node, by key
    /// and value or by key alone, and the last node's `rate_limit` applies.
    pub fn find(&self, domain: &str, entries: &[(String, String)]) -> Option<Matched> {
        let mut level = self.domains.get(domain)?;
        let mut node = None;
        for (key, value) in entries {
            let exact = level
                .iter()
                .find(|d| d.key == *key && d.value.as_deref() == Some(value.as_str()));
            let any = || level.iter().find(|d| d.key == *key && d.value.is_none());
            let found = exact.or_else(any)?;
            node = Some(found);
            level = &found.descriptors;
        }
        let limit = node?.rate_limit?;
        Some(Matched {
            limit: limit.requests_per_unit,
            unit: limit.unit,
        })
    }
}

fn check(
    nodes: &[DescriptorConfig],
    at: &str,
    invalid: &dyn Fn(String, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, d) in nodes.iter().enumerate() {
        let here = format!("{at}[{i}]");
        if d.key.is_empty() {
            return Err(invalid(format!("{here}.key"), "must not be empty"));
        }
        if !seen.insert((&d.key, &d.value)) {
            return Err(invalid(format!("{here}.key"), "duplicate key and value"));
        }
        if let Some(l) = d.rate_limit {
            if l.requests_per_unit == 0 {
                return Err(invalid(
                    format!("{here}.rate_limit.requests_per_unit"),
                    "must be at least 1",
                ));
            }
        }
        check(&d.descriptors, &format!("{here}.descriptors"), invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
domain: mesh
descriptors:
  - key: generic_key
    value: per-user
    descriptors:
      - key: header:x-user
        value: vip
        rate_limit: {unit: minute, requests_per_unit: 100}
      - key: header:x-user
        rate_limit: {unit: second, requests_per_unit: 3}
  - key: generic_key
    value: all
    rate_limit: {unit: hour, requests_per_unit: 1000}
"#;

    fn limits() -> Limits {
        let mut l = Limits::default();
        l.add("t.yaml", YAML).unwrap();
        l
    }

    fn e(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exact_values_win_over_wildcards() {
        let l = limits();
        let m = |x: &[(&str, &str)]| l.find("mesh", &e(x)).map(|m| (m.limit, m.unit));
        assert_eq!(
            m(&[("generic_key", "per-user"), ("header:x-user", "vip")]),
            Some((100, Unit::Minute))
        );
        assert_eq!(
            m(&[("generic_key", "per-user"), ("header:x-user", "ann")]),
            Some((3, Unit::Second))
        );
        assert_eq!(m(&[("generic_key", "all")]), Some((1000, Unit::Hour)));
    }

    #[test]
    fn partial_unknown_or_limitless_matches_have_no_limit() {
        let l = limits();
        assert_eq!(l.find("mesh", &e(&[("generic_key", "per-user")])), None);
        assert_eq!(l.find("mesh", &e(&[("generic_key", "nope")])), None);
        assert_eq!(l.find("other", &e(&[("generic_key", "all")])), None);
        assert_eq!(
            l.find("mesh", &e(&[("generic_key", "all"), ("extra", "x")])),
            None
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            ("domain: ''", "domain: must not be empty"),
            (
                "domain: d\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 0}}]",
                "descriptors[0].rate_limit.requests_per_unit",
            ),
            (
                "domain: d\ndescriptors: [{key: k}, {key: k}]",
                "descriptors[1].key: duplicate",
            ),
            (
                "domain: d\ndescriptors: [{key: a, descriptors: [{key: ''}]}]",
                "descriptors[0].descriptors[0].key",
            ),
            (
                "domain: d\ndescriptors: [{key: k, rate_limit: {unit: month, requests_per_unit: 1}}]",
                "unknown variant `month`",
            ),
            ("domain: d\nlimits: []", "unknown field `limits`"),
        ];
        for (yaml, want) in cases {
            let err = Limits::default()
                .add("t.yaml", yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{yaml}\n got {err}\n want {want}");
        }
        let mut l = limits();
        let err = l.add("u.yaml", YAML).unwrap_err().to_string();
        assert!(err.contains("already configured"), "{err}");
    }
}
