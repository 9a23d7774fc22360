//! The rig's own tests: real Envoy 1.40, echo upstream, admin client.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use wasmesh_integration::bootstrap::{self, FailurePolicy, WasmFilter, INGRESS};
use wasmesh_integration::echo::{Echo, EchoServer};
use wasmesh_integration::envoy::{Envoy, Options};
use wasmesh_integration::http;
use wasmesh_integration::paths::TempDir;

/// A minimal Proxy-Wasm 0.2.1 plugin in WAT: passes every request through. When
/// `configure_ok` is false its `on_configure` logs `REFUSAL` at error level and returns
/// false. Enough to exercise Envoy's Wasm loading without building a filter crate.
fn tiny_plugin(dir: &TempDir, configure_ok: bool) -> anyhow::Result<PathBuf> {
    let wat = format!(
        r#"(module
          (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "{REFUSAL}")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            {configure})
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)
          (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
          (func (export "proxy_on_delete") (param i32)))"#,
        configure = if configure_ok {
            "i32.const 1".to_string()
        } else {
            // Log level 4 = error.
            format!(
                "(drop (call $log (i32.const 4) (i32.const 16) (i32.const {}))) i32.const 0",
                REFUSAL.len()
            )
        },
    );
    let path = dir.join(if configure_ok {
        "ok.wasm"
    } else {
        "refuses.wasm"
    });
    std::fs::write(&path, wat::parse_str(wat)?)?;
    Ok(path)
}

const REFUSAL: &str = "bad config: field x is wrong";

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn envoy_starts_and_is_ready() {
    let echo = EchoServer::start().unwrap();
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[])).unwrap();
    assert!(envoy.admin().is_ready());
    assert_ne!(envoy.listener_port(INGRESS).unwrap(), 0);
    assert!(envoy.listener_port("nope").is_err());
    assert!(process_exists(envoy.pid()));
    let dump = envoy.config_dump().unwrap();
    assert!(dump["configs"].is_array(), "{dump}");
    assert!(envoy.clusters().unwrap().contains("upstream::"));
}

#[test]
fn proxies_to_echo_upstream() {
    let echo = EchoServer::start_named("alpha").unwrap();
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[])).unwrap();
    let url = envoy.listener_url(INGRESS).unwrap();

    let response = http::request(
        "POST",
        &format!("{url}/some/path?q=1"),
        &[("x-test", "one"), ("x-test", "two")],
        b"hello",
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-echo-name"), Some("alpha"));
    let seen = Echo::parse(&response.body).unwrap();
    assert_eq!(seen.name, "alpha");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/some/path?q=1");
    assert_eq!(seen.header_all("x-test"), ["one", "two"]);
    assert!(
        seen.header("x-request-id").is_some(),
        "Envoy adds x-request-id"
    );
    assert_eq!(seen.body, "hello");
    assert_eq!(echo.requests(), 1);
}

#[test]
fn echo_honours_control_headers() {
    let echo = EchoServer::start().unwrap();
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[])).unwrap();
    let url = envoy.listener_url(INGRESS).unwrap();

    let failed = http::get_with(&url, &[("x-echo-status", "503")]).unwrap();
    assert_eq!(failed.status, 503);

    // Larger than one read buffer: the client must collect the whole body.
    let sized = http::get_with(&url, &[("x-echo-body-size", "100000")]).unwrap();
    assert_eq!(sized.body.len(), 100_000);

    let started = std::time::Instant::now();
    let slow = http::get_with(&url, &[("x-echo-delay-ms", "200")]).unwrap();
    assert_eq!(slow.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let extra = http::get_with(&url, &[("x-echo-response-header", "x-a: 1")]).unwrap();
    assert_eq!(extra.header("x-a"), Some("1"));
    assert_eq!(echo.requests(), 4);
}

#[test]
fn admin_stats_count_requests() {
    let echo = EchoServer::start().unwrap();
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[])).unwrap();
    let url = envoy.listener_url(INGRESS).unwrap();
    let before = envoy.stat("http.ingress.downstream_rq_total").unwrap();
    assert_eq!(before, Some(0));

    for _ in 0..3 {
        assert_eq!(http::get(&url).unwrap().status, 200);
    }
    let total = envoy
        .wait_for_stat(
            "http.ingress.downstream_rq_total",
            3,
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(total, 3);
    envoy
        .wait_for_stat(
            "cluster.upstream.upstream_rq_200",
            3,
            Duration::from_secs(5),
        )
        .unwrap();

    let stats = envoy.stats().unwrap();
    assert!(
        stats.values.len() > 100,
        "parsed {} values",
        stats.values.len()
    );
    assert!(!stats.histograms.is_empty());
    let prometheus = envoy.prometheus().unwrap();
    assert!(prometheus.contains("envoy_http_downstream_rq_total"));
}

