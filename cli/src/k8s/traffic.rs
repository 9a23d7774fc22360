//! Traffic resources: DestinationRules (subsets, traffic policy), VirtualService
//! routes, and ServiceEntries (plus TLS-origination rules) for egress hosts.

use super::{labels, meta, Out, ISTIO_SYSTEM};
use crate::istio;
use crate::model::{HeaderEdits, MeshFile, RouteSpec, ServiceSpec};
use crate::names::service_host;
use crate::GenerateError;
use std::collections::BTreeMap;

pub(super) fn destination_rule(mesh: &MeshFile, s: &ServiceSpec) -> istio::DestinationRule {
    let tp = &s.traffic_policy;
    let policy = istio::TrafficPolicy {
        load_balancer: tp
            .load_balancer
            .as_ref()
            .map(|lb| istio::LoadBalancerSettings {
                simple: lb.simple_name().map(String::from),
                consistent_hash: lb.hash_header().map(|h| istio::ConsistentHashLb {
                    http_header_name: h.to_string(),
                }),
            }),
        connection_pool: tp
            .connection_pool
            .as_ref()
            .map(|cp| istio::ConnectionPoolSettings {
                tcp: cp.max_connections.map(|m| istio::TcpSettings {
                    max_connections: Some(m),
                }),
                http: Some(istio::HttpSettings {
                    http1_max_pending_requests: cp.max_pending_requests,
                    http2_max_requests: cp.max_requests,
                    max_retries: cp.max_retries,
                }),
            }),
        outlier_detection: tp
            .outlier_detection
            .as_ref()
            .map(|od| istio::OutlierDetection {
                consecutive5xx_errors: od.consecutive5xx_errors,
                interval: od.interval.to_string(),
                base_ejection_time: od.base_ejection_time.to_string(),
                max_ejection_percent: od.max_ejection_percent,
            }),
        tls: (mesh.mesh.mtls != crate::model::MtlsMode::Disable).then(|| {
            istio::ClientTlsSettings {
                mode: "ISTIO_MUTUAL".into(),
                ..Default::default()
            }
        }),
        port_level_settings: Vec::new(),
    };
    istio::DestinationRule {
        api_version: istio::NETWORKING.into(),
        kind: "DestinationRule".into(),
        metadata: meta(&s.name, &s.namespace, BTreeMap::new()),
        spec: istio::DestinationRuleSpec {
            host: service_host(s),
            traffic_policy: Some(policy),
            subsets: s
                .versions
                .iter()
                .map(|v| istio::Subset {
                    name: v.name.clone(),
                    labels: labels(&[("version", &v.name)]),
                })
                .collect(),
        },
    }
}

/// An external host: a ServiceEntry in the root namespace (visible mesh-wide), and for
/// TLS origination a DestinationRule that makes the sidecar speak TLS to it, checking
/// the server as the generated Envoy bootstraps do (Istio's own default since 1.20).
pub(super) fn egress(e: &crate::model::EgressSpec, out: &mut Out) -> Result<(), GenerateError> {
    let name = format!("egress-{}-{}", e.host.replace('.', "-"), e.port);
    let entry = istio::ServiceEntry {
        api_version: istio::NETWORKING.into(),
        kind: "ServiceEntry".into(),
        metadata: meta(&name, ISTIO_SYSTEM, BTreeMap::new()),
        spec: istio::ServiceEntrySpec {
            hosts: vec![e.host.clone()],
            // The app speaks plain HTTP to its sidecar on this port; with `tls` the
            // sidecar originates TLS to the same port.
            ports: vec![istio::ServiceEntryPort {
                number: e.port,
                name: format!("http-{}", e.port),
                protocol: "HTTP".into(),
            }],
            resolution: "DNS".into(),
            location: "MESH_EXTERNAL".into(),
        },
    };
    out.push(ISTIO_SYSTEM, "ServiceEntry", &name, &entry)?;
    if !e.tls {
        return Ok(());
    }
    let rule = istio::DestinationRule {
        api_version: istio::NETWORKING.into(),
        kind: "DestinationRule".into(),
        metadata: meta(&name, ISTIO_SYSTEM, BTreeMap::new()),
        spec: istio::DestinationRuleSpec {
            host: e.host.clone(),
            traffic_policy: Some(istio::TrafficPolicy {
                tls: Some(istio::ClientTlsSettings {
                    mode: "SIMPLE".into(),
                    sni: Some(e.host.clone()),
                    ca_certificates: e.ca_certificates.clone(),
                    insecure_skip_verify: e.insecure_skip_verify,
                }),
                ..Default::default()
            }),
            subsets: Vec::new(),
        },
    };
    out.push(ISTIO_SYSTEM, "DestinationRule", &name, &rule)
}

