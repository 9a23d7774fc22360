//! AuthorizationPolicy semantics: compiled policies and their evaluation against the
//! attributes of one request.
//!
//! Istio's rules, kept exactly: a policy matches when any of its rules does; a rule
//! matches when any `from`, any `to` and every `when` holds (an absent list holds);
//! inside a `source` or `operation` every field present must hold, a list holds when any
//! entry matches, and a `not*` list holds when no entry matches. An attribute the request
//! lacks (no mTLS peer, no JWT) fails a positive field and passes a `not*` field, so
//! `principals: ["*"]` means "any authenticated peer". A policy without `rules` matches
//! nothing. Evaluation order (CUSTOM, DENY, ALLOW) is the stage's job; this module only
//! says which policies match.

use crate::config::{ConditionConfig, OperationConfig, PolicyConfig, RuleConfig, SourceConfig};
use serde_json::Value;
use std::net::IpAddr;
use wasmesh_sdk::config::{validate_list, ConfigError};
use wasmesh_sdk::matcher::{Template, Wildcard};
use wasmesh_sdk::net::{parse_cidrs, Cidr};
use wasmesh_sdk::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Audit,
    Custom,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

/// What a request is known by once authenticated (JWT, API key or basic auth).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// `iss/sub` of a verified JWT.
    pub request_principal: Option<String>,
    /// The verified JWT's payload.
    pub claims: Option<std::rc::Rc<serde_json::Map<String, Value>>>,
    /// An API-key or basic-auth consumer.
    pub consumer: Option<String>,
}

impl Identity {
    pub fn is_anonymous(&self) -> bool {
        self.request_principal.is_none() && self.consumer.is_none()
    }
}

/// The request as policies see it. Built once per request by the stage.
pub struct Attributes<'a> {
    /// mTLS peer identity without `spiffe://` (Istio writes principals that way).
    pub principal: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// The TCP peer.
    pub source_ip: Option<IpAddr>,
    /// The client behind the trusted proxies (`x-forwarded-for`).
    pub remote_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: Option<u16>,
    /// Lower-case, without port.
    pub host: &'a str,
    pub method: &'a str,
    /// Normalised ([`wasmesh_sdk::path`]).
    pub path: &'a str,
    pub sni: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub identity: &'a Identity,
}

/// The namespace in a SPIFFE identity `TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`.
pub fn spiffe_namespace(principal: &str) -> Option<&str> {
    let mut parts = principal.split('/');
    parts.next()?;
    (parts.next()? == "ns").then_some(())?;
    let ns = parts.next()?;
    (parts.next()? == "sa").then_some(ns)
}

#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub action: Action,
    pub provider: Option<String>,
    pub dry_run: bool,
    rules: Vec<Rule>,
}

impl Policy {
    pub fn matches(&self, attrs: &Attributes<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(attrs))
    }
}

#[derive(Debug)]
struct Rule {
    from: Vec<Source>,
    to: Vec<Operation>,
    when: Vec<Condition>,
}

impl Rule {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(a)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(a)))
            && self.when.iter().all(|c| c.matches(a))
    }
}

/// A field and its `not` form.
#[derive(Debug)]
struct Field<T> {
    any: Vec<T>,
    not: Vec<T>,
}

impl<T> Field<T> {
    fn new(any: Vec<T>, not: Vec<T>) -> Self {
        Self { any, not }
    }

    /// `test` says whether one pattern matches the request's value; a missing value
    /// matches no pattern.
    fn holds(&self, test: impl Fn(&T) -> bool) -> bool {
        (self.any.is_empty() || self.any.iter().any(&test)) && !self.not.iter().any(&test)
    }
}

fn wildcards(items: &[String]) -> Vec<Wildcard> {
    items.iter().map(|s| Wildcard::parse(s)).collect()
}

