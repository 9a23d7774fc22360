//! The app's share of tracing and routing: copy these request headers onto every call
//! it makes, unchanged, so the sidecars can join the spans and route on the user (as
//! Istio asks of applications).

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// Forwarded as received: trace context (W3C, B3 single and multi, OpenTracing,
/// Cloud Trace, gRPC, SkyWalking, Datadog), Envoy's request id, and what header-based
/// routing matches on (`end-user`, `cookie`, `user-agent`).
pub const PROPAGATED: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "end-user",
    "cookie",
    "user-agent",
];

/// The subset of `incoming` to send on a call: the standard set plus `extra`
/// (lower-case names). Repeated headers keep all their values.
pub fn propagated(incoming: &HeaderMap, extra: &[String]) -> HeaderMap {
    let mut out = HeaderMap::new();
    let names = PROPAGATED
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str));
    for name in names {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if out.contains_key(&name) {
            continue;
        }
        for value in incoming.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The signed-in user, Bookinfo style: the `end-user` header wins, then `?u=NAME`,
/// then a `user=NAME` cookie. Productpage sets `end-user` from it for reviews' routing.
pub fn end_user(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get("end-user").and_then(|v| v.to_str().ok()) {
        return Some(v.to_string()).filter(|v| !v.is_empty());
    }
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "u")
            .map(|(_, v)| v.to_string())
    });
    let from_cookie = || {
        headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == "user")
            .map(|(_, v)| v.to_string())
    };
    from_query
        .or_else(from_cookie)
        .filter(|u| !u.is_empty() && HeaderValue::from_str(u).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn trace_and_routing_headers_pass_others_do_not() {
        let h = headers(&[
            ("x-request-id", "r1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("x-b3-sampled", "1"),
            ("end-user", "jason"),
            ("cookie", "a=1"),
            ("cookie", "user=jason"),
            ("authorization", "Bearer secret"),
            ("host", "productpage:9080"),
            ("x-tenant", "t1"),
        ]);
        let out = propagated(&h, &[]);
        assert_eq!(out.get("x-request-id").unwrap(), "r1");
        assert_eq!(out.get("b3").unwrap(), h.get("b3").unwrap());
        assert_eq!(out.get_all("cookie").iter().count(), 2);
        assert!(out.get("authorization").is_none());
        assert!(out.get("host").is_none());
        assert!(out.get("x-tenant").is_none());
        let out = propagated(&h, &["x-tenant".into(), "x-request-id".into()]);
        assert_eq!(out.get("x-tenant").unwrap(), "t1");
        assert_eq!(out.get_all("x-request-id").iter().count(), 1);
    }

    #[test]
    fn end_user_prefers_header_then_query_then_cookie() {
        let h = headers(&[("end-user", "jason"), ("cookie", "user=bob")]);
        assert_eq!(end_user(&h, Some("u=ann")).as_deref(), Some("jason"));
        let h = headers(&[("cookie", "x=1; user=bob")]);
        assert_eq!(end_user(&h, Some("a=b&u=ann")).as_deref(), Some("ann"));
        assert_eq!(end_user(&h, None).as_deref(), Some("bob"));
        assert_eq!(end_user(&HeaderMap::new(), Some("u=")), None);
    }
}
