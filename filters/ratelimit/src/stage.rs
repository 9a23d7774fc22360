//! The rate-limit stage: every matching rule takes a token from its key's bucket, in
//! config order; the first rule that is out of tokens answers 429 (or, in shadow
//! mode, is only counted). Later rules are not charged for a request already refused.
//! Global rules are asked of the rate limit service after the local ones allowed the
//! request, in one call for all of them (see [`crate::global`]).

use crate::bucket::Verdict;
use crate::config::{Config, OnTableFull, RateLimitConfig, Rule, RuleLimit};
use crate::global::{self, Answer};
use crate::key::KeyContext;
use crate::rls::DescriptorStatus;
use crate::store::{HostStore, Store};
use crate::table::{Table, Take, TakeError};
use wasmesh_sdk::metrics::Counter;
use wasmesh_sdk::{
    ConfigError, Decision, GrpcResult, LocalReply, PathOptions, Request, Response, Stage,
};

pub struct RateLimitStage<S: Store = HostStore> {
    cfg: RateLimitConfig,
    store: S,
    allowed: Counter,
    limited: Counter,
    shadow_limited: Counter,
    table_full: Counter,
    errors: Counter,
    /// Global rules' outcomes, labelled `rule` and `decision` (ok, over_limit,
    /// shadow_over_limit, error).
    global: Counter,
}