#[test]
fn wasm_filter_passes_requests_through() {
    let dir = TempDir::new("rig-test").unwrap();
    let filter = WasmFilter::new("tiny", tiny_plugin(&dir, true).unwrap())
        .config(json!({"a": 1}))
        .failure_policy(FailurePolicy::FailOpen);
    let echo = EchoServer::start().unwrap();
    let config = bootstrap::proxy_to(echo.port(), &[filter]);
    Envoy::validate(&config).unwrap();
    let envoy = Envoy::start(&config).unwrap();
    let response = http::get(&envoy.listener_url(INGRESS).unwrap()).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    // The JSON builder's fields reached Envoy's typed config.
    let dump = envoy.config_dump().unwrap().to_string();
    assert!(dump.contains("FAIL_OPEN"), "{dump}");
    assert!(dump.contains(r#"{\"a\":1}"#), "{dump}");
}

#[test]
fn validate_accepts_good_and_rejects_bad_configs() {
    let good = bootstrap::direct_response(200, "ok", &[]);
    let output = Envoy::validate(&good).unwrap();
    assert!(output.contains("OK"), "{output}");

    let mut bad = good.clone();
    bad["static_resources"]["listeners"][0]["no_such_field"] = json!(1);
    let err = Envoy::validate(&bad).unwrap_err().to_string();
    assert!(err.contains("no_such_field"), "{err}");
}

#[test]
fn direct_response_answers_without_upstream() {
    let envoy = Envoy::start(&bootstrap::direct_response(418, "teapot", &[])).unwrap();
    let response = http::get(&envoy.listener_url(INGRESS).unwrap()).unwrap();
    assert_eq!(response.status, 418);
    assert_eq!(response.text(), "teapot");
}

#[test]
fn failed_start_reports_envoy_log() {
    let mut bad = bootstrap::direct_response(200, "ok", &[]);
    bad["static_resources"]["listeners"][0]["no_such_field"] = json!(1);
    let err = Envoy::start(&bad).unwrap_err().to_string();
    assert!(err.contains("before becoming ready"), "{err}");
    assert!(err.contains("no_such_field"), "{err}");
}

#[test]
fn plugin_refusing_its_config_stops_envoy_starting() {
    let dir = TempDir::new("rig-test").unwrap();
    let filter = WasmFilter::new("refuser", tiny_plugin(&dir, false).unwrap());
    let config = bootstrap::direct_response(200, "ok", std::slice::from_ref(&filter));
    let err = Envoy::start(&config).unwrap_err().to_string();
    assert!(err.contains("before becoming ready"), "{err}");
    // Envoy 1.40 logs, in order:
    //   [error][wasm] wasm log refuser refuser: <the plugin's own message>
    //   [error][wasm] Wasm VM failed Failed to configure base Wasm plugin
    //   [critical][wasm] Plugin refuser failed to load
    //   [critical][wasm] Plugin configured to fail closed failed to load
    //   [critical][main] error `Unable to create Wasm plugin refuser` initializing config ..
    assert!(
        err.contains(&format!("wasm log refuser refuser: {REFUSAL}")),
        "{err}"
    );
    assert!(
        err.contains("Failed to configure base Wasm plugin"),
        "{err}"
    );
    assert!(
        err.contains("Unable to create Wasm plugin refuser"),
        "{err}"
    );

    // Validation runs on_configure too, so it catches the same refusal more cheaply.
    let err = Envoy::validate(&config).unwrap_err().to_string();
    assert!(err.contains(REFUSAL), "{err}");

    // failure_policy does not soften a refusal at start-up: FAIL_OPEN still stops Envoy
    // (and the log still says "configured to fail closed", read from the legacy bool).
    let open = filter.failure_policy(FailurePolicy::FailOpen);
    let err = Envoy::start(&bootstrap::direct_response(200, "ok", &[open]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Unable to create Wasm plugin refuser"),
        "{err}"
    );
}

#[test]
fn envoy_is_gone_after_drop() {
    let envoy = Envoy::start(&bootstrap::direct_response(200, "ok", &[])).unwrap();
    let pid = envoy.pid();
    let dir = envoy.dir().to_path_buf();
    assert!(process_exists(pid));
    drop(envoy);
    assert!(!process_exists(pid), "Envoy pid {pid} still exists");
    assert!(!dir.exists(), "scratch directory removed after a clean run");
}

#[test]
fn envoy_is_gone_after_a_panicking_test() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let envoy = Envoy::start(&bootstrap::direct_response(200, "ok", &[])).unwrap();
        tx.send((envoy.pid(), envoy.dir().to_path_buf())).unwrap();
        panic!("simulated test failure");
    });
    assert!(result.is_err());
    let (pid, dir) = rx.recv().unwrap();
    assert!(!process_exists(pid), "Envoy pid {pid} still exists");
    assert!(dir.join("envoy.log").exists(), "log kept for debugging");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn options_reach_the_command_line() {
    let options = Options::default().concurrency(2).log_level("debug");
    let envoy = Envoy::start_with(&bootstrap::direct_response(200, "ok", &[]), &options).unwrap();
    assert_eq!(envoy.stat("server.concurrency").unwrap(), Some(2));
    envoy
        .wait_for_log("[debug]", Duration::from_secs(5))
        .unwrap();
    let status = envoy.stop().unwrap();
    // SIGTERM is a clean shutdown for Envoy.
    assert!(status.success() || status.code().is_none(), "{status}");
}

#[test]
fn raw_requests_are_sent_verbatim() {
    let echo = EchoServer::start().unwrap();
    let response = http::raw_request(
        echo.addr(),
        b"GET //a/%2e%2e/b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(Echo::parse(&response.body).unwrap().path, "//a/%2e%2e/b");
}

#[test]
fn client_reads_chunked_bodies() {
    // A hand-written chunked answer with an extension and a trailer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).unwrap();
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-r: 1\r\nx-r: 2\r\n\r\n\
                  5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            )
            .unwrap();
    });
    let response = http::get(&format!("http://{addr}/")).unwrap();
    server.join().unwrap();
    assert_eq!(response.text(), "hello world");
    assert_eq!(response.header_all("x-r"), ["1", "2"]);
}
