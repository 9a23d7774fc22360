//! The demo services against a fake sidecar: who calls whom with which `Host`, header
//! propagation, Bookinfo's versions, graceful degradation, health and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{closed_port, get, request, Behaviour, Demo, FakeSidecar};
use serde_json::json;
use std::time::{Duration, Instant};

const TRACE: &[(&str, &str)] = &[
    ("x-request-id", "5f2b1c9e-7a6d-4c1e-9b8a-0d3e2f1a4b5c"),
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
    ("tracestate", "congo=t61rcWkgMzE"),
    (
        "b3",
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    ),
    ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
    ("x-b3-spanid", "e457b5a2e4d86bd1"),
    ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
    ("x-b3-sampled", "1"),
    ("x-b3-flags", "0"),
    ("end-user", "jason"),
    ("cookie", "session=abc; user=jason"),
];

fn productpage_env(outbound: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SERVICE", "productpage".into()),
        ("VERSION", "v1".into()),
        ("WASMESH_OUTBOUND", outbound.into()),
        ("UPSTREAM_TIMEOUT_MS", "1000".into()),
    ]
}

async fn demo(vars: &[(&'static str, String)]) -> Demo {
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Demo::start(&v).await
}

fn details_json() -> serde_json::Value {
    json!({"id": 0, "author": "William Shakespeare", "type": "paperback", "pages": 200,
           "service": "details", "version": "v1", "instance": "details-v1-0"})
}

fn reviews_json(version: &str) -> serde_json::Value {
    json!({"id": "0", "service": "reviews", "version": version, "instance": "r",
           "reviews": [{"reviewer": "Reviewer1", "text": "t",
                        "rating": {"stars": 5, "color": "black"}}],
           "ratings": {"service": "ratings", "version": "v1", "instance": "x"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn productpage_calls_details_and_reviews_through_the_outbound_by_host() {
    let fake = FakeSidecar::start().await;
    fake.route("details:9080", Behaviour::Json(200, details_json()));
    fake.route("reviews:9080", Behaviour::Json(200, reviews_json("v2")));
    let pp = demo(&productpage_env(&fake.outbound())).await;

    let mut headers = TRACE.to_vec();
    headers.push(("authorization", "Bearer not-for-upstreams"));
    headers.push(("accept", "application/json"));
    let got = get(pp.addr, "/productpage", &headers).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "application/json");
    let page = got.json();
    assert_eq!(page["service"], "productpage");
    assert_eq!(page["version"], "v1");
    assert_eq!(page["details"]["service"], "details");
    assert_eq!(page["reviews"]["version"], "v2");
    assert_eq!(page["degraded"], json!([]));
    assert_eq!(page["user"], "jason");

    let seen = fake.seen();
    assert_eq!(
        seen.len(),
        2,
        "one call each to details and reviews: {seen:?}"
    );
    let details = &fake.seen_for("details:9080")[0];
    assert_eq!(details.path, "/details/0");
    let reviews = &fake.seen_for("reviews:9080")[0];
    assert_eq!(reviews.path, "/reviews/0");
    for call in [details, reviews] {
        for (name, value) in TRACE {
            assert_eq!(
                call.headers[*name], *value,
                "{name} propagated to {}",
                call.host
            );
        }
        assert!(call.headers.get("authorization").is_none());
        assert_eq!(call.headers["accept"], "application/json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn productpage_turns_the_signed_in_user_into_end_user() {
    let fake = FakeSidecar::start().await;
    let pp = demo(&productpage_env(&fake.outbound())).await;
    get(pp.addr, "/productpage?u=jason", &[]).await;
    get(pp.addr, "/productpage", &[("cookie", "user=ann")]).await;
    get(pp.addr, "/productpage", &[]).await;
    let users: Vec<Option<String>> = fake
        .seen_for("reviews:9080")
        .iter()
        .map(|s| {
            s.headers
                .get("end-user")
                .map(|v| v.to_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(users, [Some("jason".into()), Some("ann".into()), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_v1_calls_nothing_v2_black_v3_red() {
    let fake = FakeSidecar::start().await;
    fake.route(
        "ratings:9080",
        Behaviour::Json(
            200,
            json!({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4},
                                    "service": "ratings", "version": "v1"}),
        ),
    );
    for (version, color) in [("v1", None), ("v2", Some("black")), ("v3", Some("red"))] {
        let before = fake.seen().len();
        let r = demo(&[
            ("SERVICE", "reviews".into()),
            ("VERSION", version.into()),
            ("WASMESH_OUTBOUND", fake.outbound()),
        ])
        .await;
        let got = get(r.addr, "/reviews/0", &[("x-request-id", "rid-1")]).await;
        assert_eq!(got.status, 200);
        let body = got.json();
        assert_eq!(body["service"], "reviews");
        assert_eq!(body["version"], version);
        let reviews = body["reviews"].as_array().unwrap();
        assert_eq!(reviews.len(), 2);
        let calls = &fake.seen()[before..];
        match color {
            None => {
                assert!(calls.is_empty(), "v1 must not call ratings: {calls:?}");
                assert!(reviews[0].get("rating").is_none());
                assert!(body.get("ratings").is_none());
            }
            Some(color) => {
                assert_eq!(calls.len(), 1);
                assert_eq!(calls[0].host, "ratings:9080");
                assert_eq!(calls[0].path, "/ratings/0");
                assert_eq!(calls[0].headers["x-request-id"], "rid-1");
                assert_eq!(reviews[0]["rating"], json!({"stars": 5, "color": color}));
                assert_eq!(reviews[1]["rating"], json!({"stars": 4, "color": color}));
                assert_eq!(body["ratings"]["service"], "ratings");
            }
        }
    }
}

/// A little mesh: the fake sidecar forwards to real demo servers, so productpage,
/// reviews v3, details and ratings all run their own code; then ratings fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_degrades_to_ratings_unavailable_when_ratings_fails() {
    let fake = FakeSidecar::start().await;
    let details = demo(&[("SERVICE", "details".into())]).await;
    let ratings = demo(&[("SERVICE", "ratings".into())]).await;
    let reviews = demo(&[
        ("SERVICE", "reviews".into()),
        ("VERSION", "v3".into()),
        ("WASMESH_OUTBOUND", fake.outbound()),
    ])
    .await;
    fake.route("details:9080", Behaviour::Proxy(details.addr));
    fake.route("reviews:9080", Behaviour::Proxy(reviews.addr));
    fake.route("ratings:9080", Behaviour::Proxy(ratings.addr));
    let pp = demo(&productpage_env(&fake.outbound())).await;

    let html = get(pp.addr, "/productpage", &[]).await;
    assert_eq!(html.status, 200);
    assert!(html.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(html.body.contains("William Shakespeare") || html.body.contains("paperback"));
    assert!(html.body.contains("color:red"), "{}", html.body);
    assert!(html
        .body
        .contains("productpage v1 · details v1 · reviews v3 · ratings v1"));
    assert!(!html.body.contains("currently unavailable"));
    // productpage's call to reviews carried the request id on to ratings.
    get(pp.addr, "/productpage", &[("x-request-id", "chain")]).await;
    let to_ratings = fake.seen_for("ratings:9080");
    assert_eq!(to_ratings.last().unwrap().headers["x-request-id"], "chain");

    // A fault abort on ratings, as the fault filter answers it.
    fake.route(
        "ratings:9080",
        Behaviour::Json(503, json!("fault filter abort")),
    );
    let html = get(pp.addr, "/productpage", &[]).await;
    assert_eq!(html.status, 200);
    assert!(html
        .body
        .contains("Ratings service is currently unavailable"));
    assert!(!html.body.contains("color:red"));
    let page = get(pp.addr, "/productpage?format=json", &[]).await.json();
    assert_eq!(page["degraded"], json!(["ratings"]));
    assert_eq!(page["reviews"]["version"], "v3");
    assert_eq!(page["reviews"]["ratings"]["error"], "ratings unavailable");
    assert_eq!(page["reviews"]["ratings"]["status"], 503);
    let direct = get(reviews.addr, "/reviews/0", &[]).await;
    assert_eq!(direct.status, 200, "reviews itself stays up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_degrades_when_reviews_or_details_fail() {
    let fake = FakeSidecar::start().await;
    fake.route("details:9080", Behaviour::Json(200, details_json()));
    fake.route(
        "reviews:9080",
        Behaviour::Json(503, json!("no healthy upstream")),
    );
    let pp = demo(&productpage_env(&fake.outbound())).await;
    let html = get(pp.addr, "/productpage", &[]).await;
    assert_eq!(html.status, 200);
    assert!(html
        .body
        .contains("Sorry, product reviews are currently unavailable"));
    assert!(!html
        .body
        .contains("product details are currently unavailable"));
    let page = get(pp.addr, "/productpage?format=json", &[]).await.json();
    assert_eq!(page["degraded"], json!(["reviews"]));
    assert_eq!(page["reviews"]["status"], 503);
    let api = get(pp.addr, "/api/v1/products/0/reviews", &[]).await;
    assert_eq!(api.status, 503);
    assert_eq!(api.json()["error"], "reviews unavailable");
    let api = get(pp.addr, "/api/v1/products/0", &[]).await;
    assert_eq!(api.status, 200);
    assert_eq!(api.json()["author"], "William Shakespeare");

    // No sidecar at all: everything degrades, nothing fails, and quickly.
    let alone = demo(&productpage_env(&format!("127.0.0.1:{}", closed_port()))).await;
    let started = Instant::now();
    let page = get(alone.addr, "/productpage?format=json", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.json()["degraded"], json!(["details", "reviews"]));
    assert!(started.elapsed() < Duration::from_millis(900));
    let html = get(alone.addr, "/productpage", &[]).await;
    assert!(html
        .body
        .contains("Sorry, product details are currently unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_dependency_is_cut_at_the_upstream_timeout() {
    let fake = FakeSidecar::start().await;
    fake.route("details:9080", Behaviour::Json(200, details_json()));
    fake.route(
        "reviews:9080",
        Behaviour::Slow(Duration::from_secs(3), reviews_json("v1")),
    );
    let mut env = productpage_env(&fake.outbound());
    env.push(("UPSTREAM_TIMEOUT_MS", "300".into()));
    let pp = demo(&env).await;
    let started = Instant::now();
    let page = get(pp.addr, "/productpage?format=json", &[]).await.json();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(page["degraded"], json!(["reviews"]));
    assert!(page["reviews"]["reason"]
        .as_str()
        .unwrap()
        .contains("300 ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_identity_and_errors() {
    let d = demo(&[
        ("SERVICE", "details".into()),
        ("VERSION", "v1".into()),
        ("INSTANCE", "details-v1-0".into()),
    ])
    .await;
    for path in ["/health", "/healthz", "/healthz/ready"] {
        let h = get(d.addr, path, &[]).await;
        assert_eq!(h.status, 200);
        assert_eq!(
            h.json(),
            json!({"status": "ok", "service": "details", "version": "v1",
                   "instance": "details-v1-0"})
        );
    }
    let details = get(d.addr, "/details/7", &[]).await.json();
    assert_eq!(details["id"], 7);
    assert_eq!(details["ISBN-10"], "1234567890");
    assert_eq!(details["instance"], "details-v1-0");
    assert_eq!(get(d.addr, "/details/x", &[]).await.status, 404);
    assert_eq!(get(d.addr, "/reviews/0", &[]).await.status, 404);
    let post = request(d.addr, "POST", "/details/0", &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.json()["service"], "details");

    let r = demo(&[("SERVICE", "ratings".into())]).await;
    let ratings = get(r.addr, "/ratings/0", &[]).await.json();
    assert_eq!(ratings["ratings"], json!({"Reviewer1": 5, "Reviewer2": 4}));
    assert_eq!(ratings["version"], "v1");

    let pp = demo(&productpage_env(&format!("127.0.0.1:{}", closed_port()))).await;
    let index = get(pp.addr, "/", &[]).await;
    assert!(index.body.contains("/productpage?u=jason"));
    let products = get(pp.addr, "/api/v1/products", &[]).await.json();
    assert_eq!(products[0]["title"], "The Comedy of Errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_are_escaped_in_the_page() {
    let pp = demo(&productpage_env(&format!("127.0.0.1:{}", closed_port()))).await;
    let html = get(
        pp.addr,
        "/productpage",
        &[("end-user", "<script>x</script>")],
    )
    .await;
    assert!(html.body.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(!html.body.contains("<script>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_then_stops() {
    let fake = FakeSidecar::start().await;
    fake.route(
        "details:9080",
        Behaviour::Slow(Duration::from_millis(600), details_json()),
    );
    fake.route("reviews:9080", Behaviour::Json(200, reviews_json("v1")));
    let mut pp = demo(&productpage_env(&fake.outbound())).await;
    let addr = pp.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/productpage?format=json", &[]).await });
    // In flight once productpage's call to details has reached the (slow) fake sidecar.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.seen_for("details:9080").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached details"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pp.stop();
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json()["degraded"],
        json!([]),
        "the slow call was not cut short"
    );
    tokio::time::timeout(Duration::from_secs(2), &mut pp.task)
        .await
        .expect("server stops once drained")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_mode_passes_only_on_2xx() {
    use wasmesh_demo::check::check;
    let d = demo(&[("SERVICE", "ratings".into())]).await;
    let t = Duration::from_secs(2);
    assert_eq!(check(&d.url("/healthz/ready"), t).await.unwrap(), 200);
    let e = check(&d.url("/nope"), t).await.unwrap_err();
    assert!(format!("{e:#}").contains("404"), "{e:#}");
    let closed = format!("http://127.0.0.1:{}/healthz/ready", closed_port());
    assert!(check(&closed, t).await.is_err());
    assert!(check("https://127.0.0.1:1/", t).await.is_err());
    assert!(check("not a url", t).await.is_err());
}
