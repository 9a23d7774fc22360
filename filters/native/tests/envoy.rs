//! The native module in real Envoy 1.40: it loads with a matching ABI version, the
//! headers stage's edits reach the upstream exactly as the Wasm filter's do, fault's
//! abort answers locally, global rate limits reach the real rate limit service through
//! the module's gRPC calls, and a module expecting a callback this Envoy lacks is
//! refused at load with a message that names it.
//!
//! The module is built for the test by the harness (`target/native/debug`), so a stale
//! one is never tested.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::process::Command;
use wasmesh_harness::build::{native_module_dir, wasm_module};
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::echo::EchoServer;
use wasmesh_integration::envoy::{Envoy, Options};
use wasmesh_integration::http;
use wasmesh_integration::paths::TempDir;
use wasmesh_integration::rls;
use wasmesh_integration::scenarios::{self, global_ratelimit};

fn options() -> Options {
    Options::default().env(
        "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
        native_module_dir("wasmesh-native").to_str().unwrap(),
    )
}

/// The `http_filters` entry running stage `stage` with `config` (the Wasm filter's).
fn native_filter(stage: &str, config: Value) -> Value {
    bootstrap::native_filter(stage, &config)
}

fn metric_names(bootstrap: Value) -> Value {
    bootstrap::with_native_metric_names(bootstrap)
}

