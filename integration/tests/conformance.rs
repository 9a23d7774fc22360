//! The conformance suite: each scenario runs the probe filter in the harness and in real
//! Envoy 1.40, checks both against the expected outcome, and checks that they agree (see
//! `wasmesh_integration::conformance` for the drivers and what is normalised).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use wasmesh_integration::conformance::{run, Expect, Match, Request, Scenario, Upstream};

fn check(scenario: Scenario) {
    if let Err(err) = run(&scenario) {
        panic!("{err:#}");
    }
}

fn eq(value: impl ToString) -> Match {
    Match::eq(value)
}

#[test]
fn header_get_returns_the_first_value() {
    check(
        Scenario::new("header get").send(
            Request::get("/h", "set-header")
                .header("x-dup", "one")
                .header("x-dup", "two"),
            Expect::status(200)
                .header("x-probe-first-dup", eq("one"))
                .upstream(
                    Upstream::named("v2")
                        .header("x-dup", Match::All(vec!["one".into(), "two".into()])),
                ),
        ),
    );
}

#[test]
fn request_header_edits_reach_the_upstream() {
    check(
        Scenario::new("request header set/add/remove").send(
            Request::get("/edit", "set-header")
                .header("x-probe-replace", "old-1")
                .header("x-keep", "k")
                .header("x-probe-replace", "old-2")
                .header("x-probe-remove", "gone"),
            Expect::status(200).upstream(
                Upstream::named("v2")
                    .path("/edit")
                    .header("x-probe-added", eq("1"))
                    .header("x-probe-replace", Match::All(vec!["replaced".into()]))
                    .header("x-probe-remove", Match::Absent)
                    .header("x-keep", eq("k")),
            ),
        ),
    );
}

#[test]
fn response_header_edits_reach_the_client() {
    check(
        Scenario::new("response header edits").send(
            Request::get("/r", "set-header").header("x-echo-response-header", "x-from-upstream: u"),
            Expect::status(200)
                .header("x-from-upstream", eq("u"))
                .header("x-echo-name", eq("v2"))
                .header("x-probe-response", eq("1"))
                .header("x-probe-op", eq("set-header")),
        ),
    );
}

#[test]
fn set_header_map_pairs_replaces_the_map_and_reroutes() {
    // Envoy clears the route cache whenever a filter edits request headers: the new
    // header matches the v2 route without an explicit clear_route_cache.
    check(
        Scenario::new("set header map pairs").send(
            Request::get("/pairs", "set-headers").header("x-keep", "k"),
            Expect::status(200).upstream(
                Upstream::named("v2")
                    .header("x-probe-set", eq("all"))
                    .header("x-keep", eq("k")),
            ),
        ),
    );
}

#[test]
fn pseudo_headers_are_visible() {
    check(
        Scenario::new("pseudo-headers").send(
            Request::get("/pseudo?q=1", "echo-headers").header("x-a", "b"),
            Expect::status(200)
                .contains(":method: GET\n")
                .contains(":path: /pseudo?q=1\n")
                .contains(":authority: conformance.test\n")
                .contains(":scheme: http\n")
                .contains("x-a: b\n"),
        ),
    );
}

#[test]
fn local_response_carries_status_body_and_headers() {
    check(
        Scenario::new("local response").send(
            Request::get("/deny", "local-response").header("x-probe-status", "429"),
            Expect::status(429)
                .body(eq("denied by probe"))
                .header("x-probe", eq("local"))
                .header("x-echo-name", Match::Absent),
        ),
    );
}

#[test]
fn second_local_response_is_ignored() {
    check(Scenario::new("local response twice").send(
        Request::get("/twice", "local-response-twice"),
        Expect::status(401).body(eq("first")),
    ));
}

#[test]
fn request_body_is_buffered_until_the_end_of_stream() {
    check(
        Scenario::new("request body buffering").send(
            Request::new("POST", "/body")
                .op("body-buffer")
                .chunk("hello ")
                .chunk("world"),
            Expect::status(200)
                .header("x-probe-request-body-size", eq(11))
                .upstream(Upstream::named("echo").body(eq("PROBE:HELLO WORLD"))),
        ),
    );
}

#[test]
fn response_body_is_modified() {
    check(
        Scenario::new("response body").send(
            Request::get("/rb", "response-body"),
            Expect::status(200)
                .body(Match::Prefix("{\"name\":\"echo\"".into()))
                .contains("\"path\":\"/rb\"")
                .contains("} [probed]")
                // The echo inside the body lists Envoy's added request headers.
                .varies("body"),
        ),
    );
}

#[test]
fn trailers_end_the_stream_instead_of_the_body() {
    check(
        Scenario::new("request trailers").send(
            Request::new("POST", "/t")
                .op("trailers")
                .chunk("abcdef")
                .trailer("x-t", "1"),
            Expect::status(200)
                .header("x-probe-body-eos", Match::All(vec!["false".into()]))
                .header("x-probe-buffered-at-trailers", eq(6))
                .upstream(Upstream::named("echo").body(eq("abcdef"))),
        ),
    );
}

