//! Each traffic policy the generator emits, shown working in real Envoy on its own:
//! a generated client sidecar (one worker) calls `server`, whose replicas are echo
//! servers bound straight to their inbound ports (mTLS off, no server sidecar), so
//! every request the policy lets through is counted where it lands.
//!
//! Ratios are checked against binomial bounds (`wasmesh_integration::stats`, five standard deviations) and times
//! against the configured value with a margin for a loaded machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod common;

use common::{bootstrap_of, bootstraps, free_port_base, scratch};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use wasmesh::topology;
use wasmesh_integration::{http, EchoServer, Envoy};

/// The client's sidecar and the echo servers behind `server` (and `shadow`).
struct Rig {
    client: Envoy,
    client_ports: topology::Ports,
    /// `server-v1-0`, `server-v1-1`, ... in replica order.
    replicas: Vec<EchoServer>,
    shadow: EchoServer,
}

impl Rig {
    /// A mesh of `client` calling `server` (`replicas` of v1, with `server_policy`:
    /// `trafficPolicy` and/or `routes`, indented under the service) and `shadow`.
    fn start(label: &str, replicas: u32, server_policy: &str) -> Rig {
        let mesh_text = format!(
            r#"
mesh:
  name: {label}
  mtls: DISABLE
services:
  - name: client
    port: 9080
    calls: [server, shadow]
    filters:
      outbound:
        - name: telemetry
          config: {{ reporter: source }}
  - name: server
    port: 9080
    calls: []
    versions:
      - name: v1
        replicas: {replicas}
{server_policy}
  - name: shadow
    port: 9080
    calls: []
"#
        );
        let mesh = wasmesh::load_str(Path::new("mesh.yaml"), &mesh_text).unwrap();
        let certs_dir = scratch(label).join("certs");
        wasmesh::certs::ensure(&mesh, &certs_dir).unwrap();
        let base = free_port_base(u16::try_from(replicas).unwrap() + 2);
        let configs = bootstraps(&mesh_text, &certs_dir, base);
        let instances =
            topology::instances(&mesh, topology::Target::Process { port_base: base }).unwrap();
        let inbound_of = |name: &str| {
            instances
                .iter()
                .find(|i| i.name == name)
                .unwrap()
                .ports
                .inbound
        };
        let replicas = (0..replicas)
            .map(|r| {
                let name = format!("server-v1-{r}");
                EchoServer::start_on(inbound_of(&name), &name).unwrap()
            })
            .collect();
        let shadow = EchoServer::start_on(inbound_of("shadow-v1-0"), "shadow-v1-0").unwrap();
        let client_ports = instances
            .iter()
            .find(|i| i.name == "client-v1-0")
            .unwrap()
            .ports;
        let client = Envoy::start(bootstrap_of(&configs, "client")).unwrap();
        Rig {
            client,
            client_ports,
            replicas,
            shadow,
        }
    }

    /// One call from the client's app to `server:9080/hello`, with `headers`.
    fn call(&self, headers: &[(&str, &str)]) -> http::Response {
        let url = format!("http://127.0.0.1:{}/hello", self.client_ports.outbound);
        let mut all = vec![("host", "server:9080")];
        all.extend_from_slice(headers);
        http::get_with(&url, &all).unwrap()
    }

    /// [`Rig::call`], timed.
    fn timed_call(&self, headers: &[(&str, &str)]) -> (http::Response, Duration) {
        let start = Instant::now();
        let r = self.call(headers);
        (r, start.elapsed())
    }

    /// Requests each replica has received, in replica order.
    fn served(&self) -> Vec<u64> {
        self.replicas.iter().map(EchoServer::requests).collect()
    }

    /// The value of the client's counter `cluster.outbound|9080||server...<suffix>`.
    fn server_cluster_stat(&self, suffix: &str) -> u64 {
        let stats = self.client.stats().unwrap();
        let name = format!("cluster.{}.{suffix}", server_cluster());
        stats.get(&name).unwrap_or(0)
    }
}

