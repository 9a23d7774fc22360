//! One Envoy bootstrap per instance (sidecar or gateway), in Istio's layout.
//!
//! A sidecar has five listeners: inbound (15006, mTLS per the mesh mode, to the app),
//! outbound (15001 on loopback, routed by `Host` to `outbound|PORT|SUBSET|HOST` clusters),
//! health (15021 `/healthz/ready`, answered by admin's `/ready`), Prometheus (15090
//! `/stats/prometheus` only) and admin on loopback. The gateway has its client-facing
//! listener instead of inbound/outbound. Wasm filters go in Istio's phase order; route
//! faults become rules of each caller's outbound fault filter (stock Envoy refuses
//! per-route config for Wasm filters), so, as in Istio, they run before the caller's
//! router and its retries never see an injected abort.

use crate::envoy::*;
use crate::model::{
    Destination, FilterName, FilterSpec, MatchSpec, Matcher, MeshFile, MtlsMode, Protocol,
    RouteSpec, ServiceSpec, TracingProvider as Provider,
};
use crate::topology::{self, Instance, InstanceKind, Target};
use crate::GenerateOptions;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Istio's default retry conditions.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// The SDS secret names, as Istio names them.
pub const SECRET_CERT: &str = "default";
pub const SECRET_CA: &str = "ROOTCA";
pub const SECRET_GATEWAY: &str = "gateway-tls";
/// SDS files inside an instance's certificate directory.
pub const SDS_CERT_FILE: &str = "cert.sds.yaml";
pub const SDS_CA_FILE: &str = "ca.sds.yaml";
pub const SDS_GATEWAY_FILE: &str = "gateway.sds.yaml";

const HCM: &str = "envoy.filters.network.http_connection_manager";
const AGENT: &str = "agent";

/// The bootstrap of `inst`.
pub fn bootstrap(
    mesh: &MeshFile,
    inst: &Instance<'_>,
    all: &[Instance<'_>],
    opts: &GenerateOptions,
) -> Bootstrap {
    let b = Builder {
        mesh,
        inst,
        all,
        opts,
    };
    b.build()
}

/// The FQDN Istio gives a service.
pub fn service_host(s: &ServiceSpec) -> String {
    format!("{}.{}.svc.cluster.local", s.name, s.namespace)
}

/// `outbound|PORT|SUBSET|HOST`.
pub fn outbound_cluster(s: &ServiceSpec, subset: Option<&str>) -> String {
    format!(
        "outbound|{}|{}|{}",
        s.port,
        subset.unwrap_or(""),
        service_host(s)
    )
}

/// The directory of an instance's SDS files, as Envoy sees it.
pub fn sds_dir(opts: &GenerateOptions, instance: &str) -> String {
    match opts.target {
        // Each instance sees only its own keys: compose mounts its directory alone.
        Target::Compose => opts.certs_dir.clone(),
        Target::Process { .. } => format!("{}/{}", opts.certs_dir, instance),
    }
}

struct Builder<'a> {
    mesh: &'a MeshFile,
    inst: &'a Instance<'a>,
    all: &'a [Instance<'a>],
    opts: &'a GenerateOptions,
}