fn string_match(m: &crate::model::StringMatch) -> istio::StringMatch {
    istio::StringMatch {
        exact: m.exact.clone(),
        prefix: m.prefix.clone(),
        regex: m.regex.clone(),
    }
}

pub(super) fn http_route(
    mesh: &MeshFile,
    r: &RouteSpec,
    owner: Option<&ServiceSpec>,
    with_fault: bool,
) -> istio::HttpRoute {
    let dest = |service: &Option<String>, version: &Option<String>| {
        let s = service
            .as_ref()
            .and_then(|n| mesh.services.iter().find(|s| &s.name == n))
            .or(owner);
        istio::Destination {
            host: s.map(service_host).unwrap_or_default(),
            subset: version.clone(),
            port: s.map(|s| istio::PortSelector { number: s.port }),
        }
    };
    istio::HttpRoute {
        name: r.name.clone(),
        matches: r
            .matches
            .iter()
            .map(|m| istio::HttpMatchRequest {
                uri: m.path.as_ref().map(string_match),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect(),
                method: m.method.as_ref().map(string_match),
                query_params: m
                    .query_params
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect(),
            })
            .collect(),
        route: r
            .route
            .iter()
            .map(|d| istio::HttpRouteDestination {
                destination: dest(&d.service, &d.version),
                weight: d.weight,
            })
            .collect(),
        timeout: r.timeout.map(|t| t.to_string()),
        retries: r.retries.as_ref().map(|x| istio::HttpRetry {
            attempts: x.attempts,
            per_try_timeout: x.per_try_timeout.map(|t| t.to_string()),
            retry_on: x.retry_on.clone(),
        }),
        mirror: r.mirror.as_ref().map(|m| dest(&m.service, &m.version)),
        mirror_percentage: r.mirror.as_ref().map(|m| istio::Percent {
            value: m.percentage,
        }),
        fault: r
            .fault
            .as_ref()
            .filter(|_| with_fault)
            .map(|f| istio::HttpFaultInjection {
                delay: f.delay.as_ref().map(|d| istio::FaultDelay {
                    fixed_delay: d.fixed_delay.to_string(),
                    percentage: istio::Percent {
                        value: d.percentage,
                    },
                }),
                abort: f.abort.as_ref().map(|a| istio::FaultAbort {
                    http_status: a.http_status,
                    percentage: istio::Percent {
                        value: a.percentage,
                    },
                }),
            }),
        redirect: r.redirect.as_ref().map(|x| istio::HttpRedirect {
            uri: x.uri.clone(),
            authority: x.authority.clone(),
            redirect_code: Some(x.redirect_code),
        }),
        direct_response: r
            .direct_response
            .as_ref()
            .map(|x| istio::HttpDirectResponse {
                status: x.status,
                body: x.body.clone().map(|string| istio::HttpBody { string }),
            }),
        rewrite: r.rewrite.as_ref().map(|w| istio::HttpRewrite {
            uri: w.uri.clone(),
            authority: w.authority.clone(),
        }),
        headers: r.headers.as_ref().map(|h| {
            let ops = |e: &HeaderEdits| {
                (!e.is_empty()).then(|| istio::HeaderOperations {
                    set: e.set.clone(),
                    add: e.add.clone(),
                    remove: e.remove.clone(),
                })
            };
            istio::Headers {
                request: ops(&h.request),
                response: ops(&h.response),
            }
        }),
        cors_policy: r.cors_policy.as_ref().map(|c| istio::CorsPolicy {
            allow_origins: c.allow_origins.iter().map(string_match).collect(),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age: c.max_age.map(|d| d.to_string()),
            allow_credentials: c.allow_credentials,
            unmatched_preflights: c.unmatched_preflights,
        }),
    }
}
