//! Scenarios that run against more than one build of a filter (the Wasm module and the
//! native dynamic module, filters/native): the config and the checks live here once, so
//! both builds are held to exactly the same outcome.

/// The headers filter: request and response edits, seen by the upstream and the client.
pub mod headers {
    use crate::bootstrap::INGRESS;
    use crate::echo::Echo;
    use crate::envoy::Envoy;
    use crate::http;
    use anyhow::{ensure, Result};
    use serde_json::{json, Value};

    /// The filter config [`check_edits`] expects.
    pub fn edits_config() -> Value {
        json!({
            "request": {
                "set": [{"name": "x-wasmesh", "value": "hello"}],
                "add": [{"name": "x-trace-tag", "value": "%METHOD% %PATH%"}],
                "remove": ["x-internal-secret"],
            },
            "response": {
                "set": [{"name": "x-served-by", "value": "wasmesh"}],
                "remove": ["x-echo-name"],
            },
        })
    }

    /// Sends one request through `envoy` (proxying to an echo upstream, with the filter
    /// configured by [`edits_config`]) and checks every edit on both sides.
    pub fn check_edits(envoy: &Envoy) -> Result<()> {
        let url = format!("{}/items//a/../b", envoy.listener_url(INGRESS)?);
        let resp = http::get_with(
            &url,
            &[("x-internal-secret", "s3cr3t"), ("x-trace-tag", "first")],
        )?;
        ensure!(
            resp.status == 200,
            "status {}; {}",
            resp.status,
            envoy.log_tail(40)
        );
        let seen = Echo::parse(&resp.body)?;
        ensure!(
            seen.header("x-wasmesh") == Some("hello"),
            "x-wasmesh: {:?}",
            seen.header("x-wasmesh")
        );
        ensure!(
            seen.header_all("x-trace-tag") == ["first", "GET /items/b"],
            "x-trace-tag: {:?}",
            seen.header_all("x-trace-tag")
        );
        ensure!(
            seen.header("x-internal-secret").is_none(),
            "x-internal-secret reached the upstream"
        );
        ensure!(
            resp.header("x-served-by") == Some("wasmesh"),
            "x-served-by: {:?}",
            resp.header("x-served-by")
        );
        ensure!(
            resp.header("x-echo-name").is_none(),
            "x-echo-name reached the client"
        );
        Ok(())
    }
}

/// The fault filter: the abort ratio under load on two workers, and delays.
pub mod fault {
    use crate::bootstrap::INGRESS;
    use crate::envoy::Envoy;
    use crate::http;
    use anyhow::{ensure, Result};
    use serde_json::{json, Value};
    use std::time::{Duration, Instant};

    /// Aborts `percentage`% of requests with 503.
    pub fn abort_config(percentage: f64) -> Value {
        json!({"abort": {"http_status": 503, "percentage": percentage}})
    }

    /// 2000 requests from four clients (new connections, so both workers serve); the
    /// measured ratio is within `stats::percent_tolerance` of `percentage`.
    /// Returns how many were aborted.
    pub fn check_abort_ratio(envoy: &Envoy, percentage: f64) -> Result<u64> {
        let url = format!("{}/x", envoy.listener_url(INGRESS)?);
        let aborted: u64 = std::thread::scope(|scope| -> Result<u64> {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let url = &url;
                    scope.spawn(move || -> Result<u64> {
                        let mut aborted = 0;
                        for _ in 0..500 {
                            let resp = http::get(url)?;
                            ensure!(matches!(resp.status, 200 | 503), "status {}", resp.status);
                            aborted += u64::from(resp.status == 503);
                        }
                        Ok(aborted)
                    })
                })
                .collect();
            let mut sum = 0;
            for h in handles {
                sum += h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
            }
            Ok(sum)
        })?;
        let measured = aborted as f64 / 20.0;
        eprintln!("fault ratio: {aborted}/2000 = {measured}% (configured {percentage}%)");
        ensure!(
            (measured - percentage).abs() <= crate::stats::percent_tolerance(2000, percentage),
            "{measured}% aborted for {percentage}%"
        );
        Ok(aborted)
    }

    /// Delays every request by `millis`.
    pub fn delay_config(millis: u64) -> Value {
        json!({"delay": {"fixed_delay": format!("{millis}ms")}})
    }

    /// Five requests each take at least `millis` and well under a second more.
    pub fn check_delay(envoy: &Envoy, millis: u64) -> Result<()> {
        let url = format!("{}/x", envoy.listener_url(INGRESS)?);
        let mut took = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let resp = http::get(&url)?;
            took.push(start.elapsed());
            ensure!(
                resp.status == 200,
                "status {}; {}",
                resp.status,
                envoy.log_tail(40)
            );
        }
        eprintln!("fault delays (configured {millis}ms): {took:?}");
        let at_least = Duration::from_millis(millis);
        ensure!(took.iter().all(|t| *t >= at_least), "{took:?}");
        ensure!(
            took.iter()
                .all(|t| *t < at_least + Duration::from_millis(700)),
            "{took:?}"
        );
        Ok(())
    }
}