/// The sum of every series of counter `name` in `/stats/prometheus`.
fn metric_sum(envoy: &Envoy, name: &str) -> u64 {
    let text = envoy.admin().prometheus().unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

fn proxy_to(upstream_port: u16, filters: Vec<Value>) -> Value {
    bootstrap::proxy_through(upstream_port, filters)
}

#[test]
fn module_loads_with_the_matching_abi_version() {
    let echo = EchoServer::start().unwrap();
    let filter = native_filter("headers", json!({}));
    let envoy = Envoy::start_with(&proxy_to(echo.port(), vec![filter]), &options()).unwrap();
    // Envoy writes its log file through a buffer flushed every 20 ms (the rig's
    // setting), which a loaded machine can delay past readiness: poll for the line.
    let matched = "Dynamic module ABI version v0.2.0 matched.";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !envoy.log().contains(matched) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(envoy.log().contains(matched), "{}", envoy.log_tail(40));
}

/// The Wasm filter's `edits_reach_the_upstream_and_the_client` (integration/tests/headers.rs):
/// the same scenario, config and checks.
#[test]
fn headers_edits_reach_the_upstream_and_the_client() {
    let echo = EchoServer::start().unwrap();
    let filter = native_filter("headers", scenarios::headers::edits_config());
    let envoy = Envoy::start_with(&proxy_to(echo.port(), vec![filter]), &options()).unwrap();
    scenarios::headers::check_edits(&envoy).unwrap();
}

/// The Wasm filter's cors scenario (integration/tests/cors.rs), which Envoy's own CORS
/// filter passes too: the native stage answers the same, and refuses hostile origins.
#[test]
fn cors_answers_as_envoys_cors_filter_does() {
    let echo = EchoServer::start().unwrap();
    let filter = native_filter("cors", scenarios::cors::config());
    let bootstrap = scenarios::cors::bootstrap(echo.port(), vec![filter], false);
    let envoy = Envoy::start_with(&bootstrap, &options()).unwrap();
    scenarios::cors::check_policy(&envoy, &echo).unwrap();
    scenarios::cors::check_hostile_origins(&envoy).unwrap();
}

#[test]
fn fault_abort_answers_locally() {
    let echo = EchoServer::start().unwrap();
    let filter = native_filter(
        "fault",
        json!({"abort": {"http_status": 418, "percentage": 100}}),
    );
    let envoy = Envoy::start_with(&proxy_to(echo.port(), vec![filter]), &options()).unwrap();
    let url = format!("{}/x", envoy.listener_url(INGRESS).unwrap());
    let resp = http::get(&url).unwrap();
    assert_eq!(resp.status, 418, "{}", envoy.log_tail(40));
    assert_eq!(
        echo.requests(),
        0,
        "an aborted request must not reach the upstream"
    );
}

/// The Wasm filter's `abort_ratio_over_2000_requests_is_within_3_points`
/// (integration/tests/fault.rs): the same scenario on two workers.
#[test]
fn fault_abort_ratio_over_2000_requests_is_within_3_points() {
    let filter = native_filter("fault", scenarios::fault::abort_config(20.0));
    let config = bootstrap::direct_response_through(200, "ok", vec![filter]);
    let envoy = Envoy::start_with(&metric_names(config), &options().concurrency(2)).unwrap();
    let aborted = scenarios::fault::check_abort_ratio(&envoy, 20.0).unwrap();
    assert_eq!(metric_sum(&envoy, "wasmesh_fault_aborts_total"), aborted);
}

/// The Wasm filter's `delay_lasts_at_least_the_configured_time`: the delay waits on the
/// module's timer thread, then Envoy's scheduler resumes the stream on its worker.
#[test]
fn fault_delay_lasts_at_least_the_configured_time() {
    let filter = native_filter("fault", scenarios::fault::delay_config(300));
    let config = bootstrap::direct_response_through(200, "ok", vec![filter]);
    let envoy = Envoy::start_with(&config, &options()).unwrap();
    scenarios::fault::check_delay(&envoy, 300).unwrap();
}

/// A request with a body, paused by a delay: the body chunk that arrives during the
/// delay is held (answering `Continue` to it would let Envoy continue the stopped
/// headers at once), and the request reaches the upstream whole when the delay ends.
#[test]
fn fault_delay_holds_the_request_body_until_it_ends() {
    let echo = EchoServer::start().unwrap();
    let filter = native_filter("fault", scenarios::fault::delay_config(300));
    let envoy = Envoy::start_with(&proxy_to(echo.port(), vec![filter]), &options()).unwrap();
    let url = format!("{}/x", envoy.listener_url(INGRESS).unwrap());
    let start = std::time::Instant::now();
    let resp = http::request("POST", &url, &[], b"held body").unwrap();
    let took = start.elapsed();
    assert_eq!(resp.status, 200, "{}", envoy.log_tail(40));
    assert!(
        took >= std::time::Duration::from_millis(300),
        "the body let the request go on before the delay ended: {took:?}"
    );
    let seen = wasmesh_integration::echo::Echo::parse(&resp.body).unwrap();
    assert_eq!(seen.body, "held body");
}

/// The Wasm filter's `limit_holds_per_envoy_with_two_workers`
/// (integration/tests/ratelimit.rs): one bucket, exact across both workers, through the
/// module's process-wide shared data.
#[test]
fn ratelimit_holds_per_envoy_with_two_workers() {
    let filter = native_filter("ratelimit", scenarios::ratelimit::shared_bucket_config());
    let config = bootstrap::direct_response_through(200, "ok", vec![filter]);
    let envoy = Envoy::start_with(&metric_names(config), &options().concurrency(2)).unwrap();
    let (allowed, limited) = scenarios::ratelimit::check_exact_across_workers(&envoy).unwrap();
    assert_eq!(
        metric_sum(&envoy, "wasmesh_ratelimit_allowed_total"),
        allowed
    );
    assert_eq!(
        metric_sum(&envoy, "wasmesh_ratelimit_limited_total"),
        limited
    );
}

/// A native Envoy answering 200 behind the ratelimit stage with the global rule of
/// `scenarios::global_ratelimit`, asking the service at `rls_port` (its gRPC calls go
/// as HTTP/2 callouts, filters/native/src/grpc.rs).
fn global_ratelimit_envoy(rls_port: u16, deny: bool) -> Envoy {
    let filter = native_filter("ratelimit", global_ratelimit::filter_config(deny));
    let mut config = bootstrap::direct_response_through(200, "ok", vec![filter]);
    config["static_resources"]["clusters"] = json!([rls::cluster(rls_port)]);
    Envoy::start_with(&metric_names(config), &options()).unwrap()
}

fn rls_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wasmesh-native-rlsg-{name}-{}", std::process::id()))
}

