//! The headers stage: applies every matching rule's edits. Rules match against the
//! request as it arrived, and templated values are resolved against it too, so the
//! order of rules changes only which edit wins, never which rules apply.

use crate::config::{Config, Edits, HeadersConfig, Rewrite, Rule};
use crate::template::{Operator, Resolve, Template};
use std::borrow::Cow;
use wasmesh_sdk::percent::{self, is_unreserved};
use wasmesh_sdk::request::{percent_decode, Request};
use wasmesh_sdk::timestamp::rfc3339_millis;
use wasmesh_sdk::{ConfigError, Decision, HeaderMap, PathOptions, Response, Stage};

pub struct HeadersStage {
    cfg: HeadersConfig,
}

/// Response edits, with values resolved while the request was at hand.
#[derive(Debug, Default)]
pub struct Stream {
    response: Vec<Edit>,
}

/// One edit with its value rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    Remove(String),
    Rename(String, String),
    Set(String, String),
    SetIfAbsent(String, String),
    Add(String, String),
}

impl Stage for HeadersStage {
    const NAME: &'static str = "wasmesh-headers";
    type Config = Config;
    type Stream = Stream;

    fn build(config: Config) -> Result<Self, ConfigError> {
        Ok(Self {
            cfg: config.validate()?,
        })
    }

    fn path_options(&self) -> PathOptions {
        self.cfg.path_options
    }

    fn on_request(&self, req: &mut Request<'_>, stream: &mut Stream) -> Decision {
        let matched: Vec<&Rule> = self.cfg.rules.all_matches(req).map(|(_, r)| r).collect();
        let mut request_edits = Vec::new();
        let mut query_set: Vec<(&str, String)> = Vec::new();
        let mut query_remove: Vec<&str> = Vec::new();
        let mut rewrite = None;
        {
            let ctx = RequestValues(req);
            for rule in &matched {
                render_edits(&rule.request, &ctx, &mut request_edits);
                render_edits(&rule.response, &ctx, &mut stream.response);
                query_set.extend(
                    rule.query
                        .set
                        .iter()
                        .map(|(k, t)| (k.as_str(), t.render(&ctx))),
                );
                query_remove.extend(rule.query.remove.iter().map(String::as_str));
                if rule.rewrite.is_some() {
                    rewrite = rule.rewrite.as_ref();
                }
            }
        }
        let changed_path = rewrite_target(req, rewrite, &query_set, &query_remove);
        for edit in &request_edits {
            apply(&mut req.headers, edit);
        }
        if let Some(path) = changed_path {
            req.headers.set(":path", &path);
        }
        if self.cfg.clear_route_cache && !req.headers.ops().is_empty() {
            req.clear_route_cache = true;
        }
        Decision::Continue
    }

    fn on_response(&self, resp: &mut Response<'_>, stream: &mut Stream) -> Decision {
        for edit in &stream.response {
            apply(&mut resp.headers, edit);
        }
        Decision::Continue
    }
}

/// Renders a rule's edits in their documented order: remove, rename, set,
/// set_if_absent, add. A value that renders with CR, LF or NUL is dropped.
fn render_edits(edits: &Edits, ctx: &dyn Resolve, out: &mut Vec<Edit>) {
    let render = |t: &Template| {
        let v = t.render(ctx);
        (!v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))).then_some(v)
    };
    out.extend(edits.remove.iter().map(|n| Edit::Remove(n.clone())));
    out.extend(
        edits
            .rename
            .iter()
            .map(|(f, t)| Edit::Rename(f.clone(), t.clone())),
    );
    for (name, t) in &edits.set {
        out.extend(render(t).map(|v| Edit::Set(name.clone(), v)));
    }
    for (name, t) in &edits.set_if_absent {
        out.extend(render(t).map(|v| Edit::SetIfAbsent(name.clone(), v)));
    }
    for (name, t) in &edits.add {
        out.extend(render(t).map(|v| Edit::Add(name.clone(), v)));
    }
}

fn apply(headers: &mut HeaderMap, edit: &Edit) {
    match edit {
        Edit::Remove(n) => headers.remove(n),
        Edit::Rename(from, to) => {
            let values: Vec<String> = headers.get_all(from).map(str::to_string).collect();
            if !values.is_empty() {
                headers.remove(from);
                headers.remove(to);
                for v in &values {
                    headers.add(to, v);
                }
            }
        }
        Edit::Set(n, v) => headers.set(n, v),
        Edit::SetIfAbsent(n, v) => {
            if !headers.contains(n) {
                headers.set(n, v);
            }
        }
        Edit::Add(n, v) => headers.add(n, v),
    }
}