impl Builder<'_> {
    fn build(&self) -> Bootstrap {
        let p = self.inst.ports;
        let mut listeners = Vec::new();
        let mut clusters = Vec::new();
        match self.inst.kind {
            InstanceKind::Sidecar { service, .. } => {
                listeners.push(self.inbound_listener(service));
                listeners.push(self.outbound_listener(service));
                clusters.push(static_cluster(
                    &format!("inbound|{}||", service.app_port()),
                    "127.0.0.1",
                    p.app,
                    service.protocol,
                ));
                for callee in self.callees(service) {
                    clusters.extend(self.service_clusters(callee));
                }
                for e in &self.mesh.egress {
                    clusters.push(egress_cluster(e));
                }
            }
            InstanceKind::Gateway => {
                listeners.push(self.gateway_listener());
                for callee in self.gateway_callees() {
                    clusters.extend(self.service_clusters(callee));
                }
            }
        }
        listeners.push(admin_proxy_listener(
            "health",
            self.inst.bind,
            p.health,
            "/healthz/ready",
            Some("/ready"),
        ));
        listeners.push(admin_proxy_listener(
            "prometheus",
            self.inst.bind,
            p.prometheus,
            "/stats/prometheus",
            None,
        ));
        clusters.push(static_cluster(AGENT, "127.0.0.1", p.admin, Protocol::Http));
        if let Some(t) = &self.mesh.mesh.tracing {
            clusters.push(tracing_cluster(t.provider, &t.address));
        }
        Bootstrap {
            node: self.node(),
            admin: Admin {
                address: Address::new("127.0.0.1", p.admin),
            },
            static_resources: StaticResources {
                listeners,
                clusters,
            },
            stats_config: self.stats_config(),
            stats_flush_interval: crate::stats::FLUSH_INTERVAL.into(),
        }
    }

    /// Every filter this Envoy runs, with the config Envoy gets.
    fn filter_configs(&self) -> Vec<(FilterName, Value)> {
        let specs: Vec<FilterSpec> = match self.inst.kind {
            InstanceKind::Sidecar { service, .. } => {
                let mut v = service.filters.inbound.clone();
                v.extend(outbound_filters(self.mesh, service));
                v
            }
            InstanceKind::Gateway => self
                .mesh
                .gateway
                .as_ref()
                .map(|g| g.filters.clone())
                .unwrap_or_default(),
        };
        specs
            .iter()
            .map(|f| (f.name, generated_config(self.mesh, f, || self.workload())))
            .collect()
    }

    fn stats_config(&self) -> StatsConfig {
        let configs = self.filter_configs();
        crate::stats::stats_config(configs.iter().map(|(n, c)| (*n, c)))
    }

    fn node(&self) -> Node {
        let td = &self.mesh.mesh.trust_domain;
        let mut md: BTreeMap<String, Value> = BTreeMap::new();
        md.insert("MESH_ID".into(), json!(self.mesh.mesh.name));
        md.insert("NAME".into(), json!(self.inst.name));
        md.insert("TRUST_DOMAIN".into(), json!(td));
        let (id, cluster) = match self.inst.kind {
            InstanceKind::Sidecar {
                service, version, ..
            } => {
                let mut labels: BTreeMap<String, String> = version.labels.clone();
                labels.insert("app".into(), service.name.clone());
                labels.insert("version".into(), version.name.clone());
                labels.insert(
                    "service.istio.io/canonical-name".into(),
                    service.name.clone(),
                );
                labels.insert(
                    "service.istio.io/canonical-revision".into(),
                    version.name.clone(),
                );
                md.insert("LABELS".into(), json!(labels));
                md.insert("NAMESPACE".into(), json!(service.namespace));
                md.insert("SERVICE_ACCOUNT".into(), json!(service.service_account()));
                md.insert(
                    "WORKLOAD_NAME".into(),
                    json!(format!("{}-{}", service.name, version.name)),
                );
                md.insert(
                    "SPIFFE_ID".into(),
                    json!(topology::spiffe_id(
                        td,
                        &service.namespace,
                        service.service_account()
                    )),
                );
                (
                    format!(
                        "sidecar~{}~{}.{}~{}.svc.cluster.local",
                        self.inst.host, self.inst.name, service.namespace, service.namespace
                    ),
                    format!("{}.{}", service.name, service.namespace),
                )
            }
            InstanceKind::Gateway => {
                let ns = self.gateway_namespace();
                let sa = topology::gateway_service_account(&self.inst.name);
                md.insert("NAMESPACE".into(), json!(ns));
                md.insert("SERVICE_ACCOUNT".into(), json!(sa));
                md.insert("WORKLOAD_NAME".into(), json!(self.inst.name));
                md.insert(
                    "LABELS".into(),
                    json!({ "app": self.inst.name, "istio": "ingressgateway" }),
                );
                md.insert("SPIFFE_ID".into(), json!(topology::spiffe_id(td, ns, &sa)));
                (
                    format!(
                        "router~{}~{}.{}~{}.svc.cluster.local",
                        self.inst.host, self.inst.name, ns, ns
                    ),
                    format!("{}.{}", self.inst.name, ns),
                )
            }
        };
        Node {
            id,
            cluster,
            metadata: md,
        }
    }

    fn gateway_namespace(&self) -> &str {
        self.mesh
            .gateway
            .as_ref()
            .map_or("default", |g| g.namespace.as_str())
    }

    fn callees(&self, s: &ServiceSpec) -> Vec<&ServiceSpec> {
        callees(self.mesh, s)
    }

    fn gateway_callees(&self) -> Vec<&ServiceSpec> {
        let Some(g) = &self.mesh.gateway else {
            return Vec::new();
        };
        self.mesh
            .services
            .iter()
            .filter(|s| {
                g.routes.iter().any(|r| {
                    r.route
                        .iter()
                        .any(|d| d.service.as_deref() == Some(s.name.as_str()))
                        || r.mirror
                            .as_ref()
                            .is_some_and(|m| m.service.as_deref() == Some(s.name.as_str()))
                })
            })
            .collect()
    }

    fn inbound_listener(&self, s: &ServiceSpec) -> Listener {
        let cluster = format!("inbound|{}||", s.app_port());
        let route = Route {
            name: "default".into(),
            matcher: RouteMatch {
                prefix: Some("/".into()),
                ..Default::default()
            },
            route: Some(RouteAction {
                cluster: Some(cluster.clone()),
                timeout: Some("0s".into()),
                ..Default::default()
            }),
            direct_response: None,
        };
        let filters = &s.filters.inbound;
        let hcm = |plain: bool| HttpConnectionManager {
            stat_prefix: format!("inbound_0.0.0.0_{}", s.port),
            codec_type: "AUTO",
            route_config: RouteConfiguration {
                name: cluster.clone(),
                virtual_hosts: vec![VirtualHost {
                    name: format!("inbound|http|{}", s.port),
                    domains: vec!["*".into()],
                    routes: vec![route.clone()],
                }],
            },
            // Each chain knows whether its connections are mTLS, so telemetry need not
            // ask per request.
            http_filters: self
                .http_filters(filters, Some(if plain { "DISABLE" } else { "STRICT" })),
            tracing: self.tracing(),
            normalize_path: true,
            merge_slashes: true,
            // Tell the app who called it (the peer's SPIFFE ID), never what the
            // client claimed.
            forward_client_cert_details: Some("SANITIZE_SET"),
            set_current_client_cert_details: (!plain).then_some(ClientCertDetails { uri: true }),
        };
        let tls = || self.downstream_mtls();
        let (listener_filters, filter_chains) = match self.mesh.mesh.mtls {
            MtlsMode::Strict => (
                vec![],
                vec![chain("inbound-mtls", None, hcm(false), Some(tls()))],
            ),
            MtlsMode::Permissive => (
                vec![tls_inspector()],
                vec![
                    chain("inbound-mtls", Some("tls"), hcm(false), Some(tls())),
                    chain("inbound-plaintext", None, hcm(true), None),
                ],
            ),
            MtlsMode::Disable => (
                vec![],
                vec![chain("inbound-plaintext", None, hcm(true), None)],
            ),
        };
        Listener {
            name: "virtualInbound".into(),
            address: Address::new(self.inst.bind, self.inst.ports.inbound),
            traffic_direction: Some("INBOUND"),
            listener_filters,
            filter_chains,
        }
    }

    fn outbound_listener(&self, s: &ServiceSpec) -> Listener {
        let mut vhosts: Vec<VirtualHost> = self
            .callees(s)
            .into_iter()
            .map(|callee| VirtualHost {
                name: format!("{}:{}", service_host(callee), callee.port),
                domains: service_domains(callee),
                routes: self.service_routes(callee),
            })
            .collect();
        for e in &self.mesh.egress {
            let mut domains = vec![format!("{}:{}", e.host, e.port)];
            if (e.port == 80 && !e.tls) || (e.port == 443 && e.tls) {
                domains.push(e.host.clone());
            }
            vhosts.push(VirtualHost {
                name: format!("{}:{}", e.host, e.port),
                domains,
                routes: vec![Route {
                    name: "default".into(),
                    matcher: prefix("/"),
                    route: Some(RouteAction {
                        cluster: Some(format!("outbound|{}||{}", e.port, e.host)),
                        ..Default::default()
                    }),
                    direct_response: None,
                }],
            });
        }
        let hcm = HttpConnectionManager {
            stat_prefix: "outbound_0.0.0.0_15001".into(),
            codec_type: "AUTO",
            route_config: RouteConfiguration {
                name: "outbound".into(),
                virtual_hosts: vhosts,
            },
            http_filters: self.http_filters(&outbound_filters(self.mesh, s), None),
            tracing: self.tracing(),
            normalize_path: true,
            merge_slashes: true,
            forward_client_cert_details: None,
            set_current_client_cert_details: None,
        };
        Listener {
            name: "virtualOutbound".into(),
            // The app is on the same host (process) or in the same network namespace
            // (compose): outbound never listens beyond loopback.
            address: Address::new("127.0.0.1", self.inst.ports.outbound),
            traffic_direction: Some("OUTBOUND"),
            listener_filters: vec![],
            filter_chains: vec![chain("outbound", None, hcm, None)],
        }
    }

    fn gateway_listener(&self) -> Listener {
        let Some(g) = &self.mesh.gateway else {
            return Listener {
                name: "gateway".into(),
                address: Address::new(self.inst.bind, self.inst.ports.app),
                traffic_direction: None,
                listener_filters: vec![],
                filter_chains: vec![],
            };
        };
        let mut domains = Vec::new();
        for h in &g.hosts {
            domains.push(h.clone());
            if h != "*" {
                domains.push(format!("{h}:{}", g.port));
            }
        }
        let routes = g
            .routes
            .iter()
            .enumerate()
            .flat_map(|(j, r)| self.routes_for(&format!("{}.{j}", g.name), r, None))
            .collect();
        let hcm = HttpConnectionManager {
            stat_prefix: format!("gateway_{}", g.port),
            codec_type: "AUTO",
            route_config: RouteConfiguration {
                name: format!("http.{}", g.port),
                virtual_hosts: vec![VirtualHost {
                    name: g.name.clone(),
                    domains,
                    routes,
                }],
            },
            http_filters: self.http_filters(&g.filters, None),
            tracing: self.tracing(),
            normalize_path: true,
            merge_slashes: true,
            forward_client_cert_details: Some("SANITIZE"),
            set_current_client_cert_details: None,
        };
        let tls = g.tls.as_ref().map(|_| TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            typed_config: TypedConfig::DownstreamTlsContext(Box::new(DownstreamTlsContext {
                common_tls_context: CommonTlsContext {
                    tls_certificate_sds_secret_configs: vec![
                        self.sds(SECRET_GATEWAY, SDS_GATEWAY_FILE)
                    ],
                    validation_context: None,
                    combined_validation_context: None,
                    alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                },
                require_client_certificate: false,
            })),
        });
        Listener {
            name: "gateway".into(),
            address: Address::new(self.inst.bind, g.port),
            traffic_direction: Some("OUTBOUND"),
            listener_filters: vec![],
            filter_chains: vec![chain("gateway", None, hcm, tls)],
        }
    }

    /// The routes of calls to `s`: its VirtualService routes, then the default route.
    fn service_routes(&self, s: &ServiceSpec) -> Vec<Route> {
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
                cluster: Some(outbound_cluster(s, None)),
                timeout: Some("0s".into()),
                retry_policy: retry_policy(None),
                ..Default::default()
            }),
            direct_response: None,
        });
        routes
    }

    /// One Envoy route per match of `r` (none: one route for every request).
    fn routes_for(&self, name: &str, r: &RouteSpec, owner: Option<&ServiceSpec>) -> Vec<Route> {
        let action = RouteAction {
            cluster: None,
            weighted_clusters: None,
            prefix_rewrite: None,
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
        let matches: Vec<MatchSpec> = if r.matches.is_empty() {
            vec![MatchSpec::default()]
        } else {
            r.matches.clone()
        };
        let many = matches.len() > 1;
        matches
            .iter()
            .enumerate()
            .map(|(k, m)| Route {
                name: if many {
                    format!("{name}.{k}")
                } else {
                    name.to_string()
                },
                matcher: route_match(m),
                route: Some(action.clone()),
                direct_response: None,
            })
            .collect()
    }

    fn destination_cluster(&self, d: &Destination, owner: Option<&ServiceSpec>) -> Option<String> {
        let s = match &d.service {
            Some(name) => self.mesh.services.iter().find(|s| &s.name == name)?,
            None => owner?,
        };
        Some(outbound_cluster(s, d.version.as_deref()))
    }

    /// `outbound|PORT||HOST` over every instance, then one cluster per version.
    fn service_clusters(&self, s: &ServiceSpec) -> Vec<Cluster> {
        let all = self.endpoints(s, None);
        let mut out = vec![self.outbound(s, None, all)];
        for v in &s.versions {
            out.push(self.outbound(s, Some(&v.name), self.endpoints(s, Some(&v.name))));
        }
        out
    }

    fn endpoints(&self, s: &ServiceSpec, version: Option<&str>) -> Vec<(String, u16)> {
        self.all
            .iter()
            .filter(|i| match i.kind {
                InstanceKind::Sidecar {
                    service,
                    version: v,
                    ..
                } => service.name == s.name && version.is_none_or(|want| want == v.name),
                InstanceKind::Gateway => false,
            })
            .map(|i| (i.host.clone(), i.ports.inbound))
            .collect()
    }

    fn outbound(&self, s: &ServiceSpec, subset: Option<&str>, eps: Vec<(String, u16)>) -> Cluster {
        let name = outbound_cluster(s, subset);
        let tp = &s.traffic_policy;
        let cluster_type = match self.opts.target {
            Target::Process { .. } => "STATIC",
            Target::Compose => "STRICT_DNS",
        };
        let transport_socket = (self.mesh.mesh.mtls != MtlsMode::Disable).then(|| {
            let san = topology::spiffe_id(
                &self.mesh.mesh.trust_domain,
                &s.namespace,
                s.service_account(),
            );
            TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                typed_config: TypedConfig::UpstreamTlsContext(Box::new(UpstreamTlsContext {
                    common_tls_context: self.mtls_context(Some(san)),
                    sni: format!(
                        "outbound_.{}_.{}_.{}",
                        s.port,
                        subset.unwrap_or(""),
                        service_host(s)
                    ),
                })),
            }
        });
        Cluster {
            load_assignment: load_assignment(&name, &eps),
            name,
            kind: cluster_type,
            connect_timeout: "10s".into(),
            lb_policy: match tp.load_balancer {
                Some(crate::model::LoadBalancer::LeastRequest) => "LEAST_REQUEST",
                Some(crate::model::LoadBalancer::Random) => "RANDOM",
                Some(crate::model::LoadBalancer::RoundRobin) | None => "ROUND_ROBIN",
            },
            dns_lookup_family: (cluster_type == "STRICT_DNS").then_some("V4_ONLY"),
            circuit_breakers: tp.connection_pool.as_ref().map(|cp| CircuitBreakers {
                thresholds: vec![Thresholds {
                    max_connections: cp.max_connections,
                    max_pending_requests: cp.max_pending_requests,
                    max_requests: cp.max_requests,
                    max_retries: cp.max_retries,
                }],
            }),
            outlier_detection: tp.outlier_detection.as_ref().map(|od| OutlierDetection {
                consecutive_5xx: od.consecutive5xx_errors,
                interval: od.interval.envoy(),
                base_ejection_time: od.base_ejection_time.envoy(),
                max_ejection_percent: od.max_ejection_percent,
            }),
            transport_socket,
            typed_extension_protocol_options: h2_options(s.protocol),
        }
    }

    fn sds(&self, secret: &str, file: &str) -> SdsSecretConfig {
        let dir = sds_dir(self.opts, &self.inst.name);
        SdsSecretConfig {
            name: secret.into(),
            sds_config: ConfigSource {
                path_config_source: PathConfigSource {
                    path: format!("{dir}/{file}"),
                    watched_directory: WatchedDirectory { path: dir },
                },
                resource_api_version: "V3",
            },
        }
    }

    /// This workload's certificate, and the mesh CA (plus an expected peer SAN).
    fn mtls_context(&self, peer_san: Option<String>) -> CommonTlsContext {
        CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![self.sds(SECRET_CERT, SDS_CERT_FILE)],
            validation_context: None,
            combined_validation_context: Some(CombinedValidationContext {
                default_validation_context: CertificateValidationContext {
                    trusted_ca: None,
                    match_typed_subject_alt_names: peer_san
                        .into_iter()
                        .map(|san| SubjectAltNameMatcher {
                            san_type: "URI",
                            matcher: StringMatcher {
                                exact: Some(san),
                                ..Default::default()
                            },
                        })
                        .collect(),
                },
                validation_context_sds_secret_config: self.sds(SECRET_CA, SDS_CA_FILE),
            }),
            alpn_protocols: vec![],
        }
    }

    fn downstream_mtls(&self) -> TransportSocket {
        let mut ctx = self.mtls_context(None);
        ctx.alpn_protocols = vec!["h2".into(), "http/1.1".into()];
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            typed_config: TypedConfig::DownstreamTlsContext(Box::new(DownstreamTlsContext {
                common_tls_context: ctx,
                require_client_certificate: true,
            })),
        }
    }

    /// Wasm filters in phase order (or one mesh-module filter running them all, with
    /// `--bundle`), then the router. `chain_mtls`: the mTLS mode of the inbound filter
    /// chain these run on, for telemetry's `mtls` (None off the inbound listener).
    fn http_filters(&self, filters: &[FilterSpec], chain_mtls: Option<&str>) -> Vec<HttpFilter> {
        let mut sorted: Vec<&FilterSpec> = filters.iter().collect();
        sorted.sort_by_key(|f| f.name);
        let configs: Vec<(&FilterSpec, Value)> = sorted
            .into_iter()
            .map(|f| {
                let mut config = generated_config(self.mesh, f, || self.workload());
                if let Some(mode) = chain_mtls {
                    with_chain_mtls(f, &mut config, mode);
                }
                (f, config)
            })
            .collect();
        let mut out: Vec<HttpFilter> = if self.opts.bundle && !configs.is_empty() {
            let config = crate::bundle::config(configs.iter().map(|(f, c)| (f.name, c)));
            let policy = crate::bundle::strictest(configs.iter().map(|(f, _)| f.failure_policy));
            vec![self.wasm_filter(
                crate::bundle::NAME,
                crate::bundle::WASM_FILE,
                &config,
                policy,
            )]
        } else {
            configs
                .iter()
                .map(|(f, c)| {
                    self.wasm_filter(f.name.as_str(), &f.name.wasm_file(), c, f.failure_policy)
                })
                .collect()
        };
        out.push(HttpFilter {
            name: "envoy.filters.http.router".into(),
            typed_config: TypedConfig::Router(Empty {}),
        });
        out
    }

    fn wasm_filter(
        &self,
        name: &str,
        wasm_file: &str,
        config: &Value,
        failure_policy: crate::model::FailurePolicy,
    ) -> HttpFilter {
        HttpFilter {
            name: format!("wasmesh.{name}"),
            typed_config: TypedConfig::Wasm(Box::new(Wasm {
                config: PluginConfig {
                    name: name.into(),
                    root_id: name.into(),
                    vm_config: VmConfig {
                        vm_id: name.into(),
                        runtime: "envoy.wasm.runtime.v8",
                        code: AsyncDataSource {
                            local: DataSource {
                                filename: format!("{}/{wasm_file}", self.opts.filters_dir),
                            },
                        },
                    },
                    configuration: TypedConfig::StringValue {
                        value: config.to_string(),
                    },
                    failure_policy: failure_policy.as_str(),
                },
            })),
        }
    }

    /// The telemetry filter's `workload`: who this Envoy is, for Istio's labels.
    fn workload(&self) -> Value {
        let td = &self.mesh.mesh.trust_domain;
        match self.inst.kind {
            InstanceKind::Sidecar {
                service, version, ..
            } => workload_identity(td, service, &version.name),
            InstanceKind::Gateway => {
                let ns = self.gateway_namespace();
                let sa = topology::gateway_service_account(&self.inst.name);
                json!({
                    "name": self.inst.name,
                    "namespace": ns,
                    "app": self.inst.name,
                    "principal": topology::spiffe_id(td, ns, &sa),
                    "cluster": "Kubernetes",
                })
            }
        }
    }

    fn tracing(&self) -> Option<HcmTracing> {
        let t = self.mesh.mesh.tracing.as_ref()?;
        let service_name = match self.inst.service() {
            Some(s) => format!("{}.{}", s.name, s.namespace),
            None => self.inst.name.clone(),
        };
        let provider = match t.provider {
            Provider::Zipkin => TracingProvider {
                name: "envoy.tracers.zipkin".into(),
                typed_config: TypedConfig::ZipkinConfig(ZipkinConfig {
                    collector_cluster: "zipkin".into(),
                    collector_endpoint: "/api/v2/spans".into(),
                    collector_endpoint_version: "HTTP_JSON",
                    collector_hostname: t.address.clone(),
                }),
            },
            Provider::Opentelemetry => TracingProvider {
                name: "envoy.tracers.opentelemetry".into(),
                typed_config: TypedConfig::OpenTelemetryConfig(OpenTelemetryConfig {
                    grpc_service: GrpcService {
                        envoy_grpc: EnvoyGrpc {
                            cluster_name: "opentelemetry".into(),
                        },
                    },
                    service_name,
                }),
            },
        };
        Some(HcmTracing {
            random_sampling: Percent { value: t.sampling },
            provider,
        })
    }
}