#[test]
fn callout_response_reaches_the_filter() {
    check(
        Scenario::new("callout").send(
            Request::get("/c", "callout").header("x-probe-value", "payload"),
            Expect::status(200)
                .header("x-probe-callout-status", eq(200))
                .header(
                    "x-probe-callout-body",
                    Match::Contains("\"body\":\"payload\"".into()),
                )
                .upstream(Upstream::named("echo").header("x-probe-callout-status", eq(200))),
        ),
    );
}

#[test]
fn callout_to_an_unknown_cluster_is_refused() {
    check(Scenario::new("callout unknown cluster").send(
        Request::get("/c", "callout").header("x-probe-cluster", "no_such_cluster"),
        Expect::status(500).body(eq("callout failed: BadArgument")),
    ));
}

#[test]
fn callout_to_an_unreachable_cluster_gets_envoys_503() {
    // A refused connection is not a failed call: Envoy's async client answers it with a
    // local 503, which the probe reports and then resumes the request.
    check(
        Scenario::new("callout unreachable").send(
            Request::get("/c", "callout").header("x-probe-cluster", "unreachable"),
            Expect::status(200)
                .header("x-probe-callout-status", eq(503))
                .header(
                    "x-probe-callout-body",
                    eq(
                        "upstream connect error or disconnect/reset before headers. \
                        reset reason: remote connection failure",
                    ),
                ),
        ),
    );
}

#[test]
fn callout_timeout_gets_envoys_504() {
    // Not zero headers either: Envoy answers a timed-out call with its own 504.
    check(
        Scenario::new("callout timeout").send(
            Request::get("/c", "callout")
                .header("x-probe-cluster", "blackhole")
                .header("x-probe-timeout-ms", "200"),
            Expect::status(200)
                .header("x-probe-callout-status", eq(504))
                .header("x-probe-callout-body", eq("upstream request timeout")),
        ),
    );
}

#[test]
fn ticks_fire_on_the_period() {
    check(
        Scenario::new("ticks")
            .config("tick_ms=50")
            .wait(Duration::from_millis(600))
            .send(
                Request::get("/ticks", "ticks"),
                Expect::status(200).body(Match::AtLeast(5)).varies("body"),
            )
            .metric("probe_ticks_total", Match::AtLeast(5)),
    );
}

#[test]
fn shared_data_cas() {
    let key = ("x-probe-key", "conformance.k");
    check(
        Scenario::new("shared data cas")
            .send(
                Request::get("/s", "shared-get").header(key.0, key.1),
                Expect::status(200)
                    .header("x-probe-value", eq("<none>"))
                    .header("x-probe-cas", eq(0)),
            )
            .send(
                Request::get("/s", "shared-set")
                    .header(key.0, key.1)
                    .header("x-probe-value", "a"),
                Expect::status(200).header("x-probe-result", eq("Ok")),
            )
            .send(
                Request::get("/s", "shared-get").header(key.0, key.1),
                Expect::status(200)
                    .header("x-probe-value", eq("a"))
                    .header("x-probe-cas", Match::Present)
                    .varies("x-probe-cas"),
            )
            .send(
                Request::get("/s", "shared-set")
                    .header(key.0, key.1)
                    .header("x-probe-value", "b")
                    .header("x-probe-cas", "$prev:x-probe-cas"),
                Expect::status(200).header("x-probe-result", eq("Ok")),
            )
            // The same cas again is stale now.
            .send(
                Request::get("/s", "shared-set")
                    .header(key.0, key.1)
                    .header("x-probe-value", "c")
                    .header("x-probe-cas", "$prev:x-probe-cas"),
                Expect::status(200).header("x-probe-result", eq("CasMismatch")),
            )
            .send(
                Request::get("/s", "shared-get").header(key.0, key.1),
                Expect::status(200)
                    .header("x-probe-value", eq("b"))
                    .varies("x-probe-cas"),
            ),
    );
}

#[test]
fn shared_data_cas_increment_counts() {
    let mut scenario = Scenario::new("shared data increment");
    for n in 1..=3 {
        scenario = scenario.send(
            Request::get("/inc", "shared-cas"),
            Expect::status(200)
                .header("x-probe-counter", eq(n))
                .header("x-probe-cas-retries", eq(0)),
        );
    }
    check(scenario);
}

#[test]
fn metrics_are_defined_and_read_back() {
    check(
        Scenario::new("metrics")
            .send(
                Request::get("/m", "metric").header("x-probe-value", "5"),
                Expect::status(200)
                    .header("x-probe-counter", eq(1))
                    .header("x-probe-gauge", eq(5)),
            )
            .send(
                Request::get("/m", "metric").header("x-probe-value", "3"),
                Expect::status(200)
                    .header("x-probe-counter", eq(2))
                    .header("x-probe-gauge", eq(8)),
            )
            .metric("probe_requests_total", eq(2))
            .metric("probe_gauge", eq(8))
            .metric("probe_histogram", eq(2))
            .metric("probe_logged_total", eq(2)),
    );
}

