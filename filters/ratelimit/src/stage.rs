//! The rate-limit stage: every matching rule takes a token from its key's bucket, in
//! config order; the first rule that is out of tokens answers 429 (or, in shadow
//! mode, is only counted). Later rules are not charged for a request already refused.

use crate::bucket::Verdict;
use crate::config::{Config, OnTableFull, RateLimitConfig, Rule};
use crate::key::KeyContext;
use crate::store::{HostStore, Store};
use crate::table::{Take, TakeError};
use wasmesh_sdk::metrics::Counter;
use wasmesh_sdk::{ConfigError, Decision, LocalReply, PathOptions, Request, Response, Stage};

pub struct RateLimitStage<S: Store = HostStore> {
    cfg: RateLimitConfig,
    store: S,
    allowed: Counter,
    limited: Counter,
    shadow_limited: Counter,
    table_full: Counter,
    errors: Counter,
}

/// Per request: the draft-03 headers to add to the response of an allowed request.
#[derive(Debug, Default)]
pub struct Stream {
    headers: Option<RateHeaders>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateHeaders {
    limit: u64,
    remaining: u64,
    reset_s: u64,
}

impl<S: Store> RateLimitStage<S> {
    pub fn store(&self) -> &S {
        &self.store
    }

    /// One rule's verdict, or None when the rule does not apply after all (the store
    /// failed, or the table is full and the policy lets the request through).
    fn verdict(&self, rule: &Rule, key: &str, now: u64) -> Option<Verdict> {
        let label = [rule.name.as_str()];
        let taken = match rule.table.take(&self.store, key, now) {
            Ok(Take::TableFull) => {
                self.table_full.inc(&label);
                match self.cfg.on_table_full {
                    OnTableFull::Allow => return None,
                    OnTableFull::Deny => {
                        return Some(Verdict {
                            allowed: false,
                            remaining: 0,
                            reset_ns: rule.table.limit.fill_interval_ns,
                        })
                    }
                    OnTableFull::OverflowBucket => rule.overflow.take(&self.store, "", now),
                }
            }
            other => other,
        };
        match taken {
            Ok(Take::Done(v)) => Some(v),
            // The overflow table has one slot and one key: it is never full.
            Ok(Take::TableFull) => None,
            Err(e) => {
                // Fail open: a limiter that cannot reach its state must not take the
                // service down. Counted, so it is visible.
                self.errors.inc(&label);
                match e {
                    TakeError::Contended => {
                        wasmesh_sdk::warn!(
                            "rule `{}`: bucket contended, request allowed",
                            rule.name
                        )
                    }
                    TakeError::Host(h) => {
                        wasmesh_sdk::warn!(
                            "rule `{}`: shared data failed ({h:?}), request allowed",
                            rule.name
                        )
                    }
                }
                None
            }
        }
    }

    fn reply(&self, rule: &Rule, v: &Verdict) -> LocalReply {
        let mut reply = LocalReply::new(self.cfg.status, self.cfg.body.as_bytes())
            .header("x-envoy-ratelimited", "true")
            .details("wasmesh_ratelimited");
        if !self.cfg.body.is_empty() {
            reply = reply.header("content-type", "text/plain");
        }
        let reset_s = ceil_seconds(v.reset_ns);
        if self.cfg.retry_after {
            reply = reply.header("retry-after", &reset_s.to_string());
        }
        if self.cfg.x_ratelimit_headers {
            reply = reply
                .header(
                    "x-ratelimit-limit",
                    &rule.table.limit.max_tokens.to_string(),
                )
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &reset_s.to_string());
        }
        reply
    }
}