/// A sidecar's identity in the telemetry filter's `workload` format.
pub fn workload_identity(trust_domain: &str, s: &ServiceSpec, version: &str) -> Value {
    json!({
        "name": format!("{}-{}", s.name, version),
        "namespace": s.namespace,
        "app": s.name,
        "version": version,
        "principal": topology::spiffe_id(trust_domain, &s.namespace, s.service_account()),
        "service": service_host(s),
        "serviceName": s.name,
        "cluster": "Kubernetes",
    })
}

/// The config Envoy gets for `f`. The telemetry filter's `workload` is filled in by the
/// generator unless the mesh file sets it; and in a mesh with a native tracer
/// (`mesh.tracing`) its own trace headers are off: Envoy's tracer starts its span before
/// any filter runs and writes its context into the upstream request after them all, so
/// a context the filter started would be a second trace (`wasmesh validate` refuses a
/// telemetry `tracing` left on in such a mesh).
pub fn generated_config(
    mesh: &MeshFile,
    f: &FilterSpec,
    workload: impl FnOnce() -> Value,
) -> Value {
    let mut config = f.config.clone();
    if f.name == FilterName::Telemetry {
        if let Some(obj) = config.as_object_mut() {
            obj.entry("workload").or_insert_with(workload);
            if mesh.mesh.tracing.is_some() {
                obj.entry("tracing")
                    .or_insert_with(|| json!({ "enabled": false }));
            }
        }
    }
    config
}

