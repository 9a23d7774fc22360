//! The compiled authz.wasm driven through the harness: the attack corpus (paths,
//! forwarded-for spoofing, every JWT attack, duplicate and oversized headers), the
//! legitimate variants that must still pass, and each feature end to end in the module.

// Test helpers unwrap: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmesh_harness::{request, Action, Host, Module, PropertyValue, Stream};
use wasmesh_testkit::{filter_under_test, mint};

fn module() -> &'static Module {
    static M: OnceLock<Module> = OnceLock::new();
    M.get_or_init(|| filter_under_test("wasmesh-authz"))
}

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(mint::now() as u64)
}

fn host_with(config: &Value, clusters: &[&str]) -> Host {
    let mut b = Host::builder(module())
        .plugin_config(config.to_string())
        .start_time(start())
        .property(
            &["source", "address"],
            PropertyValue::string("10.0.0.9:40000"),
        )
        .property(&["destination", "port"], PropertyValue::int(8080));
    for c in clusters {
        b = b.cluster(c);
    }
    let host = b.build().unwrap();
    assert!(host.configured(), "config refused: {:?}", host.logs());
    host
}

fn host(config: Value) -> Host {
    host_with(&config, &[])
}

fn headers(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = request(method, path, "shop.example.com");
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

/// Sends request headers; the local reply status, or 0 when the request went on.
fn status_of(s: &mut Stream<'_>, h: &[(String, String)]) -> u32 {
    match s.request_headers(h, true) {
        Action::Continue => 0,
        _ => s.local_response().map_or(0, |r| r.status),
    }
}

fn send(host: &Host, path: &str, extra: &[(&str, &str)]) -> u32 {
    let mut s = host.stream();
    status_of(&mut s, &headers("GET", path, extra))
}

fn metric(host: &Host, decision: &str, policy: &str) -> u64 {
    host.metric(&format!(
        "wasmesh_authz_decisions_total;decision={decision};policy={policy}"
    ))
    .map_or(0, |m| m.value)
}

fn jwt_config() -> Value {
    json!({
        "jwtRules": [{"issuer": mint::ISSUER, "audiences": [mint::AUDIENCE], "jwks": mint::public_jwks().to_string(),
                      "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}, {"header": "x-jwt-team", "claim": "org.team"}]}],
        "policies": [{"name": "require-jwt", "action": "ALLOW",
                      "rules": [{"from": [{"source": {"requestPrincipals": [format!("{}/*", mint::ISSUER)]}}]}]}]
    })
}

fn path_config() -> Value {
    json!({"policies": [
        {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]},
        {"name": "allow-app", "action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/", "/api/*", "/public/*"]}}]}]}
    ]})
}

#[test]
fn path_tricks_against_deny_rules_are_denied() {
    let host = host(path_config());
    let corpus = [
        ("/admin", 403),
        ("//admin", 403),
        ("/./admin", 403),
        ("/a/../admin", 403),
        ("/api/../admin", 403),
        ("/api/%2e%2e/admin", 403),
        ("/api/%2E%2E/admin/users", 403),
        ("/%2e/admin", 403),
        ("/%61dmin", 403),
        ("/admin/.", 403),
        ("/admin/x/..", 403),
        ("/api\\..\\admin", 403),
        ("/admin?", 403),
        ("/admin?x=/api/", 403),
        ("/admin#/api/x", 403),
        ("/admin/", 403),
        ("/ADMIN", 403), // case-sensitive rule: the allow-list catches it
        ("/Admin/users", 403),
        ("/api%2F..%2Fadmin", 400),
        ("/api/..%2Fadmin", 400),
        ("/api%5C..%5Cadmin", 400),
        ("/admin%00", 400),
        ("/api/%zz", 400),
        ("admin", 400),
    ];
    for (path, want) in corpus {
        assert_eq!(send(&host, path, &[]), want, "{path}");
    }
    assert!(metric(&host, "denied", "deny-admin") >= 14);
    assert!(metric(&host, "denied", "none") >= 2);
    assert!(host.logged("policy `deny-admin` (DENY)"));
}