/// The ratelimit filter: one bucket per Envoy, exact across its workers.
pub mod ratelimit {
    use crate::bootstrap::INGRESS;
    use crate::envoy::Envoy;
    use crate::http;
    use anyhow::{bail, ensure, Result};
    use serde_json::{json, Value};
    use std::time::{Duration, Instant};

    const MAX_TOKENS: u64 = 20;
    const PER_FILL: u64 = 10;

    /// One bucket: 20 tokens, 10 more each second.
    pub fn shared_bucket_config() -> Value {
        json!({"token_bucket": {"max_tokens": MAX_TOKENS, "tokens_per_fill": PER_FILL, "fill_interval": "1s"}})
    }

    /// Four clients saturate the bucket for 2.5 s with a new connection per request, so
    /// the kernel spreads them over both workers and both draw from the one bucket at
    /// once. What was allowed is at most the bucket plus its fills, and at most one fill
    /// short of it. Returns (allowed, limited).
    pub fn check_exact_across_workers(envoy: &Envoy) -> Result<(u64, u64)> {
        let url = format!("{}/x", envoy.listener_url(INGRESS)?);
        let run_for = Duration::from_millis(2500);
        let start = Instant::now();
        let (allowed, limited) = std::thread::scope(|scope| -> Result<(u64, u64)> {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let url = &url;
                    scope.spawn(move || -> Result<(u64, u64)> {
                        let (mut ok, mut limited) = (0u64, 0u64);
                        while start.elapsed() < run_for {
                            match http::get(url)?.status {
                                200 => ok += 1,
                                429 => limited += 1,
                                other => bail!("unexpected status {other}"),
                            }
                        }
                        Ok((ok, limited))
                    })
                })
                .collect();
            let mut sum = (0, 0);
            for h in handles {
                let (ok, limited) = h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
                sum = (sum.0 + ok, sum.1 + limited);
            }
            Ok(sum)
        })?;
        let elapsed = start.elapsed();
        let fills = elapsed.as_millis() as u64 / 1000;
        let bound = MAX_TOKENS + fills * PER_FILL;
        eprintln!(
            "ratelimit exactness: allowed {allowed}, limited {limited}, T {elapsed:?}, bound {bound}"
        );
        ensure!(
            limited > 100,
            "demand must saturate the bucket: {limited} limited"
        );
        ensure!(allowed <= bound, "allowed {allowed} > bound {bound}");
        // Close to the bound, not trivially low: at most one fill short (timing at the edges).
        ensure!(
            allowed + PER_FILL >= bound,
            "allowed {allowed}, bound {bound}"
        );
        Ok((allowed, limited))
    }
}

/// The ratelimit filter's global rules against the real rate limit service
/// ([`crate::rls`]): one rule `shared`, one limit across every Envoy that asks.
pub mod global_ratelimit {
    use crate::bootstrap::INGRESS;
    use crate::envoy::Envoy;
    use crate::http;
    use crate::rls;
    use anyhow::{ensure, Result};
    use serde_json::{json, Value};
    use std::time::{Duration, Instant};

    /// The service's config: `n` requests an hour for the rule `shared`.
    pub fn limit_yaml(n: u32) -> String {
        format!(
            "domain: mesh\ndescriptors:\n  - key: generic_key\n    value: shared\n    rate_limit: {{unit: hour, requests_per_unit: {n}}}\n"
        )
    }

    /// The filter config: the one global rule, failing closed if `deny`.
    pub fn filter_config(deny: bool) -> Value {
        json!({
            "domain": "mesh",
            "rate_limit_service": {"cluster": rls::CLUSTER, "timeout": "500ms", "failure_mode_deny": deny},
            "rules": [{"name": "shared", "global": true}],
        })
    }

    pub fn url(e: &Envoy) -> Result<String> {
        Ok(format!("{}/x", e.listener_url(INGRESS)?))
    }

