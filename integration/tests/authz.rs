//! The authz filter in real Envoy 1.40: a representative subset of the attack corpus
//! (raw paths Envoy's client would have normalised, forged forwarded-for, JWT attacks,
//! duplicate authorization, oversized headers), legitimate requests reaching the
//! upstream, and a remote JWKS fetched through an Envoy cluster.

// Test helpers unwrap: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use wasmesh_harness::build::wasm_module;
use wasmesh_integration::bootstrap::{self, WasmFilter, INGRESS};
use wasmesh_integration::echo::{Echo, EchoServer};
use wasmesh_integration::envoy::Envoy;
use wasmesh_integration::http;
use wasmesh_integration::scenarios;
use wasmesh_testkit::mint;

fn authz(config: Value) -> WasmFilter {
    WasmFilter::new("wasmesh.authz", wasm_module("wasmesh-authz")).config(config)
}

fn corpus_config() -> Value {
    json!({
        "xffNumTrustedHops": 1,
        "jwtRules": [{"issuer": mint::ISSUER, "audiences": [mint::AUDIENCE], "jwks": mint::public_jwks().to_string(),
                      "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}]}],
        "policies": [
            {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]},
            {"name": "deny-blocked-clients", "action": "DENY", "rules": [{"from": [{"source": {"remoteIpBlocks": ["6.6.6.0/24"]}}]}]},
            {"name": "public-or-jwt", "action": "ALLOW", "rules": [
                {"to": [{"operation": {"paths": ["/public/*"]}}]},
                {"from": [{"source": {"requestPrincipals": ["*"]}}], "to": [{"operation": {"paths": ["/api/*"]}}]}]}
        ]
    })
}

fn raw(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> http::Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: shop.example.com\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    http::raw_request(envoy.listener_addr(INGRESS).unwrap(), req.as_bytes()).unwrap()
}

/// Envoy's default `max_request_headers_kb` (60 KiB): the filter's default (64 KiB) sits
/// above it, so only a configured limit below it is the filter's to enforce.
const ENVOY_HEADER_LIMIT: usize = 60 * 1024;

#[test]
fn the_filters_header_limit_answers_431_below_envoys_own() {
    let echo = EchoServer::start().unwrap();
    let mut config = corpus_config();
    config["maxRequestHeadersBytes"] = json!(4096);
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[authz(config)])).unwrap();
    let bearer = format!("Bearer {}", mint::token("RS256", mint::now()));

    // 3 KiB of headers pass; 8 KiB, well under Envoy's own limit, is the filter's 431.
    let small = "a".repeat(3 * 1024);
    let resp = raw(&envoy, "/public/x", &[("x-filler", &small)]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let served = echo.requests();
    let big = "a".repeat(8 * 1024);
    assert!(big.len() < ENVOY_HEADER_LIMIT);
    let resp = raw(
        &envoy,
        "/public/x",
        &[("authorization", &bearer), ("x-filler", &big)],
    );
    assert_eq!(resp.status, 431, "{}", resp.text());
    assert_eq!(
        resp.text(),
        "request headers too large",
        "the filter's reply"
    );
    assert_eq!(
        echo.requests(),
        served,
        "an oversized request reached the upstream"
    );
}