/// Tells a destination-side telemetry filter its chain's mTLS mode (`STRICT` on the
/// chain that requires client certificates, `DISABLE` on the plaintext one) unless
/// the mesh file sets one: a mode from config saves a host call per request.
fn with_chain_mtls(f: &FilterSpec, config: &mut Value, mode: &str) {
    if f.name != FilterName::Telemetry {
        return;
    }
    if let Some(obj) = config.as_object_mut() {
        let destination = obj.get("reporter").is_none_or(|r| r == "destination");
        if destination {
            obj.entry("mtls").or_insert_with(|| Value::from(mode));
        }
    }
}

/// The services `s`'s app may call: `calls` if given, else all.
pub fn callees<'m>(mesh: &'m MeshFile, s: &ServiceSpec) -> Vec<&'m ServiceSpec> {
    match &s.calls {
        Some(names) => mesh
            .services
            .iter()
            .filter(|c| names.contains(&c.name))
            .collect(),
        None => mesh.services.iter().collect(),
    }
}

/// The outbound chain of `s`: its outbound filters, with the route faults of every
/// service it calls merged into the fault filter (appended to its `rules`, or a new
/// fault filter). Faults run at the caller, before its router, as Istio injects them:
/// on the callee's inbound side the caller's retries would retry the injected aborts.
pub fn outbound_filters(mesh: &MeshFile, s: &ServiceSpec) -> Vec<FilterSpec> {
    let mut filters = s.filters.outbound.clone();
    let rules: Vec<Value> = callees(mesh, s).into_iter().flat_map(fault_rules).collect();
    if !rules.is_empty() {
        merge_fault_rules(&mut filters, rules);
    }
    filters
}