/// The global decisions `envoy` counted with label `decision`.
fn global_decisions(envoy: &Envoy, decision: &str) -> u64 {
    let text = envoy.admin().prometheus().unwrap();
    let label = format!("decision=\"{decision}\"");
    text.lines()
        .filter(|l| {
            l.starts_with("wasmesh_ratelimit_global_decisions_total{") && l.contains(&label)
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// The Wasm filter's `a_limit_shared_by_two_envoys_is_exact_across_both`
/// (integration/tests/ratelimit_global.rs): a limit of 5 held by the real service,
/// asked by two native Envoys.
#[test]
fn ratelimit_global_limit_shared_by_two_envoys_is_exact_across_both() {
    let server =
        rls::Server::start(&rls_dir("shared"), &global_ratelimit::limit_yaml(5), 0).unwrap();
    let (a, b) = (
        global_ratelimit_envoy(server.port, false),
        global_ratelimit_envoy(server.port, false),
    );
    global_ratelimit::check_shared_limit(&a, &b).unwrap();
    let sum = |d: &str| global_decisions(&a, d) + global_decisions(&b, d);
    assert_eq!(sum("ok"), 5, "{}", a.log_tail(30));
    assert_eq!(sum("over_limit"), 7);
}

/// The Wasm filter's `the_service_going_away_gives_the_failure_mode_without_a_hang`.
#[test]
fn ratelimit_global_service_going_away_gives_the_failure_mode_without_a_hang() {
    let server =
        rls::Server::start(&rls_dir("down"), &global_ratelimit::limit_yaml(100), 0).unwrap();
    let open = global_ratelimit_envoy(server.port, false);
    let closed = global_ratelimit_envoy(server.port, true);
    global_ratelimit::check_failure_modes(&open, &closed, server).unwrap();
    assert_eq!(global_decisions(&open, "error"), 3);
}

/// The Wasm filter's `a_service_that_never_answers_times_out_into_the_failure_mode`:
/// the callout's timeout is the call's (DEADLINE_EXCEEDED, filters/native/src/grpc.rs),
/// and it counts as an error.
#[test]
fn ratelimit_global_service_that_never_answers_times_out_into_the_failure_mode() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let open = global_ratelimit_envoy(port, false);
    let closed = global_ratelimit_envoy(port, true);
    global_ratelimit::check_timeouts(&open, &closed).unwrap();
    assert_eq!(global_decisions(&open, "error"), 1);
    assert_eq!(global_decisions(&closed, "error"), 1);
}

/// The Wasm filter's `a_rule_naming_a_cluster_envoy_lacks_fails_into_its_mode...`: the
/// callout cannot be sent, which is UNAVAILABLE, request after request.
#[test]
fn ratelimit_global_rule_naming_a_cluster_envoy_lacks_fails_into_its_mode() {
    let start = |deny: bool| {
        let mut config = global_ratelimit::filter_config(deny);
        config["rate_limit_service"]["cluster"] = json!("wasmesh_no_such_cluster");
        let filter = native_filter("ratelimit", config);
        let bootstrap = bootstrap::direct_response_through(200, "ok", vec![filter]);
        Envoy::start_with(&metric_names(bootstrap), &options()).unwrap()
    };
    let (open, closed) = (start(false), start(true));
    for _ in 0..3 {
        let url = global_ratelimit::url(&open).unwrap();
        assert_eq!(
            http::get(&url).unwrap().status,
            200,
            "{}",
            open.log_tail(20)
        );
        let url = global_ratelimit::url(&closed).unwrap();
        assert_eq!(
            http::get(&url).unwrap().status,
            500,
            "{}",
            closed.log_tail(20)
        );
    }
    assert_eq!(global_decisions(&open, "error"), 3);
}

/// The same exchange through the Wasm filter and the native stage, each against a
/// service of its own: the same statuses and draft-03 headers, and the same 500
/// without them once the service is gone (fail-closed).
#[test]
fn ratelimit_global_answers_as_the_wasm_filter_does() {
    let wasm_server =
        rls::Server::start(&rls_dir("conf-w"), &global_ratelimit::limit_yaml(3), 0).unwrap();
    let filter = WasmFilter::new("wasmesh.ratelimit", wasm_module("wasmesh-ratelimit"))
        .config(global_ratelimit::filter_config(true));
    let mut config = bootstrap::direct_response(200, "ok", &[filter]);
    config["static_resources"]["clusters"] = json!([rls::cluster(wasm_server.port)]);
    let wasm = Envoy::start(&config).unwrap();
    let native_server =
        rls::Server::start(&rls_dir("conf-n"), &global_ratelimit::limit_yaml(3), 0).unwrap();
    let native = global_ratelimit_envoy(native_server.port, true);
    let mut in_wasm = global_ratelimit::through_envoy(&wasm, 5).unwrap();
    let mut in_native = global_ratelimit::through_envoy(&native, 5).unwrap();
    assert_eq!(in_wasm, global_ratelimit::five_against_three(), "wasm");
    assert_eq!(in_native, in_wasm, "native");
    wasm_server.stop();
    native_server.stop();
    in_wasm.extend(global_ratelimit::through_envoy(&wasm, 1).unwrap());
    in_native.extend(global_ratelimit::through_envoy(&native, 1).unwrap());
    assert_eq!(in_wasm.last(), Some(&(500, None, None)));
    assert_eq!(in_native, in_wasm);
}

/// The Wasm filter's `remote_jwks_is_fetched_through_a_cluster_and_a_valid_token_passes`
/// (integration/tests/authz.rs): the JWKS arrives through a callout.
#[test]
fn authz_remote_jwks_is_fetched_through_a_cluster_and_a_valid_token_passes() {
    let echo = EchoServer::start().unwrap();
    let idp = scenarios::authz::identity_provider().unwrap();
    let filter = native_filter("authz", scenarios::authz::remote_jwks_config());
    let mut config = proxy_to(echo.port(), vec![filter]);
    config["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(scenarios::authz::idp_cluster(&idp));
    let envoy = Envoy::start_with(&config, &options()).unwrap();
    scenarios::authz::check_remote_jwks(&envoy, &idp).unwrap();
}

/// The body stage as the Wasm body filter runs it (integration/tests/body.rs): the
/// same config and checks (`scenarios::body`), through the native module's body phase.
fn start_body(filter: Value) -> (EchoServer, Envoy) {
    let echo = EchoServer::start().unwrap();
    let envoy = Envoy::start_with(&proxy_to(echo.port(), vec![filter]), &options()).unwrap();
    (echo, envoy)
}

#[test]
fn body_limits_hold_as_in_the_wasm_filter() {
    let (echo, envoy) = start_body(native_filter("body", scenarios::body::config()));
    scenarios::body::check_limits(&envoy, &echo).unwrap();
}

#[test]
fn body_json_rewrites_reach_the_upstream_as_in_the_wasm_filter() {
    let (_echo, envoy) = start_body(native_filter("body", scenarios::body::config()));
    scenarios::body::check_json_rewrites(&envoy).unwrap();
}

#[test]
fn body_refusals_are_the_wasm_filters() {
    let (echo, envoy) = start_body(native_filter("body", scenarios::body::config()));
    scenarios::body::check_refusals(&envoy, &echo).unwrap();
}

#[test]
fn body_json_response_is_rewritten_as_in_the_wasm_filter() {
    let (_echo, envoy) = start_body(native_filter("body", scenarios::body::config()));
    scenarios::body::check_response_rewrite(&envoy).unwrap();
}

/// The body stage inside a `mesh` pipeline, after a stage that edits the request
/// headers: the body phase runs through the pipeline's chain.
#[test]
fn body_stage_in_a_mesh_pipeline_limits_and_rewrites() {
    let pipeline = json!({"stages": [
        {"name": "headers", "config": scenarios::headers::edits_config()},
        {"name": "body", "config": scenarios::body::config()},
    ]});
    let (echo, envoy) = start_body(native_filter("mesh", pipeline));
    scenarios::body::check_limits(&envoy, &echo).unwrap();
    scenarios::body::check_json_rewrites(&envoy).unwrap();
}

#[test]
fn malformed_config_is_refused_naming_the_field() {
    let echo = EchoServer::start().unwrap();
    let filter = native_filter(
        "headers",
        json!({"request": {"set": [{"name": "bad name", "value": "2"}]}}),
    );
    let err = Envoy::start_with(&proxy_to(echo.port(), vec![filter]), &options())
        .expect_err("Envoy must refuse a filter config the stage refuses");
    let text = format!("{err:#}");
    assert!(
        text.contains("wasmesh-native: headers: invalid configuration: request.set[0].name"),
        "{text}"
    );
}

/// A module built against callbacks this Envoy does not export (a newer Envoy's) is
/// refused when Envoy loads it, with a message naming the callback. Envoy 1.40 itself
/// only warns when the ABI version string differs; the refusal comes from the dynamic
/// loader, because the module binds its symbols at load (`-z now`, build.rs). The probe
/// is the smallest such module, compiled here with rustc and the same link flag.
#[test]
fn module_expecting_a_missing_callback_is_refused_at_load() {
    let dir = TempDir::new("abi-probe").unwrap();
    let source = dir.join("probe.rs");
    std::fs::write(
        &source,
        r#"
        extern "C" {
            fn envoy_dynamic_module_callback_from_a_newer_envoy();
        }
        #[no_mangle]
        pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
            unsafe { envoy_dynamic_module_callback_from_a_newer_envoy() };
            b"v0.2.0\0".as_ptr()
        }
        "#,
    )
    .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "cdylib",
            "-C",
            "link-arg=-Wl,-z,now",
            "-o",
        ])
        .arg(dir.join("libwasmesh_abi_probe.so"))
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "rustc could not build the probe module");

    let echo = EchoServer::start().unwrap();
    let mut filter = native_filter("headers", json!({}));
    filter["typed_config"]["dynamic_module_config"]["name"] = json!("wasmesh_abi_probe");
    let options = Options::default().env(
        "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
        dir.path().to_str().unwrap(),
    );
    let err = Envoy::start_with(&proxy_to(echo.port(), vec![filter]), &options)
        .expect_err("Envoy must refuse a module whose callbacks it lacks");
    let text = format!("{err:#}");
    assert!(
        text.contains("libwasmesh_abi_probe.so: undefined symbol: envoy_dynamic_module_callback_from_a_newer_envoy"),
        "{text}"
    );
}

