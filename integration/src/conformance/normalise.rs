//! Comparing the harness with Envoy: what legitimately differs is removed, the rest must
//! be identical, step by step.
//!
//! Legitimate differences, all added by Envoy around the filter rather than by it:
//! * response headers `date`, `server`, `x-envoy-upstream-service-time` (Envoy stamps
//!   them), `content-length`, `transfer-encoding`, `connection` (framing, which the codecs
//!   choose);
//! * request headers `x-request-id`, `x-forwarded-proto` (the connection manager adds
//!   them before the filter runs), `x-envoy-expected-rq-timeout-ms` (the router adds it),
//!   `x-envoy-internal` (Envoy's async client marks callouts internal),
//!   and `content-length`/`transfer-encoding` (framing), wherever a request is echoed:
//!   the upstream's echo, the callout's echo, the `echo-headers` op's body;
//! * values the scenario marks as varying ([`Expect::varies`]): CAS numbers, tick counts,
//!   addresses and ports.

use super::scenario::{Expect, Observed, Scenario, Step};
use crate::echo::Echo;

/// Response headers only Envoy's codec and connection manager add.
const ENVOY_RESPONSE_HEADERS: &[&str] = &[
    "date",
    "server",
    "x-envoy-upstream-service-time",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Request headers Envoy adds (or reframes) on the way to an upstream or callout.
const ENVOY_REQUEST_HEADERS: &[&str] = &[
    "x-request-id",
    "x-forwarded-proto",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-internal",
    "content-length",
    "transfer-encoding",
];

/// Differences between the harness's and Envoy's observations of each step.
pub fn compare(scenario: &Scenario, harness: &[Observed], envoy: &[Observed]) -> Vec<String> {
    let expects = scenario.steps.iter().filter_map(|s| match s {
        Step::Send(_, expect) => Some(expect),
        Step::Wait(_) => None,
    });
    let mut problems = Vec::new();
    for (i, ((expect, h), e)) in expects.zip(harness).zip(envoy).enumerate() {
        let (h, e) = (normalise(expect, h), normalise(expect, e));
        if h != e {
            problems.push(format!(
                "step {i}: harness and Envoy differ\n      harness: {h:?}\n      envoy:   {e:?}"
            ));
        }
    }
    problems
}

/// An observation with everything that may legitimately differ taken out.
#[derive(Debug, PartialEq, Eq)]
pub struct Normalised {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub fn normalise(expect: &Expect, observed: &Observed) -> Normalised {
    let loose = |name: &str| expect.varies.iter().any(|n| n.eq_ignore_ascii_case(name));
    let headers = observed
        .headers
        .iter()
        .filter(|(n, _)| !ENVOY_RESPONSE_HEADERS.contains(&n.as_str()) && !loose(n))
        .map(|(n, v)| {
            let v = if n == "x-probe-callout-body" {
                normalise_body(v, false)
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect();
    let body = if loose("body") {
        String::new()
    } else {
        let lines = observed.header("x-probe-op") == Some("echo-headers");
        normalise_body(&observed.text(), lines)
    };
    Normalised {
        status: observed.status,
        headers,
        body,
    }
}

/// An echo body loses the Envoy-added request headers; a `name: value` listing (the
/// `echo-headers` op) loses the same lines.
fn normalise_body(body: &str, header_lines: bool) -> String {
    if let Ok(mut echo) = Echo::parse(body.as_bytes()) {
        echo.headers
            .retain(|(n, _)| !ENVOY_REQUEST_HEADERS.contains(&n.as_str()));
        return format!("{echo:?}");
    }
    if header_lines {
        return body
            .lines()
            .filter(|line| {
                let name = line.split(": ").next().unwrap_or_default();
                !ENVOY_REQUEST_HEADERS.contains(&name)
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_and_envoy_headers_are_dropped() {
        let expect = Expect::status(200).varies("x-probe-cas");
        let observed = Observed {
            status: 200,
            headers: vec![
                ("date".into(), "now".into()),
                ("x-probe-cas".into(), "7".into()),
                ("x-probe-value".into(), "a".into()),
            ],
            body: b"x".to_vec(),
        };
        let n = normalise(&expect, &observed);
        assert_eq!(
            n.headers,
            vec![("x-probe-value".to_string(), "a".to_string())]
        );
        assert_eq!(n.body, "x");
    }
}
