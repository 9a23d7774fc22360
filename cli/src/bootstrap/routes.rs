//! Routes: a service's VirtualService routes as Envoy routes (matches, weighted
//! destinations, retries, timeouts, mirrors), and the gateway's.

use super::Builder;
use crate::envoy::*;
use crate::model::{Destination, MatchSpec, Matcher, Retries, RouteSpec, ServiceSpec};
use crate::names;
use serde_json::json;

/// Istio's default retry conditions.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

impl Builder<'_> {
    /// The routes of calls to `s`: its VirtualService routes, then the default route.
    pub(super) fn service_routes(&self, s: &ServiceSpec) -> Vec<Route> {
        let mut routes: Vec<Route> = s
            .routes
            .iter()
            .enumerate()
            .flat_map(|(j, r)| {
                let name = r.name.clone().unwrap_or_else(|| j.to_string());
                self.routes_for(&format!("{}.{name}", s.name), r, Some(s))
            })
            .collect();
        routes.push(Route {
            name: format!("{}.default", s.name),
            matcher: prefix("/"),
            route: Some(RouteAction {
                cluster: Some(names::outbound_cluster(s, None)),
                timeout: Some("0s".into()),
                retry_policy: retry_policy(None),
                hash_policy: hash_policy(s),
                ..Default::default()
            }),
            direct_response: None,
            ..Default::default()
        });
        routes
    }

    /// One Envoy route per match of `r` (none: one route for every request).
    pub(super) fn routes_for(
        &self,
        name: &str,
        r: &RouteSpec,
        owner: Option<&ServiceSpec>,
    ) -> Vec<Route> {
        let action = RouteAction {
            cluster: None,
            weighted_clusters: None,
            prefix_rewrite: r.rewrite.as_ref().and_then(|w| w.uri.clone()),
            host_rewrite_literal: r.rewrite.as_ref().and_then(|w| w.authority.clone()),
            timeout: Some(r.timeout.map_or_else(|| "0s".to_string(), |t| t.envoy())),
            retry_policy: retry_policy(r.retries.as_ref()),
            request_mirror_policies: r
                .mirror
                .iter()
                .filter_map(|m| {
                    let d = Destination {
                        service: m.service.clone(),
                        version: m.version.clone(),
                        weight: None,
                    };
                    Some(RequestMirrorPolicy {
                        cluster: self.destination_cluster(&d, owner)?,
                        runtime_fraction: RuntimeFractionalPercent {
                            default_value: FractionalPercent {
                                numerator: percent_to_million(m.percentage),
                                denominator: "MILLION",
                            },
                        },
                    })
                })
                .collect(),
            // The first destination service hashing on a header says which (Istio
            // takes the destination's DestinationRule).
            hash_policy: r
                .route
                .iter()
                .filter_map(|d| self.destination_service(d, owner))
                .map(hash_policy)
                .find(|p| !p.is_empty())
                .unwrap_or_default(),
        };
        let action = match r.route.as_slice() {
            [single] => RouteAction {
                cluster: self.destination_cluster(single, owner),
                ..action
            },
            many => RouteAction {
                weighted_clusters: Some(WeightedClusters {
                    clusters: many
                        .iter()
                        .filter_map(|d| {
                            Some(ClusterWeight {
                                name: self.destination_cluster(d, owner)?,
                                weight: d.weight.unwrap_or(0),
                            })
                        })
                        .collect(),
                }),
                ..action
            },
        };
        let redirect = r.redirect.as_ref().map(|x| RedirectAction {
            host_redirect: x.authority.clone(),
            path_redirect: x.uri.clone(),
            response_code: redirect_code(x.redirect_code),
        });
        let direct = r.direct_response.as_ref().map(|x| DirectResponse {
            status: x.status,
            body: x
                .body
                .clone()
                .map(|inline_string| InlineString { inline_string }),
        });
        let edits = r.headers.clone().unwrap_or_default();
        r.effective_matches()
            .iter()
            .zip(names::route_names(name, r))
            .map(|(m, name)| Route {
                name,
                matcher: route_match(m),
                route: (redirect.is_none() && direct.is_none()).then(|| action.clone()),
                direct_response: direct.clone(),
                redirect: redirect.clone(),
                request_headers_to_add: header_options(&edits.request),
                request_headers_to_remove: edits.request.remove.clone(),
                response_headers_to_add: header_options(&edits.response),
                response_headers_to_remove: edits.response.remove.clone(),
            })
            .collect()
    }

    fn destination_cluster(&self, d: &Destination, owner: Option<&ServiceSpec>) -> Option<String> {
        let s = self.destination_service(d, owner)?;
        Some(names::outbound_cluster(s, d.version.as_deref()))
    }

    fn destination_service<'s>(
        &'s self,
        d: &Destination,
        owner: Option<&'s ServiceSpec>,
    ) -> Option<&'s ServiceSpec> {
        match &d.service {
            Some(name) => self.mesh.services.iter().find(|s| &s.name == name),
            None => owner,
        }
    }
}