/// Binds `port` without listening: the port is held (closed with the descriptor) and
/// every connection to it is refused.
fn refusing_port(port: u16) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap(),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).unwrap();
    // SAFETY: bind(2) reads `len` bytes of the sockaddr_in, which outlives the call.
    let bound = unsafe { libc::bind(owned.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
    assert_eq!(bound, 0, "bind {port}: {}", std::io::Error::last_os_error());
    owned
}

/// The client's cluster for every instance of `server`.
fn server_cluster() -> String {
    "outbound|9080||server.default.svc.cluster.local".to_string()
}

/// `got` is within ±20% of `configured`.
fn assert_near(what: &str, got: Duration, configured: Duration) {
    let (low, high) = (configured.mul_f64(0.8), configured.mul_f64(1.2));
    assert!(
        low <= got && got <= high,
        "{what}: took {got:?}, configured {configured:?} (allowed {low:?}..{high:?})"
    );
}

#[test]
fn mirror_sends_the_percentage_to_the_shadow_host_and_never_waits_for_it() {
    let rig = Rig::start(
        "mirror",
        1,
        "    routes:
      - route:
          - service: server
        mirror:
          service: shadow
          percentage: 50",
    );
    // The shadow answers slowly: a client that waited for it would see it.
    let shadow_delay = Duration::from_secs(2);
    rig.shadow.set_delay(shadow_delay);
    let n = 200;
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let (r, took) = rig.timed_call(&[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-echo-name"), Some("server-v1-0"));
        slowest = slowest.max(took);
    }
    assert!(
        slowest < shadow_delay,
        "a call took {slowest:?}: the client waited for its shadow ({shadow_delay:?})"
    );
    assert_eq!(rig.served(), vec![n]);

    // Mirrored requests are counted on arrival and recorded once answered: wait for
    // the slow answers, bounded.
    let deadline = Instant::now() + shadow_delay * 4;
    while rig.shadow.received().len() as u64 != rig.shadow.requests() {
        assert!(Instant::now() < deadline, "the shadow never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mirrored = rig.shadow.received();
    #[allow(clippy::cast_precision_loss)]
    let off = (mirrored.len() as f64 - 100.0).abs();
    assert!(
        off <= wasmesh_integration::stats::count_tolerance(200, 0.5),
        "{} of {n} mirrored at 50%",
        mirrored.len()
    );
    for echo in &mirrored {
        let host = echo.header("host").unwrap_or_default();
        // Envoy appends `-shadow` to the host, before the port.
        assert_eq!(host, "server-shadow:9080", "a mirrored request's host");
    }
}

#[test]
fn a_route_timeout_answers_504_at_the_configured_time() {
    let rig = Rig::start(
        "timeout",
        1,
        "    routes:
      - route:
          - service: server
        timeout: 1s",
    );
    let configured = Duration::from_secs(1);
    // Answered in time: passes.
    let (r, _) = rig.timed_call(&[("x-echo-delay-ms", "100")]);
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..3 {
        let (r, took) = rig.timed_call(&[("x-echo-delay-ms", "3000")]);
        assert_eq!(r.status, 504, "{}", r.text());
        assert_eq!(r.text(), "upstream request timeout");
        assert_near("the timed-out call", took, configured);
    }
    assert_eq!(rig.server_cluster_stat("upstream_rq_timeout"), 3);
}

/// Routes by `x-case` to one retry policy each.
const RETRY_ROUTES: &str = "    routes:
      - match:
          - headers: { x-case: { exact: 5xx } }
        route:
          - service: server
        retries: { attempts: 2, retryOn: 5xx }
      - match:
          - headers: { x-case: { exact: gateway-error } }
        route:
          - service: server
        retries: { attempts: 2, retryOn: gateway-error }
      - match:
          - headers: { x-case: { exact: istio-default } }
        route:
          - service: server
        retries: { attempts: 2 }
      - match:
          - headers: { x-case: { exact: per-try } }
        route:
          - service: server
        retries: { attempts: 2, perTryTimeout: 300ms, retryOn: 5xx }";

#[test]
fn retries_are_counted_at_the_upstream_per_retry_on_condition() {
    let rig = Rig::start("retries", 1, RETRY_ROUTES);
    // (retryOn route, upstream status, attempts the upstream sees)
    let cases = [
        ("5xx", "500", 3),
        ("5xx", "503", 3),
        ("5xx", "404", 1),
        ("gateway-error", "502", 3),
        ("gateway-error", "503", 3),
        ("gateway-error", "500", 1),
        // Istio's default conditions retry 503 (retriable-status-codes) only.
        ("istio-default", "503", 3),
        ("istio-default", "500", 1),
        ("istio-default", "502", 1),
    ];
    for (case, status, attempts) in cases {
        let before = rig.replicas[0].requests();
        let r = rig.call(&[("x-case", case), ("x-echo-status", status)]);
        assert_eq!(r.status.to_string(), status, "{case}: {}", r.text());
        let seen = rig.replicas[0].requests() - before;
        assert_eq!(
            seen, attempts,
            "retryOn {case}, upstream {status}: attempts at the upstream"
        );
    }
    assert_eq!(rig.server_cluster_stat("upstream_rq_retry"), 10);
}

#[test]
fn istio_default_retries_a_refused_connection_on_another_replica() {
    let mut rig = Rig::start("connect-failure", 2, "");
    // The second replica is gone: its port stays ours (no other test's echo server may
    // take it) but nothing listens, so connections to it are refused.
    let port = rig.replicas.remove(1).port();
    let _refusing = refusing_port(port);
    for _ in 0..20 {
        let r = rig.call(&[]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(rig.served(), vec![20]);
    let refused = rig.server_cluster_stat("upstream_cx_connect_fail");
    assert!(
        refused >= 5,
        "round robin tried the gone replica {refused} times"
    );
    assert_eq!(
        rig.server_cluster_stat("upstream_rq_retry"),
        refused,
        "each refused connection retried once"
    );
}

#[test]
fn per_try_timeout_cuts_each_attempt() {
    let rig = Rig::start("per-try", 1, RETRY_ROUTES);
    let per_try = Duration::from_millis(300);
    let (r, took) = rig.timed_call(&[("x-case", "per-try"), ("x-echo-delay-ms", "3000")]);
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(rig.served(), vec![3], "attempts at the upstream");
    // Three attempts of 300 ms, plus Envoy's retry back-off (25 ms base, jittered:
    // at most 25 + 50 ms for two retries).
    let low = (per_try * 3).mul_f64(0.8);
    let high = (per_try * 3 + Duration::from_millis(75)).mul_f64(1.2);
    assert!(
        low <= took && took <= high,
        "3 attempts of {per_try:?} took {took:?} (allowed {low:?}..{high:?})"
    );
    assert_eq!(
        rig.server_cluster_stat("upstream_rq_per_try_timeout"),
        3,
        "{}",
        rig.client.log_tail(20)
    );
}

/// The outbound telemetry's `istio_requests_total` series (its value) whose labels
/// include `label`, polled until it reaches `want` (stats reach Prometheus at a flush).
fn wait_for_series(envoy: &Envoy, label: &str, want: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = envoy.prometheus().unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{") && l.contains(label))
            .map(str::to_string);
        if let Some(line) = &line {
            if line.ends_with(&format!(" {want}")) {
                return line.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no istio_requests_total series with {label} = {want}: {line:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn circuit_breaking_answers_overflow_with_503_uo() {
    let rig = Arc::new(Rig::start(
        "breaker",
        1,
        "    trafficPolicy:
      connectionPool: { maxConnections: 1, maxPendingRequests: 1 }",
    ));
    // Open the one connection first: a request waiting for a connection to be
    // established is pending too, and would make the count depend on timing.
    let r = rig.call(&[]);
    assert_eq!(r.status, 200, "{}", r.text());
    // One request holds the only connection, one waits for it, the rest overflow.
    let hold = Duration::from_secs(2);
    rig.replicas[0].set_delay(hold);
    let callers = 6;
    let barrier = Arc::new(Barrier::new(callers));
    let calls: Vec<_> = (0..callers)
        .map(|_| {
            let (rig, barrier) = (Arc::clone(&rig), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                rig.timed_call(&[])
            })
        })
        .collect();
    let results: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    let (passed, overflowed): (Vec<_>, Vec<_>) = results.iter().partition(|(r, _)| r.status == 200);
    assert_eq!(passed.len(), 2, "{results:?}");
    for (r, took) in &overflowed {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
        assert!(*took < hold, "an overflow waited {took:?}");
    }
    assert_eq!(rig.served(), vec![3]);
    let overflows = u64::try_from(overflowed.len()).unwrap();
    assert_eq!(
        rig.server_cluster_stat("upstream_rq_pending_overflow"),
        overflows
    );
    // The second request wanted a second connection: past maxConnections it waited.
    assert!(rig.server_cluster_stat("upstream_cx_overflow") >= 1);
    wait_for_series(&rig.client, "response_flags=\"UO\"", overflows);
}

#[test]
fn outlier_detection_ejects_after_consecutive_5xx_and_returns_the_host() {
    let rig = Rig::start(
        "outlier",
        3,
        "    trafficPolicy:
      outlierDetection:
        consecutive5xxErrors: 3
        interval: 1s
        baseEjectionTime: 2s
        maxEjectionPercent: 100
    routes:
      - route:
          - service: server
        retries: { attempts: 0 }",
    );
    let bad = &rig.replicas[0];
    bad.set_status(503);
    // Round robin: the failing host answers every third call until its third 5xx.
    let mut failures = 0;
    let mut calls = 0;
    while failures < 3 {
        let r = rig.call(&[]);
        calls += 1;
        if r.status == 503 {
            failures += 1;
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
        }
        assert!(calls < 30, "{failures} failures in {calls} calls");
    }
    let ejected_at = Instant::now();
    assert_eq!(
        rig.client
            .stat(&format!(
                "cluster.{}.outlier_detection.ejections_enforced_consecutive_5xx",
                server_cluster()
            ))
            .unwrap(),
        Some(1)
    );
    // Ejected: no call reaches it, every call succeeds.
    bad.set_status(200);
    let seen = bad.requests();
    for _ in 0..12 {
        let r = rig.call(&[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_ne!(r.header("x-echo-name"), Some("server-v1-0"));
    }
    assert_eq!(bad.requests(), seen, "the ejected host got calls");
    // Back after the base ejection time (checked at each 1 s interval).
    let base = Duration::from_secs(2);
    while bad.requests() == seen {
        let r = rig.call(&[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            ejected_at.elapsed() < base + Duration::from_secs(4),
            "the host stayed ejected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = ejected_at.elapsed();
    assert!(back >= base.mul_f64(0.95), "back after {back:?}");
}

/// Names of the replicas that answered `n` sequential calls, in order.
fn answers(rig: &Rig, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = rig.call(&[]);
            assert_eq!(r.status, 200, "{}", r.text());
            r.header("x-echo-name").unwrap().to_string()
        })
        .collect()
}

#[test]
fn round_robin_takes_the_replicas_in_turn() {
    let rig = Rig::start(
        "lb-rr",
        3,
        "    trafficPolicy: { loadBalancer: ROUND_ROBIN }",
    );
    let seq = answers(&rig, 30);
    let first: std::collections::BTreeSet<_> = seq[..3].iter().collect();
    assert_eq!(first.len(), 3, "{seq:?}");
    for i in 3..seq.len() {
        assert_eq!(seq[i], seq[i - 3], "not in turn: {seq:?}");
    }
    assert_eq!(rig.served(), vec![10, 10, 10]);
}

#[test]
fn random_spreads_evenly_but_not_in_turn() {
    let rig = Rig::start(
        "lb-random",
        3,
        "    trafficPolicy: { loadBalancer: RANDOM }",
    );
    let n = 300;
    let seq = answers(&rig, n);
    for (replica, served) in rig.served().into_iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let off = (served as f64 - 100.0).abs();
        assert!(
            off <= wasmesh_integration::stats::count_tolerance(n, 1.0 / 3.0),
            "replica {replica} served {served} of {n}"
        );
    }
    // Round robin never picks the same replica twice running; at random, 299 picks
    // avoid it with probability (2/3)^299.
    assert!(
        seq.windows(2).any(|w| w[0] == w[1]),
        "in turn: {:?}...",
        &seq[..12]
    );
}

#[test]
fn least_request_steers_away_from_a_busy_replica() {
    let rig = Arc::new(Rig::start(
        "lb-least",
        3,
        "    trafficPolicy: { loadBalancer: LEAST_REQUEST }",
    ));
    // One slow replica keeps requests open; round robin or random would still give it a
    // third of the calls.
    rig.replicas[0].set_delay(Duration::from_millis(300));
    // Enough calls that the gap to a third (which grows with n) dwarfs five standard
    // deviations (which grow with its square root): about 15% here against 24%.
    let (threads, per_thread) = (4, 100);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let rig = Arc::clone(&rig);
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    let r = rig.call(&[]);
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let n = threads * per_thread;
    let served = rig.served();
    assert_eq!(served.iter().sum::<u64>(), n as u64);
    #[allow(clippy::cast_precision_loss)]
    let (slow, ceiling) = (
        served[0] as f64,
        n as f64 / 3.0 - wasmesh_integration::stats::count_tolerance(n, 1.0 / 3.0),
    );
    assert!(
        slow < ceiling,
        "the busy replica served {slow} of {n} (a third is {:.0}): {served:?}",
        n as f64 / 3.0
    );
}

#[test]
fn consistent_hash_sends_each_header_value_to_one_replica() {
    let rig = Rig::start(
        "lb-hash",
        3,
        "    trafficPolicy:
      loadBalancer:
        consistentHash: { httpHeaderName: x-user }",
    );
    let mut replicas_used = std::collections::BTreeSet::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let answered: std::collections::BTreeSet<String> = (0..5)
            .map(|_| {
                let r = rig.call(&[("x-user", &user)]);
                assert_eq!(r.status, 200, "{}", r.text());
                r.header("x-echo-name").unwrap().to_string()
            })
            .collect();
        assert_eq!(answered.len(), 1, "{user} went to {answered:?}");
        replicas_used.extend(answered);
    }
    // Hashed, not pinned: 20 keys all on one of three replicas has odds of 3^-19.
    assert!(replicas_used.len() > 1, "every user on {replicas_used:?}");
}