/// Principals may be written with or without `spiffe://`; they are matched without.
fn principals(items: &[String]) -> Vec<Wildcard> {
    items
        .iter()
        .map(|s| Wildcard::parse(s.strip_prefix("spiffe://").unwrap_or(s)))
        .collect()
}

fn matches_opt(w: &Wildcard, v: Option<&str>) -> bool {
    v.is_some_and(|v| w.matches(v))
}

fn cidr_holds(c: &Cidr, ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| c.contains(ip))
}

#[derive(Debug)]
struct Source {
    principals: Field<Wildcard>,
    request_principals: Field<Wildcard>,
    namespaces: Field<Wildcard>,
    ip_blocks: Field<Cidr>,
    remote_ip_blocks: Field<Cidr>,
    consumers: Field<Wildcard>,
}

impl Source {
    fn compile(c: &SourceConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            principals: Field::new(principals(&c.principals), principals(&c.not_principals)),
            request_principals: Field::new(
                wildcards(&c.request_principals),
                wildcards(&c.not_request_principals),
            ),
            namespaces: Field::new(wildcards(&c.namespaces), wildcards(&c.not_namespaces)),
            ip_blocks: Field::new(
                parse_cidrs("ipBlocks", &c.ip_blocks)?,
                parse_cidrs("notIpBlocks", &c.not_ip_blocks)?,
            ),
            remote_ip_blocks: Field::new(
                parse_cidrs("remoteIpBlocks", &c.remote_ip_blocks)?,
                parse_cidrs("notRemoteIpBlocks", &c.not_remote_ip_blocks)?,
            ),
            consumers: Field::new(wildcards(&c.consumers), wildcards(&c.not_consumers)),
        })
    }

    fn matches(&self, a: &Attributes<'_>) -> bool {
        let rp = a.identity.request_principal.as_deref();
        let consumer = a.identity.consumer.as_deref();
        self.principals.holds(|w| matches_opt(w, a.principal))
            && self.request_principals.holds(|w| matches_opt(w, rp))
            && self.namespaces.holds(|w| matches_opt(w, a.namespace))
            && self.ip_blocks.holds(|c| cidr_holds(c, a.source_ip))
            && self.remote_ip_blocks.holds(|c| cidr_holds(c, a.remote_ip))
            && self.consumers.holds(|w| matches_opt(w, consumer))
    }
}

/// Istio paths: exact, `prefix*`, `*suffix`, `*`, or a template with `{*}`/`{**}`.
#[derive(Debug)]
enum PathPattern {
    Wildcard(Wildcard),
    Template(Template),
}

impl PathPattern {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        if s.contains('{') || s.contains('}') {
            return Template::parse(s).map(PathPattern::Template);
        }
        if s != "*" && s.trim_matches('*').contains('*') {
            return Err(ConfigError::at(
                "",
                format!("`{s}`: `*` may only be a whole path, a prefix or a suffix"),
            ));
        }
        Ok(PathPattern::Wildcard(Wildcard::parse(s)))
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Wildcard(w) => w.matches(path),
            PathPattern::Template(t) => t.matches(path),
        }
    }
}

#[derive(Debug)]
struct Operation {
    hosts: Field<Wildcard>,
    ports: Field<u16>,
    methods: Field<Wildcard>,
    paths: Field<PathPattern>,
}

fn ports(field: &str, items: &[String]) -> Result<Vec<u16>, ConfigError> {
    validate_list(field, items, |p| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| ConfigError::at("", format!("`{p}` is not a port number")))
    })
}

fn lower_wildcards(items: &[String]) -> Vec<Wildcard> {
    items
        .iter()
        .map(|s| Wildcard::parse(&s.to_ascii_lowercase()))
        .collect()
}