/// The new `:path` if a rewrite or query edit changes it. Rewrites apply to the
/// normalised path; a request whose path normalisation refuses is left as it is.
fn rewrite_target(
    req: &Request<'_>,
    rewrite: Option<&Rewrite>,
    query_set: &[(&str, String)],
    query_remove: &[&str],
) -> Option<String> {
    if rewrite.is_none() && query_set.is_empty() && query_remove.is_empty() {
        return None;
    }
    let path = req.path().ok()?;
    let new_path: Cow<'_, str> = match rewrite {
        Some(Rewrite::Prefix { from, to }) => match path.strip_prefix(from.as_str()) {
            Some(rest) => Cow::Owned(format!("{to}{rest}")),
            None => Cow::Borrowed(path),
        },
        Some(Rewrite::Regex {
            pattern,
            substitution,
        }) => pattern.replace_all(path, substitution.as_str()),
        None => Cow::Borrowed(path),
    };
    let query = edit_query(req.query().unwrap_or(""), query_set, query_remove);
    let target = if query.is_empty() {
        new_path.into_owned()
    } else {
        format!("{new_path}?{query}")
    };
    (target != req.raw_path()).then_some(target)
}

/// Applies query edits: `set` replaces every value of a parameter (or appends it),
/// `remove` drops it. Untouched parameters keep their exact encoding.
fn edit_query(query: &str, set: &[(&str, String)], remove: &[&str]) -> String {
    let touched = |raw_key: &str| {
        let key = percent_decode(raw_key);
        remove.contains(&key.as_ref()) || set.iter().any(|(k, _)| *k == key)
    };
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| !touched(p.split_once('=').map_or(*p, |(k, _)| k)))
        .map(str::to_string)
        .collect();
    for (k, v) in set {
        if !remove.contains(k) {
            parts.push(format!(
                "{}={}",
                percent::encode(k, is_unreserved),
                percent::encode(v, is_unreserved)
            ));
        }
    }
    parts.join("&")
}

/// Template values for one request.
struct RequestValues<'r, 'a>(&'r Request<'a>);

impl Resolve for RequestValues<'_, '_> {
    fn resolve(&self, op: &Operator) -> Cow<'_, str> {
        let req = self.0;
        let owned = |v: Option<String>| Cow::Owned(v.unwrap_or_default());
        match op {
            Operator::RequestHeader(h) => Cow::Borrowed(req.headers.get(h).unwrap_or("")),
            Operator::Method => Cow::Borrowed(req.method()),
            Operator::Path => Cow::Borrowed(req.path().unwrap_or("")),
            Operator::Host => req.host(),
            Operator::SourceIp => owned(req.props.source_ip().map(|ip| ip.to_string())),
            Operator::RouteName => owned(req.props.route_name()),
            Operator::RequestId => match req.props.request_id() {
                Some(id) => Cow::Owned(id),
                None => Cow::Borrowed(req.headers.get("x-request-id").unwrap_or("")),
            },
            Operator::PeerPrincipal => owned(req.props.peer_principal()),
            Operator::StartTime => owned(start_ms(req).map(rfc3339_millis)),
            Operator::StartTimeUnixMs => owned(start_ms(req).map(|ms| ms.to_string())),
        }
    }
}

