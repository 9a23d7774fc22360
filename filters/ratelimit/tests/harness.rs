//! The compiled ratelimit module in the harness: exactness across workers, the reply,
//! keys, shadow mode, metrics, bounded memory and refused configs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::time::Duration;
use wasmesh_harness::{request, response, Action, Host, Module};
use wasmesh_testkit::{config_refusal, filter_under_test};

fn module() -> Module {
    filter_under_test("wasmesh-ratelimit")
}

fn host(config: serde_json::Value, workers: usize) -> Host {
    let host = Host::builder(&module())
        .plugin_config(config.to_string())
        .workers(workers)
        .property(&["source", "address"], "10.0.0.1:5000")
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs());
    host
}

fn counter(host: &Host, name: &str, rule: &str) -> u64 {
    host.metric(&format!("{name};rule={rule}"))
        .map_or(0, |m| m.value)
}

/// Sends one request on `worker`; returns the status (200 when it went through).
fn send(host: &Host, worker: usize, extra: &[(&str, &str)]) -> u32 {
    let mut s = host.stream_on(worker).unwrap();
    let mut h = request("GET", "/api/items", "example.com");
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    match s.request_headers(&h, true) {
        Action::Continue => 200,
        Action::Pause => s.local_response().map_or(0, |r| r.status),
    }
}

#[test]
fn limit_holds_across_four_workers() {
    let (max, per_fill) = (10u64, 5u64);
    let host = host(
        json!({"token_bucket": {"max_tokens": max, "tokens_per_fill": per_fill, "fill_interval": "1s"}}),
        4,
    );
    let step = Duration::from_millis(100);
    let steps = 50u64;
    let mut allowed = 0u64;
    let mut sent = 0u64;
    for _ in 0..steps {
        // Four workers on four threads hit the same bucket at once: their reads and
        // compare-and-swaps interleave as in a multi-worker Envoy.
        let per_step: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|w| {
                    let host = &host;
                    scope
                        .spawn(move || (0..10).filter(|_| send(host, w, &[]) == 200).count() as u64)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        allowed += per_step;
        sent += 40;
        host.advance(step);
    }
    // Requests ran from 0 to 4.9 s: 4 fills. Demand saturates, so the bound is met exactly.
    let t_s = (steps - 1) * 100 / 1000;
    let bound = max + t_s * per_fill;
    assert_eq!(allowed, bound, "allowed {allowed} of {sent}, bound {bound}");
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_allowed_total", "default"),
        allowed
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_limited_total", "default"),
        sent - allowed
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_errors_total", "default"),
        0
    );
}

#[test]
fn first_requests_on_four_workers_do_not_race_the_key_creation() {
    // No warm-up: the key does not exist until the first request creates it, on
    // whichever worker wins. Repeat to give a lost first write a chance to show.
    for round in 0..20 {
        let host = host(
            json!({"domain": format!("d{round}"), "token_bucket": {"max_tokens": 3, "fill_interval": "1h"}}),
            4,
        );
        let allowed: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|w| {
                    let host = &host;
                    scope.spawn(move || (0..3).filter(|_| send(host, w, &[]) == 200).count() as u64)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 3, "round {round}");
    }
}

#[test]
fn refusal_is_429_with_envoy_and_draft_03_headers() {
    let host = host(
        json!({"token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "10s"}}),
        1,
    );
    // Allowed responses carry the draft-03 headers too.
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&request("GET", "/", "h"), true),
        Action::Continue
    );
    s.response_headers(&response(200), true);
    let h = s.response_header_map();
    assert_eq!(h.get("x-ratelimit-limit"), Some("2"));
    assert_eq!(h.get("x-ratelimit-remaining"), Some("1"));
    assert_eq!(h.get("x-ratelimit-reset"), Some("10"));
    drop(s);
    assert_eq!(send(&host, 0, &[]), 200);
    host.advance(Duration::from_millis(2500));
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&request("GET", "/", "h"), true),
        Action::Pause
    );
    let r = s.local_response().unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.body_str(), "local_rate_limited");
    assert_eq!(r.details, "wasmesh_ratelimited");
    assert_eq!(r.headers.get("x-envoy-ratelimited"), Some("true"));
    assert_eq!(r.headers.get("retry-after"), Some("8"));
    assert_eq!(r.headers.get("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.headers.get("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.headers.get("x-ratelimit-reset"), Some("8"));
    // Once the interval has passed, a token is back.
    host.advance(Duration::from_millis(7500));
    assert_eq!(send(&host, 0, &[]), 200);
}

