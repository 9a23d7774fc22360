//! Global rate limits in real Envoy 1.40 against the real rate limit service: one
//! limit shared by two Envoys is exact across both, the service going away gives the
//! configured failure mode without a hang, and a changed limit applies on reload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter};
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;
use wasmesh_integration::scenarios::global_ratelimit::{self, filter_config, limit_yaml, Seen};
use wasmesh_integration::{ports, rls};

/// An Envoy answering 200 behind the ratelimit filter, with the service's cluster.
fn envoy(rls_port: u16, deny: bool) -> Envoy {
    let filter = WasmFilter::new("wasmesh.ratelimit", wasm_module("wasmesh-ratelimit"))
        .config(filter_config(deny));
    let mut config = bootstrap::direct_response(200, "ok", &[filter]);
    config["static_resources"]["clusters"] = json!([rls::cluster(rls_port)]);
    Envoy::start(&config).unwrap()
}

fn url(e: &Envoy) -> String {
    global_ratelimit::url(e).unwrap()
}

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wasmesh-rlsg-{name}-{}", std::process::id()))
}

#[test]
fn a_limit_shared_by_two_envoys_is_exact_across_both() {
    let dir = dir("shared");
    let server = rls::Server::start(&dir, &limit_yaml(5), 0).unwrap();
    let (a, b) = (envoy(server.port, false), envoy(server.port, false));
    global_ratelimit::check_shared_limit(&a, &b).unwrap();
    // Allowed responses carry the service's numbers.
    let stat = |e: &Envoy, d: &str| {
        e.stat(&format!(
            "wasmcustom.wasmesh_ratelimit_global_decisions_total;rule=shared;decision={d}"
        ))
        .unwrap()
        .unwrap_or(0)
    };
    assert_eq!(stat(&a, "ok") + stat(&b, "ok"), 5);
    assert_eq!(stat(&a, "over_limit") + stat(&b, "over_limit"), 7);
}

#[test]
fn the_service_going_away_gives_the_failure_mode_without_a_hang() {
    let dir = dir("down");
    let server = rls::Server::start(&dir, &limit_yaml(100), 0).unwrap();
    let (open, closed) = (envoy(server.port, false), envoy(server.port, true));
    global_ratelimit::check_failure_modes(&open, &closed, server).unwrap();
    let errors = open
        .stat("wasmcustom.wasmesh_ratelimit_global_decisions_total;rule=shared;decision=error")
        .unwrap();
    assert_eq!(errors, Some(3));
}

#[test]
fn a_service_that_never_answers_times_out_into_the_failure_mode() {
    // A port where something accepts connections and never speaks: the call times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (open, closed) = (envoy(port, false), envoy(port, true));
    global_ratelimit::check_timeouts(&open, &closed).unwrap();
    drop(silent);
    let _ = ports::free_port();
}

#[test]
fn a_changed_limit_applies_on_reload() {
    let dir = dir("reload");
    let server = rls::Server::start(&dir, &limit_yaml(2), 0).unwrap();
    let e = envoy(server.port, false);
    let run = |n: usize| -> Vec<u16> {
        (0..n)
            .map(|_| http::get(&url(&e)).unwrap().status)
            .collect()
    };
    assert_eq!(run(3), [200, 200, 429]);
    server.reload(&dir, &limit_yaml(4)).unwrap();
    // A new limit counts afresh (its counter is named by the limit).
    assert_eq!(run(5), [200, 200, 200, 200, 429]);
}