fn start_ms(req: &Request<'_>) -> Option<i64> {
    req.props.request_time_nanos().map(|ns| ns / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{config, StaticProperties};

    fn stage(json: &str) -> HeadersStage {
        HeadersStage::build(config::parse(json.as_bytes()).unwrap()).unwrap()
    }

    fn build_err(json: &str) -> String {
        match config::parse::<Config>(json.as_bytes()).and_then(HeadersStage::build) {
            Ok(_) => panic!("config accepted: {json}"),
            Err(e) => e.to_string(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn run(
        stage: &HeadersStage,
        props: &StaticProperties,
        pairs: &[(&str, &str)],
    ) -> (HeaderMap, Stream, bool) {
        let mut req = Request::new(headers(pairs), props, stage.path_options());
        let mut stream = Stream::default();
        assert_eq!(stage.on_request(&mut req, &mut stream), Decision::Continue);
        let clear = req.clear_route_cache;
        (req.headers, stream, clear)
    }

    const GET: [(&str, &str); 3] = [
        (":method", "GET"),
        (":path", "/api/v1/items?x=1&y=2"),
        (":authority", "shop"),
    ];

    #[test]
    fn set_add_remove_on_requests() {
        let s = stage(
            r#"{"request":{"set":[{"name":"X-A","value":"1"}],"add":[{"name":"x-b","value":"2"}],"remove":["x-drop"]}}"#,
        );
        let mut pairs = GET.to_vec();
        pairs.push(("x-drop", "secret"));
        pairs.push(("x-b", "0"));
        let (h, _, clear) = run(&s, &StaticProperties::new(), &pairs);
        assert_eq!(h.get("x-a"), Some("1"));
        assert_eq!(h.get_all("x-b").collect::<Vec<_>>(), ["0", "2"]);
        assert!(!h.contains("x-drop"));
        assert!(clear, "request edits must ask Envoy to re-route");
    }

    #[test]
    fn set_if_absent_and_rename() {
        let s = stage(
            r#"{"request":{"set_if_absent":[{"name":"x-t","value":"d"}],"rename":[{"from":"x-old","to":"x-new"}]}}"#,
        );
        let mut pairs = GET.to_vec();
        pairs.push(("x-t", "kept"));
        pairs.push(("x-old", "v1"));
        pairs.push(("x-old", "v2"));
        let (h, _, _) = run(&s, &StaticProperties::new(), &pairs);
        assert_eq!(h.get("x-t"), Some("kept"));
        assert!(!h.contains("x-old"));
        assert_eq!(h.get_all("x-new").collect::<Vec<_>>(), ["v1", "v2"]);
        let (h, _, _) = run(&s, &StaticProperties::new(), &GET);
        assert_eq!(h.get("x-t"), Some("d"));
    }

    #[test]
    fn no_edits_no_route_cache_clear() {
        let s = stage(r#"{"response":{"set":[{"name":"x-r","value":"1"}]}}"#);
        let (_, stream, clear) = run(&s, &StaticProperties::new(), &GET);
        assert!(!clear);
        assert_eq!(stream.response, [Edit::Set("x-r".into(), "1".into())]);
    }

    #[test]
    fn response_edits_use_request_values() {
        let s = stage(
            r#"{"response":{"set":[{"name":"x-echo-user","value":"%REQ(x-user)%@%SOURCE_IP%"}],"remove":["server"]}}"#,
        );
        let props = StaticProperties::new().with("source.address", "10.0.0.9:1234");
        let mut pairs = GET.to_vec();
        pairs.push(("x-user", "jason"));
        let (_, mut stream, _) = run(&s, &props, &pairs);
        let mut resp = Response::new(headers(&[(":status", "200"), ("server", "envoy")]), &props);
        s.on_response(&mut resp, &mut stream);
        assert_eq!(resp.headers.get("x-echo-user"), Some("jason@10.0.0.9"));
        assert!(!resp.headers.contains("server"));
    }

    #[test]
    fn rules_apply_only_when_matched_in_order() {
        let s = stage(
            r#"{"rules":[
                {"match":{"path":{"prefix":"/api/"}},"request":{"set":[{"name":"x-tier","value":"api"}]}},
                {"match":{"headers":[{"name":"x-beta"}]},"request":{"set":[{"name":"x-tier","value":"beta"}]}}]}"#,
        );
        let (h, _, _) = run(&s, &StaticProperties::new(), &GET);
        assert_eq!(h.get("x-tier"), Some("api"));
        let mut beta = GET.to_vec();
        beta.push(("x-beta", "1"));
        let (h, _, _) = run(&s, &StaticProperties::new(), &beta);
        assert_eq!(h.get("x-tier"), Some("beta"));
        let (h, _, _) = run(
            &s,
            &StaticProperties::new(),
            &[(":method", "GET"), (":path", "/web")],
        );
        assert!(!h.contains("x-tier"));
    }

    #[test]
    fn templates_resolve_properties_and_time() {
        let s = stage(
            r#"{"request":{"set":[{"name":"x-ctx","value":"%METHOD% %PATH% %HOST% %ROUTE_NAME% %PEER_PRINCIPAL% %REQUEST_ID%"},
                                  {"name":"x-t","value":"%START_TIME%"}]}}"#,
        );
        let props = StaticProperties::new()
            .with("route_name", "r1")
            .with(
                "connection.uri_san_peer_certificate",
                "spiffe://td/ns/a/sa/b",
            )
            .with("request.id", "rid-1")
            .with_bytes("request.time", &(1_000i64 * 1_000_000).to_le_bytes());
        let (h, _, _) = run(
            &s,
            &props,
            &[
                (":method", "GET"),
                (":path", "//a/./b?q"),
                (":authority", "Shop:80"),
            ],
        );
        assert_eq!(
            h.get("x-ctx"),
            Some("GET /a/b shop r1 spiffe://td/ns/a/sa/b rid-1")
        );
        assert_eq!(h.get("x-t"), Some("1970-01-01T00:00:01.000Z"));
    }

    #[test]
    fn prefix_rewrite_keeps_the_query() {
        let s = stage(r#"{"request":{"rewrite":{"prefix":{"from":"/api/v1/","to":"/v2/"}}}}"#);
        let (h, _, clear) = run(&s, &StaticProperties::new(), &GET);
        assert_eq!(h.get(":path"), Some("/v2/items?x=1&y=2"));
        assert!(clear);
    }

    #[test]
    fn regex_rewrite_substitutes_groups() {
        let s = stage(
            r#"{"request":{"rewrite":{"regex":{"pattern":"^/api/v(\\d+)/(.*)$","substitution":"/$2/version/$1"}}}}"#,
        );
        let (h, _, _) = run(&s, &StaticProperties::new(), &GET);
        assert_eq!(h.get(":path"), Some("/items/version/1?x=1&y=2"));
    }

    #[test]
    fn rewrite_sees_the_normalised_path() {
        let s = stage(r#"{"request":{"rewrite":{"prefix":{"from":"/public/","to":"/static/"}}}}"#);
        let (h, _, _) = run(
            &s,
            &StaticProperties::new(),
            &[(":path", "/x/../public/a.css")],
        );
        assert_eq!(h.get(":path"), Some("/static/a.css"));
    }

    #[test]
    fn query_edits() {
        let s =
            stage(r#"{"request":{"query":{"set":[{"name":"x","value":"a b&c"}],"remove":["y"]}}}"#);
        let (h, _, _) = run(&s, &StaticProperties::new(), &GET);
        assert_eq!(h.get(":path"), Some("/api/v1/items?x=a%20b%26c"));
    }

    #[test]
    fn forbidden_names_and_values_are_refused() {
        assert!(
            build_err(r#"{"request":{"set":[{"name":":path","value":"/x"}]}}"#)
                .starts_with("request.set[0].name: `:path` is a pseudo-header")
        );
        assert!(
            build_err(r#"{"response":{"remove":["Transfer-Encoding"]}}"#)
                .starts_with("response.remove[0]: `Transfer-Encoding` is a hop-by-hop")
        );
        assert!(
            build_err(r#"{"request":{"add":[{"name":"bad name","value":"x"}]}}"#)
                .starts_with("request.add[0].name:")
        );
        assert!(
            build_err(r#"{"request":{"set":[{"name":"x","value":"a\r\nInjected: 1"}]}}"#)
                .starts_with("request.set[0].value: CR, LF")
        );
        assert!(build_err(
            r#"{"rules":[{},{"request":{"set":[{"name":"x","value":"%BOGUS%"}]}}]}"#
        )
        .starts_with("rules[1].request.set[0].value: unknown operator"));
        assert!(build_err(r#"{"rules":[{"match":{"path":{"regex":"("}}}]}"#)
            .starts_with("rules[0].match.path.regex:"));
        assert!(build_err(r#"{"request":{"rewrite":{}}}"#)
            .starts_with("request.rewrite: set exactly one"));
        assert!(
            build_err(r#"{"request":{"set":[{"name":"x"}]}}"#).contains("missing field `value`")
        );
        assert!(build_err(r#"{"requests":{}}"#).contains("unknown field `requests`"));
        assert!(build_err(r#"{"request":{"sett":[]}}"#).contains("unknown field `sett`"));
        assert_eq!(
            build_err(r#"{"rules":[{"response":{"query":{"remove":["a"]}}}]}"#),
            "rules[0].response.query: query edits apply to requests only"
        );
        assert_eq!(
            build_err(r#"{"response":{"rewrite":{"prefix":{"from":"/a","to":"/b"}}}}"#),
            "response.rewrite: path rewrites apply to requests only"
        );
        // Explicitly allowed:
        stage(
            r#"{"allow_pseudo_headers":true,"allow_hop_by_hop":true,"request":{"set":[{"name":":authority","value":"x"}],"remove":["te"]}}"#,
        );
    }

    #[test]
    fn rendered_values_with_line_breaks_are_dropped() {
        let s = stage(r#"{"request":{"set":[{"name":"x-copy","value":"%REQ(x-in)%"}]}}"#);
        let mut pairs = GET.to_vec();
        pairs.push(("x-in", "a\r\nInjected: yes"));
        let (h, _, _) = run(&s, &StaticProperties::new(), &pairs);
        assert!(!h.contains("x-copy"));
    }
}
