//! Rule matching: what stock Envoy's missing per-route Wasm config is replaced with.
//!
//! A filter's config holds `rules`, each with a `match` and the rule's own settings;
//! [`Rules::first_match`] returns the first rule whose match holds, in config order.
//! Within one match every field present must hold (AND); within a list field any
//! entry may hold (OR). An empty match holds for every request.
//!
//! Paths are matched against the normalised path ([`crate::path`]); a request whose
//! path is refused by normalisation matches no path condition (filters decide how to
//! answer it, usually 400).

use crate::config::{validate_list, ConfigError, FromJson};
use crate::net::{parse_cidrs, Cidr};
use crate::request::Request;
use regex::Regex;

/// `match` as written in config.
#[derive(Debug, Clone, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// Envoy route names (`xds.route_name`, else `route_name`); any of them.
    pub route_names: Vec<String>,
    /// Hosts: exact (`api.example.com`), wildcard suffix (`*.example.com`) or `*`.
    pub hosts: Vec<String>,
    pub path: Option<PathMatchConfig>,
    /// HTTP methods, upper-case; any of them.
    pub methods: Vec<String>,
    pub headers: Vec<ValueMatchConfig>,
    pub query_params: Vec<ValueMatchConfig>,
    /// The TCP peer's address, in CIDR notation; any of them.
    pub source_cidrs: Vec<String>,
    /// mTLS peer principals (URI SAN): exact, `prefix*`, `*suffix` or `*`; any of them.
    pub principals: Vec<String>,
}

/// One of `exact`, `prefix`, `regex` (full match) or `template` (`/users/{id}`).
#[derive(Debug, Clone, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct PathMatchConfig {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub template: Option<String>,
    pub ignore_case: bool,
}

/// A header or query parameter condition: `present`, `exact`, `prefix` or `regex`,
/// optionally inverted. With none of them set, it means `present: true`.
#[derive(Debug, Clone, Default, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct ValueMatchConfig {
    pub name: String,
    pub present: Option<bool>,
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub invert: bool,
}

/// A compiled match.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    route_names: Vec<String>,
    hosts: Vec<HostPattern>,
    path: Option<PathMatcher>,
    methods: Vec<String>,
    headers: Vec<ValueMatcher>,
    query_params: Vec<ValueMatcher>,
    source_cidrs: Vec<Cidr>,
    principals: Vec<Wildcard>,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

#[derive(Debug, Clone)]
enum PathMatcher {
    Exact(String, bool),
    Prefix(String, bool),
    Regex(Regex),
    Template(Template),
}

/// A path template: literal segments, `{name}`/`{*}` (one segment), `{**}` (the rest).
#[derive(Debug, Clone)]
pub struct Template {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

#[derive(Debug, Clone)]
struct ValueMatcher {
    name: String,
    test: ValueTest,
    invert: bool,
}

#[derive(Debug, Clone)]
enum ValueTest {
    Present(bool),
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

/// `exact`, `prefix*`, `*suffix` or `*`, as Istio writes principals and hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wildcard {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl Wildcard {
    pub fn parse(s: &str) -> Self {
        if s == "*" {
            Wildcard::Any
        } else if let Some(p) = s.strip_suffix('*') {
            Wildcard::Prefix(p.to_string())
        } else if let Some(p) = s.strip_prefix('*') {
            Wildcard::Suffix(p.to_string())
        } else {
            Wildcard::Exact(s.to_string())
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Wildcard::Any => !value.is_empty(),
            Wildcard::Exact(s) => value == s,
            Wildcard::Prefix(p) => value.starts_with(p.as_str()),
            Wildcard::Suffix(s) => value.ends_with(s.as_str()),
        }
    }
}

/// Compiles a regex that must match the whole value, as Envoy's `safe_regex` does.
pub fn full_regex(pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| ConfigError::at("", format!("invalid regex: {}", first_line(&e.to_string()))))
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

impl Template {
    pub fn parse(template: &str) -> Result<Self, ConfigError> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err(ConfigError::at("", "template must start with '/'"));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "{**}" if i + 1 == parts.len() => Segment::Rest,
                "{**}" => return Err(ConfigError::at("", "`{**}` must be the last segment")),
                p if p.starts_with('{') && p.ends_with('}') => {
                    let name = &p[1..p.len() - 1];
                    if name != "*" && !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(ConfigError::at("", format!("invalid variable `{p}`")));
                    }
                    Segment::One
                }
                p if p.contains('{') || p.contains('}') => {
                    return Err(ConfigError::at(
                        "",
                        format!("`{p}`: a variable must fill a whole segment"),
                    ))
                }
                p => Segment::Literal(p.to_string()),
            };
            segments.push(seg);
        }
        Ok(Self { segments })
    }

    /// Matches a normalised path, without allocating.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::One => match parts.next() {
                    Some(p) if !p.is_empty() => {}
                    _ => return false,
                },
                Segment::Literal(lit) => match parts.next() {
                    Some(p) if p == lit => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }
}