#[test]
fn legitimate_path_variants_are_allowed() {
    let host = host(path_config());
    for path in [
        "/",
        "/api/items",
        "/api/items?id=7",
        "/api//items",
        "/api/./items",
        "/api/%7Euser",
        "/public/a.b/c..d",
        "/api/admin",
        "/public/x#frag",
    ] {
        assert_eq!(send(&host, path, &[]), 0, "{path}");
    }
    assert!(metric(&host, "allowed", "allow-app") >= 9);
}

#[test]
fn spoofed_forwarded_for_beyond_trusted_hops_is_denied() {
    let config = |hops: u32| {
        json!({"xffNumTrustedHops": hops, "policies": [{"name": "office-only", "action": "ALLOW",
               "rules": [{"from": [{"source": {"remoteIpBlocks": ["10.1.0.0/16"]}}]}]}]})
    };
    let one_hop = host(config(1));
    // The client forges an office address; the trusted proxy appends what it saw.
    assert_eq!(
        send(&one_hop, "/", &[("x-forwarded-for", "10.1.2.3, 6.6.6.6")]),
        403
    );
    assert_eq!(
        send(
            &one_hop,
            "/",
            &[
                ("x-forwarded-for", "10.1.2.3"),
                ("x-forwarded-for", "6.6.6.6")
            ]
        ),
        403
    );
    assert_eq!(
        send(&one_hop, "/", &[("x-forwarded-for", "garbage, 6.6.6.6")]),
        403
    );
    // Legitimate: the trusted proxy saw the office client.
    assert_eq!(
        send(&one_hop, "/", &[("x-forwarded-for", "6.6.6.6, 10.1.2.3")]),
        0
    );
    assert_eq!(send(&one_hop, "/", &[("x-forwarded-for", "10.1.2.3")]), 0);
    // No trusted hop: forwarded-for is never believed, the TCP peer decides.
    let zero = host(config(0));
    assert_eq!(send(&zero, "/", &[("x-forwarded-for", "10.1.2.3")]), 403);
}

#[test]
fn every_jwt_attack_is_unauthorized() {
    let host = host(jwt_config());
    for (name, token) in mint::attack_tokens(mint::now()) {
        let mut s = host.stream();
        let auth = format!("Bearer {token}");
        let st = status_of(&mut s, &headers("GET", "/", &[("authorization", &auth)]));
        assert_eq!(st, 401, "{name}");
        let lr = s.local_response().unwrap();
        assert_eq!(lr.body_str(), "Jwt verification fails", "{name}");
        assert!(
            lr.headers
                .get("www-authenticate")
                .is_some_and(|v| v.contains("error=\"invalid_token\"")),
            "{name}: {:?}",
            lr.headers
        );
    }
    assert_eq!(metric(&host, "allowed", "require-jwt"), 0);
}

#[test]
fn duplicate_credentials_are_refused() {
    let host = host(jwt_config());
    let good = format!("Bearer {}", mint::token("RS256", mint::now()));
    let bad = format!("Bearer {}", mint::attack_tokens(mint::now())[0].1);
    assert_eq!(
        send(
            &host,
            "/",
            &[("authorization", &good), ("authorization", &bad)]
        ),
        401
    );
    assert_eq!(
        send(
            &host,
            "/",
            &[("authorization", &good), ("authorization", &good)]
        ),
        401
    );
    // One token in the header and another in the query: which would the upstream use?
    let other = mint::token("ES256", mint::now());
    assert_eq!(
        send(
            &host,
            &format!("/?access_token={other}"),
            &[("authorization", &good)]
        ),
        401
    );
    assert_eq!(
        send(
            &host,
            &format!("/?access_token={other}&access_token=x"),
            &[]
        ),
        401
    );
}

#[test]
fn oversized_headers_are_refused() {
    let host = host(jwt_config());
    let big = "a".repeat(70 * 1024);
    assert_eq!(send(&host, "/", &[("x-filler", &big)]), 431);
    let huge_token = format!("Bearer {}", "a".repeat(9000));
    assert_eq!(send(&host, "/", &[("authorization", &huge_token)]), 401);
}