    fn hour() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 3600)
    }

    /// 12 requests alternating between `a` and `b`, which share a service limiting
    /// to 5 ([`limit_yaml`]): exactly the first 5 pass, the rest are 429 with the
    /// draft-03 headers and `x-envoy-ratelimited`.
    pub fn check_shared_limit(a: &Envoy, b: &Envoy) -> Result<()> {
        let before = hour();
        let mut codes = Vec::new();
        for i in 0..12 {
            let e = if i % 2 == 0 { a } else { b };
            let r = http::get(&url(e)?)?;
            if r.status == 429 {
                ensure!(r.header("x-ratelimit-limit") == Some("5"), "limit header");
                ensure!(
                    r.header("x-ratelimit-remaining") == Some("0"),
                    "remaining header"
                );
                ensure!(
                    r.header("x-envoy-ratelimited") == Some("true"),
                    "ratelimited header"
                );
            } else {
                ensure!(r.status == 200, "status {}: {}", r.status, e.log_tail(30));
            }
            codes.push(r.status);
        }
        ensure!(before == hour(), "the hour turned over mid-test: rerun");
        ensure!(
            codes.iter().filter(|&&c| c == 200).count() == 5 && codes[5..] == [429; 7],
            "{codes:?}"
        );
        Ok(())
    }

    /// With the service stopped, `open` lets 3 requests through and `closed` answers
    /// them 500, each pair in well under the time a hang would take.
    pub fn check_failure_modes(open: &Envoy, closed: &Envoy, server: rls::Server) -> Result<()> {
        ensure!(http::get(&url(open)?)?.status == 200, "open, service up");
        ensure!(
            http::get(&url(closed)?)?.status == 200,
            "closed, service up"
        );
        server.stop();
        for _ in 0..3 {
            let t = Instant::now();
            ensure!(http::get(&url(open)?)?.status == 200, "fail-open");
            let r = http::get(&url(closed)?)?;
            ensure!(r.status == 500, "fail-closed: {} {}", r.status, r.text());
            ensure!(
                t.elapsed() < Duration::from_secs(3),
                "took {:?}",
                t.elapsed()
            );
        }
        Ok(())
    }

    /// `open` and `closed` ask a service that accepts connections and never speaks:
    /// their 500 ms timeouts give 200 and 500, not a hang.
    pub fn check_timeouts(open: &Envoy, closed: &Envoy) -> Result<()> {
        let t = Instant::now();
        ensure!(http::get(&url(open)?)?.status == 200, "fail-open");
        let r = http::get(&url(closed)?)?;
        ensure!(r.status == 500, "fail-closed: {} {}", r.status, r.text());
        ensure!(
            t.elapsed() < Duration::from_secs(4),
            "took {:?}",
            t.elapsed()
        );
        Ok(())
    }

    /// What one request came back with: status, and the draft-03 limit and remaining.
    pub type Seen = (u16, Option<String>, Option<String>);

    /// `n` requests through `e`, as [`Seen`].
    pub fn through_envoy(e: &Envoy, n: usize) -> Result<Vec<Seen>> {
        (0..n)
            .map(|_| {
                let r = http::get(&url(e)?)?;
                let h = |n: &str| r.header(n).map(str::to_string);
                Ok((r.status, h("x-ratelimit-limit"), h("x-ratelimit-remaining")))
            })
            .collect()
    }

    /// Five requests against a limit of 3 ([`limit_yaml`]`(3)`).
    pub fn five_against_three() -> Vec<Seen> {
        let some = |s: &str| Some(s.to_string());
        vec![
            (200, some("3"), some("2")),
            (200, some("3"), some("1")),
            (200, some("3"), some("0")),
            (429, some("3"), some("0")),
            (429, some("3"), some("0")),
        ]
    }
}

/// The authz filter: a remote JWKS fetched through an Envoy cluster (a callout).
pub mod authz {
    use crate::bootstrap::{static_cluster, INGRESS};
    use crate::envoy::Envoy;
    use crate::http;
    use anyhow::{ensure, Result};
    use serde_json::{json, Value};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use wasmesh_testkit::mint;

    /// A one-route HTTP server answering every request with a fixed JSON body, counting
    /// requests: the identity provider's JWKS endpoint.
    pub struct StaticServer {
        pub port: u16,
        hits: Arc<AtomicU64>,
    }