/// The same exchange through the harness: each gRPC call the filter makes is
/// forwarded, bytes as they are, to the real service through its client; a service
/// that is gone answers as Envoy's gRPC client reports it (UNAVAILABLE, 14).
fn through_harness(port: Option<u16>, n: usize, deny: bool) -> Vec<Seen> {
    use prost::Message;
    use wasmesh_harness::{request, Action, Host, Module};
    use wasmesh_ratelimit_server::proto::RateLimitRequest;
    use wasmesh_ratelimit_server::rls::rate_limit_service_client::RateLimitServiceClient;
    let module = Module::load(wasm_module("wasmesh-ratelimit")).unwrap();
    let host = Host::builder(&module)
        .plugin_config(filter_config(deny).to_string())
        .property(&["source", "address"], "127.0.0.1:5000")
        .build()
        .unwrap();
    assert!(host.configured(), "{:?}", host.logs());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut seen = Vec::new();
    for _ in 0..n {
        let mut s = host.stream();
        let action = s.request_headers(&request("GET", "/x", "example.com"), true);
        assert_eq!(action, Action::Pause);
        let call = host.pending_grpc_calls().remove(0);
        assert_eq!(call.cluster, rls::CLUSTER);
        let answer = port.and_then(|port| {
            rt.block_on(async {
                let endpoint =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                        .ok()?;
                let mut client = RateLimitServiceClient::new(endpoint.connect().await.ok()?);
                let req = RateLimitRequest::decode(call.messages[0].as_slice()).unwrap();
                let resp = client.should_rate_limit(req).await.ok()?.into_inner();
                Some(resp.encode_to_vec())
            })
        });
        match answer {
            Some(bytes) => host.respond_grpc_call(call.token, &bytes).unwrap(),
            None => host.fail_grpc_call(call.token, 14).unwrap(),
        }
        let h = |m: &wasmesh_harness::HeaderMap, n: &str| m.get(n).map(str::to_string);
        match s.local_response() {
            Some(r) => seen.push((
                r.status as u16,
                h(&r.headers, "x-ratelimit-limit"),
                h(&r.headers, "x-ratelimit-remaining"),
            )),
            None => {
                s.response_headers(&[(":status", "200")], true);
                let m = s.response_header_map();
                seen.push((
                    200,
                    h(&m, "x-ratelimit-limit"),
                    h(&m, "x-ratelimit-remaining"),
                ));
            }
        }
    }
    seen
}

fn through_envoy(e: &Envoy, n: usize) -> Vec<Seen> {
    global_ratelimit::through_envoy(e, n).unwrap()
}

#[test]
fn conformance_the_same_exchange_gives_the_same_outcome_in_harness_and_envoy() {
    let want = global_ratelimit::five_against_three();
    // Each side gets its own service (and so its own counters).
    let harness_server = rls::Server::start(&dir("conf-h"), &limit_yaml(3), 0).unwrap();
    let mut harness = through_harness(Some(harness_server.port), 5, true);
    let envoy_server = rls::Server::start(&dir("conf-e"), &limit_yaml(3), 0).unwrap();
    let e = envoy(envoy_server.port, true);
    let mut in_envoy = through_envoy(&e, 5);
    assert_eq!(harness, want, "harness");
    assert_eq!(in_envoy, want, "envoy");
    // The service gone, fail-closed: 500 without the headers, on both.
    let gone = ports::free_port().unwrap();
    harness.extend(through_harness(Some(gone), 1, true));
    envoy_server.stop();
    in_envoy.extend(through_envoy(&e, 1));
    assert_eq!(harness.last(), Some(&(500, None, None)));
    assert_eq!(harness, in_envoy);
}

#[test]
fn a_rule_naming_a_cluster_envoy_lacks_fails_into_its_mode_and_the_vm_lives_on() {
    // Envoy 1.40 refuses the call to a cluster it does not know with ParseFailure (the
    // proxy-wasm crate would panic on BadArgument, which older Envoys returned): the
    // filter logs it and applies its failure mode, request after request.
    let start = |deny: bool| {
        let mut config = filter_config(deny);
        config["rate_limit_service"]["cluster"] = json!("wasmesh_no_such_cluster");
        let filter =
            WasmFilter::new("wasmesh.ratelimit", wasm_module("wasmesh-ratelimit")).config(config);
        Envoy::start(&bootstrap::direct_response(200, "ok", &[filter])).unwrap()
    };
    let (open, closed) = (start(false), start(true));
    for _ in 0..3 {
        let r = http::get(&url(&open)).unwrap();
        assert_eq!(
            r.status,
            200,
            "fail-open: {}\n{}",
            r.text(),
            open.log_tail(20)
        );
        let r = http::get(&url(&closed)).unwrap();
        assert_eq!(
            r.status,
            500,
            "fail-closed: {}\n{}",
            r.text(),
            closed.log_tail(20)
        );
    }
}