#[test]
fn legitimate_tokens_in_every_form_are_allowed() {
    let now = mint::now();
    let host = host(jwt_config());
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
    ] {
        let auth = format!("Bearer {}", mint::token(alg, now));
        assert_eq!(send(&host, "/", &[("authorization", &auth)]), 0, "{alg}");
    }
    let t = mint::token("RS256", now);
    assert_eq!(
        send(&host, "/", &[("authorization", &format!("bearer {t}"))]),
        0,
        "prefix case"
    );
    assert_eq!(
        send(&host, &format!("/?access_token={t}"), &[]),
        0,
        "default query parameter"
    );
    assert_eq!(
        send(
            &host,
            "/",
            &[
                ("authorization", &format!("Bearer {t}")),
                ("authorization-extra", "x")
            ]
        ),
        0
    );
    // The same token twice (header and query) is one credential, not two.
    assert_eq!(
        send(
            &host,
            &format!("/?access_token={t}"),
            &[("authorization", &format!("Bearer {t}"))]
        ),
        0
    );
}

#[test]
fn verified_claims_reach_the_upstream_and_forged_ones_do_not() {
    let host = host(jwt_config());
    let mut s = host.stream();
    let auth = format!("Bearer {}", mint::token("RS256", mint::now()));
    let h = headers(
        "GET",
        "/",
        &[
            ("authorization", &auth),
            ("x-jwt-sub", "admin"),
            ("x-jwt-team", "root"),
        ],
    );
    assert_eq!(status_of(&mut s, &h), 0);
    let up = s.request_header_map();
    assert_eq!(up.get_all("x-jwt-sub"), ["alice"]);
    assert_eq!(up.get("x-jwt-team"), Some("core"));
    assert_eq!(
        up.get("authorization"),
        None,
        "the token is not forwarded by default"
    );
    // Anonymous requests lose forged identity headers too (when policies allow them).
    let open = host_with(&json!({"jwtRules": jwt_config()["jwtRules"].clone()}), &[]);
    let mut s = open.stream();
    assert_eq!(
        status_of(&mut s, &headers("GET", "/", &[("x-jwt-sub", "admin")])),
        0
    );
    assert_eq!(s.request_header_map().get("x-jwt-sub"), None);
}

#[test]
fn forward_original_token_keeps_it() {
    let mut c = jwt_config();
    c["jwtRules"][0]["forwardOriginalToken"] = json!(true);
    let host = host(c);
    let mut s = host.stream();
    let auth = format!("Bearer {}", mint::token("RS256", mint::now()));
    assert_eq!(
        status_of(&mut s, &headers("GET", "/", &[("authorization", &auth)])),
        0
    );
    assert_eq!(
        s.request_header_map().get("authorization"),
        Some(auth.as_str())
    );
}

#[test]
fn missing_credentials_get_a_challenge_or_istios_403() {
    let host = host(jwt_config());
    let mut s = host.stream();
    assert_eq!(status_of(&mut s, &headers("GET", "/", &[])), 401);
    let lr = s.local_response().unwrap();
    assert_eq!(
        lr.headers.get("www-authenticate"),
        Some("Bearer realm=\"wasmesh\"")
    );
    let mut c = jwt_config();
    c["missingCredentialStatus"] = json!(403);
    let istio = host_with(&c, &[]);
    let mut s = istio.stream();
    assert_eq!(status_of(&mut s, &headers("GET", "/", &[])), 403);
    assert_eq!(
        s.local_response().unwrap().body_str(),
        "RBAC: access denied"
    );
}

#[test]
fn denial_is_403_rbac_access_denied_with_metric_and_log() {
    let host = host(path_config());
    let mut s = host.stream();
    assert_eq!(
        status_of(&mut s, &headers("DELETE", "/admin/users", &[])),
        403
    );
    let lr = s.local_response().unwrap();
    assert_eq!(lr.body_str(), "RBAC: access denied");
    assert_eq!(lr.details, "rbac_access_denied_matched_policy[deny-admin]");
    assert_eq!(metric(&host, "denied", "deny-admin"), 1);
    assert!(host.logged("denied DELETE /admin/users: policy `deny-admin` (DENY)"));
}