/// Per request: the draft-03 headers to add to the response of an allowed request,
/// and the global rules asked about (indices into the rules, in descriptor order).
#[derive(Debug, Default)]
pub struct Stream {
    headers: Option<RateHeaders>,
    asked: Vec<usize>,
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
    fn verdict(
        &self,
        rule: &Rule,
        (table, overflow): (&Table, &Table),
        key: &str,
        now: u64,
    ) -> Option<Verdict> {
        let label = [rule.name.as_str()];
        let taken = match table.take(&self.store, key, now) {
            Ok(Take::TableFull) => {
                self.table_full.inc(&label);
                match self.cfg.on_table_full {
                    OnTableFull::Allow => return None,
                    OnTableFull::Deny => {
                        return Some(Verdict {
                            allowed: false,
                            remaining: 0,
                            reset_ns: table.limit.fill_interval_ns,
                        })
                    }
                    OnTableFull::OverflowBucket => overflow.take(&self.store, "", now),
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

    /// The 429: `limit` and `reset_s` for the draft-03 headers, when known.
    fn reply(&self, limit: Option<u64>, reset_s: Option<u64>) -> LocalReply {
        let mut reply = LocalReply::new(self.cfg.status, self.cfg.body.as_bytes())
            .header("x-envoy-ratelimited", "true")
            .details("wasmesh_ratelimited");
        if !self.cfg.body.is_empty() {
            reply = reply.header("content-type", "text/plain");
        }
        if let (true, Some(reset_s)) = (self.cfg.retry_after, reset_s) {
            reply = reply.header("retry-after", &reset_s.to_string());
        }
        if let (true, Some(limit)) = (self.cfg.x_ratelimit_headers, limit) {
            reply = reply
                .header("x-ratelimit-limit", &limit.to_string())
                .header("x-ratelimit-remaining", "0");
            if let Some(reset_s) = reset_s {
                reply = reply.header("x-ratelimit-reset", &reset_s.to_string());
            }
        }
        reply
    }

    fn global_rule(&self, index: usize) -> Option<&Rule> {
        self.cfg.rules.iter().nth(index)
    }

    /// Applies the rate limit service's answer to the request that asked.
    fn apply_answer(&self, stream: &mut Stream, result: GrpcResult) -> Decision {
        let asked = std::mem::take(&mut stream.asked);
        let rules: Vec<&Rule> = asked.iter().filter_map(|&i| self.global_rule(i)).collect();
        let shadow: Vec<bool> = rules.iter().map(|r| r.shadow).collect();
        let count = |rule: &Rule, decision: &str| {
            self.global.inc(&[rule.name.as_str(), decision]);
        };
        match global::interpret(result, &shadow) {
            Answer::Allowed(statuses) => {
                for (rule, status) in rules.iter().zip(&statuses) {
                    let over = status
                        .as_ref()
                        .is_some_and(|s| s.code == crate::rls::Code::OverLimit);
                    count(rule, if over { "shadow_over_limit" } else { "ok" });
                    if let Some(h) = status.as_ref().and_then(rate_headers) {
                        if stream.headers.is_none_or(|old| h.remaining < old.remaining) {
                            stream.headers = Some(h);
                        }
                    }
                }
                Decision::Continue
            }
            Answer::OverLimit(i, status) => {
                if let Some(rule) = rules.get(i) {
                    count(rule, "over_limit");
                }
                let limit = status.as_ref().and_then(|s| s.limit).map(u64::from);
                let reset_s = status.as_ref().and_then(|s| s.reset_s);
                Decision::Reply(self.reply(limit, reset_s))
            }
            Answer::Failed(why) => {
                for rule in &rules {
                    count(rule, "error");
                }
                let Some(service) = &self.cfg.service else {
                    return Decision::Continue;
                };
                wasmesh_sdk::warn!(
                    "rate limit service `{}` failed ({why}): request {}",
                    service.cluster,
                    if service.failure_mode_deny {
                        "refused"
                    } else {
                        "allowed"
                    }
                );
                if service.failure_mode_deny {
                    Decision::Reply(
                        LocalReply::new(service.failure_status, "rate limit service unavailable\n")
                            .header("content-type", "text/plain")
                            .details("wasmesh_ratelimit_service_failed"),
                    )
                } else {
                    Decision::Continue
                }
            }
        }
    }
}

/// The draft-03 headers a service status gives, when it carries a limit.
fn rate_headers(s: &DescriptorStatus) -> Option<RateHeaders> {
    Some(RateHeaders {
        limit: u64::from(s.limit?),
        remaining: u64::from(s.limit_remaining),
        reset_s: s.reset_s.unwrap_or(0),
    })
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
            global: Counter::new(
                "wasmesh_ratelimit_global_decisions_total",
                &["rule", "decision"],
            ),
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
        let mut descriptors = Vec::new();
        stream.asked.clear();
        for (index, rule) in self.cfg.rules.all_matches(req) {
            let (table, overflow) = match &rule.limit {
                RuleLimit::Local { table, overflow } => (table, overflow),
                RuleLimit::Global => {
                    descriptors.push(global::descriptor(rule, req, &ctx));
                    stream.asked.push(index);
                    continue;
                }
            };
            let key = rule.key.build(req, &ctx);
            let now = *now.get_or_insert_with(|| self.store.now_ns());
            let Some(v) = self.verdict(rule, (table, overflow), &key, now) else {
                continue;
            };
            let label = [rule.name.as_str()];
            if v.allowed {
                self.allowed.inc(&label);
                let h = RateHeaders {
                    limit: table.limit.max_tokens,
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
                let reset_s = ceil_seconds(v.reset_ns);
                return Decision::Reply(self.reply(Some(table.limit.max_tokens), Some(reset_s)));
            }
        }
        match (&self.cfg.service, descriptors.is_empty()) {
            (Some(service), false) => Decision::GrpcCall(global::call(service, descriptors)),
            _ => Decision::Continue,
        }
    }

    fn on_grpc_response(
        &self,
        _req: &mut Request<'_>,
        stream: &mut Stream,
        result: GrpcResult,
    ) -> Decision {
        self.apply_answer(stream, result)
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

    const GLOBAL: &str = r#"{"domain":"mesh","xff_num_trusted_hops":1,
        "rate_limit_service":{"cluster":"wasmesh_rls","timeout":"50ms"},
        "rules":[{"name":"per-user","global":true,"key":["header:x-user","client_ip","path"]},
                 {"name":"all","global":true,"shadow":true}]}"#;

    fn answer(
        s: &RateLimitStage<MemoryStore>,
        stream: &mut Stream,
        overall: crate::rls::Code,
        statuses: Vec<DescriptorStatus>,
    ) -> Decision {
        let msg = crate::rls::RateLimitResponse {
            overall_code: overall,
            statuses,
        }
        .encode();
        let p = StaticProperties::new();
        let mut req = Request::new(HeaderMap::default(), &p, s.path_options());
        s.on_grpc_response(&mut req, stream, GrpcResult::Message(msg))
    }

    #[test]
    fn global_rules_send_one_call_with_a_descriptor_each() {
        let s = stage(GLOBAL);
        let p = StaticProperties::new().with("source.address", "10.0.0.9:4000");
        let (d, stream) = run(
            &s,
            &p,
            &[
                (":path", "/a/../api//x?q=1"),
                ("x-user", "ann"),
                ("x-forwarded-for", "1.2.3.4, 5.6.7.8"),
            ],
        );
        let Decision::GrpcCall(call) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (
                call.cluster.as_str(),
                call.service.as_str(),
                call.method.as_str()
            ),
            ("wasmesh_rls", global::SERVICE, "ShouldRateLimit")
        );
        assert_eq!(call.timeout, std::time::Duration::from_millis(50));
        let sent = crate::rls::RateLimitRequest::decode(&call.message).unwrap();
        let e = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(sent.domain, "mesh");
        assert_eq!(sent.hits_addend, 1);
        assert_eq!(
            sent.descriptors,
            [
                vec![
                    e("generic_key", "per-user"),
                    e("header:x-user", "ann"),
                    // One trusted hop: the entry before the last.
                    e("remote_address", "5.6.7.8"),
                    e("path", "/api/x"),
                ],
                vec![e("generic_key", "all")],
            ]
        );
        assert_eq!(stream.asked, [0, 1]);
    }

    #[test]
    fn global_answers_become_decisions() {
        use crate::rls::Code;
        let s = stage(GLOBAL);
        let st = |code, limit, remaining| DescriptorStatus {
            code,
            limit: Some(limit),
            unit: 2,
            limit_remaining: remaining,
            reset_s: Some(30),
        };
        let p = StaticProperties::new();
        // OK: continue, and the response carries the tighter rule's headers.
        let (_, mut stream) = run(&s, &p, &[]);
        let d = answer(
            &s,
            &mut stream,
            Code::Ok,
            vec![st(Code::Ok, 10, 7), st(Code::Ok, 100, 50)],
        );
        assert_eq!(d, Decision::Continue);
        assert_eq!(
            stream.headers,
            Some(RateHeaders {
                limit: 10,
                remaining: 7,
                reset_s: 30
            })
        );
        // Over the limit in the enforcing rule: 429 with the service's numbers.
        let (_, mut stream) = run(&s, &p, &[]);
        let d = answer(
            &s,
            &mut stream,
            Code::OverLimit,
            vec![st(Code::OverLimit, 10, 0), st(Code::Ok, 100, 9)],
        );
        let Decision::Reply(r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(r.status, 429);
        assert!(r
            .headers
            .contains(&("x-ratelimit-limit".into(), "10".into())));
        assert!(r
            .headers
            .contains(&("x-ratelimit-reset".into(), "30".into())));
        assert!(r.headers.contains(&("retry-after".into(), "30".into())));
        // Over the limit only in the shadow rule: allowed.
        let (_, mut stream) = run(&s, &p, &[]);
        let d = answer(
            &s,
            &mut stream,
            Code::OverLimit,
            vec![st(Code::Ok, 10, 1), st(Code::OverLimit, 100, 0)],
        );
        assert_eq!(d, Decision::Continue);
    }

    #[test]
    fn global_failure_modes() {
        let p = StaticProperties::new();
        let open = stage(GLOBAL);
        let (_, mut stream) = run(&open, &p, &[]);
        let mut req = Request::new(HeaderMap::default(), &p, open.path_options());
        assert_eq!(
            open.on_grpc_response(&mut req, &mut stream, GrpcResult::Failed(4)),
            Decision::Continue
        );
        let closed = stage(&GLOBAL.replace(
            r#""timeout":"50ms""#,
            r#""timeout":"50ms","failure_mode_deny":true,"failure_status":503"#,
        ));
        for result in [GrpcResult::Failed(14), GrpcResult::Message(vec![0xff])] {
            let (_, mut stream) = run(&closed, &p, &[]);
            let d = closed.on_grpc_response(&mut req, &mut stream, result);
            assert!(
                matches!(d, Decision::Reply(ref r) if r.status == 503),
                "{d:?}"
            );
        }
    }

    #[test]
    fn local_rules_refuse_before_the_service_is_asked() {
        let s = stage(
            r#"{"rate_limit_service":{"cluster":"rls"},
                "rules":[{"name":"local","token_bucket":{"max_tokens":1,"fill_interval":"1s"}},
                         {"name":"g","global":true}]}"#,
        );
        let p = StaticProperties::new();
        assert!(matches!(run(&s, &p, &[]).0, Decision::GrpcCall(_)));
        assert_eq!(status(&run(&s, &p, &[]).0), 429);
    }

    #[test]
    fn malformed_global_config_names_the_field() {
        let cases = [
            (
                r#"{"rules":[{"name":"g","global":true}]}"#,
                "rules[0].global: a global rule needs `rate_limit_service`",
            ),
            (
                r#"{"rate_limit_service":{},"rules":[{"name":"g","global":true}]}"#,
                "rate_limit_service.cluster",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c","timeout":"0s"},"rules":[{"name":"g","global":true}]}"#,
                "rate_limit_service.timeout",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c","timeout":"soon"},"rules":[{"name":"g","global":true}]}"#,
                "rate_limit_service.timeout",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c","failure_status":200},"rules":[{"name":"g","global":true}]}"#,
                "rate_limit_service.failure_status",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c","domain":""},"rules":[{"name":"g","global":true}]}"#,
                "rate_limit_service.domain",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c","grpc":1},"rules":[{"name":"g","global":true}]}"#,
                "unknown field `grpc`",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c"},"rules":[{"name":"g","global":true,"token_bucket":{"max_tokens":1,"fill_interval":"1s"}}]}"#,
                "rules[0].token_bucket",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c"},"rules":[{"name":"g","global":true,"max_keys":3}]}"#,
                "rules[0].max_keys",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"c"},"rules":[{"name":"g","global":true,"key":["bogus"]}]}"#,
                "rules[0].key[0]",
            ),
        ];
        for (json, want) in cases {
            let err = build_err(json);
            assert!(err.contains(want), "{json}\n  got: {err}\n  want: {want}");
        }
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
