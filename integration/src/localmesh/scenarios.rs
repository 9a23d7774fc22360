//! The end-to-end scenarios, each a function of `&mut dyn LocalMesh` returning a
//! one-line account of what it measured, or an error saying what went wrong.
//!
//! They assume the mesh of `integration/tests/meshes/bookinfo.yaml`; the constants
//! below mirror that file. Requests go through the gateway as a user's would; the
//! gateway's rate limit (100/s per client) is respected by [`page`], which waits out a
//! 429 (pacing the client, as a polite one would) instead of counting it.

use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use super::LocalMesh;
use crate::http;

/// reviews' canary: v1 80%, v3 20%.
pub const CANARY_V1_PERCENT: f64 = 80.0;
/// ratings' fault: 10% of calls aborted with 503.
pub const RATINGS_ABORT_PERCENT: f64 = 10.0;
/// The gateway's token bucket: 100 tokens, 100 more every second.
pub const RATE_LIMIT_TOKENS: u64 = 100;
pub const TEST_USER: (&str, &str) = ("end-user", "jason");

/// Bounded polling: how often and how long.
const POLL: Duration = Duration::from_millis(200);

/// `GET /productpage?format=json` through the gateway: status and JSON page. A 429
/// from the gateway's rate limit is waited out (up to `x-ratelimit-reset` seconds) and
/// retried, so callers count only answers that went through the mesh.
pub fn page(mesh: &dyn LocalMesh, headers: &[(&str, &str)]) -> Result<(u16, Value)> {
    let url = format!("{}/productpage?format=json", mesh.gateway_url());
    for _ in 0..50 {
        let r = http::get_with(&url, headers)?;
        if r.status == 429 {
            let reset: f64 = r
                .header("x-ratelimit-reset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.1);
            // Pacing a rate-limited client, not waiting for readiness.
            std::thread::sleep(Duration::from_secs_f64(reset.clamp(0.05, 1.0)));
            continue;
        }
        let json = if r.status == 200 {
            r.json()?
        } else {
            Value::Null
        };
        return Ok((r.status, json));
    }
    bail!("still rate limited after 50 attempts")
}

fn degraded(page: &Value) -> Vec<String> {
    page["degraded"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The 80/20 canary between reviews v1 and v3, measured over 1000 pages: v1's share
/// within the bound `stats::percent_tolerance` derives from that sample.
pub fn canary_split(mesh: &mut dyn LocalMesh) -> Result<String> {
    let (mut v1, mut v3) = (0usize, 0usize);
    for _ in 0..1000 {
        let (status, p) = page(mesh, &[])?;
        ensure!(status == 200, "product page answered {status}");
        match p["reviews"]["version"].as_str() {
            Some("v1") => v1 += 1,
            Some("v3") => v3 += 1,
            other => bail!(
                "reviews answered by {other:?} (degraded {:?}): only v1 and v3 are in the canary",
                degraded(&p)
            ),
        }
    }
    let share = percent(v1, v1 + v3);
    ensure!(
        (share - CANARY_V1_PERCENT).abs()
            <= crate::stats::percent_tolerance(1000, CANARY_V1_PERCENT),
        "v1 served {share:.1}% ({v1} v1, {v3} v3); want {CANARY_V1_PERCENT}% +- 5"
    );
    Ok(format!("canary: v1 {share:.1}% ({v1}/1000), v3 {v3}"))
}

/// `end-user: jason` always reaches reviews v2 (black stars), through productpage's
/// header propagation and the reviews route's header match.
pub fn test_user_routing(mesh: &mut dyn LocalMesh) -> Result<String> {
    for i in 0..50 {
        let (status, p) = page(mesh, &[TEST_USER])?;
        ensure!(status == 200, "request {i}: product page answered {status}");
        let version = p["reviews"]["version"].as_str();
        ensure!(
            version == Some("v2"),
            "request {i} with end-user: jason reached reviews {version:?}"
        );
        let stars = p["reviews"]["reviews"][0]["rating"]["color"].as_str();
        let ratings_failed = degraded(&p).iter().any(|d| d == "ratings");
        ensure!(
            ratings_failed || stars == Some("black"),
            "reviews v2 shows {stars:?} stars"
        );
    }
    // Without the header nobody gets v2.
    for _ in 0..20 {
        let (_, p) = page(mesh, &[])?;
        ensure!(
            p["reviews"]["version"] != "v2",
            "a request without end-user reached reviews v2"
        );
    }
    Ok("test user: 50/50 pages from reviews v2; 0/20 without the header".into())
}

/// The fault on ratings aborts 10% of calls with 503; the page still answers 200 and
/// degrades only the ratings ("ratings unavailable"), as designed. Measured over 500
/// pages as the test user (reviews v2 calls ratings on every page), within the bound
/// `stats::percent_tolerance` derives from that sample.
pub fn ratings_fault(mesh: &mut dyn LocalMesh) -> Result<String> {
    let n = 500;
    let mut aborted = 0;
    // Ratings failures that were not the fault, by reason: the mesh must cause none.
    let mut other: std::collections::BTreeMap<String, u32> = Default::default();
    for _ in 0..n {
        let (status, p) = page(mesh, &[TEST_USER])?;
        ensure!(
            status == 200,
            "product page answered {status}: it must degrade, not fail"
        );
        let d = degraded(&p);
        if d.is_empty() {
            continue;
        }
        ensure!(d == ["ratings"], "degraded {d:?}; only ratings is faulty");
        let ratings = &p["reviews"]["ratings"];
        ensure!(
            ratings["error"] == "ratings unavailable" && ratings["status"] == 503,
            "a failed ratings call shows {ratings}"
        );
        ensure!(
            p["details"]["author"].is_string() && p["reviews"]["reviews"].is_array(),
            "the rest of the page must be intact: {p}"
        );
        match ratings["reason"].as_str() {
            Some("fault filter abort") => aborted += 1,
            reason => *other.entry(format!("{reason:?}")).or_default() += 1,
        }
    }
    ensure!(
        other.is_empty(),
        "ratings failed for reasons other than the fault (reason: pages): {other:?}; \
         {aborted} fault aborts in {n} pages"
    );
    let share = percent(aborted, n);
    ensure!(
        (share - RATINGS_ABORT_PERCENT).abs()
            <= crate::stats::percent_tolerance(n, RATINGS_ABORT_PERCENT),
        "{share:.1}% of pages lost their ratings; the fault aborts {RATINGS_ABORT_PERCENT}%"
    );
    Ok(format!(
        "fault: ratings aborted on {share:.1}% of {n} pages, every page 200 and otherwise whole"
    ))
}

/// Authorization between services, exercised where policy is the only thing saying no.
///
/// A sidecar has routes only to the services its app calls, so a call to a service
/// outside that list gets 404 from the caller's own sidecar before any policy runs:
/// that proves nothing about authz. So each denial here is a call the caller's sidecar
/// does forward, over mTLS with the caller's identity, and the callee's authz refuses:
/// - productpage -> ratings: routable (the test mesh lists ratings among productpage's
///   calls) but ratings admits only reviews;
/// - productpage -> details with POST: details admits productpage for GET only.
///
/// Each has an allowed twin on the same route (GET details; reviews -> ratings), so a
/// 403 cannot come from a broken route.
pub fn authz_between_services(mesh: &mut dyn LocalMesh) -> Result<String> {
    let r = mesh.call_from("productpage-v1-0", "GET", "details:9080", "/details/0")?;
    ensure!(
        r.status == 200,
        "productpage GET details: {} {}",
        r.status,
        r.text()
    );
    let r = mesh.call_from("productpage-v1-0", "POST", "details:9080", "/details/0")?;
    ensure!(
        r.status == 403,
        "productpage POST details must be denied by details' policy: {} {}",
        r.status,
        r.text()
    );
    // ratings' fault runs in every caller's sidecar, productpage's too: retry past its
    // 10% of injected 503s (they never reach ratings' policy).
    let mut denied = None;
    for _ in 0..20 {
        let r = mesh.call_from("productpage-v1-0", "GET", "ratings:9080", "/ratings/0")?;
        if r.status != 503 {
            denied = Some((r.status, r.text()));
            break;
        }
    }
    ensure!(
        denied.as_ref().is_some_and(|(status, _)| *status == 403),
        "productpage must not talk to ratings: {denied:?}"
    );
    // The allowed twin: reviews may call ratings (retry past ratings' 10% fault).
    let mut allowed = None;
    for _ in 0..20 {
        let r = mesh.call_from("reviews-v2-0", "GET", "ratings:9080", "/ratings/0")?;
        if r.status != 503 {
            allowed = Some(r.status);
            break;
        }
    }
    ensure!(
        allowed == Some(200),
        "reviews GET ratings must be allowed: {allowed:?}"
    );
    Ok("authz: productpage->ratings 403, productpage POST details 403; GET details and reviews->ratings 200".into())
}

/// The gateway's rate limit: a burst from one client gets 429s carrying
/// `x-envoy-ratelimited` and the draft-03 headers, and no more requests pass than the
/// bucket allows (`max_tokens + fills in the window * tokens_per_fill`).
pub fn gateway_rate_limit(mesh: &mut dyn LocalMesh) -> Result<String> {
    // `/` is productpage's index: cheap, so the burst outpaces the refill.
    gateway_rate_limit_at(mesh, "/")
}

/// [`gateway_rate_limit`] with the burst sent to `path` (a cheap page the gateway
/// routes: Istio's Bookinfo gateway routes `/api/v1/products`, not `/`).
pub fn gateway_rate_limit_at(mesh: &mut dyn LocalMesh, path: &str) -> Result<String> {
    let url = format!("{}{path}", mesh.gateway_url());
    let threads = 8;
    let per_thread = 50;
    let start = Instant::now();
    let results: Vec<Result<Vec<http::Response>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| (0..per_thread).map(|_| http::get(&url)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a sender thread panicked"))?)
            .collect()
    });
    let window = start.elapsed();
    let mut ok = 0u64;
    let mut limited = 0u64;
    for r in results.into_iter().flat_map(|r| match r {
        Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    }) {
        let r = r?;
        match r.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                ensure!(
                    r.header("x-envoy-ratelimited").is_some(),
                    "429 without x-envoy-ratelimited: {:?}",
                    r.headers
                );
                for h in [
                    "x-ratelimit-limit",
                    "x-ratelimit-remaining",
                    "x-ratelimit-reset",
                ] {
                    ensure!(r.header(h).is_some(), "429 without {h}: {:?}", r.headers);
                }
                ensure!(r.header("x-ratelimit-remaining") == Some("0"));
                let limit = r.header("x-ratelimit-limit").unwrap_or_default();
                ensure!(
                    limit.starts_with(&RATE_LIMIT_TOKENS.to_string()),
                    "x-ratelimit-limit {limit:?}"
                );
            }
            other => bail!("burst request answered {other}"),
        }
    }
    ensure!(
        limited > 0,
        "no 429 in a burst of {} requests in {window:?}",
        threads * per_thread
    );
    // A window of T seconds can straddle ceil(T) + 1 fill instants.
    let fills = window.as_secs() + 1 + u64::from(window.subsec_nanos() > 0);
    let bound = RATE_LIMIT_TOKENS + fills * RATE_LIMIT_TOKENS;
    ensure!(
        ok <= bound,
        "{ok} requests passed in {window:?}; the bucket allows at most {bound}"
    );
    Ok(format!(
        "rate limit: {ok} passed, {limited} got 429 with headers, in {:.2} s (bound {bound})",
        window.as_secs_f64()
    ))
}