    impl StaticServer {
        pub fn start(body: String) -> Result<StaticServer> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let hits = Arc::new(AtomicU64::new(0));
            let counter = hits.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    let mut buf = [0u8; 8192];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                }
            });
            Ok(StaticServer { port, hits })
        }

        pub fn hits(&self) -> u64 {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// The identity provider for [`check_remote_jwks`]. It also serves a key that is not
    /// on the curve: Envoy's Wasm host refuses to import it, the filter skips it, and the
    /// other keys serve (as in the harness test
    /// `an_off_curve_key_in_a_remote_jwks_is_skipped_and_the_rest_serve`).
    pub fn identity_provider() -> Result<StaticServer> {
        StaticServer::start(mint::jwks_with_an_off_curve_key().to_string())
    }

    /// The cluster the filter fetches the JWKS through.
    pub fn idp_cluster(idp: &StaticServer) -> Value {
        static_cluster("idp", idp.port)
    }

    /// Requires a valid JWT from the provider, whose keys are fetched from `idp`.
    pub fn remote_jwks_config() -> Value {
        json!({
            "jwtRules": [{"issuer": mint::ISSUER, "jwksUri": "http://idp.example/.well-known/jwks.json", "cluster": "idp"}],
            "policies": [{"name": "require-jwt", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]
        })
    }

    /// Valid RS256 and ES256 tokens pass (the keys fetched once), a forged one and a
    /// request without a token get 401.
    pub fn check_remote_jwks(envoy: &Envoy, idp: &StaticServer) -> Result<()> {
        let url = format!("{}/orders", envoy.listener_url(INGRESS)?);
        let auth = format!("Bearer {}", mint::token("RS256", mint::now()));
        let resp = http::get_with(&url, &[("authorization", &auth)])?;
        ensure!(
            resp.status == 200,
            "{}: {}\n{}",
            resp.status,
            resp.text(),
            envoy.log_tail(40)
        );
        ensure!(idp.hits() == 1, "JWKS fetched {} times", idp.hits());
        let resp = http::get_with(&url, &[("authorization", &auth)])?;
        ensure!(resp.status == 200, "second request: {}", resp.status);
        let es256 = format!("Bearer {}", mint::token("ES256", mint::now()));
        let resp = http::get_with(&url, &[("authorization", &es256)])?;
        ensure!(
            resp.status == 200,
            "ES256: {}; {}",
            resp.status,
            envoy.log_tail(40)
        );
        // Envoy writes its log asynchronously.
        envoy.wait_for_log("skipped keys[4]: bad P-256 point", Duration::from_secs(10))?;
        let bad = format!("Bearer {}", mint::attack_tokens(mint::now())[3].1);
        let forged = http::get_with(&url, &[("authorization", &bad)])?.status;
        ensure!(forged == 401, "forged token: {forged}");
        let anonymous = http::get(&url)?.status;
        ensure!(anonymous == 401, "no token: {anonymous}");
        Ok(())
    }
}

/// The authz security corpus (`wasmesh_testkit::security`) through real Envoy: each
/// case sent byte for byte, its status and whether the upstream saw it checked against
/// the outcome the harness is held to.
pub mod security {
    use crate::bootstrap::INGRESS;
    use crate::echo::{Echo, EchoServer};
    use crate::envoy::Envoy;
    use crate::http;
    use anyhow::{bail, Result};
    use wasmesh_testkit::security::{Case, Expect, Family, AUTHORITY};

    /// What Envoy did with one case.
    #[derive(Debug, Clone)]
    pub struct Observed {
        pub case: Case,
        pub status: u16,
        /// Whether the echo upstream received the request.
        pub reached_upstream: bool,
        /// The path the upstream saw, when it saw the request.
        pub upstream_path: Option<String>,
    }

    /// How closely a denial's status must match.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Statuses {
        /// The very status the harness gives (the filter sees what the client sent).
        Exact,
        /// Any 4xx: Envoy rewrote the path first (`normalize_path`), so the filter
        /// may refuse the rewritten path for another reason, 403 rather than 400.
        AnyDenial,
    }

    impl Observed {
        /// Allowed means 200 from the upstream, which saw the request; denied means
        /// the expected status (or any 4xx, as `statuses` says) and an upstream that
        /// never saw it.
        pub fn as_expected(&self, statuses: Statuses) -> bool {
            match (self.case.expect_in_envoy(), statuses) {
                (Expect::Allowed, _) => self.status == 200 && self.reached_upstream,
                (Expect::Denied(status), Statuses::Exact) => {
                    self.status == status && !self.reached_upstream
                }
                (Expect::Denied(_), Statuses::AnyDenial) => {
                    (400..500).contains(&self.status) && !self.reached_upstream
                }
            }
        }

        /// `denied 403`, `allowed`, or the status and where the request went.
        pub fn describe(&self) -> String {
            match (self.reached_upstream, self.status) {
                (true, 200) => "allowed".to_string(),
                (false, status) => format!("denied {status}"),
                (true, status) => format!("{status}, reached the upstream"),
            }
        }
    }

    fn send(envoy: &Envoy, case: &Case) -> Result<http::Response> {
        let mut req = format!(
            "GET {} HTTP/1.1\r\nhost: {AUTHORITY}\r\nconnection: close\r\n",
            case.target()
        );
        for (name, value) in &case.headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        http::raw_request(envoy.listener_addr(INGRESS)?, req.as_bytes())
    }

    /// Sends every case of `family` in `cases` through `envoy` (whose only upstream is
    /// `echo`, with the authz filter configured by `security::config()`), one at a
    /// time. Fails naming every case whose outcome differs; returns them all.
    pub fn check(
        envoy: &Envoy,
        echo: &EchoServer,
        cases: &[Case],
        family: Family,
        statuses: Statuses,
    ) -> Result<Vec<Observed>> {
        let mut observed = Vec::new();
        for case in cases.iter().filter(|c| c.family == family) {
            let before = echo.requests();
            let resp = send(envoy, case)?;
            let reached_upstream = echo.requests() > before;
            let upstream_path = reached_upstream
                .then(|| Echo::parse(&resp.body).ok().map(|e| e.path))
                .flatten();
            observed.push(Observed {
                case: case.clone(),
                status: resp.status,
                reached_upstream,
                upstream_path,
            });
        }
        let wrong: Vec<String> = observed
            .iter()
            .filter(|o| !o.as_expected(statuses))
            .map(|o| {
                format!(
                    "{} {:?}: expected {}, got {}",
                    o.case.name,
                    o.case.target(),
                    o.case.expect_in_envoy().describe(),
                    o.describe()
                )
            })
            .collect();
        let attacks = observed.iter().filter(|o| o.case.attack).count();
        let denied = observed
            .iter()
            .filter(|o| o.case.attack && !o.reached_upstream)
            .count();
        eprintln!(
            "{} corpus: {denied} of {attacks} attack cases denied, {} cases in all",
            family.name(),
            observed.len()
        );
        for o in &observed {
            eprintln!(
                "| {} | {} | `{}` | {} | {} |",
                family.name(),
                o.case.name,
                o.case.policy,
                o.case.expect_in_envoy().describe(),
                o.describe()
            );
        }
        if !wrong.is_empty() {
            bail!(
                "{} of {} {} cases differ:\n{}\n{}",
                wrong.len(),
                observed.len(),
                family.name(),
                wrong.join("\n"),
                envoy.log_tail(20)
            );
        }
        Ok(observed)
    }
}

