//! DestinationRules (subsets, traffic policy) and VirtualServices (HTTP routes) into
//! each service's `trafficPolicy` and `routes`, or the gateway's routes.

use super::documents::Doc;
use super::Reader;
use crate::duration::Duration;
use crate::istio;
use crate::model::{
    Abort, ConnectionPool, ConsistentHash, CorsPolicy, Delay, Destination, DirectResponseSpec,
    Fault, HashedLb, HeaderEdits, HeaderOperations, LoadBalancer, MatchSpec, Mirror, MtlsMode,
    OutlierDetection, Redirect, Retries, Rewrite, RouteSpec, SimpleLb, StringMatch, TrafficPolicy,
};

impl Reader {
    /// A DestinationRule of a service: its subsets (versions) and traffic policy.
    /// Rules for ServiceEntry hosts are read by `egress`.
    pub(super) fn destination_rule(&mut self, d: &Doc, dr: &istio::DestinationRule) {
        let Some(i) = self.service_of_host(&dr.spec.host, &d.namespace) else {
            self.findings.error(
                d,
                "spec.host",
                format!(
                    "{}: no Service of the mesh and no ServiceEntry has this host",
                    dr.spec.host
                ),
            );
            return;
        };
        if let Some(first) = self.rule_of.insert(i, d.label()) {
            self.findings.error(
                d,
                "spec.host",
                format!(
                    "{} already has {first}: one DestinationRule per host",
                    dr.spec.host
                ),
            );
            return;
        }
        for (k, subset) in dr.spec.subsets.iter().enumerate() {
            let field = format!("spec.subsets[{k}].labels");
            let Some(version) = subset.labels.get("version") else {
                self.findings.unsupported(
                    d,
                    &field,
                    "a subset selects pods by their `version` label in the mesh model",
                );
                continue;
            };
            if subset.labels.len() > 1 {
                self.findings.unsupported(
                    d,
                    &field,
                    "a subset selects pods by their `version` label only",
                );
            }
            if self.mesh.services[i].version(version).is_none() {
                // Istio accepts a subset no pod carries (it is empty until one does);
                // a route to it is refused below.
                self.empty_subsets.insert((i, subset.name.clone()));
                continue;
            }
            self.subsets
                .entry(i)
                .or_default()
                .insert(subset.name.clone(), version.clone());
        }
        if let Some(tp) = &dr.spec.traffic_policy {
            let merged = self.port_level_merged(d, tp, self.mesh.services[i].port);
            let policy = self.traffic_policy(d, &merged);
            self.mesh.services[i].traffic_policy = policy;
        }
    }

    /// `tp` with its `portLevelSettings` entry for `port` laid over it (Istio: the
    /// port's settings win); the service has that one port, so nothing else applies.
    fn port_level_merged(
        &mut self,
        d: &Doc,
        tp: &istio::TrafficPolicy,
        port: u16,
    ) -> istio::TrafficPolicy {
        let mut merged = tp.clone();
        merged.port_level_settings = Vec::new();
        for (k, p) in tp.port_level_settings.iter().enumerate() {
            if p.port.number != port {
                self.findings.error(
                    d,
                    &format!("spec.trafficPolicy.portLevelSettings[{k}].port.number"),
                    format!("{}: the service has one port, {port}", p.port.number),
                );
                continue;
            }
            if p.load_balancer.is_some() {
                merged.load_balancer = p.load_balancer.clone();
            }
            if p.connection_pool.is_some() {
                merged.connection_pool = p.connection_pool.clone();
            }
            if p.outlier_detection.is_some() {
                merged.outlier_detection = p.outlier_detection.clone();
            }
            if p.tls.is_some() {
                merged.tls = p.tls.clone();
            }
        }
        merged
    }

    fn traffic_policy(&mut self, d: &Doc, tp: &istio::TrafficPolicy) -> TrafficPolicy {
        let load_balancer = tp
            .load_balancer
            .as_ref()
            .and_then(|lb| match lb.simple.as_deref() {
                Some("ROUND_ROBIN") => Some(LoadBalancer::Simple(SimpleLb::RoundRobin)),
                Some("LEAST_REQUEST" | "LEAST_CONN") => {
                    Some(LoadBalancer::Simple(SimpleLb::LeastRequest))
                }
                Some("RANDOM") => Some(LoadBalancer::Simple(SimpleLb::Random)),
                None => lb.consistent_hash.as_ref().map(|h| {
                    LoadBalancer::Hashed(HashedLb {
                        consistent_hash: ConsistentHash {
                            http_header_name: h.http_header_name.clone(),
                        },
                    })
                }),
                Some(other) => {
                    self.findings.unsupported(
                        d,
                        "spec.trafficPolicy.loadBalancer.simple",
                        format!("{other}: ROUND_ROBIN, LEAST_REQUEST or RANDOM"),
                    );
                    None
                }
            });
        let connection_pool = tp.connection_pool.as_ref().map(|cp| {
            let http = cp.http.clone().unwrap_or_default();
            ConnectionPool {
                max_connections: cp.tcp.as_ref().and_then(|t| t.max_connections),
                max_pending_requests: http.http1_max_pending_requests,
                max_requests: http.http2_max_requests,
                max_retries: http.max_retries,
            }
        });
        let outlier_detection = tp.outlier_detection.as_ref().map(|od| OutlierDetection {
            consecutive5xx_errors: od.consecutive5xx_errors,
            interval: self.duration(
                d,
                "spec.trafficPolicy.outlierDetection.interval",
                &od.interval,
            ),
            base_ejection_time: self.duration(
                d,
                "spec.trafficPolicy.outlierDetection.baseEjectionTime",
                &od.base_ejection_time,
            ),
            max_ejection_percent: od.max_ejection_percent,
        });
        if let Some(tls) = &tp.tls {
            self.pending_tls.push((d.clone(), tls.clone()));
        }
        TrafficPolicy {
            load_balancer,
            connection_pool,
            outlier_detection,
        }
    }