#[test]
fn properties() {
    let prop =
        |name: &str| Request::get("/props/a?x=1", "property").header("x-probe-property", name);
    check(
        Scenario::new("properties")
            .send(
                prop("request.path"),
                Expect::status(200).body(eq("/props/a?x=1")),
            )
            .send(
                prop("request.url_path"),
                Expect::status(200).body(eq("/props/a")),
            )
            .send(prop("request.method"), Expect::status(200).body(eq("GET")))
            .send(
                prop("request.host"),
                Expect::status(200).body(eq("conformance.test")),
            )
            .send(prop("plugin_name"), Expect::status(200).body(eq("probe")))
            .send(
                prop("plugin_root_id"),
                Expect::status(200).body(eq("probe")),
            )
            // Envoy 1.40 answers `xds.route_name`; plain `route_name` is NotFound there.
            .send(
                prop("xds.route_name"),
                Expect::status(200).body(eq("default")),
            )
            .send(
                prop("route_name"),
                Expect::status(404).body(eq("not found")),
            )
            .send(
                prop("source.address"),
                Expect::status(200)
                    .body(Match::Prefix("127.0.0.1:".into()))
                    .varies("body"),
            )
            .send(
                prop("response.code"),
                Expect::status(404).body(eq("not found")),
            )
            // Bound on every stream, even before a response: no flags (an 8-byte 0),
            // a plaintext connection (a one-byte false).
            .send(
                prop("response.flags"),
                Expect::status(200).body(eq("\0".repeat(8))),
            )
            .send(prop("connection.mtls"), Expect::status(200).body(eq("\0")))
            .send(
                prop("no.such.property"),
                Expect::status(404).body(eq("not found")),
            ),
    );
}

#[test]
fn filter_set_property_reads_back_only_at_one_segment() {
    // Envoy keeps the value under the whole path but reads back the first segment only.
    check(
        Scenario::new("set property")
            .send(
                Request::get("/sp", "set-property")
                    .header("x-probe-value", "v1")
                    .header("x-probe-property", "probe_value"),
                Expect::status(200)
                    .header("x-probe-result", eq("Ok"))
                    .header("x-probe-value", eq("v1")),
            )
            .send(
                Request::get("/sp", "set-property")
                    .header("x-probe-value", "v2")
                    .header("x-probe-property", "probe.value"),
                Expect::status(200)
                    .header("x-probe-result", eq("Ok"))
                    .header("x-probe-value", eq("")),
            ),
    );
}

#[test]
fn trap_fails_closed_for_this_and_later_requests() {
    check(
        Scenario::new("trap")
            .send(Request::get("/trap", "trap"), Expect::status(503))
            .send(Request::get("/after", ""), Expect::status(503)),
    );
}

#[test]
fn clear_route_cache_reroutes() {
    check(
        Scenario::new("clear route cache").send(
            Request::get("/route", "clear-route-cache"),
            Expect::status(200)
                .header("x-probe-result", eq("Ok"))
                .upstream(Upstream::named("v2").header("x-probe-route", eq("changed"))),
        ),
    );
}

#[test]
fn unknown_foreign_function_is_not_found() {
    check(Scenario::new("foreign function").send(
        Request::get("/f", "foreign").header("x-probe-function", "no_such_function"),
        Expect::status(404).body(eq("NotFound")),
    ));
}

#[test]
fn log_levels_follow_the_host() {
    check(
        Scenario::new("log levels")
            .send(
                Request::get("/log", "log").header("x-probe-value", "conformance-log"),
                Expect::status(200).header("x-probe-log-level", eq("Info")),
            )
            .logged("Info: conformance-log")
            .logged("Warn: conformance-log")
            .logged("Error: conformance-log")
            .logged("Critical: conformance-log")
            .not_logged("Debug: conformance-log")
            .not_logged("Trace: conformance-log"),
    );
}

#[test]
fn queue_items_reach_the_root_context() {
    check(
        Scenario::new("queue")
            .config("queue=probe_queue")
            .send(
                Request::get("/q", "queue").header("x-probe-value", "item-1"),
                Expect::status(200).header("x-probe-result", eq("Ok")),
            )
            .send(
                Request::get("/q", "queue-last").eventually(),
                Expect::status(200).body(eq("item-1")),
            )
            .logged("queue item=item-1")
            .metric("probe_queue_items_total", eq(1)),
    );
}

#[test]
fn unknown_op_gets_a_local_400() {
    check(Scenario::new("unknown op").send(
        Request::get("/u", "no-such-op"),
        Expect::status(400).body(eq("unknown probe op no-such-op")),
    ));
}