impl Operation {
    fn compile(c: &OperationConfig) -> Result<Self, ConfigError> {
        let paths =
            |field: &str, items: &[String]| validate_list(field, items, |p| PathPattern::parse(p));
        Ok(Self {
            // Hosts compare case-insensitively, as DNS names do.
            hosts: Field::new(lower_wildcards(&c.hosts), lower_wildcards(&c.not_hosts)),
            ports: Field::new(ports("ports", &c.ports)?, ports("notPorts", &c.not_ports)?),
            methods: Field::new(wildcards(&c.methods), wildcards(&c.not_methods)),
            paths: Field::new(paths("paths", &c.paths)?, paths("notPaths", &c.not_paths)?),
        })
    }

    fn matches(&self, a: &Attributes<'_>) -> bool {
        self.hosts.holds(|w| w.matches(a.host))
            && self.ports.holds(|p| a.destination_port == Some(*p))
            && self.methods.holds(|w| w.matches(a.method))
            && self.paths.holds(|p| p.matches(a.path))
    }
}

/// A `when` key, as Istio spells it.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Header(String),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    RequestPrincipal,
    Audiences,
    Presenter,
    Claim(Vec<String>),
    DestinationIp,
    DestinationPort,
    Sni,
    Consumer,
}

impl Key {
    fn parse(key: &str) -> Result<Self, ConfigError> {
        let bracketed = |prefix: &str| -> Option<Vec<String>> {
            let rest = key.strip_prefix(prefix)?;
            let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
            let parts: Vec<String> = inner.split("][").map(str::to_string).collect();
            parts
                .iter()
                .all(|p| !p.is_empty() && !p.contains(['[', ']']))
                .then_some(parts)
        };
        if let Some(mut parts) = bracketed("request.headers") {
            if parts.len() == 1 {
                return Ok(Key::Header(parts.remove(0).to_ascii_lowercase()));
            }
        }
        if let Some(parts) = bracketed("request.auth.claims") {
            return Ok(Key::Claim(parts));
        }
        Ok(match key {
            "source.ip" => Key::SourceIp,
            "remote.ip" => Key::RemoteIp,
            "source.namespace" => Key::SourceNamespace,
            "source.principal" => Key::SourcePrincipal,
            "request.auth.principal" => Key::RequestPrincipal,
            "request.auth.audiences" => Key::Audiences,
            "request.auth.presenter" => Key::Presenter,
            "destination.ip" => Key::DestinationIp,
            "destination.port" => Key::DestinationPort,
            "connection.sni" => Key::Sni,
            "request.auth.consumer" => Key::Consumer,
            _ => {
                // An unknown key would silently never match: in a DENY rule that is a
                // hole, so it is refused instead.
                return Err(ConfigError::at("key", format!("unsupported key `{key}`")));
            }
        })
    }

    fn is_ip(&self) -> bool {
        matches!(self, Key::SourceIp | Key::RemoteIp | Key::DestinationIp)
    }
}

#[derive(Debug)]
enum Values {
    Strings(Field<Wildcard>),
    Ips(Field<Cidr>),
    Ports(Field<u16>),
}

#[derive(Debug)]
struct Condition {
    key: Key,
    values: Values,
}

/// The string values of a claim: a string, each string of an array, or a scalar's text.
fn claim_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(claim_strings).collect(),
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

fn claim_at<'v>(claims: &'v serde_json::Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |v, seg| v.as_object()?.get(seg))
}

impl Condition {
    fn compile(c: &ConditionConfig) -> Result<Self, ConfigError> {
        let key = Key::parse(&c.key)?;
        if c.values.is_empty() && c.not_values.is_empty() {
            return Err(ConfigError::at("", "needs `values` or `notValues`"));
        }
        let values = if key.is_ip() {
            Values::Ips(Field::new(
                parse_cidrs("values", &c.values)?,
                parse_cidrs("notValues", &c.not_values)?,
            ))
        } else if key == Key::DestinationPort {
            Values::Ports(Field::new(
                ports("values", &c.values)?,
                ports("notValues", &c.not_values)?,
            ))
        } else {
            Values::Strings(Field::new(wildcards(&c.values), wildcards(&c.not_values)))
        };
        Ok(Self { key, values })
    }