/// The cors filter: the same requests through the Wasm filter, the native module's
/// stage and Envoy's own CORS filter (Istio's translation of `corsPolicy`) give the same
/// answers; [`cors::check_hostile_origins`] holds ours to more than Envoy's.
pub mod cors {
    use crate::bootstrap::{admin, http_listener, static_cluster, INGRESS, UPSTREAM};
    use crate::echo::EchoServer;
    use crate::envoy::Envoy;
    use crate::http::{self, Response};
    use anyhow::{ensure, Result};
    use serde_json::{json, Value};

    /// The one origin of the exact entry, and a host under the prefix entry.
    pub const ALLOWED: &str = "https://good.example";
    pub const ALLOWED_BY_PREFIX: &str = "https://app.good.example:8443";

    /// The policy, as the cors filter takes it: for the route named `api` only.
    pub fn config() -> Value {
        json!({"rules": [{
            "match": {"route_names": ["api"]},
            "corsPolicy": {
                "allowOrigins": [{"exact": ALLOWED}, {"prefix": "https://app.good.example"}],
                "allowMethods": ["GET", "POST"],
                "allowHeaders": ["content-type", "x-token"],
                "exposeHeaders": ["x-request-id"],
                "maxAge": "10m",
                "allowCredentials": true,
            },
        }]})
    }

