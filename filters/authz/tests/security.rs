//! The security corpus (`wasmesh_testkit::security`: path tricks, JWT attacks,
//! forwarded-for spoofing) through the compiled module in the harness. Real Envoy runs
//! the same cases in `integration/tests/security.rs`, held to the same outcomes.

// Test helpers unwrap: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, UNIX_EPOCH};
use wasmesh_harness::{request, Action, Host, PropertyValue};
use wasmesh_testkit::security::{self, Case, Expect, Family};
use wasmesh_testkit::{filter_under_test, mint};

/// The TCP peer Envoy sees in the real-Envoy run (loopback), so a case without
/// forwarded-for is decided on the same address in both.
const PEER: &str = "127.0.0.1:40000";

fn host(now: i64) -> Host {
    let host = Host::builder(&filter_under_test("wasmesh-authz"))
        .plugin_config(security::config().to_string())
        .start_time(UNIX_EPOCH + Duration::from_secs(now as u64))
        .property(&["source", "address"], PropertyValue::string(PEER))
        .build()
        .unwrap();
    assert!(host.configured(), "config refused: {:?}", host.logs());
    host
}

/// What the filter did with `case`: allowed (the request went on) or its local reply.
fn outcome(host: &Host, case: &Case) -> Expect {
    let mut headers = request("GET", &case.path, security::AUTHORITY);
    headers.extend(case.headers.iter().cloned());
    let mut stream = host.stream();
    match stream.request_headers(&headers, true) {
        Action::Continue => Expect::Allowed,
        _ => stream
            .local_response()
            .map_or(Expect::Allowed, |r| Expect::Denied(r.status as u16)),
    }
}

fn check(family: Family) {
    let now = mint::now();
    let host = host(now);
    let cases: Vec<Case> = security::cases(now)
        .into_iter()
        .filter(|c| c.family == family)
        .collect();
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let got = outcome(&host, case);
            (got != case.expect).then(|| {
                format!(
                    "{} {:?}: expected {}, got {}",
                    case.name,
                    case.path,
                    case.expect.describe(),
                    got.describe()
                )
            })
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} {} cases differ:\n{}",
        wrong.len(),
        cases.len(),
        family.name(),
        wrong.join("\n")
    );
}

#[test]
fn path_normalisation_attacks_are_denied() {
    check(Family::Path);
}

#[test]
fn jwt_attacks_are_unauthorized() {
    check(Family::Jwt);
}

#[test]
fn forwarded_for_spoofing_beyond_the_trusted_hop_is_denied() {
    check(Family::Xff);
}