impl MatchConfig {
    /// Validates and compiles. Error paths are relative to the match (`path.regex`).
    pub fn compile(&self) -> Result<Matcher, ConfigError> {
        let hosts = self
            .hosts
            .iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                if h == "*" {
                    HostPattern::Any
                } else if let Some(suffix) = h.strip_prefix('*') {
                    HostPattern::Suffix(suffix.to_string())
                } else {
                    HostPattern::Exact(h)
                }
            })
            .collect();
        let path = self
            .path
            .as_ref()
            .map(|p| p.compile().map_err(|e| e.within("path")))
            .transpose()?;
        let methods = validate_list("methods", &self.methods, |m| {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                Err(ConfigError::at(
                    "",
                    format!("`{m}` is not an upper-case HTTP method"),
                ))
            } else {
                Ok(m.clone())
            }
        })?;
        let headers = validate_list("headers", &self.headers, ValueMatchConfig::compile)?;
        let query_params = validate_list(
            "query_params",
            &self.query_params,
            ValueMatchConfig::compile,
        )?;
        let source_cidrs = parse_cidrs("source_cidrs", &self.source_cidrs)?;
        let principals = self.principals.iter().map(|p| Wildcard::parse(p)).collect();
        Ok(Matcher {
            route_names: self.route_names.clone(),
            hosts,
            path,
            methods,
            headers,
            query_params,
            source_cidrs,
            principals,
        })
    }
}

impl PathMatchConfig {
    fn compile(&self) -> Result<PathMatcher, ConfigError> {
        let set = [&self.exact, &self.prefix, &self.regex, &self.template]
            .iter()
            .filter(|o| o.is_some())
            .count();
        if set != 1 {
            return Err(ConfigError::at(
                "",
                "set exactly one of `exact`, `prefix`, `regex`, `template`",
            ));
        }
        let fold = |s: &str| {
            if self.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        if let Some(p) = &self.exact {
            return Ok(PathMatcher::Exact(fold(p), self.ignore_case));
        }
        if let Some(p) = &self.prefix {
            return Ok(PathMatcher::Prefix(fold(p), self.ignore_case));
        }
        if let Some(r) = &self.regex {
            let pattern = if self.ignore_case {
                format!("(?i){r}")
            } else {
                r.clone()
            };
            return full_regex(&pattern)
                .map(PathMatcher::Regex)
                .map_err(|e| e.within("regex"));
        }
        let t = self.template.as_deref().unwrap_or("");
        Template::parse(t)
            .map(PathMatcher::Template)
            .map_err(|e| e.within("template"))
    }
}

impl ValueMatchConfig {
    fn compile(&self) -> Result<ValueMatcher, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::at("name", "must not be empty"));
        }
        let set = [
            self.present.is_some(),
            self.exact.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set > 1 {
            return Err(ConfigError::at(
                "",
                "set at most one of `present`, `exact`, `prefix`, `regex`",
            ));
        }
        let test = if let Some(e) = &self.exact {
            ValueTest::Exact(e.clone())
        } else if let Some(p) = &self.prefix {
            ValueTest::Prefix(p.clone())
        } else if let Some(r) = &self.regex {
            ValueTest::Regex(full_regex(r).map_err(|e| e.within("regex"))?)
        } else {
            ValueTest::Present(self.present.unwrap_or(true))
        };
        Ok(ValueMatcher {
            name: self.name.to_ascii_lowercase(),
            test,
            invert: self.invert,
        })
    }
}