#[test]
fn claims_and_principals_drive_policies() {
    let now = mint::now();
    let host = host(json!({
        "jwtRules": jwt_config()["jwtRules"].clone(),
        "policies": [
            {"name": "ops-only", "action": "ALLOW", "rules": [{
                "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/*"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/orders/{*}"], "ports": ["8080"]}}],
                "when": [{"key": "request.auth.claims[groups]", "values": ["ops"]},
                         {"key": "request.auth.claims[org][team]", "values": ["core"]}]}]}
        ]
    }));
    let auth = format!("Bearer {}", mint::token("ES256", now));
    let go = |principal: Option<&str>, path: &str| {
        let mut s = host.stream();
        if let Some(p) = principal {
            s.set_property(
                &["connection", "uri_san_peer_certificate"],
                PropertyValue::string(p),
            );
        }
        status_of(&mut s, &headers("GET", path, &[("authorization", &auth)]))
    };
    assert_eq!(
        go(Some("spiffe://cluster.local/ns/shop/sa/web"), "/orders/7"),
        0
    );
    assert_eq!(
        go(Some("spiffe://cluster.local/ns/other/sa/web"), "/orders/7"),
        403
    );
    assert_eq!(go(None, "/orders/7"), 403);
    assert_eq!(
        go(
            Some("spiffe://cluster.local/ns/shop/sa/web"),
            "/orders/7/items"
        ),
        403
    );
}

#[test]
fn dry_run_and_audit_are_counted_not_enforced() {
    let host = host(json!({"policies": [
        {"name": "would-deny-post", "action": "DENY", "dryRun": true, "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]},
        {"name": "audit-all", "action": "AUDIT", "rules": [{}]}
    ]}));
    let mut s = host.stream();
    assert_eq!(status_of(&mut s, &headers("POST", "/x", &[])), 0);
    assert_eq!(metric(&host, "dry_run_denied", "would-deny-post"), 1);
    assert_eq!(metric(&host, "audited", "audit-all"), 1);
    assert!(host.logged("dry-run: POST /x would be denied by policy `would-deny-post`"));
}

#[test]
fn api_keys_and_basic_auth_name_consumers() {
    use base64::Engine;
    let host = host(json!({
        "apiKeys": {"consumers": [{"name": "partner-a", "key": "key-a"}]},
        "basicAuth": {"consumers": [{"username": "ops", "password": "pw"}]},
        "policies": [{"name": "known-consumers", "rules": [{"from": [{"source": {"consumers": ["partner-a", "ops"]}}]}]}]
    }));
    let mut s = host.stream();
    assert_eq!(
        status_of(
            &mut s,
            &headers(
                "GET",
                "/",
                &[("x-api-key", "key-a"), ("x-wasmesh-consumer", "forged")]
            )
        ),
        0
    );
    let up = s.request_header_map();
    assert_eq!(up.get_all("x-wasmesh-consumer"), ["partner-a"]);
    assert_eq!(up.get("x-api-key"), None);
    assert_eq!(send(&host, "/", &[("x-api-key", "wrong")]), 401);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:pw")
    );
    assert_eq!(send(&host, "/", &[("authorization", &basic)]), 0);
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:nope")
    );
    let mut s = host.stream();
    assert_eq!(
        status_of(&mut s, &headers("GET", "/", &[("authorization", &wrong)])),
        401
    );
    assert!(s
        .local_response()
        .unwrap()
        .headers
        .get_all("www-authenticate")
        .contains(&"Basic realm=\"wasmesh\""));
    assert_eq!(send(&host, "/", &[]), 401);
}

fn remote_config(extra: Value) -> Value {
    let mut rule = json!({"issuer": mint::ISSUER, "jwksUri": "http://idp.example/jwks.json", "cluster": "idp",
                          "jwksRefreshInterval": "60s", "jwksRetryInterval": "5s", "timeout": "1s"});
    if let (Some(base), Some(more)) = (rule.as_object_mut(), extra.as_object()) {
        base.extend(more.clone());
    }
    json!({"jwtRules": [rule], "policies": [{"name": "require-jwt", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]})
}

/// A stream sent with `auth` and paused for the remote JWKS, and the fetch's token.
fn paused_for_jwks<'h>(host: &'h Host, auth: &str) -> (Stream<'h>, u32) {
    let mut s = host.stream();
    let h = headers("GET", "/", &[("authorization", auth)]);
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    let call = host.pending_http_calls()[0].token;
    (s, call)
}