/// `istio_requests_total` in Prometheus matches the traffic sent: productpage's
/// sidecar-reported (`reporter="destination"`) count grows by exactly the pages sent.
/// Each reading waits (bounded) for a scrape newer than the traffic, so it is exact.
pub fn prometheus_counts(mesh: &mut dyn LocalMesh) -> Result<String> {
    let prom = mesh.prometheus_url().ok_or_else(|| {
        anyhow!("Prometheus is not running (install Debian's prometheus: scripts/setup.sh)")
    })?;
    let selector =
        r#"istio_requests_total{reporter="destination",destination_service_name="productpage"}"#;
    let before = scraped_after(&prom, selector, now_secs())?;
    let n = 40;
    for _ in 0..n {
        let (status, _) = page(mesh, &[])?;
        ensure!(status == 200, "product page answered {status}");
    }
    let after = scraped_after(&prom, selector, now_secs())?;
    ensure!(
        (after - before - f64::from(n)).abs() < 0.5,
        "Prometheus counted {} productpage requests; {n} were sent (before {before}, after {after})",
        after - before
    );
    Ok(format!(
        "prometheus: istio_requests_total for productpage went {before} -> {after} for {n} pages"
    ))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `sum(selector)` from a scrape that happened after `since` (Unix seconds): polls the
/// HTTP API until the newest sample's timestamp passes it (bounded: 30 s, six scrapes).
fn scraped_after(prom: &str, selector: &str, since: f64) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ts = query(prom, &format!("max(timestamp({selector}))"))?;
        if ts.is_some_and(|t| t > since) {
            return query(prom, &format!("sum({selector})"))?
                .ok_or_else(|| anyhow!("{selector} vanished"));
        }
        if Instant::now() >= deadline {
            bail!("no scrape of {selector} after {since} within 30 s (newest {ts:?})");
        }
        std::thread::sleep(POLL);
    }
}