impl ValueTest {
    fn holds(&self, value: &str) -> bool {
        match self {
            ValueTest::Present(_) => true,
            ValueTest::Exact(e) => value == e,
            ValueTest::Prefix(p) => value.starts_with(p.as_str()),
            ValueTest::Regex(r) => r.is_match(value),
        }
    }
}

impl ValueMatcher {
    /// A condition holds when any value satisfies it; `present: false` holds when
    /// there is no value. `invert` negates the whole condition.
    fn holds<'v>(&self, mut values: impl Iterator<Item = &'v str>) -> bool {
        let result = match &self.test {
            ValueTest::Present(want) => values.next().is_some() == *want,
            test => values.any(|v| test.holds(v)),
        };
        result != self.invert
    }
}

impl PathMatcher {
    fn holds(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p, false) => path == p,
            PathMatcher::Exact(p, true) => path.eq_ignore_ascii_case(p),
            PathMatcher::Prefix(p, false) => path.starts_with(p.as_str()),
            PathMatcher::Prefix(p, true) => path
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            PathMatcher::Regex(r) => r.is_match(path),
            PathMatcher::Template(t) => t.matches(path),
        }
    }
}

impl Matcher {
    /// A match that holds for every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Whether the request satisfies every condition. Cheap conditions run first, and
    /// properties are only fetched when a condition needs them.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method()) {
            return false;
        }
        if let Some(path) = &self.path {
            match req.path() {
                Ok(p) if path.holds(p) => {}
                _ => return false,
            }
        }
        if !self.hosts.is_empty() {
            let host = req.host();
            let host = host.as_ref();
            let ok = self.hosts.iter().any(|h| match h {
                HostPattern::Any => true,
                HostPattern::Exact(e) => host == e,
                HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            });
            if !ok {
                return false;
            }
        }
        if !self
            .headers
            .iter()
            .all(|h| h.holds(req.headers.get_all(&h.name)))
        {
            return false;
        }
        if !self.query_params.iter().all(|q| {
            let value = req.query_param(&q.name);
            q.holds(value.as_deref().into_iter())
        }) {
            return false;
        }
        if !self.route_names.is_empty() {
            match req.props.route_name() {
                Some(r) if self.route_names.contains(&r) => {}
                _ => return false,
            }
        }
        if !self.source_cidrs.is_empty() {
            match req.props.source_ip() {
                Some(ip) if self.source_cidrs.iter().any(|c| c.contains(ip)) => {}
                _ => return false,
            }
        }
        if !self.principals.is_empty() {
            match req.props.peer_principal() {
                Some(p) if self.principals.iter().any(|w| w.matches(&p)) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Compiled rules, evaluated in order.
#[derive(Debug, Clone)]
pub struct Rules<T> {
    rules: Vec<(Matcher, T)>,
}

impl<T> Default for Rules<T> {
    fn default() -> Self {
        Self { rules: Vec::new() }
    }
}

impl<T> Rules<T> {
    /// Compiles each item's match (found by `match_of`, reported as `.match`) and
    /// validates its own settings with `validate`; errors carry `field[i]`.
    pub fn compile<C>(
        field: &str,
        items: &[C],
        match_of: impl Fn(&C) -> &MatchConfig,
        mut validate: impl FnMut(&C) -> Result<T, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let rules = validate_list(field, items, |item| {
            let m = match_of(item).compile().map_err(|e| e.within("match"))?;
            Ok((m, validate(item)?))
        })?;
        Ok(Self { rules })
    }

    pub fn from_compiled(rules: Vec<(Matcher, T)>) -> Self {
        Self { rules }
    }

    pub fn into_compiled(self) -> Vec<(Matcher, T)> {
        self.rules
    }

    /// The first rule whose match holds, with its index.
    pub fn first_match(&self, req: &Request<'_>) -> Option<(usize, &T)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, (m, _))| m.matches(req))
            .map(|(i, (_, t))| (i, t))
    }

    /// Every rule whose match holds, in order.
    pub fn all_matches<'s>(
        &'s self,
        req: &'s Request<'_>,
    ) -> impl Iterator<Item = (usize, &'s T)> + 's {
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, (m, _))| m.matches(req))
            .map(|(i, (_, t))| (i, t))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.rules.iter().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderMap;
    use crate::path::PathOptions;
    use crate::props::StaticProperties;

    fn compile(json: &str) -> Matcher {
        let cfg: MatchConfig = crate::config::parse(json.as_bytes()).unwrap();
        cfg.compile().unwrap()
    }

    fn compile_err(json: &str) -> String {
        let cfg: MatchConfig = crate::config::parse(json.as_bytes()).unwrap();
        cfg.compile().unwrap_err().to_string()
    }

    fn check(m: &Matcher, props: &StaticProperties, pairs: &[(&str, &str)]) -> bool {
        let headers = HeaderMap::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        m.matches(&Request::new(headers, props, PathOptions::default()))
    }

    fn get(path: &str) -> Vec<(&'static str, String)> {
        vec![(":method", "GET".into()), (":path", path.to_string())]
    }

    fn path_matches(m: &Matcher, path: &str) -> bool {
        let props = StaticProperties::new();
        let pairs = get(path);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        check(m, &props, &pairs)
    }

    #[test]
    fn empty_match_holds_for_everything() {
        assert!(path_matches(&compile("{}"), "/anything"));
    }

    #[test]
    fn exact_and_prefix_see_the_normalised_path() {
        let exact = compile(r#"{"path":{"exact":"/admin"}}"#);
        for p in [
            "/admin",
            "//admin",
            "/a/../admin",
            "/%61dmin",
            "/./admin",
            "/admin?x",
        ] {
            assert!(path_matches(&exact, p), "{p}");
        }
        assert!(!path_matches(&exact, "/ADMIN"));
        assert!(!path_matches(&exact, "/admin%2F"));
        let prefix = compile(r#"{"path":{"prefix":"/api/"}}"#);
        assert!(path_matches(&prefix, "/x/../api/v1"));
        assert!(!path_matches(&prefix, "/apiary"));
    }

    #[test]
    fn ignore_case_folds_ascii() {
        let m = compile(r#"{"path":{"prefix":"/Admin","ignore_case":true}}"#);
        assert!(path_matches(&m, "/aDMIN/x"));
        let r = compile(r#"{"path":{"regex":"/admin/.*","ignore_case":true}}"#);
        assert!(path_matches(&r, "/ADMIN/x"));
    }

    #[test]
    fn regex_must_match_the_whole_path() {
        let m = compile(r#"{"path":{"regex":"/users/[0-9]+"}}"#);
        assert!(path_matches(&m, "/users/42"));
        assert!(!path_matches(&m, "/users/42/x"));
        assert!(!path_matches(&m, "/x/users/42"));
    }

    #[test]
    fn templates_match_segments() {
        let m = compile(r#"{"path":{"template":"/users/{id}/posts/{*}"}}"#);
        assert!(path_matches(&m, "/users/7/posts/9"));
        assert!(!path_matches(&m, "/users/7/posts"));
        assert!(!path_matches(&m, "/users//posts/9"));
        assert!(!path_matches(&m, "/users/7/posts/9/x"));
        let rest = compile(r#"{"path":{"template":"/static/{**}"}}"#);
        assert!(path_matches(&rest, "/static/a/b/c"));
        assert!(path_matches(&rest, "/static/"));
        assert!(!path_matches(&rest, "/other/a"));
    }

    #[test]
    fn bad_patterns_are_refused_with_paths() {
        assert!(compile_err(r#"{"path":{"regex":"(unclosed"}}"#)
            .starts_with("path.regex: invalid regex"));
        assert!(compile_err(r#"{"path":{"exact":"/a","prefix":"/b"}}"#).contains("exactly one"));
        assert!(compile_err(r#"{"path":{"template":"/a/{**}/b"}}"#).starts_with("path.template:"));
        assert!(compile_err(r#"{"path":{"template":"/a/x{id}"}}"#).contains("whole segment"));
        assert!(compile_err(r#"{"headers":[{"name":"x","regex":"["}]}"#)
            .starts_with("headers[0].regex:"));
        assert!(compile_err(r#"{"methods":["get"]}"#).starts_with("methods[0]:"));
        assert!(compile_err(r#"{"source_cidrs":["10.0.0.0/40"]}"#).starts_with("source_cidrs[0]:"));
    }

    #[test]
    fn methods_hosts_and_headers() {
        let m = compile(
            r#"{"methods":["POST","PUT"],"hosts":["*.example.com"],
                "headers":[{"name":"x-user","exact":"jason"},{"name":"x-debug","present":false}]}"#,
        );
        let props = StaticProperties::new();
        let base = [
            (":method", "POST"),
            (":path", "/"),
            (":authority", "api.Example.com:443"),
            ("x-user", "jason"),
        ];
        assert!(check(&m, &props, &base));
        let mut wrong_method = base;
        wrong_method[0] = (":method", "GET");
        assert!(!check(&m, &props, &wrong_method));
        let mut bare_domain = base;
        bare_domain[2] = (":authority", "example.com");
        assert!(!check(&m, &props, &bare_domain));
        let mut with_debug = base.to_vec();
        with_debug.push(("x-debug", "1"));
        assert!(!check(&m, &props, &with_debug));
    }

    #[test]
    fn header_conditions_see_every_value_and_invert() {
        let m = compile(r#"{"headers":[{"name":"x-v","prefix":"b"}]}"#);
        let props = StaticProperties::new();
        assert!(check(&m, &props, &[("x-v", "a"), ("x-v", "bb")]));
        let inv = compile(r#"{"headers":[{"name":"x-v","exact":"a","invert":true}]}"#);
        assert!(!check(&inv, &props, &[("x-v", "a")]));
        assert!(check(&inv, &props, &[("x-v", "b")]));
        assert!(check(&inv, &props, &[]));
    }

    #[test]
    fn query_params_are_decoded() {
        let m = compile(r#"{"query_params":[{"name":"debug","exact":"on now"}]}"#);
        assert!(path_matches(&m, "/x?a=1&debug=on+now"));
        assert!(path_matches(&m, "/x?debug=on%20now"));
        assert!(!path_matches(&m, "/x?debug=off"));
    }

    #[test]
    fn route_source_and_principal_use_properties() {
        let m = compile(
            r#"{"route_names":["reviews"],"source_cidrs":["10.0.0.0/8"],
                "principals":["spiffe://cluster.local/ns/default/*"]}"#,
        );
        let ok = StaticProperties::new()
            .with("route_name", "reviews")
            .with("source.address", "10.1.2.3:4000")
            .with(
                "connection.uri_san_peer_certificate",
                "spiffe://cluster.local/ns/default/sa/web",
            );
        assert!(check(&m, &ok, &get_pairs()));
        let wrong_ns = ok.clone().with(
            "connection.uri_san_peer_certificate",
            "spiffe://cluster.local/ns/other/sa/web",
        );
        assert!(!check(&m, &wrong_ns, &get_pairs()));
        let outside = ok.clone().with("source.address", "192.168.0.1:1");
        assert!(!check(&m, &outside, &get_pairs()));
        let no_props = StaticProperties::new();
        assert!(!check(&m, &no_props, &get_pairs()));
    }

    #[derive(Debug, FromJson)]
    struct S {
        #[config(rename = "match", default)]
        matches: MatchConfig,
        id: u32,
    }

    fn get_pairs() -> [(&'static str, &'static str); 2] {
        [(":method", "GET"), (":path", "/")]
    }

    #[test]
    fn rules_first_match_wins_in_order() {
        let cfg: Vec<S> =
            crate::config::parse(br#"[{"match":{"path":{"prefix":"/api"}},"id":1},{"id":2}]"#)
                .unwrap();
        let rules = Rules::compile("rules", &cfg, |s| &s.matches, |s| Ok(s.id)).unwrap();
        let props = StaticProperties::new();
        let req = |p: &str| {
            Request::new(
                HeaderMap::from_pairs(vec![(":path".into(), p.into())]),
                &props,
                PathOptions::default(),
            )
        };
        assert_eq!(rules.first_match(&req("/api/x")), Some((0, &1)));
        assert_eq!(rules.first_match(&req("/other")), Some((1, &2)));
        assert_eq!(rules.all_matches(&req("/api")).count(), 2);
    }

    #[test]
    fn rule_errors_carry_the_rule_index() {
        let cfg: Vec<S> =
            crate::config::parse(br#"[{"id":0}, {"id":1,"match":{"path":{"regex":"("}}}]"#)
                .unwrap();
        let err = Rules::compile("rules", &cfg, |s| &s.matches, |_| Ok(())).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rules[1].match.path.regex: invalid regex"),
            "{err}"
        );
    }
}