    /// The same policy as Envoy's CorsPolicy, the way Istio writes a route's corsPolicy.
    fn envoy_policy() -> Value {
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"exact": ALLOWED}, {"prefix": "https://app.good.example"}],
            "allow_methods": "GET,POST",
            "allow_headers": "content-type,x-token",
            "expose_headers": "x-request-id",
            "max_age": "600",
            "allow_credentials": true,
        })
    }

    /// Envoy's own CORS filter, whose policy is on the route.
    pub fn envoy_cors_filter() -> Value {
        json!({"name": "envoy.filters.http.cors", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}})
    }

    /// A proxy to `upstream_port` with two routes, `api` (`/api`) and `web` (the rest),
    /// through `http_filters`; with `envoy_policy`, route `api` carries the policy for
    /// Envoy's CORS filter.
    pub fn bootstrap(upstream_port: u16, http_filters: Vec<Value>, envoy_policy: bool) -> Value {
        let mut api =
            json!({"name": "api", "match": {"prefix": "/api"}, "route": {"cluster": UPSTREAM}});
        if envoy_policy {
            api["typed_per_filter_config"] =
                json!({"envoy.filters.http.cors": self::envoy_policy()});
        }
        let web = json!({"name": "web", "match": {"prefix": "/"}, "route": {"cluster": UPSTREAM}});
        json!({
            "admin": admin(),
            "static_resources": {
                "listeners": [http_listener(INGRESS, http_filters, vec![api, web])],
                "clusters": [static_cluster(UPSTREAM, upstream_port)],
            },
        })
    }

    fn cors_headers(resp: &Response) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = resp
            .headers
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        out.sort();
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.sort();
        out
    }

    fn preflight(url: &str, origin: &str) -> Result<Response> {
        http::request(
            "OPTIONS",
            url,
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            b"",
        )
    }

    /// Preflights from allowed origins are answered without reaching the upstream; an
    /// allowed request gets the response headers; a disallowed origin's requests get no
    /// CORS header and its preflight reaches the upstream; the route without a policy
    /// gets none.
    pub fn check_policy(envoy: &Envoy, upstream: &EchoServer) -> Result<()> {
        let base = envoy.listener_url(INGRESS)?;
        let api = format!("{base}/api/items");
        for origin in [ALLOWED, ALLOWED_BY_PREFIX] {
            let before = upstream.requests();
            let resp = preflight(&api, origin)?;
            ensure!(
                resp.status == 200,
                "preflight from {origin}: {}; {}",
                resp.status,
                envoy.log_tail(30)
            );
            ensure!(
                upstream.requests() == before,
                "a preflight from {origin} reached the upstream"
            );
            let want = pairs(&[
                ("access-control-allow-origin", origin),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET,POST"),
                ("access-control-allow-headers", "content-type,x-token"),
                ("access-control-max-age", "600"),
                // Envoy's preflight answer passes its own response path too, which adds this.
                ("access-control-expose-headers", "x-request-id"),
            ]);
            ensure!(
                cors_headers(&resp) == want,
                "preflight from {origin}: {:?}",
                cors_headers(&resp)
            );

            let resp = http::get_with(&api, &[("origin", origin)])?;
            ensure!(resp.status == 200, "GET from {origin}: {}", resp.status);
            let want = pairs(&[
                ("access-control-allow-origin", origin),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-request-id"),
            ]);
            ensure!(
                cors_headers(&resp) == want,
                "GET from {origin}: {:?}",
                cors_headers(&resp)
            );
        }
        let evil = "https://evil.example";
        let resp = http::get_with(&api, &[("origin", evil)])?;
        ensure!(
            resp.status == 200 && cors_headers(&resp).is_empty(),
            "GET from {evil}: {} {:?}",
            resp.status,
            cors_headers(&resp)
        );
        let before = upstream.requests();
        let resp = preflight(&api, evil)?;
        ensure!(
            upstream.requests() == before + 1,
            "the preflight from {evil} must be forwarded to the upstream"
        );
        ensure!(
            cors_headers(&resp).is_empty(),
            "preflight from {evil}: {:?}",
            cors_headers(&resp)
        );
        let resp = http::get_with(&format!("{base}/web"), &[("origin", ALLOWED)])?;
        ensure!(
            resp.status == 200 && cors_headers(&resp).is_empty(),
            "route without a policy: {:?}",
            cors_headers(&resp)
        );
        let resp = http::get(&api)?;
        ensure!(
            cors_headers(&resp).is_empty(),
            "no Origin: {:?}",
            cors_headers(&resp)
        );
        Ok(())
    }

    /// Origins ours refuses (Envoy's CORS filter allows the first: a `prefix` match does
    /// not stop at the host's end there): look-alike hosts, `null`, case, two Origin
    /// headers, non-UTF-8 bytes, a huge value. None gets a CORS header, none fails the
    /// filter (a trap would answer 503 or reset).
    pub fn check_hostile_origins(envoy: &Envoy) -> Result<()> {
        let addr = envoy.listener_addr(INGRESS)?;
        let huge = format!("{ALLOWED}{}", "a".repeat(16_000));
        let mut cases: Vec<(String, Vec<u8>)> = [
            "https://app.good.example.evil.com",
            "https://good.example.evil.com",
            "null",
            "https://GOOD.EXAMPLE",
            "https://good.example/path",
            huge.as_str(),
        ]
        .iter()
        .map(|o| {
            (
                o.chars().take(60).collect(),
                format!("origin: {o}\r\n").into_bytes(),
            )
        })
        .collect();
        cases.push((
            "two Origin headers".into(),
            format!("origin: {ALLOWED}\r\norigin: https://evil.example\r\n").into_bytes(),
        ));
        cases.push((
            "non-UTF-8".into(),
            [b"origin: https://good.example".as_slice(), b"\xff\xfe\r\n"].concat(),
        ));
        for (what, origin_lines) in cases {
            for method in ["GET", "OPTIONS"] {
                let head = format!("{method} /api/items HTTP/1.1\r\nhost: shop\r\naccess-control-request-method: POST\r\nconnection: close\r\n");
                let bytes = [head.as_bytes(), &origin_lines, b"\r\n"].concat();
                let resp = http::raw_request(addr, &bytes)?;
                // Envoy's codec may itself refuse a malformed request with 400 before any
                // filter runs; what must not happen is a 5xx (a trapped filter) or CORS headers.
                ensure!(
                    matches!(resp.status, 200 | 400),
                    "{method} from {what:?}: {}; {}",
                    resp.status,
                    envoy.log_tail(30)
                );
                ensure!(
                    cors_headers(&resp).is_empty(),
                    "{method} from {what:?}: {:?}",
                    cors_headers(&resp)
                );
            }
        }
        Ok(())
    }
}

