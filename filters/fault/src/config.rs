//! The fault filter's configuration, as written (snake_case, like Envoy's HTTP fault
//! filter), and its validation into a runtime [`FaultConfig`].

use std::time::Duration;
use wasmesh_sdk::config::{ConfigError, FromJson};
use wasmesh_sdk::{MatchConfig, Matcher, PathOptions, Rules};

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct Config {
    /// Faults for every request no rule matched (a final catch-all rule, `default`).
    pub abort: Option<AbortConfig>,
    pub delay: Option<DelayConfig>,
    /// Scoped faults: the first rule whose `match` holds applies.
    pub rules: Vec<RuleConfig>,
    /// Cap on faults in progress (per worker); none by default.
    pub max_active_faults: Option<u32>,
    /// Honour `x-envoy-fault-abort-request(-percentage)` and
    /// `x-envoy-fault-delay-request(-percentage)`. Off by default: only config turns
    /// client-triggered faults on.
    pub header_faults: bool,
    /// Seed for the per-request draws: the same seed gives the same sequence of
    /// decisions (per worker). Without it, seeded from the host's entropy.
    pub seed: Option<u64>,
    pub path_normalization: PathOptions,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[config(rename = "match")]
    pub matches: MatchConfig,
    pub abort: Option<AbortConfig>,
    pub delay: Option<DelayConfig>,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct AbortConfig {
    pub http_status: u16,
    /// 0-100; fractions allowed.
    #[config(default = "hundred")]
    pub percentage: f64,
    /// Reply body; Envoy's `fault filter abort` when absent.
    pub body: Option<String>,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct DelayConfig {
    /// `1s`, `0.5s`, `250ms`, `1m`.
    pub fixed_delay: String,
    #[config(default = "hundred")]
    pub percentage: f64,
}

fn hundred() -> f64 {
    100.0
}

// ---- runtime ----

#[derive(Debug)]
pub struct FaultConfig {
    pub rules: Rules<Rule>,
    pub max_active_faults: Option<u32>,
    pub header_faults: bool,
    pub seed: Option<u64>,
    pub path_options: PathOptions,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub abort: Option<Abort>,
    pub delay: Option<Delay>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Abort {
    pub status: u16,
    pub percentage: f64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delay {
    pub duration: Duration,
    pub percentage: f64,
}

/// A fault delay longer than this is a misconfiguration, not a test.
const MAX_DELAY_NS: u64 = 3_600_000_000_000;

pub const DEFAULT_BODY: &str = "fault filter abort";

impl Config {
    pub fn validate(self) -> Result<FaultConfig, ConfigError> {
        let rules = self.rules;
        wasmesh_sdk::names::unique_rule_names("rules", rules.iter().map(|r| r.name.as_str()))?;
        let mut compiled =
            Rules::compile("rules", &rules, |r| &r.matches, RuleConfig::validate)?.into_compiled();
        // The top-level faults are a last rule that matches everything; their errors
        // are reported at `abort` / `delay`, where they were written.
        if self.abort.is_some() || self.delay.is_some() {
            if rules.iter().any(|r| r.name == "default") {
                return Err(ConfigError::at(
                    "rules",
                    "`default` names the top-level faults: pick another rule name",
                ));
            }
            let default = RuleConfig {
                name: "default".into(),
                matches: MatchConfig::default(),
                abort: self.abort,
                delay: self.delay,
            };
            compiled.push((Matcher::any(), default.validate()?));
        }
        let rules = Rules::from_compiled(compiled);
        if rules.is_empty() && !self.header_faults {
            return Err(ConfigError::at(
                "",
                "nothing to inject: set `abort`, `delay`, `rules` or `header_faults`",
            ));
        }
        if self.max_active_faults == Some(0) {
            return Err(ConfigError::at(
                "max_active_faults",
                "must be at least 1 (leave it out for no cap)",
            ));
        }
        Ok(FaultConfig {
            rules,
            max_active_faults: self.max_active_faults,
            header_faults: self.header_faults,
            seed: self.seed,
            path_options: self.path_normalization,
        })
    }
}

impl RuleConfig {
    fn validate(&self) -> Result<Rule, ConfigError> {
        wasmesh_sdk::names::rule_name(&self.name).map_err(|e| e.within("name"))?;
        if self.abort.is_none() && self.delay.is_none() {
            return Err(ConfigError::at("", "set `abort`, `delay` or both"));
        }
        let abort = self
            .abort
            .as_ref()
            .map(|a| a.validate().map_err(|e| e.within("abort")))
            .transpose()?;
        let delay = self
            .delay
            .as_ref()
            .map(|d| d.validate().map_err(|e| e.within("delay")))
            .transpose()?;
        Ok(Rule {
            name: self.name.clone(),
            abort,
            delay,
        })
    }
}

impl AbortConfig {
    fn validate(&self) -> Result<Abort, ConfigError> {
        if !(200..=599).contains(&self.http_status) {
            return Err(ConfigError::at(
                "http_status",
                "must be 200-599 (as in Envoy)",
            ));
        }
        Ok(Abort {
            status: self.http_status,
            percentage: percentage(self.percentage)?,
            body: self.body.clone().unwrap_or_else(|| DEFAULT_BODY.into()),
        })
    }
}

impl DelayConfig {
    fn validate(&self) -> Result<Delay, ConfigError> {
        let ns = wasmesh_sdk::duration::parse_nanos(&self.fixed_delay)
            .map_err(|e| e.within("fixed_delay"))?;
        if ns == 0 {
            return Err(ConfigError::at("fixed_delay", "must be more than 0"));
        }
        if ns > MAX_DELAY_NS {
            return Err(ConfigError::at("fixed_delay", "must be at most 1h"));
        }
        Ok(Delay {
            duration: Duration::from_nanos(ns),
            percentage: percentage(self.percentage)?,
        })
    }
}

fn percentage(p: f64) -> Result<f64, ConfigError> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(ConfigError::at("percentage", "must be 0-100"))
    }
}