#[test]
fn an_off_curve_key_in_a_remote_jwks_is_skipped_and_the_rest_serve() {
    let host = host_with(&remote_config(json!({})), &["idp"]);
    let auth = format!("Bearer {}", mint::token("ES256", mint::now()));
    let (s, call) = paused_for_jwks(&host, &auth);
    let jwks = mint::jwks_with_an_off_curve_key().to_string();
    host.respond_http_call(call, &[(":status", "200")], jwks)
        .unwrap();
    assert_eq!(s.request_resumed(), 1);
    assert!(
        s.local_response().is_none(),
        "ES256 with the good P-256 key"
    );
    assert!(host.logged("skipped keys[4]: bad P-256 point"));
    assert_eq!(
        send(
            &host,
            "/",
            &[(
                "authorization",
                &format!("Bearer {}", mint::token("RS256", mint::now()))
            )]
        ),
        0
    );
}

#[test]
fn remote_jwks_is_fetched_once_while_requests_wait() {
    let host = host_with(&remote_config(json!({})), &["idp"]);
    let auth = format!("Bearer {}", mint::token("RS256", mint::now()));
    let h = headers("GET", "/", &[("authorization", &auth)]);
    let mut first = host.stream();
    assert_eq!(first.request_headers(&h, true), Action::Pause);
    let mut second = host.stream();
    assert_eq!(second.request_headers(&h, true), Action::Pause);
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1, "one fetch for both requests");
    assert_eq!(calls[0].cluster, "idp");
    assert_eq!(calls[0].headers.get(":path"), Some("/jwks.json"));
    assert_eq!(calls[0].headers.get(":authority"), Some("idp.example"));
    host.respond_http_call(
        calls[0].token,
        &[(":status", "200")],
        mint::public_jwks().to_string(),
    )
    .unwrap();
    assert_eq!(first.request_resumed(), 1);
    assert!(first.local_response().is_none());
    host.advance(Duration::from_millis(50));
    assert_eq!(
        second.request_resumed(),
        1,
        "the waiting request resumes on its next poll"
    );
    assert!(second.local_response().is_none());
    // Cached keys: no further fetch until the refresh interval has passed.
    assert_eq!(send(&host, "/", &[("authorization", &auth)]), 0);
    assert_eq!(host.http_calls().len(), 1);
    host.advance(Duration::from_secs(61));
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&h, true),
        Action::Pause,
        "refresh after the interval"
    );
    let call = host.pending_http_calls()[0].token;
    host.fail_http_call(call).unwrap();
    assert!(
        s.local_response().is_none(),
        "stale keys serve when a refresh fails"
    );
    assert_eq!(s.request_resumed(), 1);
}

#[test]
fn remote_jwks_failure_policy_answers_the_configured_status() {
    let host = host_with(&remote_config(json!({})), &["idp"]);
    let auth = format!("Bearer {}", mint::token("RS256", mint::now()));
    let h = headers("GET", "/", &[("authorization", &auth)]);
    let (s, call) = paused_for_jwks(&host, &auth);
    host.respond_http_call(call, &[(":status", "500")], "")
        .unwrap();
    assert_eq!(s.local_response().unwrap().status, 503);
    // Within the retry interval, no new fetch: answered at once.
    assert_eq!(send(&host, "/", &[("authorization", &auth)]), 503);
    assert_eq!(host.http_calls().len(), 1);
    // A JWKS without usable keys is a failure too; requests without a token never wait.
    host.advance(Duration::from_secs(6));
    let (s, call) = paused_for_jwks(&host, &auth);
    host.respond_http_call(call, &[(":status", "200")], mint::hmac_jwks().to_string())
        .unwrap();
    assert_eq!(s.local_response().unwrap().status, 503);
    assert_eq!(send(&host, "/", &[]), 401);

    let strict = host_with(
        &remote_config(json!({"jwksUnavailableStatus": 401})),
        &["idp"],
    );
    let mut s = strict.stream();
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    strict
        .fail_http_call(strict.pending_http_calls()[0].token)
        .unwrap();
    assert_eq!(s.local_response().unwrap().status, 401);
}