/// The body filter: size limits (413 by content-length and mid-stream, a response over
/// its limit answered 502) and JSON rewrites (the rewrite reaching the upstream without
/// a stale length, the content-type guard, malformed JSON and the size cap in both
/// modes), through a real upstream (the echo server).
pub mod body {
    use crate::bootstrap::INGRESS;
    use crate::echo::{Echo, EchoServer};
    use crate::envoy::Envoy;
    use crate::http;
    use anyhow::{ensure, Context, Result};
    use serde_json::{json, Value};

    /// The filter config the checks expect, by path prefix: `/limit` (10 request bytes,
    /// 64 response bytes), `/json` (a request rewrite, `PASS`), `/strict` (the same,
    /// `REJECT`), `/out` (a response rewrite).
    pub fn config() -> Value {
        let rewrite = json!({
            "remove": ["/password"],
            "rename": [{"from": "/user_name", "to": "/user/name"}],
            "set": [{"pointer": "/source", "value": "mesh"}],
        });
        json!({"rules": [
            {"match": {"path": {"prefix": "/limit"}}, "limit": {"maxRequestBytes": 10, "maxResponseBytes": 64}},
            {"match": {"path": {"prefix": "/json"}}, "json": {"request": rewrite, "maxBytes": 64}},
            {"match": {"path": {"prefix": "/strict"}}, "json": {"request": rewrite, "maxBytes": 64, "malformed": "REJECT", "overMaxBytes": "REJECT"}},
            {"match": {"path": {"prefix": "/out"}}, "json": {"response": {"remove": ["/headers"], "set": [{"pointer": "/rewritten", "value": true}]}, "maxBytes": 65536}},
        ]})
    }