/// Envoy's fraction of a million for a percentage (clamped, rounded).
fn percent_to_million(p: f64) -> u32 {
    let v = (p.clamp(0.0, 100.0) * 10_000.0).round();
    // 0..=1_000_000 after the clamp.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = v as u32;
    v
}

fn retry_policy(r: Option<&crate::model::Retries>) -> Option<RetryPolicy> {
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

fn prefix(p: &str) -> RouteMatch {
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
    rm
}

/// The names a caller may give a service, without the port.
fn service_names(s: &ServiceSpec) -> [String; 4] {
    [
        s.name.clone(),
        format!("{}.{}", s.name, s.namespace),
        format!("{}.{}.svc", s.name, s.namespace),
        service_host(s),
    ]
}

/// The `Host` values that reach a service through the outbound listener.
fn service_domains(s: &ServiceSpec) -> Vec<String> {
    let mut out = Vec::new();
    for n in service_names(s) {
        out.push(format!("{n}:{}", s.port));
        out.push(n);
    }
    out
}

/// The service's route faults as rules for the fault filter on its callers' outbound
/// side, one per route match, named as the Envoy route (`SERVICE.ROUTE`, plus `.K` for
/// several matches: rule names must be unique). The rule format is the fault filter's:
/// `match` is the SDK's matcher config, with the service's names as `hosts` since one
/// outbound chain serves every callee. The SDK compares hosts without the port, so
/// `ratings:9080` (what the apps send) matches `ratings`.
fn fault_rules(s: &ServiceSpec) -> Vec<Value> {
    let mut rules = Vec::new();
    for (j, r) in s.routes.iter().enumerate() {
        let Some(f) = &r.fault else { continue };
        let name = r.name.clone().unwrap_or_else(|| j.to_string());
        let matches: Vec<MatchSpec> = if r.matches.is_empty() {
            vec![MatchSpec::default()]
        } else {
            r.matches.clone()
        };
        let many = matches.len() > 1;
        for (k, m) in matches.iter().enumerate() {
            let rule_name = if many {
                format!("{}.{name}.{k}", s.name)
            } else {
                format!("{}.{name}", s.name)
            };
            let mut matcher = sdk_match(m);
            matcher.insert("hosts".into(), json!(service_names(s)));
            let mut rule = serde_json::Map::new();
            rule.insert("name".into(), json!(rule_name));
            rule.insert("match".into(), Value::Object(matcher));
            if let Some(a) = &f.abort {
                rule.insert(
                    "abort".into(),
                    json!({ "http_status": a.http_status, "percentage": a.percentage }),
                );
            }
            if let Some(d) = &f.delay {
                rule.insert(
                    "delay".into(),
                    json!({ "fixed_delay": d.fixed_delay.envoy(), "percentage": d.percentage }),
                );
            }
            rules.push(Value::Object(rule));
        }
    }
    rules
}

/// A route match in the SDK's matcher config format (`path`, `methods`, `headers`).
fn sdk_match(m: &MatchSpec) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let one = |k: Matcher<'_>| match k {
        Matcher::Exact(v) => ("exact", v.to_string()),
        Matcher::Prefix(v) => ("prefix", v.to_string()),
        Matcher::Regex(v) => ("regex", v.to_string()),
    };
    if let Some((k, v)) = m.path.as_ref().and_then(|p| p.single()).map(one) {
        out.insert("path".into(), json!({ k: v }));
    }
    if let Some(Matcher::Exact(method)) = m.method.as_ref().and_then(|p| p.single()) {
        out.insert("methods".into(), json!([method]));
    }
    let headers: Vec<Value> = m
        .headers
        .iter()
        .filter_map(|(name, h)| {
            let (k, v) = one(h.single()?);
            Some(json!({ "name": name, k: v }))
        })
        .collect();
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Array(headers));
    }
    out
}

