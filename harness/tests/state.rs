//! Metrics, shared data, shared queues and properties.

mod common;
use common::{builder, host, op, property};
use wasmesh_harness::{response, Action, MetricKind, PropertyValue};

#[test]
fn metrics_are_defined_incremented_recorded_and_read_back() {
    let host = host();
    for delta in ["5", "-2"] {
        let mut s = host.stream();
        s.request_headers(&op("metric", &[("x-probe-value", delta)]), true);
        s.response_headers(&response(200), true);
        s.finish();
    }
    let counter = host.metric("probe_requests_total").unwrap();
    assert_eq!(counter.kind, MetricKind::Counter);
    assert_eq!(counter.value, 2);
    let gauge = host.metric("probe_gauge").unwrap();
    assert_eq!((gauge.kind, gauge.value), (MetricKind::Gauge, 3));
    let hist = host.metric("probe_histogram").unwrap();
    assert_eq!(hist.kind, MetricKind::Histogram);
    assert_eq!(hist.samples, vec![5, 2]);
    // on_log ran for both streams.
    assert_eq!(host.metric("probe_logged_total").unwrap().value, 2);
    assert!(host.metric("nope").is_none());
}

#[test]
fn get_metric_on_a_histogram_is_a_bad_argument_and_values_show_in_headers() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("metric", &[]), true);
    s.response_headers(&response(200), true);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-counter"), Some("1"));
    assert_eq!(resp.get("x-probe-histogram-get"), Some("BadArgument"));
}

#[test]
fn metrics_defined_on_several_workers_are_one_metric() {
    let host = builder().workers(3).build().unwrap();
    for worker in 0..3 {
        let mut s = host.stream_on(worker).unwrap();
        s.request_headers(&op("metric", &[]), true);
    }
    assert_eq!(host.metric("probe_requests_total").unwrap().value, 3);
}

#[test]
fn shared_data_cas_zero_writes_and_stale_cas_is_a_mismatch() {
    let host = host();
    let set = |value: &str, cas: Option<&str>| {
        let mut s = host.stream();
        let mut extra = vec![("x-probe-key", "k"), ("x-probe-value", value)];
        if let Some(cas) = cas {
            extra.push(("x-probe-cas", cas));
        }
        s.request_headers(&op("shared-set", &extra), true);
        s.response_headers(&response(200), true);
        s.response_header_map()
            .get("x-probe-result")
            .unwrap()
            .to_string()
    };
    assert_eq!(set("one", None), "Ok");
    let (_, cas) = host.shared_data("k").unwrap();
    assert_eq!(set("two", Some(&cas.to_string())), "Ok");
    assert_eq!(set("three", Some(&cas.to_string())), "CasMismatch");
    assert_eq!(host.shared_data_str("k").as_deref(), Some("two"));
    // The filter reads it back with its current cas.
    let mut s = host.stream();
    s.request_headers(&op("shared-get", &[("x-probe-key", "k")]), true);
    s.response_headers(&response(200), true);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-value"), Some("two"));
    let (_, cas_now) = host.shared_data("k").unwrap();
    assert_eq!(resp.get("x-probe-cas"), Some(cas_now.to_string().as_str()));
}

#[test]
fn missing_shared_data_reads_as_not_found() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("shared-get", &[("x-probe-key", "absent")]), true);
    s.response_headers(&response(200), true);
    assert_eq!(s.response_header_map().get("x-probe-value"), Some("<none>"));
}

#[test]
fn test_seeded_shared_data_is_visible_to_the_filter() {
    let host = host();
    host.set_shared_data("probe.counter", "41");
    let mut s = host.stream();
    s.request_headers(&op("shared-cas", &[]), true);
    s.response_headers(&response(200), true);
    assert_eq!(s.response_header_map().get("x-probe-counter"), Some("42"));
}