    fn post(
        envoy: &Envoy,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<http::Response> {
        let url = format!("{}{path}", envoy.listener_url(INGRESS)?);
        http::request("POST", &url, headers, body).with_context(|| envoy.log_tail(40))
    }

    /// A chunked request written by hand: each chunk in its own frame.
    fn chunked(
        envoy: &Envoy,
        path: &str,
        content_type: &str,
        chunks: &[&[u8]],
    ) -> Result<http::Response> {
        let mut bytes = format!(
            "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in chunks {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        http::raw_request(envoy.listener_addr(INGRESS)?, &bytes)
    }

    fn status(envoy: &Envoy, resp: &http::Response, want: u16) -> Result<()> {
        ensure!(
            resp.status == want,
            "status {} (want {want}): {}\n{}",
            resp.status,
            resp.text(),
            envoy.log_tail(40)
        );
        Ok(())
    }

    /// Limits: 413 by content-length with nothing sent upstream, the exact limit
    /// passing, 413 mid-stream for a chunked body, a response over its limit by its
    /// content-length answered 502 and one at the limit passing whole.
    pub fn check_limits(envoy: &Envoy, echo: &EchoServer) -> Result<()> {
        let resp = post(envoy, "/limit", &[], b"0123456789A")?;
        status(envoy, &resp, 413)?;
        ensure!(resp.text() == "Payload Too Large", "body {:?}", resp.text());
        ensure!(
            echo.requests() == 0,
            "refused at the headers, yet it went upstream"
        );
        let resp = post(envoy, "/limit", &[("x-echo-body-size", "8")], b"0123456789")?;
        status(envoy, &resp, 200)?;
        let last = echo.received().last().map(|e| e.body.clone());
        ensure!(
            last.as_deref() == Some("0123456789"),
            "upstream saw {last:?}"
        );
        let resp = chunked(envoy, "/limit", "text/plain", &[b"0123", b"4567", b"89AB"])?;
        status(envoy, &resp, 413)?;
        let resp = post(envoy, "/limit", &[("x-echo-body-size", "65")], b"")?;
        status(envoy, &resp, 502)?;
        let resp = post(envoy, "/limit", &[("x-echo-body-size", "64")], b"")?;
        status(envoy, &resp, 200)?;
        ensure!(resp.body.len() == 64, "{} response bytes", resp.body.len());
        Ok(())
    }

    /// JSON rewrites reach the upstream (whole and chunked) without a stale length;
    /// a body that is not JSON by content-type, malformed (`PASS`) or over the cap
    /// (`PASS`, by length or found while buffering) goes on untouched.
    pub fn check_json_rewrites(envoy: &Envoy) -> Result<()> {
        let json_type = [("content-type", "application/json")];
        let body = br#"{"user_name":"ann","password":"x","n":1}"#;
        let resp = post(envoy, "/json", &json_type, body)?;
        status(envoy, &resp, 200)?;
        let seen = Echo::parse(&resp.body)?;
        let want = r#"{"n":1,"source":"mesh","user":{"name":"ann"}}"#;
        ensure!(seen.body == want, "upstream saw {:?}", seen.body);
        // The headers went on before the body, so without their length: the upstream
        // read it chunked.
        ensure!(
            seen.header("content-length").is_none(),
            "content-length {:?} reached the upstream",
            seen.header("content-length")
        );
        let resp = chunked(
            envoy,
            "/json",
            "application/json",
            &[br#"{"password":"#, br#"1,"n":2}"#],
        )?;
        status(envoy, &resp, 200)?;
        let seen = Echo::parse(&resp.body)?;
        ensure!(
            seen.body == r#"{"n":2,"source":"mesh"}"#,
            "upstream saw {:?}",
            seen.body
        );
        let untouched = |resp: http::Response, want: &[u8]| -> Result<()> {
            status(envoy, &resp, 200)?;
            let seen = Echo::parse(&resp.body)?;
            ensure!(seen.body.as_bytes() == want, "upstream saw {:?}", seen.body);
            Ok(())
        };
        untouched(
            post(envoy, "/json", &[("content-type", "text/plain")], body)?,
            body,
        )?;
        untouched(post(envoy, "/json", &json_type, b"{\"a\":")?, b"{\"a\":")?;
        let big = format!(r#"{{"password":"{}"}}"#, "x".repeat(80));
        untouched(
            post(envoy, "/json", &json_type, big.as_bytes())?,
            big.as_bytes(),
        )?;
        let halves: [&[u8]; 2] = [&big.as_bytes()[..40], &big.as_bytes()[40..]];
        untouched(
            chunked(envoy, "/json", "application/json", &halves)?,
            big.as_bytes(),
        )?;
        Ok(())
    }

    /// `REJECT`: over the cap by content-length, 413 with nothing sent upstream;
    /// malformed, 400; found over the cap while buffering a chunked body, 413.
    pub fn check_refusals(envoy: &Envoy, echo: &EchoServer) -> Result<()> {
        let json_type = [("content-type", "application/json")];
        let big = format!(r#"{{"password":"{}"}}"#, "x".repeat(80));
        let resp = post(envoy, "/strict", &json_type, big.as_bytes())?;
        status(envoy, &resp, 413)?;
        ensure!(
            echo.requests() == 0,
            "refused at the headers, yet it went upstream"
        );
        // The body-phase refusals come after the headers went on; the upstream
        // request is reset.
        let resp = post(envoy, "/strict", &json_type, b"{\"a\":")?;
        status(envoy, &resp, 400)?;
        let halves: [&[u8]; 2] = [&big.as_bytes()[..40], &big.as_bytes()[40..]];
        let resp = chunked(envoy, "/strict", "application/json", &halves)?;
        status(envoy, &resp, 413)?;
        Ok(())
    }

    /// A JSON response (the echo server's) is rewritten and reaches the client without
    /// a stale length.
    pub fn check_response_rewrite(envoy: &Envoy) -> Result<()> {
        let resp = post(envoy, "/out", &[("content-type", "text/plain")], b"hi")?;
        status(envoy, &resp, 200)?;
        let doc: Value = serde_json::from_slice(&resp.body)
            .with_context(|| format!("not JSON: {:?}", resp.text()))?;
        ensure!(doc.get("headers").is_none(), "not rewritten: {doc}");
        ensure!(doc["rewritten"] == json!(true), "not rewritten: {doc}");
        ensure!(doc["body"] == json!("hi"), "{doc}");
        ensure!(
            resp.header("content-length").is_none(),
            "a stale content-length reached the client"
        );
        Ok(())
    }
}
