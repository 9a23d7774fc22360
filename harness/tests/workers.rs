//! Several worker VMs share shared data: a CAS retry loop keeps an exact count however the
//! workers interleave, as it must in a multi-worker Envoy.

mod common;
use common::{builder, op};
use wasmesh_harness::response;

#[test]
fn interleaved_workers_count_exactly_with_cas_retries() {
    let workers = 4;
    let host = builder().workers(workers).build().unwrap();
    // A missing key has no cas, and a write with cas 0 is unconditional: two first writers
    // would both succeed. Seed the key so every write is a compare-and-swap.
    host.set_shared_data("probe.counter", "0");
    let mut total_retries = 0;
    for round in 0..25 {
        // Every worker reads the counter (request phase) before any writes (response
        // phase): each writer after the first holds a stale cas, hits CAS_MISMATCH, re-reads
        // and succeeds on its retry.
        let mut streams: Vec<_> = (0..workers)
            .map(|w| {
                let mut s = host.stream_on(w).unwrap();
                s.request_headers(&op("shared-cas-split", &[]), true);
                s
            })
            .collect();
        let mut retries = Vec::new();
        for s in streams.iter_mut() {
            s.response_headers(&response(200), true);
            let r: u32 = s
                .response_header_map()
                .get("x-probe-cas-retries")
                .unwrap()
                .parse()
                .unwrap();
            retries.push(r);
        }
        assert_eq!(retries, vec![0, 1, 1, 1], "round {round}");
        total_retries += retries.iter().sum::<u32>();
    }
    assert_eq!(
        host.shared_data_str("probe.counter").as_deref(),
        Some("100")
    );
    assert_eq!(total_retries, 25 * 3);
}

#[test]
fn workers_on_threads_share_one_counter() {
    let workers = 4;
    let per_worker = 50;
    let host = builder().workers(workers).build().unwrap();
    // Without a seed, two threads can both find the key missing and both write with cas 0
    // (unconditional): a lost update, exactly as in Envoy.
    host.set_shared_data("probe.counter", "0");
    std::thread::scope(|scope| {
        for w in 0..workers {
            let host = &host;
            scope.spawn(move || {
                for _ in 0..per_worker {
                    let mut s = host.stream_on(w).unwrap();
                    s.request_headers(&op("shared-cas", &[]), true);
                    s.response_headers(&response(200), true);
                    assert_ne!(
                        s.response_header_map().get("x-probe-counter"),
                        Some("failed")
                    );
                }
            });
        }
    });
    let expected = (workers * per_worker).to_string();
    assert_eq!(host.shared_data_str("probe.counter"), Some(expected));
}