#[test]
fn status_body_and_headers_are_configurable() {
    let host = host(
        json!({"token_bucket": {"max_tokens": 1, "fill_interval": "1s"},
               "status": 503, "body": "", "retry_after": false,
               "enable_x_ratelimit_headers": "OFF"}),
        1,
    );
    let mut s = host.stream();
    s.request_headers(&request("GET", "/", "h"), true);
    s.response_headers(&response(200), true);
    assert!(!s.response_header_map().contains("x-ratelimit-limit"));
    drop(s);
    let mut s = host.stream();
    s.request_headers(&request("GET", "/", "h"), true);
    let r = s.local_response().unwrap();
    assert_eq!((r.status, r.body.len()), (503, 0));
    assert_eq!(r.headers.get("x-envoy-ratelimited"), Some("true"));
    for absent in [
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-reset",
        "content-type",
    ] {
        assert!(!r.headers.contains(absent), "{absent}");
    }
}

#[test]
fn client_ip_keys_trust_only_the_configured_hops() {
    let cfg = |hops: u32| {
        json!({"xff_num_trusted_hops": hops,
               "rules": [{"name": "per_ip", "key": ["client_ip"],
                          "token_bucket": {"max_tokens": 1, "fill_interval": "1h"}}]})
    };
    // 0 hops: x-forwarded-for is ignored, every request is the peer 10.0.0.1.
    let h0 = host(cfg(0), 1);
    assert_eq!(send(&h0, 0, &[("x-forwarded-for", "1.1.1.1")]), 200);
    assert_eq!(send(&h0, 0, &[("x-forwarded-for", "2.2.2.2")]), 429);
    // 1 hop: the rightmost entry is the client; forged entries to its left are not.
    let h1 = host(cfg(1), 1);
    assert_eq!(
        send(&h1, 0, &[("x-forwarded-for", "9.9.9.9, 1.1.1.1")]),
        200
    );
    assert_eq!(
        send(&h1, 0, &[("x-forwarded-for", "8.8.8.8, 1.1.1.1")]),
        429
    );
    assert_eq!(send(&h1, 0, &[("x-forwarded-for", "2.2.2.2")]), 200);
}

#[test]
fn keys_combine_header_method_route_and_path_template() {
    let host = host(
        json!({"rules": [{"name": "combo",
                          "key": ["header:x-tenant", "method", "route_name", "path_template"],
                          "path_templates": ["/api/{name}"],
                          "token_bucket": {"max_tokens": 1, "fill_interval": "1h"}}]}),
        1,
    );
    host.set_property(&["route_name"], "r1");
    let go = |method: &str, path: &str, tenant: &str| {
        let mut s = host.stream();
        let mut h = request(method, path, "h");
        h.push(("x-tenant".into(), tenant.into()));
        s.request_headers(&h, true);
        s.local_response().map_or(200, |r| r.status)
    };
    assert_eq!(go("GET", "/api/a", "t1"), 200);
    assert_eq!(go("GET", "/api/b", "t1"), 429); // same template
    assert_eq!(go("POST", "/api/b", "t1"), 200); // other method
    assert_eq!(go("GET", "/api/a", "t2"), 200); // other tenant
    assert_eq!(go("GET", "/other", "t1"), 200); // no template: the path itself
    host.set_property(&["route_name"], "r2");
    assert_eq!(go("GET", "/api/a", "t1"), 200); // other route
}

#[test]
fn jwt_claim_keys_read_the_forwarded_payload() {
    let host = host(
        json!({"jwt_payload_header": "x-payload",
               "rules": [{"name": "per_user", "key": ["jwt_claim:sub"],
                          "token_bucket": {"max_tokens": 1, "fill_interval": "1h"}}]}),
        1,
    );
    let alice = "eyJzdWIiOiJhbGljZSJ9"; // {"sub":"alice"}
    let bob = "eyJzdWIiOiJib2IifQ"; // {"sub":"bob"}
    assert_eq!(send(&host, 0, &[("x-payload", alice)]), 200);
    assert_eq!(send(&host, 0, &[("x-payload", alice)]), 429);
    assert_eq!(send(&host, 0, &[("x-payload", bob)]), 200);
    // No payload: one shared bucket, not a way around the limit.
    assert_eq!(send(&host, 0, &[]), 200);
    assert_eq!(send(&host, 0, &[("x-payload", "garbage!")]), 429);
}