/// An instant query's single value, `None` for an empty result.
pub fn query(prom: &str, promql: &str) -> Result<Option<f64>> {
    let url = format!("{prom}/api/v1/query?query={}", urlencode(promql));
    let r = http::get(&url)?;
    ensure!(r.status == 200, "{url}: {} {}", r.status, r.text());
    let v = r.json()?;
    ensure!(v["status"] == "success", "{url}: {v}");
    let Some(first) = v["data"]["result"].as_array().and_then(|a| a.first()) else {
        return Ok(None);
    };
    first["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| anyhow!("unexpected result {first}"))
}

fn urlencode(s: &str) -> String {
    wasmesh_sdk::percent::encode(s, wasmesh_sdk::percent::is_unreserved)
}

/// One reviews instance dies: with retries (to another host: `previous_hosts`) and
/// outlier detection, at least 99% of pages stay whole (reviews not degraded) while it
/// is down; when it comes back it serves again and pages stay whole.
pub fn reviews_instance_failure(mesh: &mut dyn LocalMesh) -> Result<String> {
    let victim = "reviews-v1-0";
    mesh.stop_instance(victim)?;
    let outcome = (|| -> Result<String> {
        let (whole, n) = whole_pages(mesh, 300)?;
        let during = percent(whole, n);
        ensure!(
            during >= 99.0,
            "{whole}/{n} pages whole ({during:.1}%) with {victim} down; want >= 99%"
        );
        Ok(format!(
            "{during:.1}% of {n} pages whole while {victim} was down"
        ))
    })();
    // Bring it back even when the check failed, so later scenarios see the whole mesh.
    mesh.start_instance(victim)
        .with_context(|| format!("restarting {victim}"))?;
    let during = outcome?;

    // Recovered: it is picked again (after its ejection ends: baseEjectionTime 10 s).
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (_, p) = page(mesh, &[])?;
        if p["reviews"]["instance"] == victim {
            break;
        }
        if Instant::now() >= deadline {
            bail!("{victim} served nothing within 45 s of coming back");
        }
    }
    let (whole, n) = whole_pages(mesh, 100)?;
    let after = percent(whole, n);
    ensure!(
        after >= 99.0,
        "after recovery only {after:.1}% of pages whole"
    );
    Ok(format!(
        "failover: {during}; back in service, then {after:.1}% of {n} whole"
    ))
}