#[test]
fn enqueue_notifies_the_registering_root_context() {
    let host = builder()
        .workers(2)
        .plugin_config("queue=probe_queue")
        .build()
        .unwrap();
    // Enqueue from worker 1; the queue was first registered by worker 0's root.
    let mut s = host.stream_on(1).unwrap();
    s.request_headers(&op("queue", &[("x-probe-value", "item-1")]), true);
    s.response_headers(&response(200), true);
    assert_eq!(s.response_header_map().get("x-probe-result"), Some("Ok"));
    assert_eq!(
        host.shared_data_str("probe.queue.last").as_deref(),
        Some("item-1")
    );
    assert_eq!(host.metric("probe_queue_items_total").unwrap().value, 1);
    let dequeued_on: Vec<_> = host
        .logs()
        .into_iter()
        .filter(|l| l.message == "queue item=item-1")
        .map(|l| l.worker)
        .collect();
    assert_eq!(dequeued_on, vec![0]);
    assert_eq!(host.queue_items("probe_queue"), Some(vec![]));
    // The test can enqueue too.
    host.enqueue("probe_queue", "from-test").unwrap();
    assert_eq!(
        host.shared_data_str("probe.queue.last").as_deref(),
        Some("from-test")
    );
}

#[test]
fn resolving_an_unregistered_queue_is_not_found() {
    let host = host();
    let mut s = host.stream();
    s.request_headers(&op("queue", &[("x-probe-queue", "nope")]), true);
    s.response_headers(&response(200), true);
    assert_eq!(
        s.response_header_map().get("x-probe-result"),
        Some("NotFound")
    );
    assert!(host.enqueue("nope", "x").is_err());
}

#[test]
fn host_wide_properties_are_encoded_like_envoy() {
    let host = builder()
        .property(&["source", "address"], "10.0.0.7:5000")
        .property(&["source", "port"], 5000i64)
        .property(&["connection", "mtls"], true)
        .root_id("probe-root")
        .build()
        .unwrap();
    assert_eq!(
        property(&host, "source.address"),
        (200, b"10.0.0.7:5000".to_vec())
    );
    assert_eq!(
        property(&host, "source.port"),
        (200, 5000i64.to_le_bytes().to_vec())
    );
    assert_eq!(property(&host, "connection.mtls"), (200, vec![1]));
    assert_eq!(
        property(&host, "plugin_root_id"),
        (200, b"probe-root".to_vec())
    );
    assert_eq!(property(&host, "no.such.thing").0, 404);
    host.set_property(&["route_name"], "r1");
    assert_eq!(property(&host, "route_name"), (200, b"r1".to_vec()));
}

#[test]
fn request_properties_derive_from_the_headers() {
    let host = host();
    let mut s = host.stream();
    let mut h = op("property", &[("x-probe-property", "request.url_path")]);
    h[1].1 = "/a/b?q=1".into();
    s.request_headers(&h, true);
    assert_eq!(s.local_response().unwrap().body, b"/a/b");
    assert_eq!(property(&host, "request.method").1, b"GET");
    assert_eq!(property(&host, "request.host").1, b"example.com");
}

#[test]
fn per_stream_properties_override_host_ones() {
    let host = builder()
        .property(&["connection", "uri_san_peer_certificate"], "spiffe://host")
        .build()
        .unwrap();
    let mut s = host.stream();
    s.set_property(
        &["connection", "uri_san_peer_certificate"],
        PropertyValue::string("spiffe://cluster.local/ns/a/sa/b"),
    );
    let h = op(
        "property",
        &[("x-probe-property", "connection.uri_san_peer_certificate")],
    );
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    assert_eq!(
        s.local_response().unwrap().body,
        b"spiffe://cluster.local/ns/a/sa/b"
    );
    assert_eq!(
        property(&host, "connection.uri_san_peer_certificate").1,
        b"spiffe://host"
    );
}

#[test]
fn filter_set_properties_read_back_on_the_stream() {
    let host = host();
    let mut s = host.stream();
    let headers = [("x-probe-value", "v1"), ("x-probe-property", "probe_value")];
    s.request_headers(&op("set-property", &headers), true);
    s.response_headers(&response(200), true);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-result"), Some("Ok"));
    assert_eq!(resp.get("x-probe-value"), Some("v1"));
    assert_eq!(s.property(&["probe_value"]), Some(b"v1".to_vec()));

    // As in Envoy 1.40: a value set at a two-segment path is stored, but get_property
    // looks up only the first segment in filter state, so it does not read back.
    let mut s = host.stream();
    s.request_headers(&op("set-property", &[("x-probe-value", "v2")]), true);
    s.response_headers(&response(200), true);
    let resp = s.response_header_map();
    assert_eq!(resp.get("x-probe-result"), Some("Ok"));
    assert_eq!(resp.get("x-probe-value"), Some(""));
    assert_eq!(s.property(&["probe", "value"]), Some(b"v2".to_vec()));
}