#[test]
fn rules_scope_limits_and_count_per_rule() {
    let host = host(
        json!({"token_bucket": {"max_tokens": 1, "fill_interval": "1h"},
               "rules": [
                 {"name": "admin", "match": {"path": {"prefix": "/admin"}}},
                 {"name": "writes", "match": {"methods": ["POST"]},
                  "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}}]}),
        1,
    );
    let go = |method: &str, path: &str| {
        let mut s = host.stream();
        s.request_headers(&request(method, path, "h"), true);
        s.local_response().map_or(200, |r| r.status)
    };
    assert_eq!(go("GET", "/admin"), 200);
    assert_eq!(go("GET", "//admin/../admin/x"), 429); // normalised before matching
    assert_eq!(go("GET", "/public"), 200); // no rule
    assert_eq!(go("GET", "/public"), 200);
    assert_eq!(
        (go("POST", "/p"), go("POST", "/p"), go("POST", "/p")),
        (200, 200, 429)
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_allowed_total", "admin"),
        1
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_limited_total", "admin"),
        1
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_allowed_total", "writes"),
        2
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_limited_total", "writes"),
        1
    );
}

#[test]
fn shadow_mode_counts_without_refusing() {
    let host = host(
        json!({"shadow": true, "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}}),
        2,
    );
    for i in 0..10 {
        assert_eq!(send(&host, i % 2, &[]), 200);
    }
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_allowed_total", "default"),
        2
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_shadow_limited_total", "default"),
        8
    );
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_limited_total", "default"),
        0
    );
}

#[test]
fn memory_is_bounded_and_idle_keys_expire() {
    let host = host(
        json!({"max_keys": 4, "on_table_full": "deny",
               "rules": [{"name": "r", "key": ["header:x-k"],
                          "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}]}),
        1,
    );
    let slot = |i: u32| host.shared_data(&format!("wasmesh/ratelimit/default/r/{i}"));
    // Many keys at once: four get slots, the rest find the table full (and are denied).
    let codes: Vec<u32> = (0..20)
        .map(|i| send(&host, 0, &[("x-k", &i.to_string())]))
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 4);
    assert_eq!(
        counter(&host, "wasmesh_ratelimit_table_full_total", "r"),
        16
    );
    assert!(slot(4).is_none());
    // One interval later every bucket is full again, i.e. idle: new keys reuse slots.
    host.advance(Duration::from_secs(1));
    let codes: Vec<u32> = (100..104)
        .map(|i| send(&host, 0, &[("x-k", &i.to_string())]))
        .collect();
    assert_eq!(codes, [200; 4]);
    assert!((0..4).all(|i| slot(i).is_some()) && slot(4).is_none());
}

#[test]
fn a_full_table_shares_the_overflow_bucket_by_default() {
    let host = host(
        json!({"max_keys": 1,
               "rules": [{"name": "r", "key": ["header:x-k"],
                          "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}}]}),
        1,
    );
    assert_eq!(send(&host, 0, &[("x-k", "a")]), 200);
    let spray: Vec<u32> = ["b", "c", "d"]
        .iter()
        .map(|k| send(&host, 0, &[("x-k", k)]))
        .collect();
    assert_eq!(spray, [200, 200, 429]);
    assert!(host
        .shared_data("wasmesh/ratelimit/default/r/overflow/0")
        .is_some());
}

#[test]
fn malformed_config_is_refused_naming_the_field() {
    let host = Host::builder(&module())
        .plugin_config(
            json!({"rules": [{"name": "a", "token_bucket": {"max_tokens": 5, "fill_interval": "5"}}]})
                .to_string(),
        )
        .build()
        .unwrap();
    assert!(!host.configured());
    assert!(
        host.logged(&config_refusal(
            "wasmesh-ratelimit",
            "rules[0].token_bucket.fill_interval",
            "`5` is not a duration"
        )),
        "{:?}",
        host.logs()
    );
}
