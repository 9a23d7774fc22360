//! The headers filter's configuration, as written (snake_case, like Envoy's
//! header_mutation filter), and its validation into a runtime [`HeadersConfig`].

use crate::template::Template;
use regex::Regex;
use wasmesh_sdk::config::{validate_list, ConfigError, FromJson};
use wasmesh_sdk::names::{invalid_header_name, is_header_name};
use wasmesh_sdk::{MatchConfig, PathOptions, Rules};

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct Config {
    /// Edits applied to every request (before `rules`).
    pub request: EditsConfig,
    /// Edits applied to every response (before `rules`).
    pub response: EditsConfig,
    /// Conditional edits: every rule whose `match` holds applies, in order.
    pub rules: Vec<RuleConfig>,
    /// Permit editing pseudo-headers (`:path`, `:authority`, ...). Off by default.
    pub allow_pseudo_headers: bool,
    /// Permit editing hop-by-hop headers (`connection`, `te`, ...). Off by default.
    pub allow_hop_by_hop: bool,
    /// Ask Envoy to route again after request headers change. On by default.
    pub clear_route_cache: Option<bool>,
    pub path_normalization: PathOptions,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct RuleConfig {
    #[config(rename = "match")]
    pub matches: MatchConfig,
    pub request: EditsConfig,
    pub response: EditsConfig,
}

/// Edits on one direction's headers. `query` and `rewrite` apply to requests only;
/// the response side refuses them.
#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct EditsConfig {
    pub set: Vec<HeaderValueConfig>,
    pub set_if_absent: Vec<HeaderValueConfig>,
    pub add: Vec<HeaderValueConfig>,
    pub remove: Vec<String>,
    pub rename: Vec<RenameConfig>,
    pub query: QueryEditsConfig,
    pub rewrite: Option<RewriteConfig>,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct HeaderValueConfig {
    pub name: String,
    pub value: String,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct RenameConfig {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct QueryEditsConfig {
    pub set: Vec<HeaderValueConfig>,
    pub remove: Vec<String>,
}

/// Path rewrite: exactly one of `prefix` or `regex`.
#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct RewriteConfig {
    pub prefix: Option<PrefixRewriteConfig>,
    pub regex: Option<RegexRewriteConfig>,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct PrefixRewriteConfig {
    pub from: String,
    pub to: String,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields)]
pub struct RegexRewriteConfig {
    pub pattern: String,
    pub substitution: String,
}

// ---- runtime ----

/// The validated configuration.
#[derive(Debug)]
pub struct HeadersConfig {
    pub rules: Rules<Rule>,
    pub clear_route_cache: bool,
    pub path_options: PathOptions,
}

#[derive(Debug, Default)]
pub struct Rule {
    pub request: Edits,
    pub query: QueryEdits,
    pub rewrite: Option<Rewrite>,
    pub response: Edits,
}

#[derive(Debug, Default)]
pub struct Edits {
    pub remove: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub set: Vec<(String, Template)>,
    pub set_if_absent: Vec<(String, Template)>,
    pub add: Vec<(String, Template)>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.set_if_absent.is_empty()
            && self.add.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct QueryEdits {
    pub set: Vec<(String, Template)>,
    pub remove: Vec<String>,
}

#[derive(Debug)]
pub enum Rewrite {
    Prefix {
        from: String,
        to: String,
    },
    Regex {
        pattern: Regex,
        substitution: String,
    },
}

/// Headers that describe one connection hop and must not be forwarded or forged.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct NamePolicy {
    allow_pseudo: bool,
    allow_hop_by_hop: bool,
}

impl NamePolicy {
    fn check(&self, name: &str) -> Result<String, ConfigError> {
        let lower = name.to_ascii_lowercase();
        let (pseudo, token) = match lower.strip_prefix(':') {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if !is_header_name(token) {
            return Err(invalid_header_name(name));
        }
        if pseudo && !self.allow_pseudo {
            return Err(ConfigError::at(
                "",
                format!("`{name}` is a pseudo-header; set allow_pseudo_headers to edit it (for the path, use rewrite)"),
            ));
        }
        if HOP_BY_HOP.contains(&lower.as_str()) && !self.allow_hop_by_hop {
            return Err(ConfigError::at(
                "",
                format!("`{name}` is a hop-by-hop header; set allow_hop_by_hop to edit it"),
            ));
        }
        Ok(lower)
    }
}

impl Config {
    pub fn validate(self) -> Result<HeadersConfig, ConfigError> {
        let policy = NamePolicy {
            allow_pseudo: self.allow_pseudo_headers,
            allow_hop_by_hop: self.allow_hop_by_hop,
        };
        let mut compiled = Vec::with_capacity(self.rules.len() + 1);
        let global = RuleConfig {
            matches: MatchConfig::default(),
            request: self.request,
            response: self.response,
        };
        compiled.push((wasmesh_sdk::Matcher::any(), global.validate(&policy)?));
        let rules = Rules::compile(
            "rules",
            &self.rules,
            |r| &r.matches,
            |r| r.validate(&policy),
        )?;
        // The global edits go first; then the rules in their order.
        let mut all = compiled;
        all.extend(rules_into_vec(rules));
        Ok(HeadersConfig {
            rules: Rules::from_compiled(all),
            clear_route_cache: self.clear_route_cache.unwrap_or(true),
            path_options: self.path_normalization,
        })
    }
}

fn rules_into_vec(rules: Rules<Rule>) -> Vec<(wasmesh_sdk::Matcher, Rule)> {
    rules.into_compiled()
}

impl RuleConfig {
    fn validate(&self, policy: &NamePolicy) -> Result<Rule, ConfigError> {
        let request = self
            .request
            .validate(policy)
            .map_err(|e| e.within("request"))?;
        let response = self
            .response
            .validate(policy)
            .map_err(|e| e.within("response"))?;
        if !self.response.query.set.is_empty() || !self.response.query.remove.is_empty() {
            return Err(ConfigError::at(
                "response.query",
                "query edits apply to requests only",
            ));
        }
        if self.response.rewrite.is_some() {
            return Err(ConfigError::at(
                "response.rewrite",
                "path rewrites apply to requests only",
            ));
        }
        let query = QueryEdits {
            set: validate_list("set", &self.request.query.set, |kv| {
                if kv.name.is_empty() {
                    return Err(ConfigError::at("name", "must not be empty"));
                }
                Ok((kv.name.clone(), parse_value(&kv.value)?))
            })
            .map_err(|e| e.within("request.query"))?,
            remove: self.request.query.remove.clone(),
        };
        let rewrite = self
            .request
            .rewrite
            .as_ref()
            .map(|r| r.validate().map_err(|e| e.within("request.rewrite")))
            .transpose()?;
        Ok(Rule {
            request,
            query,
            rewrite,
            response,
        })
    }
}

fn parse_value(value: &str) -> Result<Template, ConfigError> {
    Template::parse(value).map_err(|e| e.within("value"))
}

impl EditsConfig {
    fn validate(&self, policy: &NamePolicy) -> Result<Edits, ConfigError> {
        let pairs = |field: &str, items: &[HeaderValueConfig]| {
            validate_list(field, items, |kv| {
                let name = policy.check(&kv.name).map_err(|e| e.within("name"))?;
                Ok((name, parse_value(&kv.value)?))
            })
        };
        Ok(Edits {
            remove: validate_list("remove", &self.remove, |n| policy.check(n))?,
            rename: validate_list("rename", &self.rename, |r| {
                let from = policy.check(&r.from).map_err(|e| e.within("from"))?;
                let to = policy.check(&r.to).map_err(|e| e.within("to"))?;
                Ok((from, to))
            })?,
            set: pairs("set", &self.set)?,
            set_if_absent: pairs("set_if_absent", &self.set_if_absent)?,
            add: pairs("add", &self.add)?,
        })
    }
}

impl RewriteConfig {
    fn validate(&self) -> Result<Rewrite, ConfigError> {
        match (&self.prefix, &self.regex) {
            (Some(p), None) => {
                for (field, v) in [("prefix.from", &p.from), ("prefix.to", &p.to)] {
                    if !v.starts_with('/') {
                        return Err(ConfigError::at(field, "must start with '/'"));
                    }
                }
                Ok(Rewrite::Prefix {
                    from: p.from.clone(),
                    to: p.to.clone(),
                })
            }
            (None, Some(r)) => {
                let pattern = Regex::new(&r.pattern).map_err(|e| {
                    ConfigError::at(
                        "regex.pattern",
                        format!(
                            "invalid regex: {}",
                            e.to_string().lines().last().unwrap_or("").trim()
                        ),
                    )
                })?;
                if r.substitution.bytes().any(|b| b < 0x20 || b == 0x7f) {
                    return Err(ConfigError::at(
                        "regex.substitution",
                        "control characters are not allowed",
                    ));
                }
                Ok(Rewrite::Regex {
                    pattern,
                    substitution: r.substitution.clone(),
                })
            }
            _ => Err(ConfigError::at("", "set exactly one of `prefix`, `regex`")),
        }
    }
}