/// Adds route-fault rules to the chain's fault filter, creating one if needed.
fn merge_fault_rules(filters: &mut Vec<FilterSpec>, rules: Vec<Value>) {
    if let Some(f) = filters.iter_mut().find(|f| f.name == FilterName::Fault) {
        if let Some(obj) = f.config.as_object_mut() {
            let entry = obj.entry("rules").or_insert_with(|| Value::Array(vec![]));
            if let Some(list) = entry.as_array_mut() {
                list.extend(rules);
            }
        }
        return;
    }
    filters.push(FilterSpec {
        name: FilterName::Fault,
        config: json!({ "rules": rules }),
        failure_policy: crate::model::FailurePolicy::FailOpen,
    });
}

fn chain(
    name: &str,
    transport: Option<&str>,
    hcm: HttpConnectionManager,
    tls: Option<TransportSocket>,
) -> FilterChain {
    FilterChain {
        name: name.into(),
        filter_chain_match: transport.map(|t| FilterChainMatch {
            transport_protocol: t.into(),
        }),
        filters: vec![NetworkFilter {
            name: HCM.into(),
            typed_config: TypedConfig::HttpConnectionManager(Box::new(hcm)),
        }],
        transport_socket: tls,
    }
}

fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        typed_config: TypedConfig::TlsInspector(Empty {}),
    }
}