/// Pages that answered 200 with reviews present (not degraded), out of `n`.
pub fn whole_pages(mesh: &dyn LocalMesh, n: usize) -> Result<(usize, usize)> {
    let mut whole = 0;
    for _ in 0..n {
        let (status, p) = page(mesh, &[])?;
        if status == 200 && !degraded(&p).iter().any(|d| d == "reviews") {
            whole += 1;
        }
    }
    Ok((whole, n))
}

/// mTLS STRICT: a sidecar's inbound listener accepts the TCP connection but answers a
/// plaintext request as a failed TLS handshake (nothing, or a TLS alert), for every
/// service.
pub fn mtls_strict(mesh: &mut dyn LocalMesh) -> Result<String> {
    let instances = [
        "productpage-v1-0",
        "details-v1-0",
        "reviews-v1-0",
        "ratings-v1-0",
    ];
    for instance in instances {
        let addr = mesh.inbound_addr(instance);
        // Something listens there: a refusal below is the TLS listener's, not a gap.
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("{instance}'s inbound {addr} does not accept TCP"))?;
        // Refused as TLS refuses a non-TLS client (nothing, or an alert), not with
        // HTTP nor any other answer.
        let answer = crate::tls::send_plaintext(addr)?;
        if !answer.is_tls_refusal() {
            bail!(
                "{instance}'s inbound {addr} answered plaintext with {:?}",
                String::from_utf8_lossy(&answer.bytes)
            );
        }
    }
    Ok(format!(
        "mTLS: plaintext refused at the inbound of {}",
        instances.join(", ")
    ))
}

/// A scenario: runs against a mesh, returns a one-line summary of what it measured.
pub type Scenario = fn(&mut dyn LocalMesh) -> Result<String>;

/// Every scenario, in the order the suites run them (cheap checks first, the instance
/// failure last since it stops and restarts an instance).
pub const ALL: [(&str, Scenario); 8] = [
    ("mtls_strict", mtls_strict),
    ("test_user_routing", test_user_routing),
    ("canary_split", canary_split),
    ("ratings_fault", ratings_fault),
    ("authz_between_services", authz_between_services),
    ("prometheus_counts", prometheus_counts),
    ("gateway_rate_limit", gateway_rate_limit),
    ("reviews_instance_failure", reviews_instance_failure),
];

/// Runs every scenario, printing each outcome with its time; returns the failures.
pub fn run_all(mesh: &mut dyn LocalMesh) -> Vec<String> {
    run(mesh, &ALL)
}

/// Runs `scenarios` in order, printing each outcome with its time; returns the
/// failures.
pub fn run(mesh: &mut dyn LocalMesh, scenarios: &[(&str, Scenario)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, scenario) in scenarios {
        let t = Instant::now();
        match scenario(mesh) {
            Ok(summary) => eprintln!(
                "ok   {name} ({:.1} s): {summary}",
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("FAIL {name}: {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    failures
}