#[test]
fn remote_jwks_rotation_refuses_withdrawn_keys() {
    let host = host_with(&remote_config(json!({})), &["idp"]);
    let auth = format!("Bearer {}", mint::token("RS256", mint::now()));
    let h = headers("GET", "/", &[("authorization", &auth)]);
    let mut s = host.stream();
    s.request_headers(&h, true);
    host.respond_http_call(
        host.pending_http_calls()[0].token,
        &[(":status", "200")],
        mint::public_jwks().to_string(),
    )
    .unwrap();
    assert!(s.local_response().is_none());
    host.advance(Duration::from_secs(61));
    let mut s = host.stream();
    s.request_headers(&h, true);
    host.respond_http_call(
        host.pending_http_calls()[0].token,
        &[(":status", "200")],
        mint::other_jwks().to_string(),
    )
    .unwrap();
    assert_eq!(
        s.local_response().unwrap().status,
        401,
        "a cached verification does not outlive its key"
    );
}

fn ext_config(extra: Value) -> Value {
    let mut p = json!({"cluster": "authz", "pathPrefix": "/check", "timeout": "200ms",
                       "includeRequestHeadersInCheck": ["x-user"], "headersToUpstreamOnAllow": ["x-authz-user"],
                       "headersToDownstreamOnDeny": ["x-reason"]});
    if let (Some(base), Some(more)) = (p.as_object_mut(), extra.as_object()) {
        base.extend(more.clone());
    }
    json!({"extensionProviders": [{"name": "ext", "envoyExtAuthzHttp": p}],
           "policies": [{"name": "ext-check", "action": "CUSTOM", "provider": {"name": "ext"},
                         "rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}]},
                        {"name": "deny-debug", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/api/debug"]}}]}]}]})
}

#[test]
fn custom_ext_authz_allows_denies_and_fails_closed() {
    let host = host_with(&ext_config(json!({})), &["authz"]);
    // Not covered by the CUSTOM rule: no callout.
    assert_eq!(send(&host, "/other", &[]), 0);
    assert!(host.http_calls().is_empty());
    let h = headers("GET", "/api/x", &[("x-user", "u1"), ("cookie", "secret")]);
    let mut s = host.stream();
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    let call = host.pending_http_calls()[0].clone();
    assert_eq!(call.headers.get(":path"), Some("/check/api/x"));
    assert_eq!(call.headers.get("x-user"), Some("u1"));
    assert_eq!(call.headers.get("cookie"), None);
    host.respond_http_call(
        call.token,
        &[(":status", "200"), ("x-authz-user", "alice")],
        "",
    )
    .unwrap();
    assert_eq!(s.request_resumed(), 1);
    assert_eq!(s.request_header_map().get("x-authz-user"), Some("alice"));
    // An allow from CUSTOM does not override DENY.
    let mut s = host.stream();
    s.request_headers(&headers("GET", "/api/debug", &[]), true);
    host.respond_http_call(
        host.pending_http_calls()[0].token,
        &[(":status", "200")],
        "",
    )
    .unwrap();
    assert_eq!(s.local_response().unwrap().status, 403);
    // A denial keeps the authorizer's status, body and listed headers.
    let mut s = host.stream();
    s.request_headers(&h, true);
    host.respond_http_call(
        host.pending_http_calls()[0].token,
        &[(":status", "401"), ("x-reason", "expired")],
        "go away",
    )
    .unwrap();
    let lr = s.local_response().unwrap();
    assert_eq!(
        (
            lr.status,
            lr.body_str().as_str(),
            lr.headers.get("x-reason")
        ),
        (401, "go away", Some("expired"))
    );
    // Timeout: fail closed with statusOnError (403 by default).
    let mut s = host.stream();
    s.request_headers(&h, true);
    host.advance(Duration::from_millis(250));
    assert_eq!(s.local_response().unwrap().status, 403);

    let open = host_with(&ext_config(json!({"failOpen": true})), &["authz"]);
    let mut s = open.stream();
    s.request_headers(&h, true);
    open.fail_http_call(open.pending_http_calls()[0].token)
        .unwrap();
    assert!(s.local_response().is_none());
    assert_eq!(s.request_resumed(), 1);
}

#[test]
fn invalid_config_is_refused_naming_the_field() {
    let host = Host::builder(module())
        .plugin_config(json!({"policies": [{"name": "p", "rules": [{"when": [{"key": "request.nope", "values": ["x"]}]}]}]}).to_string())
        .build()
        .unwrap();
    assert!(!host.configured());
    assert!(host.logged("policies[0].rules[0].when[0].key: unsupported key `request.nope`"));
}