/// Whole seconds, rounded up: a client that waits this long finds a token.
fn ceil_seconds(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

impl<S: Store + Default + 'static> Stage for RateLimitStage<S> {
    const NAME: &'static str = "wasmesh-ratelimit";
    type Config = Config;
    type Stream = Stream;

    fn build(config: Config) -> Result<Self, ConfigError> {
        let label = ["rule"];
        Ok(Self {
            cfg: config.validate()?,
            store: S::default(),
            allowed: Counter::new("wasmesh_ratelimit_allowed_total", &label),
            limited: Counter::new("wasmesh_ratelimit_limited_total", &label),
            shadow_limited: Counter::new("wasmesh_ratelimit_shadow_limited_total", &label),
            table_full: Counter::new("wasmesh_ratelimit_table_full_total", &label),
            errors: Counter::new("wasmesh_ratelimit_errors_total", &label),
        })
    }

    fn path_options(&self) -> PathOptions {
        self.cfg.path_options
    }

    fn on_request(&self, req: &mut Request<'_>, stream: &mut Stream) -> Decision {
        let ctx = KeyContext {
            xff_num_trusted_hops: self.cfg.xff_num_trusted_hops,
            jwt_payload_header: &self.cfg.jwt_payload_header,
        };
        let mut now = None;
        for (_, rule) in self.cfg.rules.all_matches(req) {
            let key = rule.key.build(req, &ctx);
            let now = *now.get_or_insert_with(|| self.store.now_ns());
            let Some(v) = self.verdict(rule, &key, now) else {
                continue;
            };
            let label = [rule.name.as_str()];
            if v.allowed {
                self.allowed.inc(&label);
                let h = RateHeaders {
                    limit: rule.table.limit.max_tokens,
                    remaining: v.remaining,
                    reset_s: ceil_seconds(v.reset_ns),
                };
                // Report the rule closest to its limit.
                if stream.headers.is_none_or(|old| h.remaining < old.remaining) {
                    stream.headers = Some(h);
                }
            } else if rule.shadow {
                self.shadow_limited.inc(&label);
            } else {
                self.limited.inc(&label);
                return Decision::Reply(self.reply(rule, &v));
            }
        }
        Decision::Continue
    }

    fn on_response(&self, resp: &mut Response<'_>, stream: &mut Stream) -> Decision {
        if let (true, Some(h)) = (self.cfg.x_ratelimit_headers, stream.headers) {
            resp.headers.set("x-ratelimit-limit", &h.limit.to_string());
            resp.headers
                .set("x-ratelimit-remaining", &h.remaining.to_string());
            resp.headers
                .set("x-ratelimit-reset", &h.reset_s.to_string());
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use wasmesh_sdk::{config, HeaderMap, StaticProperties};

    const S: u64 = 1_000_000_000;

    fn stage(json: &str) -> RateLimitStage<MemoryStore> {
        config::parse::<Config>(json.as_bytes())
            .and_then(RateLimitStage::build)
            .unwrap()
    }

    fn build_err(json: &str) -> String {
        match config::parse::<Config>(json.as_bytes())
            .and_then(RateLimitStage::<MemoryStore>::build)
        {
            Ok(_) => panic!("config accepted: {json}"),
            Err(e) => e.to_string(),
        }
    }

    fn run(
        stage: &RateLimitStage<MemoryStore>,
        props: &StaticProperties,
        headers: &[(&str, &str)],
    ) -> (Decision, Stream) {
        let headers = HeaderMap::from_pairs(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut req = Request::new(headers, props, stage.path_options());
        let mut stream = Stream::default();
        let d = stage.on_request(&mut req, &mut stream);
        (d, stream)
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Continue => 200,
            Decision::Reply(r) => r.status,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn global_limit_from_top_level_bucket() {
        let s = stage(r#"{"token_bucket":{"max_tokens":2,"fill_interval":"1s"}}"#);
        let p = StaticProperties::new();
        let codes: Vec<u16> = (0..3).map(|_| status(&run(&s, &p, &[]).0)).collect();
        assert_eq!(codes, [200, 200, 429]);
        s.store().advance(S);
        assert_eq!(status(&run(&s, &p, &[]).0), 200);
    }

    #[test]
    fn rejection_carries_the_headers() {
        let s =
            stage(r#"{"token_bucket":{"max_tokens":1,"tokens_per_fill":1,"fill_interval":"2s"}}"#);
        let p = StaticProperties::new();
        run(&s, &p, &[]);
        s.store().advance(S / 2);
        let Decision::Reply(r) = run(&s, &p, &[]).0 else {
            panic!()
        };
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(r.status, 429);
        assert_eq!(r.body, b"local_rate_limited");
        assert_eq!(h("x-envoy-ratelimited"), Some("true"));
        assert_eq!(h("retry-after"), Some("2"));
        assert_eq!(h("x-ratelimit-limit"), Some("1"));
        assert_eq!(h("x-ratelimit-remaining"), Some("0"));
        assert_eq!(h("x-ratelimit-reset"), Some("2"));
    }

    #[test]
    fn headers_can_be_turned_off_and_reply_configured() {
        let s = stage(
            r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},
                "enable_x_ratelimit_headers":"OFF","retry_after":false,
                "status":503,"body":"slow down"}"#,
        );
        let p = StaticProperties::new();
        let (_, stream) = run(&s, &p, &[]);
        assert!(stream.headers.is_some());
        let Decision::Reply(r) = run(&s, &p, &[]).0 else {
            panic!()
        };
        assert_eq!(
            (r.status, r.body.as_slice()),
            (503, b"slow down".as_slice())
        );
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x-envoy-ratelimited", "content-type"]);
    }

    #[test]
    fn allowed_responses_report_the_tightest_rule() {
        let s = stage(
            r#"{"rules":[
                {"name":"wide","token_bucket":{"max_tokens":10,"fill_interval":"1s"}},
                {"name":"narrow","token_bucket":{"max_tokens":3,"fill_interval":"1s"}}]}"#,
        );
        let (_, stream) = run(&s, &StaticProperties::new(), &[]);
        assert_eq!(
            stream.headers,
            Some(RateHeaders {
                limit: 3,
                remaining: 2,
                reset_s: 1
            })
        );
    }

    #[test]
    fn per_key_and_per_rule_scope() {
        let s = stage(
            r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},
                "rules":[{"name":"api","match":{"path":{"prefix":"/api/"}},"key":["header:x-user"]}]}"#,
        );
        let p = StaticProperties::new();
        let req =
            |user: &str, path: &str| status(&run(&s, &p, &[(":path", path), ("x-user", user)]).0);
        assert_eq!(req("a", "/api/x"), 200);
        assert_eq!(req("a", "/api/y"), 429);
        assert_eq!(req("b", "/api/x"), 200);
        assert_eq!(req("a", "/public"), 200);
    }

    #[test]
    fn shadow_counts_but_does_not_refuse() {
        let s = stage(r#"{"shadow":true,"token_bucket":{"max_tokens":1,"fill_interval":"1s"}}"#);
        let p = StaticProperties::new();
        assert!((0..5).all(|_| status(&run(&s, &p, &[]).0) == 200));
        // A rule may opt back into enforcement.
        let s = stage(
            r#"{"shadow":true,"rules":[{"name":"r","shadow":false,
                "token_bucket":{"max_tokens":1,"fill_interval":"1s"}}]}"#,
        );
        assert_eq!(status(&run(&s, &p, &[]).0), 200);
        assert_eq!(status(&run(&s, &p, &[]).0), 429);
    }

    #[test]
    fn a_refused_request_does_not_charge_later_rules() {
        let s = stage(
            r#"{"rules":[
                {"name":"first","token_bucket":{"max_tokens":1,"fill_interval":"1s"}},
                {"name":"second","token_bucket":{"max_tokens":2,"fill_interval":"1s"}}]}"#,
        );
        let p = StaticProperties::new();
        assert_eq!(status(&run(&s, &p, &[]).0), 200); // second: 1 left
        assert_eq!(status(&run(&s, &p, &[]).0), 429); // refused by first
        s.store().advance(S);
        // second refilled to 2 regardless; its one remaining before was not taken twice.
        let (_, st) = run(&s, &p, &[]);
        assert_eq!(st.headers.map(|h| h.remaining), Some(0));
    }

    #[test]
    fn table_full_policies() {
        let base = |policy: &str| {
            stage(&format!(
                r#"{{"max_keys":1,"on_table_full":"{policy}",
                    "rules":[{{"name":"r","key":["header:k"],
                    "token_bucket":{{"max_tokens":1,"fill_interval":"1s"}}}}]}}"#
            ))
        };
        let p = StaticProperties::new();
        let go = |s: &RateLimitStage<MemoryStore>, k: &str| status(&run(s, &p, &[("k", k)]).0);
        let s = base("allow");
        assert_eq!((go(&s, "a"), go(&s, "b"), go(&s, "b")), (200, 200, 200));
        let s = base("deny");
        assert_eq!((go(&s, "a"), go(&s, "b")), (200, 429));
        let s = base("overflow_bucket");
        assert_eq!((go(&s, "a"), go(&s, "b"), go(&s, "c")), (200, 200, 429));
    }

    #[test]
    fn store_failure_fails_open() {
        let s = stage(r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"}}"#);
        s.store().lose_next_writes(u32::MAX);
        let p = StaticProperties::new();
        assert!((0..3).all(|_| status(&run(&s, &p, &[]).0) == 200));
    }

    #[test]
    fn malformed_config_names_the_field() {
        let cases = [
            (r#"{}"#, "set `token_bucket`"),
            (
                r#"{"token_bucket":{"max_tokens":0,"fill_interval":"1s"}}"#,
                "token_bucket.max_tokens: must be at least 1",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"tokens_per_fill":0,"fill_interval":"1s"}}"#,
                "token_bucket.tokens_per_fill",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"10ms"}}"#,
                "token_bucket.fill_interval: must be at least 50ms",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"soon"}}"#,
                "token_bucket.fill_interval: `soon`",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1}}"#,
                "missing field `fill_interval`",
            ),
            (
                r#"{"token_bucket":{"max_tokens":-1,"fill_interval":"1s"}}"#,
                "token_bucket.max_tokens",
            ),
            (
                r#"{"rules":[{"name":"a"}]}"#,
                "rules[0].token_bucket: missing",
            ),
            (
                r#"{"rules":[{"name":"a b","token_bucket":{"max_tokens":1,"fill_interval":"1s"}}]}"#,
                "rules[0].name",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"rules":[{"name":"a"},{"name":"a"}]}"#,
                "rules[1].name: duplicate",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"rules":[{"name":"a","key":["client_ip","nope"]}]}"#,
                "rules[0].key[1]: unknown key part `nope`",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"rules":[{"name":"a","key":["path_template"]}]}"#,
                "rules[0].path_templates",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"rules":[{"name":"a","path_templates":["x"]}]}"#,
                "rules[0].path_templates[0]",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"rules":[{"name":"a","match":{"methods":["get"]}}]}"#,
                "rules[0].match.methods[0]",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"rules":[{"name":"a","max_keys":0}]}"#,
                "rules[0].max_keys",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"status":200}"#,
                "status: must be 400-599",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"max_keys":2000000}"#,
                "max_keys: must be",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"domain":""}"#,
                "domain:",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"on_table_full":"drop"}"#,
                "on_table_full",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"enable_x_ratelimit_headers":"ON"}"#,
                "enable_x_ratelimit_headers",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"jwt_payload_header":"X Y"}"#,
                "jwt_payload_header",
            ),
            (
                r#"{"token_bucket":{"max_tokens":1,"fill_interval":"1s"},"burst":3}"#,
                "unknown field `burst`",
            ),
        ];
        for (json, want) in cases {
            let err = build_err(json);
            assert!(err.contains(want), "{json}\n  got: {err}\n  want: {want}");
        }
    }
}