#[test]
fn attack_subset_is_denied_and_legitimate_requests_pass() {
    let echo = EchoServer::start().unwrap();
    let envoy = Envoy::start(&bootstrap::proxy_to(echo.port(), &[authz(corpus_config())])).unwrap();
    let now = mint::now();
    let bearer = format!("Bearer {}", mint::token("RS256", now));

    for (path, want) in [
        ("//admin", 403),
        ("/./admin", 403),
        ("/public/../admin", 403),
        ("/public/%2e%2e/admin", 403),
        ("/%61dmin/users", 403),
        ("/public\\..\\admin", 403),
        ("/public%2F..%2Fadmin", 400),
        ("/public/..%5Cadmin", 400),
        ("/ADMIN", 403),
        ("/admin?/public/x", 403),
    ] {
        let resp = raw(&envoy, path, &[("authorization", &bearer)]);
        assert_eq!(resp.status, want, "{path}: {}", resp.text());
    }
    let denied = raw(&envoy, "//admin", &[("authorization", &bearer)]);
    assert_eq!(denied.text(), "RBAC: access denied");
    // Without any credential the same denial is a challenge (missingCredentialStatus 401).
    let challenged = raw(&envoy, "//admin", &[]);
    assert_eq!(challenged.status, 401);
    assert_eq!(
        challenged.header("www-authenticate"),
        Some("Bearer realm=\"wasmesh\"")
    );

    // Forged forwarded-for: with one trusted hop only the right-most entry (what that
    // proxy saw) counts; Envoy here passes the header through untouched.
    let xff = |value: &str| {
        raw(
            &envoy,
            "/public/x",
            &[("x-forwarded-for", value), ("authorization", &bearer)],
        )
        .status
    };
    assert_eq!(xff("1.1.1.1, 6.6.6.6"), 403);
    assert_eq!(xff("6.6.6.6, 1.1.1.1"), 200);

    let tokens = mint::attack_tokens(now);
    for name in [
        "alg none, empty signature",
        "expired",
        "wrong aud",
        "tampered payload",
        "HS256 signed with the RSA public key (DER)",
        "unknown kid",
        "malformed base64 header",
        "tampered ES256 payload",
        "tampered ES384 payload",
        "signature in DER, not r||s, on the P-256 key",
        "signature of zeros on the P-256 key",
        "signature by the P-256 key under ES384 on the P-384 key",
        "header names alg twice",
        "payload names a claim twice",
    ] {
        let (_, token) = tokens.iter().find(|(n, _)| *n == name).unwrap();
        let resp = raw(
            &envoy,
            "/api/items",
            &[("authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(resp.status, 401, "{name}");
        assert!(
            resp.header("www-authenticate")
                .is_some_and(|v| v.contains("invalid_token")),
            "{name}"
        );
    }
    let dup = raw(
        &envoy,
        "/api/items",
        &[
            ("authorization", &bearer),
            ("authorization", "Bearer x.y.z"),
        ],
    );
    assert_eq!(dup.status, 401);
    let big = "a".repeat(100 * 1024);
    let resp = raw(&envoy, "/api/items", &[("x-filler", &big)]);
    assert_eq!(resp.status, 431, "Envoy's own header limit answers first");
    assert_eq!(raw(&envoy, "/api/items", &[]).status, 401);

    // Legitimate: every algorithm, forged identity header replaced by the verified one.
    for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
        let auth = format!("Bearer {}", mint::token(alg, now));
        let resp = raw(
            &envoy,
            "/api//items",
            &[("authorization", &auth), ("x-jwt-sub", "admin")],
        );
        assert_eq!(resp.status, 200, "{alg}: {}", resp.text());
        let seen = Echo::parse(&resp.body).unwrap();
        assert_eq!(seen.header_all("x-jwt-sub"), ["alice"]);
        assert_eq!(seen.header("authorization"), None);
    }
    assert_eq!(raw(&envoy, "/public/index.html", &[]).status, 200);

    let prom = envoy.prometheus().unwrap();
    assert!(prom.contains("wasmesh_authz_decisions_total"), "{prom}");
    assert!(envoy.log().contains("policy `deny-admin` (DENY)"));
}

#[test]
fn remote_jwks_is_fetched_through_a_cluster_and_a_valid_token_passes() {
    let echo = EchoServer::start().unwrap();
    let idp = scenarios::authz::identity_provider().unwrap();
    let filter = authz(scenarios::authz::remote_jwks_config());
    let mut config = bootstrap::proxy_to(echo.port(), &[filter]);
    config["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(scenarios::authz::idp_cluster(&idp));
    let envoy = Envoy::start(&config).unwrap();
    scenarios::authz::check_remote_jwks(&envoy, &idp).unwrap();
}