/// Telemetry's Istio metrics, defined on Envoy's config while it loads and recorded
/// per stream, reach `/stats/prometheus` under their Istio names with their labels.
#[test]
fn telemetry_requests_reach_prometheus_with_istio_labels() {
    let echo = EchoServer::start().unwrap();
    let config = json!({"reporter": "destination", "workload": {
        "name": "reviews-v1", "namespace": "default", "app": "reviews", "version": "v1",
        "principal": "spiffe://cluster.local/ns/default/sa/reviews",
        "service": "reviews.default.svc.cluster.local"}});
    let filter = native_filter("telemetry", config);
    let mut bootstrap = metric_names(proxy_to(echo.port(), vec![filter]));
    // Histograms reach /stats/prometheus at each flush.
    bootstrap["stats_flush_interval"] = json!("0.1s");
    let envoy = Envoy::start_with(&bootstrap, &options()).unwrap();
    let url = format!("{}/api/users/42", envoy.listener_url(INGRESS).unwrap());
    for _ in 0..7 {
        assert_eq!(
            http::get(&url).unwrap().status,
            200,
            "{}",
            envoy.log_tail(30)
        );
    }
    for _ in 0..3 {
        let resp = http::get_with(&url, &[("x-echo-status", "503")]).unwrap();
        assert_eq!(resp.status, 503);
    }
    // One series per response code, with the workload's labels and no module prefix.
    let value = |text: &str, name: &str, code: &str| -> Option<String> {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains(&format!("response_code=\"{code}\""))
                    && l.contains("destination_workload=\"reviews-v1\"")
                    && l.contains("reporter=\"destination\"")
            })
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.to_string())
    };
    let expected = [
        ("istio_requests_total", "200", "7"),
        ("istio_requests_total", "503", "3"),
        ("istio_request_duration_milliseconds_count", "200", "7"),
        ("istio_response_bytes_count", "503", "3"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = envoy.admin().prometheus().unwrap();
        let seen: Vec<_> = expected
            .iter()
            .map(|(name, code, _)| value(&text, name, code))
            .collect();
        let want: Vec<_> = expected
            .iter()
            .map(|(_, _, v)| Some(v.to_string()))
            .collect();
        if seen == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "saw {seen:?}, want {want:?}\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The properties the native build maps to Envoy's attribute ids (src/props.rs), read
/// through telemetry's access log (the fields the Wasm test
/// `access_log_has_istio_fields_with_request_values` checks): each id gives the value
/// its property has under Wasm. The unmapped ones are absent, and said so.
#[test]
fn mapped_properties_read_the_values_wasm_reads() {
    let echo = EchoServer::start().unwrap();
    let config = json!({"reporter": "destination", "accessLog": {"enabled": true}, "workload": {
        "name": "reviews-v1", "namespace": "default", "app": "reviews", "version": "v1",
        "principal": "spiffe://cluster.local/ns/default/sa/reviews",
        "service": "reviews.default.svc.cluster.local"}});
    let mut bootstrap = proxy_to(echo.port(), vec![native_filter("telemetry", config)]);
    let route = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];
    assert!(route.is_object(), "the rig's route moved: {bootstrap:#}");
    route["name"] = json!("reviews-route");
    let envoy = Envoy::start_with(&bootstrap, &options()).unwrap();
    let listener = envoy.listener_url(INGRESS).unwrap();
    let resp = http::get_with(
        &format!("{listener}/api/items?id=7"),
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = wasmesh_integration::echo::Echo::parse(&resp.body).unwrap();
    let line = envoy
        .wait_for_log("access_log ", std::time::Duration::from_secs(10))
        .unwrap();
    let json = line.split_once("wasmesh-telemetry: access_log ").unwrap().1;
    let l: Value = serde_json::from_str(json.lines().next().unwrap().trim()).unwrap();
    assert_eq!(l["protocol"], "HTTP/1.1", "request.protocol: {l}");
    assert_eq!(l["response_code"], 200, "response.code: {l}");
    assert_eq!(
        l["request_id"].as_str(),
        seen.header("x-request-id"),
        "request.id"
    );
    assert_eq!(
        l["upstream_host"],
        format!("127.0.0.1:{}", echo.port()),
        "upstream.address"
    );
    // Envoy takes the client address from x-forwarded-for (use_remote_address is off).
    assert_eq!(
        l["downstream_remote_address"], "203.0.113.9:0",
        "source.address"
    );
    assert_eq!(l["route_name"], "reviews-route", "xds.route_name");
    assert_eq!(
        l["connection_security_policy"], "none",
        "connection.mtls on plaintext"
    );
    assert!(
        envoy
            .log()
            .contains("property `request.time` is not available in the native build"),
        "{}",
        envoy.log_tail(40)
    );
}