/// A listener answering one path from the admin API (health, Prometheus), so that
/// admin itself stays on loopback.
fn admin_proxy_listener(
    name: &str,
    bind: &str,
    port: u16,
    path: &str,
    rewrite: Option<&str>,
) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        codec_type: "AUTO",
        route_config: RouteConfiguration {
            name: name.into(),
            virtual_hosts: vec![VirtualHost {
                name: name.into(),
                domains: vec!["*".into()],
                routes: vec![Route {
                    name: name.into(),
                    matcher: RouteMatch {
                        path: Some(path.into()),
                        ..Default::default()
                    },
                    route: Some(RouteAction {
                        cluster: Some(AGENT.into()),
                        prefix_rewrite: rewrite.map(Into::into),
                        ..Default::default()
                    }),
                    direct_response: None,
                }],
            }],
        },
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            typed_config: TypedConfig::Router(Empty {}),
        }],
        tracing: None,
        normalize_path: true,
        merge_slashes: true,
        forward_client_cert_details: None,
        set_current_client_cert_details: None,
    };
    Listener {
        name: name.into(),
        address: Address::new(bind, port),
        traffic_direction: None,
        listener_filters: vec![],
        filter_chains: vec![chain(name, None, hcm, None)],
    }
}

fn load_assignment(name: &str, eps: &[(String, u16)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: eps
                .iter()
                .map(|(host, port)| LbEndpoint {
                    endpoint: Endpoint {
                        address: Address::new(host, *port),
                    },
                })
                .collect(),
        }],
    }
}