    /// A DestinationRule's `tls` for a service, checked once the mesh's mTLS mode is
    /// known: ISTIO_MUTUAL is what the mesh does anyway; DISABLE only in a mesh
    /// without mTLS.
    pub(super) fn check_service_tls(&mut self) {
        for (d, tls) in std::mem::take(&mut self.pending_tls) {
            let field = "spec.trafficPolicy.tls.mode";
            match (tls.mode.as_str(), self.mesh.mesh.mtls) {
                ("ISTIO_MUTUAL", MtlsMode::Strict | MtlsMode::Permissive) => {}
                ("DISABLE", MtlsMode::Disable) => {}
                (mode, mtls) => self.findings.unsupported(
                    &d,
                    field,
                    format!("{mode} beside a mesh-wide mTLS mode of {mtls:?}: inside the mesh, sidecars speak ISTIO_MUTUAL unless PeerAuthentication disables mTLS for the whole mesh"),
                ),
            }
        }
    }

    pub(super) fn duration(&mut self, d: &Doc, field: &str, text: &str) -> Duration {
        Duration::parse(text).unwrap_or_else(|e| {
            self.findings.error(d, field, e);
            Duration::from_millis(0)
        })
    }

    /// A VirtualService: its routes go to the service of its one host, or (bound to a
    /// Gateway) to the gateway.
    pub(super) fn virtual_service(&mut self, d: &Doc, vs: &istio::VirtualService) {
        let gateways: Vec<&String> = vs.spec.gateways.iter().filter(|g| *g != "mesh").collect();
        if !gateways.is_empty() {
            if gateways.len() != vs.spec.gateways.len() {
                self.findings.unsupported(d, "spec.gateways", "a VirtualService serves either the mesh or the gateway in the mesh model, not both");
            }
            let routes = self.routes(d, vs, None);
            self.gateway_routes.push((
                d.clone(),
                gateways.iter().map(|g| g.to_string()).collect(),
                routes,
            ));
            return;
        }
        if vs.spec.hosts.len() != 1 {
            self.findings.unsupported(
                d,
                "spec.hosts",
                "one host per VirtualService: the mesh model keeps routes per service",
            );
        }
        let Some(host) = vs.spec.hosts.first() else {
            self.findings
                .error(d, "spec.hosts", "a VirtualService needs a host");
            return;
        };
        let Some(i) = self.service_of_host(host, &d.namespace) else {
            self.findings.error(
                d,
                "spec.hosts[0]",
                format!("{host}: no Service of the mesh has this host"),
            );
            return;
        };
        if let Some(first) = self.routes_of.insert(i, d.label()) {
            self.findings.error(
                d,
                "spec.hosts[0]",
                format!("{host} already has routes from {first}: two VirtualServices for one host conflict (Istio would pick one silently)"),
            );
            return;
        }
        let routes = self.routes(d, vs, Some(i));
        self.mesh.services[i].routes = routes;
    }