    /// The request's values for a string key (several for lists such as claims).
    fn strings(&self, a: &Attributes<'_>) -> Vec<String> {
        let id = a.identity;
        let one = |v: Option<&str>| v.map(|s| vec![s.to_string()]).unwrap_or_default();
        match &self.key {
            Key::Header(name) => {
                // Repeated headers are joined as Envoy's header matchers see them, so a
                // second value cannot hide the first from a DENY rule.
                let all: Vec<&str> = a.headers.get_all(name).collect();
                if all.is_empty() {
                    Vec::new()
                } else {
                    vec![all.join(",")]
                }
            }
            Key::SourceNamespace => one(a.namespace),
            Key::SourcePrincipal => one(a.principal),
            Key::RequestPrincipal => one(id.request_principal.as_deref()),
            Key::Consumer => one(id.consumer.as_deref()),
            Key::Sni => one(a.sni),
            Key::Audiences => id
                .claims
                .as_ref()
                .and_then(|c| c.get("aud"))
                .map(claim_strings)
                .unwrap_or_default(),
            Key::Presenter => id
                .claims
                .as_ref()
                .and_then(|c| c.get("azp"))
                .map(claim_strings)
                .unwrap_or_default(),
            Key::Claim(path) => id
                .claims
                .as_ref()
                .and_then(|c| claim_at(c, path))
                .map(claim_strings)
                .unwrap_or_default(),
            Key::SourceIp | Key::RemoteIp | Key::DestinationIp | Key::DestinationPort => Vec::new(),
        }
    }

    fn matches(&self, a: &Attributes<'_>) -> bool {
        match &self.values {
            Values::Ips(f) => {
                let ip = match self.key {
                    Key::SourceIp => a.source_ip,
                    Key::RemoteIp => a.remote_ip,
                    _ => a.destination_ip,
                };
                f.holds(|c| cidr_holds(c, ip))
            }
            Values::Ports(f) => f.holds(|p| a.destination_port == Some(*p)),
            Values::Strings(f) => {
                let values = self.strings(a);
                f.holds(|w| values.iter().any(|v| w.matches(v)))
            }
        }
    }
}

/// Which connection attributes any policy reads, so the stage fetches only those (each
/// property is a host call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub principal: bool,
    pub source_ip: bool,
    pub remote_ip: bool,
    pub destination_ip: bool,
    pub destination_port: bool,
    pub sni: bool,
}

impl Needs {
    pub fn of(c: &PolicyConfig) -> Needs {
        let mut n = Needs::default();
        for rule in c.rules.iter().flatten() {
            for f in &rule.from {
                let s = &f.source;
                n.principal |= !(s.principals.is_empty()
                    && s.not_principals.is_empty()
                    && s.namespaces.is_empty()
                    && s.not_namespaces.is_empty());
                n.source_ip |= !(s.ip_blocks.is_empty() && s.not_ip_blocks.is_empty());
                n.remote_ip |=
                    !(s.remote_ip_blocks.is_empty() && s.not_remote_ip_blocks.is_empty());
            }
            for t in &rule.to {
                n.destination_port |=
                    !(t.operation.ports.is_empty() && t.operation.not_ports.is_empty());
            }
            for w in &rule.when {
                match Key::parse(&w.key) {
                    Ok(Key::SourceIp) => n.source_ip = true,
                    Ok(Key::RemoteIp) => n.remote_ip = true,
                    Ok(Key::SourceNamespace | Key::SourcePrincipal) => n.principal = true,
                    Ok(Key::DestinationIp) => n.destination_ip = true,
                    Ok(Key::DestinationPort) => n.destination_port = true,
                    Ok(Key::Sni) => n.sni = true,
                    _ => {}
                }
            }
        }
        n
    }

    pub fn union(self, o: Needs) -> Needs {
        Needs {
            principal: self.principal || o.principal,
            source_ip: self.source_ip || o.source_ip,
            remote_ip: self.remote_ip || o.remote_ip,
            destination_ip: self.destination_ip || o.destination_ip,
            destination_port: self.destination_port || o.destination_port,
            sni: self.sni || o.sni,
        }
    }
}

