//! The manual clock: time seen by the guest, ticks, WASI clocks.

mod common;
use common::{builder, host, op};
use std::time::{Duration, UNIX_EPOCH};
use wasmesh_harness::response;

fn guest_time_nanos(host: &wasmesh_harness::Host) -> u128 {
    let mut s = host.stream();
    s.request_headers(&op("time", &[]), true);
    let body = s
        .local_response()
        .map(|lr| lr.body_str())
        .unwrap_or_default();
    body.parse().unwrap_or_default()
}

#[test]
fn guest_sees_the_manual_clock() {
    let host = host();
    let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    host.set_time(t);
    assert_eq!(guest_time_nanos(&host), 1_800_000_000 * 1_000_000_000);
    host.advance(Duration::from_millis(1500));
    assert_eq!(guest_time_nanos(&host), 1_800_000_001_500_000_000);
    assert_eq!(host.now(), t + Duration::from_millis(1500));
}

#[test]
fn ticks_fire_when_due_on_every_worker() {
    let host = builder()
        .workers(2)
        .plugin_config("tick_ms=100")
        .build()
        .unwrap();
    host.advance(Duration::from_millis(99));
    assert_eq!(host.shared_data_str("probe.ticks"), None);
    host.advance(Duration::from_millis(1));
    assert_eq!(host.shared_data_str("probe.ticks").as_deref(), Some("2"));
    host.advance(Duration::from_millis(350));
    // 100, 200, 300, 400 ms on each of the two workers.
    assert_eq!(host.shared_data_str("probe.ticks").as_deref(), Some("8"));
    assert_eq!(host.metric("probe_ticks_total").unwrap().value, 8);
    let mut s = host.stream();
    s.request_headers(&op("ticks", &[]), true);
    assert_eq!(s.local_response().unwrap().body, b"8");
}

#[test]
fn no_tick_without_a_period() {
    let host = host();
    host.advance(Duration::from_secs(60));
    assert_eq!(host.shared_data_str("probe.ticks"), None);
}

#[test]
fn wasi_output_clock_env_and_random_are_served_by_the_host() {
    let host = builder()
        .env("A", "1")
        .env("B", "2")
        .seed(7)
        .build()
        .unwrap();
    let mut s = host.stream();
    s.request_headers(&op("wasi", &[]), true);
    s.response_headers(&response(200), true);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-wasi-time"), Some("1704067200"));
    assert_eq!(resp.get("x-probe-env-count"), Some("2"));
    assert!(resp.get("x-probe-random").is_some());
    assert_eq!(host.stdout(), "probe stdout\n");
    assert_eq!(host.stderr(), "probe stderr\n");
    assert!(host
        .logs_at(wasmesh_harness::Level::Error)
        .iter()
        .any(|l| l.message == "probe stderr"));

    // Same seed, same randomness: runs are reproducible.
    let again = builder()
        .env("A", "1")
        .env("B", "2")
        .seed(7)
        .build()
        .unwrap();
    let mut s2 = again.stream();
    s2.request_headers(&op("wasi", &[]), true);
    s2.response_headers(&response(200), true);
    assert_eq!(
        s2.response_header_map().get("x-probe-random"),
        resp.get("x-probe-random")
    );
}