    fn routes(
        &mut self,
        d: &Doc,
        vs: &istio::VirtualService,
        owner: Option<usize>,
    ) -> Vec<RouteSpec> {
        let mut out = Vec::new();
        for (j, r) in vs.spec.http.iter().enumerate() {
            let at = format!("spec.http[{j}]");
            if r.route.is_empty() && r.redirect.is_none() && r.direct_response.is_none() {
                self.findings.error(
                    d,
                    &format!("{at}.route"),
                    "a route needs at least one destination (or a redirect or direct response)",
                );
                continue;
            }
            let mut route = Vec::new();
            for (k, dest) in r.route.iter().enumerate() {
                let (service, version) = self.destination(
                    d,
                    &format!("{at}.route[{k}].destination"),
                    &dest.destination,
                    owner,
                );
                route.push(Destination {
                    service,
                    version,
                    weight: dest.weight,
                });
            }
            let mirror = r.mirror.as_ref().map(|m| {
                let (service, version) = self.destination(d, &format!("{at}.mirror"), m, owner);
                Mirror {
                    service,
                    version,
                    percentage: r.mirror_percentage.as_ref().map_or(100.0, |p| p.value),
                }
            });
            if r.mirror.is_none() && r.mirror_percentage.is_some() {
                self.findings
                    .error(d, &format!("{at}.mirrorPercentage"), "without a `mirror`");
            }
            let timeout = r
                .timeout
                .as_ref()
                .map(|t| self.duration(d, &format!("{at}.timeout"), t));
            let retries = r.retries.as_ref().map(|x| Retries {
                attempts: x.attempts,
                per_try_timeout: x
                    .per_try_timeout
                    .as_ref()
                    .map(|t| self.duration(d, &format!("{at}.retries.perTryTimeout"), t)),
                retry_on: x.retry_on.clone(),
            });
            let fault = r.fault.as_ref().map(|f| Fault {
                abort: f.abort.as_ref().map(|a| Abort {
                    http_status: a.http_status,
                    percentage: a.percentage.value,
                }),
                delay: f.delay.as_ref().map(|x| Delay {
                    fixed_delay: self.duration(
                        d,
                        &format!("{at}.fault.delay.fixedDelay"),
                        &x.fixed_delay,
                    ),
                    percentage: x.percentage.value,
                }),
            });
            out.push(RouteSpec {
                name: r.name.clone(),
                matches: r.matches.iter().map(match_spec).collect(),
                route,
                retries,
                timeout,
                mirror,
                fault,
                direct_response: r.direct_response.as_ref().map(|x| DirectResponseSpec {
                    status: x.status,
                    body: x.body.as_ref().map(|b| b.string.clone()),
                }),
                cors_policy: r.cors_policy.as_ref().map(|c| CorsPolicy {
                    allow_origins: c.allow_origins.iter().map(string_match).collect(),
                    allow_methods: c.allow_methods.clone(),
                    allow_headers: c.allow_headers.clone(),
                    expose_headers: c.expose_headers.clone(),
                    max_age: c
                        .max_age
                        .as_ref()
                        .map(|t| self.duration(d, &format!("{at}.corsPolicy.maxAge"), t)),
                    allow_credentials: c.allow_credentials,
                    unmatched_preflights: c.unmatched_preflights,
                }),
                redirect: r.redirect.as_ref().map(|x| Redirect {
                    uri: x.uri.clone(),
                    authority: x.authority.clone(),
                    redirect_code: x.redirect_code.unwrap_or(301),
                }),
                rewrite: r.rewrite.as_ref().map(|w| Rewrite {
                    uri: w.uri.clone(),
                    authority: w.authority.clone(),
                }),
                headers: r.headers.as_ref().map(|h| HeaderOperations {
                    request: edits(h.request.as_ref()),
                    response: edits(h.response.as_ref()),
                }),
            });
        }
        out
    }

    /// A destination as (service, version): the service is left out when it is the
    /// route's own (`owner`), the subset becomes the version it selects.
    fn destination(
        &mut self,
        d: &Doc,
        field: &str,
        dest: &istio::Destination,
        owner: Option<usize>,
    ) -> (Option<String>, Option<String>) {
        let Some(i) = self.service_of_host(&dest.host, &d.namespace) else {
            self.findings.error(
                d,
                &format!("{field}.host"),
                format!("{}: no Service of the mesh has this host", dest.host),
            );
            return (None, None);
        };
        let s = &self.mesh.services[i];
        if let Some(p) = &dest.port {
            if p.number != s.port {
                self.findings.error(
                    d,
                    &format!("{field}.port.number"),
                    format!("{}: {} listens on {}", p.number, s.name, s.port),
                );
            }
        }
        let service = (owner != Some(i)).then(|| s.name.clone());
        let version = dest.subset.as_ref().and_then(|subset| {
            let v = self.subsets.get(&i).and_then(|m| m.get(subset)).cloned();
            if v.is_none() && self.empty_subsets.contains(&(i, subset.clone())) {
                self.findings.error(d, &format!("{field}.subset"), format!("{subset}: no Deployment of {} carries this subset's version label: the route would have no endpoints", dest.host));
            } else if v.is_none() {
                self.findings.error(d, &format!("{field}.subset"), format!("{subset}: no DestinationRule of {} defines this subset", dest.host));
            }
            v
        });
        (service, version)
    }
}

fn string_match(m: &istio::StringMatch) -> StringMatch {
    StringMatch {
        exact: m.exact.clone(),
        prefix: m.prefix.clone(),
        regex: m.regex.clone(),
    }
}

fn edits(ops: Option<&istio::HeaderOperations>) -> HeaderEdits {
    ops.map(|o| HeaderEdits {
        set: o.set.clone(),
        add: o.add.clone(),
        remove: o.remove.clone(),
    })
    .unwrap_or_default()
}

fn match_spec(m: &istio::HttpMatchRequest) -> MatchSpec {
    MatchSpec {
        query_params: m
            .query_params
            .iter()
            .map(|(k, v)| (k.clone(), string_match(v)))
            .collect(),
        path: m.uri.as_ref().map(string_match),
        headers: m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), string_match(v)))
            .collect(),
        method: m.method.as_ref().map(string_match),
    }
}