fn compile_rule(c: &RuleConfig) -> Result<Rule, ConfigError> {
    Ok(Rule {
        from: validate_list("from", &c.from, |f| {
            Source::compile(&f.source).map_err(|e| e.within("source"))
        })?,
        to: validate_list("to", &c.to, |t| {
            Operation::compile(&t.operation).map_err(|e| e.within("operation"))
        })?,
        when: validate_list("when", &c.when, Condition::compile)?,
    })
}

/// Compiles one policy. `providers` are the configured extension provider names.
pub fn compile(c: &PolicyConfig, providers: &[&str]) -> Result<Policy, ConfigError> {
    if c.name.trim().is_empty() {
        return Err(ConfigError::at(
            "name",
            "a policy needs a name (it is reported on denial)",
        ));
    }
    let action = match c.action.as_deref().unwrap_or("ALLOW") {
        "ALLOW" => Action::Allow,
        "DENY" => Action::Deny,
        "AUDIT" => Action::Audit,
        "CUSTOM" => Action::Custom,
        other => {
            return Err(ConfigError::at(
                "action",
                format!("`{other}` is not one of ALLOW, DENY, AUDIT, CUSTOM"),
            ))
        }
    };
    let provider = match (action, &c.provider) {
        (Action::Custom, Some(p)) if providers.contains(&p.name.as_str()) => Some(p.name.clone()),
        (Action::Custom, Some(p)) => {
            return Err(ConfigError::at(
                "provider.name",
                format!("no extension provider named `{}`", p.name),
            ))
        }
        (Action::Custom, None) => {
            return Err(ConfigError::at(
                "provider",
                "a CUSTOM policy needs a provider",
            ))
        }
        (_, Some(_)) => {
            return Err(ConfigError::at(
                "provider",
                "only CUSTOM policies name a provider",
            ))
        }
        (_, None) => None,
    };
    if c.dry_run && action == Action::Custom {
        // Istio does not support dry-run for CUSTOM either: the provider would be called.
        return Err(ConfigError::at(
            "dryRun",
            "CUSTOM policies cannot be dry-run",
        ));
    }
    let rules = match &c.rules {
        Some(rules) => validate_list("rules", rules, compile_rule)?,
        None => Vec::new(),
    };
    Ok(Policy {
        name: c.name.clone(),
        action,
        provider,
        dry_run: c.dry_run,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: serde_json::Value) -> Policy {
        let c: PolicyConfig = wasmesh_sdk::config::from_value(&v).unwrap();
        compile(&c, &["ext"]).unwrap()
    }

    fn compile_err(v: serde_json::Value) -> String {
        let c: PolicyConfig = wasmesh_sdk::config::from_value(&v).unwrap();
        compile(&c, &["ext"]).unwrap_err().to_string()
    }

    struct Req {
        headers: HeaderMap,
        identity: Identity,
        principal: Option<&'static str>,
        path: &'static str,
        method: &'static str,
        host: &'static str,
        port: Option<u16>,
        source: Option<IpAddr>,
        remote: Option<IpAddr>,
    }

    impl Default for Req {
        fn default() -> Self {
            Self {
                headers: HeaderMap::default(),
                identity: Identity::default(),
                principal: None,
                path: "/",
                method: "GET",
                host: "example.com",
                port: Some(8080),
                source: "10.0.0.1".parse().ok(),
                remote: "10.0.0.1".parse().ok(),
            }
        }
    }

    impl Req {
        fn attrs(&self) -> Attributes<'_> {
            Attributes {
                principal: self.principal,
                namespace: self.principal.and_then(spiffe_namespace),
                source_ip: self.source,
                remote_ip: self.remote,
                destination_ip: None,
                destination_port: self.port,
                host: self.host,
                method: self.method,
                path: self.path,
                sni: None,
                headers: &self.headers,
                identity: &self.identity,
            }
        }
    }

    fn rule_matches(rule: serde_json::Value, req: &Req) -> bool {
        policy(json!({"name": "p", "rules": [rule]})).matches(&req.attrs())
    }

    #[test]
    fn no_rules_matches_nothing_and_empty_rule_everything() {
        assert!(!policy(json!({"name": "p"})).matches(&Req::default().attrs()));
        assert!(policy(json!({"name": "p", "rules": [{}]})).matches(&Req::default().attrs()));
    }

    #[test]
    fn paths_exact_prefix_suffix_and_templates() {
        let op = |paths: &[&str], path| {
            rule_matches(
                json!({"to": [{"operation": {"paths": paths}}]}),
                &Req {
                    path,
                    ..Req::default()
                },
            )
        };
        assert!(op(&["/admin"], "/admin"));
        assert!(!op(&["/admin"], "/admin/"));
        assert!(op(&["/admin/*"], "/admin/x/y"));
        assert!(!op(&["/admin/*"], "/admins"));
        assert!(op(&["*/info"], "/a/b/info"));
        assert!(op(&["*"], "/anything"));
        assert!(op(&["/users/{*}/info"], "/users/7/info"));
        assert!(!op(&["/users/{*}/info"], "/users/7/8/info"));
        assert!(op(&["/files/{**}"], "/files/a/b/c"));
        assert!(!op(&["/Admin"], "/admin"), "paths are case-sensitive");
    }

    #[test]
    fn not_forms_exclude() {
        let r =
            json!({"to": [{"operation": {"notPaths": ["/public/*"], "methods": ["GET", "HEAD"]}}]});
        assert!(rule_matches(
            r.clone(),
            &Req {
                path: "/private",
                ..Req::default()
            }
        ));
        assert!(!rule_matches(
            r.clone(),
            &Req {
                path: "/public/x",
                ..Req::default()
            }
        ));
        assert!(!rule_matches(
            r,
            &Req {
                method: "POST",
                ..Req::default()
            }
        ));
    }

    #[test]
    fn principals_namespaces_and_missing_identity() {
        let p = Some("cluster.local/ns/shop/sa/web");
        let r = json!({"from": [{"source": {"principals": ["spiffe://cluster.local/ns/shop/sa/web"]}}]});
        assert!(rule_matches(
            r.clone(),
            &Req {
                principal: p,
                ..Req::default()
            }
        ));
        assert!(!rule_matches(r, &Req::default()));
        let any = json!({"from": [{"source": {"principals": ["*"]}}]});
        assert!(!rule_matches(any, &Req::default()), "`*` requires a peer");
        let ns = json!({"from": [{"source": {"namespaces": ["shop"]}}]});
        assert!(rule_matches(
            ns.clone(),
            &Req {
                principal: p,
                ..Req::default()
            }
        ));
        assert!(!rule_matches(
            ns,
            &Req {
                principal: Some("cluster.local/ns/other/sa/web"),
                ..Req::default()
            }
        ));
        let not = json!({"from": [{"source": {"notRequestPrincipals": ["*"]}}]});
        assert!(
            rule_matches(not.clone(), &Req::default()),
            "anonymous is not any principal"
        );
        let authed = Req {
            identity: Identity {
                request_principal: Some("iss/sub".into()),
                ..Identity::default()
            },
            ..Req::default()
        };
        assert!(!rule_matches(not, &authed));
    }

    #[test]
    fn ip_blocks_and_remote_ip_blocks_use_their_own_address() {
        let r = json!({"from": [{"source": {"remoteIpBlocks": ["1.2.3.0/24"], "notIpBlocks": ["10.9.0.0/16"]}}]});
        let req = Req {
            remote: "1.2.3.4".parse().ok(),
            ..Req::default()
        };
        assert!(rule_matches(r.clone(), &req));
        let req = Req {
            remote: "1.2.3.4".parse().ok(),
            source: "10.9.1.1".parse().ok(),
            ..Req::default()
        };
        assert!(!rule_matches(r, &req));
    }

    #[test]
    fn hosts_ignore_case_and_ports_match_exactly() {
        let r = json!({"to": [{"operation": {"hosts": ["*.Example.com"], "ports": ["8080"]}}]});
        assert!(rule_matches(
            r.clone(),
            &Req {
                host: "api.example.com",
                ..Req::default()
            }
        ));
        assert!(!rule_matches(
            r,
            &Req {
                host: "api.example.com",
                port: Some(9090),
                ..Req::default()
            }
        ));
    }

    #[test]
    fn when_on_headers_claims_and_ports() {
        let mut claims = serde_json::Map::new();
        claims.insert("groups".into(), json!(["dev", "ops"]));
        claims.insert("org".into(), json!({"team": {"name": "core"}}));
        let req = Req {
            headers: HeaderMap::from_pairs(vec![("x-env".into(), "prod".into())]),
            identity: Identity {
                claims: Some(std::rc::Rc::new(claims)),
                ..Identity::default()
            },
            ..Req::default()
        };
        let when = |c: serde_json::Value| rule_matches(json!({"when": [c]}), &req);
        assert!(when(
            json!({"key": "request.headers[X-Env]", "values": ["prod"]})
        ));
        assert!(!when(
            json!({"key": "request.headers[x-env]", "notValues": ["pr*"]})
        ));
        assert!(when(
            json!({"key": "request.auth.claims[groups]", "values": ["ops"]})
        ));
        assert!(when(
            json!({"key": "request.auth.claims[org][team][name]", "values": ["core"]})
        ));
        assert!(!when(
            json!({"key": "request.auth.claims[org][team]", "values": ["core"]})
        ));
        assert!(when(json!({"key": "destination.port", "values": ["8080"]})));
        assert!(when(json!({"key": "source.ip", "values": ["10.0.0.0/8"]})));
        assert!(!when(
            json!({"key": "request.headers[absent]", "values": ["*"]})
        ));
    }

    #[test]
    fn repeated_headers_are_joined_for_when() {
        let req = Req {
            headers: HeaderMap::from_pairs(vec![
                ("x-role".into(), "user".into()),
                ("x-role".into(), "admin".into()),
            ]),
            ..Req::default()
        };
        assert!(!rule_matches(
            json!({"when": [{"key": "request.headers[x-role]", "values": ["user"]}]}),
            &req
        ));
    }

    #[test]
    fn bad_config_is_refused_with_its_path() {
        assert!(compile_err(
            json!({"name": "p", "rules": [{"when": [{"key": "request.bogus", "values": ["x"]}]}]})
        )
        .contains("rules[0].when[0].key: unsupported key `request.bogus`"));
        assert!(compile_err(
            json!({"name": "p", "rules": [{"to": [{"operation": {"paths": ["/a*b"]}}]}]})
        )
        .contains("rules[0].to[0].operation.paths[0]"));
        assert!(compile_err(
            json!({"name": "p", "rules": [{"from": [{"source": {"ipBlocks": ["nope"]}}]}]})
        )
        .contains("rules[0].from[0].source.ipBlocks[0]"));
        assert!(compile_err(
            json!({"name": "p", "action": "CUSTOM", "provider": {"name": "other"}})
        )
        .contains("no extension provider named `other`"));
        assert!(compile_err(json!({"name": "p", "action": "PERMIT"})).contains("action"));
        assert!(compile_err(json!({"name": ""})).contains("name"));
    }

    #[test]
    fn spiffe_namespace_needs_the_full_shape() {
        assert_eq!(spiffe_namespace("td/ns/shop/sa/web"), Some("shop"));
        assert_eq!(spiffe_namespace("td/x/shop/sa/web"), None);
        assert_eq!(spiffe_namespace("td/ns/shop"), None);
    }
}