fn h2_options(p: Protocol) -> BTreeMap<String, TypedConfig> {
    let mut m = BTreeMap::new();
    if p.is_h2() {
        m.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
            TypedConfig::HttpProtocolOptions(HttpProtocolOptions {
                explicit_http_config: ExplicitHttpConfig {
                    http2_protocol_options: Empty {},
                },
            }),
        );
    }
    m
}

fn static_cluster(name: &str, host: &str, port: u16, protocol: Protocol) -> Cluster {
    Cluster {
        name: name.into(),
        kind: "STATIC",
        connect_timeout: "10s".into(),
        lb_policy: "ROUND_ROBIN",
        dns_lookup_family: None,
        load_assignment: load_assignment(name, &[(host.to_string(), port)]),
        circuit_breakers: None,
        outlier_detection: None,
        transport_socket: None,
        typed_extension_protocol_options: h2_options(protocol),
    }
}

fn dns_cluster(name: &str, host: &str, port: u16, protocol: Protocol) -> Cluster {
    Cluster {
        kind: "STRICT_DNS",
        dns_lookup_family: Some("V4_ONLY"),
        ..static_cluster(name, host, port, protocol)
    }
}

fn egress_cluster(e: &crate::model::EgressSpec) -> Cluster {
    let name = format!("outbound|{}||{}", e.port, e.host);
    let mut c = dns_cluster(&name, &e.host, e.port, Protocol::Http);
    if e.tls {
        c.transport_socket = Some(TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            typed_config: TypedConfig::UpstreamTlsContext(Box::new(UpstreamTlsContext {
                common_tls_context: CommonTlsContext {
                    validation_context: egress_validation(e),
                    ..CommonTlsContext::default()
                },
                sni: e.host.clone(),
            })),
        });
    }
    c
}

/// The external server's certificate must chain to the trusted CAs and name the host
/// (a DNS SAN), as Istio's DestinationRule with `credentialName`/`caCertificates`
/// checks it; `insecureSkipVerify` turns both off.
fn egress_validation(e: &crate::model::EgressSpec) -> Option<CertificateValidationContext> {
    if e.insecure_skip_verify {
        return None;
    }
    let ca = e
        .ca_certificates
        .clone()
        .unwrap_or_else(|| crate::model::SYSTEM_CA_BUNDLE.to_string());
    Some(CertificateValidationContext {
        trusted_ca: Some(DataSource { filename: ca }),
        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
            san_type: "DNS",
            matcher: StringMatcher {
                exact: Some(e.host.clone()),
                ..Default::default()
            },
        }],
    })
}

fn tracing_cluster(p: Provider, address: &str) -> Cluster {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .unwrap_or((address, 0));
    match p {
        Provider::Zipkin => dns_cluster("zipkin", host, port, Protocol::Http),
        Provider::Opentelemetry => dns_cluster("opentelemetry", host, port, Protocol::Grpc),
    }
}