/// The request header a consistent-hash `s` hashes on, as Envoy's route hash policy.
fn hash_policy(s: &ServiceSpec) -> Vec<HashPolicy> {
    s.traffic_policy
        .load_balancer
        .as_ref()
        .and_then(|lb| lb.hash_header())
        .map(|h| HashPolicy {
            header: HashHeader {
                header_name: h.to_string(),
            },
        })
        .into_iter()
        .collect()
}

/// Envoy's name of a redirect status (`wasmesh validate` refuses any other code).
pub(crate) fn redirect_code(code: u16) -> &'static str {
    match code {
        302 => "FOUND",
        303 => "SEE_OTHER",
        307 => "TEMPORARY_REDIRECT",
        308 => "PERMANENT_REDIRECT",
        _ => "MOVED_PERMANENTLY",
    }
}

/// Istio's `set` (overwrite) then `add` (append) as Envoy header options.
fn header_options(e: &crate::model::HeaderEdits) -> Vec<HeaderValueOption> {
    let one = |(key, value): (&String, &String), append_action| HeaderValueOption {
        header: HeaderValue {
            key: key.clone(),
            value: value.clone(),
        },
        append_action,
    };
    e.set
        .iter()
        .map(|kv| one(kv, "OVERWRITE_IF_EXISTS_OR_ADD"))
        .chain(e.add.iter().map(|kv| one(kv, "APPEND_IF_EXISTS_OR_ADD")))
        .collect()
}

/// Envoy's fraction of a million for a percentage (clamped, rounded).
fn percent_to_million(p: f64) -> u32 {
    let v = (p.clamp(0.0, 100.0) * 10_000.0).round();
    // 0..=1_000_000 after the clamp.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = v as u32;
    v
}

fn retry_policy(r: Option<&Retries>) -> Option<RetryPolicy> {
    let (attempts, per_try, on) = match r {
        Some(r) => (r.attempts, r.per_try_timeout, r.retry_on.as_deref()),
        None => (2, None, None),
    };
    if attempts == 0 {
        return None;
    }
    let retry_on = on.unwrap_or(DEFAULT_RETRY_ON).to_string();
    Some(RetryPolicy {
        retriable_status_codes: if retry_on.contains("retriable-status-codes") {
            vec![503]
        } else {
            vec![]
        },
        retry_on,
        num_retries: attempts,
        per_try_timeout: per_try.map(|d| d.envoy()),
        retry_host_predicate: vec![NamedExtension {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            typed_config: json!({
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            }),
        }],
        host_selection_retry_max_attempts: 5,
    })
}

pub(super) fn prefix(p: &str) -> RouteMatch {
    RouteMatch {
        prefix: Some(p.into()),
        ..Default::default()
    }
}

fn string_matcher(m: Option<Matcher<'_>>) -> StringMatcher {
    match m {
        Some(Matcher::Exact(e)) => StringMatcher {
            exact: Some(e.into()),
            ..Default::default()
        },
        Some(Matcher::Prefix(p)) => StringMatcher {
            prefix: Some(p.into()),
            ..Default::default()
        },
        Some(Matcher::Regex(r)) => StringMatcher {
            safe_regex: Some(RegexMatcher { regex: r.into() }),
            ..Default::default()
        },
        None => StringMatcher::default(),
    }
}

fn route_match(m: &MatchSpec) -> RouteMatch {
    let mut rm = match m.path.as_ref().and_then(|p| p.single()) {
        Some(Matcher::Exact(p)) => RouteMatch {
            path: Some(p.into()),
            ..Default::default()
        },
        Some(Matcher::Prefix(p)) => prefix(p),
        Some(Matcher::Regex(r)) => RouteMatch {
            safe_regex: Some(RegexMatcher { regex: r.into() }),
            ..Default::default()
        },
        None => prefix("/"),
    };
    for (name, h) in &m.headers {
        rm.headers.push(HeaderMatcher {
            name: name.clone(),
            string_match: string_matcher(h.single()),
        });
    }
    if let Some(method) = &m.method {
        rm.headers.push(HeaderMatcher {
            name: ":method".into(),
            string_match: string_matcher(method.single()),
        });
    }
    for (name, q) in &m.query_params {
        rm.query_parameters.push(QueryParameterMatcher {
            name: name.clone(),
            string_match: string_matcher(q.single()),
        });
    }
    rm
}
