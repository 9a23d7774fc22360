//! The listeners of a bootstrap: a sidecar's inbound (one filter chain per mTLS mode)
//! and outbound, the gateway's, and the health and Prometheus listeners that answer
//! from the admin API so that admin itself stays on loopback.

use super::{Builder, AGENT};
use crate::chains;
use crate::envoy::*;
use crate::model::{MtlsMode, ServiceSpec, TracingProvider as Provider};
use crate::names;

use super::routes;

const HCM: &str = "envoy.filters.network.http_connection_manager";

impl Builder<'_> {
    pub(super) fn inbound_listener(&self, s: &ServiceSpec) -> Listener {
        let cluster = names::inbound_cluster(s.app_port());
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
            ..Default::default()
        };
        let i = chains::service_index(self.mesh, s);
        let filters = chains::inbound(self.mesh, i).specs();
        let hcm = |plain: bool| HttpConnectionManager {
            stat_prefix: format!("inbound_0.0.0.0_{}", s.port),
            codec_type: "AUTO",
            rds: None,
            route_config: Some(RouteConfiguration {
                name: cluster.clone(),
                virtual_hosts: vec![VirtualHost {
                    name: format!("inbound|http|{}", s.port),
                    domains: vec!["*".into()],
                    routes: vec![route.clone()],
                }],
            }),
            // Each chain knows whether its connections are mTLS, so telemetry need not
            // ask per request.
            http_filters: self
                .http_filters(&filters, Some(if plain { "DISABLE" } else { "STRICT" })),
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
            name: names::INBOUND_LISTENER.into(),
            address: Address::new(self.inst.bind, self.inst.ports.inbound),
            traffic_direction: Some("INBOUND"),
            listener_filters,
            filter_chains,
        }
    }

    pub(super) fn outbound_listener(&self, s: &ServiceSpec) -> Listener {
        let mut vhosts: Vec<VirtualHost> = chains::callees(self.mesh, s)
            .into_iter()
            .map(|callee| VirtualHost {
                name: format!("{}:{}", names::service_host(callee), callee.port),
                domains: names::service_domains(callee),
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
                    matcher: routes::prefix("/"),
                    route: Some(RouteAction {
                        cluster: Some(names::egress_cluster(&e.host, e.port)),
                        ..Default::default()
                    }),
                    direct_response: None,
                    ..Default::default()
                }],
            });
        }
        let http_filters = self.http_filters(
            &chains::outbound(self.mesh, chains::service_index(self.mesh, s)).specs(),
            None,
        );
        let hcm = HttpConnectionManager {
            stat_prefix: "outbound_0.0.0.0_15001".into(),
            codec_type: "AUTO",
            rds: None,
            route_config: Some(RouteConfiguration {
                name: "outbound".into(),
                virtual_hosts: vhosts,
            }),
            http_filters,
            tracing: self.tracing(),
            normalize_path: true,
            merge_slashes: true,
            forward_client_cert_details: None,
            set_current_client_cert_details: None,
        };
        Listener {
            name: names::OUTBOUND_LISTENER.into(),
            // The app is on the same host (process) or in the same network namespace
            // (compose): outbound never listens beyond loopback.
            address: Address::new("127.0.0.1", self.inst.ports.outbound),
            traffic_direction: Some("OUTBOUND"),
            listener_filters: vec![],
            filter_chains: vec![chain("outbound", None, hcm, None)],
        }
    }

    pub(super) fn gateway_listener(&self) -> Listener {
        let Some(g) = &self.mesh.gateway else {
            return Listener {
                name: names::GATEWAY_LISTENER.into(),
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
        let vhosts = vec![VirtualHost {
            name: g.name.clone(),
            domains,
            routes,
        }];
        let http_filters = self.http_filters(&chains::gateway(self.mesh).specs(), None);
        let hcm = HttpConnectionManager {
            stat_prefix: format!("gateway_{}", g.port),
            codec_type: "AUTO",
            rds: None,
            route_config: Some(RouteConfiguration {
                name: format!("http.{}", g.port),
                virtual_hosts: vhosts,
            }),
            http_filters,
            tracing: self.tracing(),
            normalize_path: true,
            merge_slashes: true,
            forward_client_cert_details: Some("SANITIZE"),
            set_current_client_cert_details: None,
        };
        let mut gateway = chain("gateway", None, hcm, None);
        let mut listener_filters = vec![];
        if let Some(t) = &g.tls {
            gateway.transport_socket = Some(self.gateway_tls(t));
            // As Istio: a TLS server for named hosts takes only clients asking for one
            // of them (SNI); the others find no filter chain and are cut off in the
            // handshake.
            if !g.hosts.iter().any(|h| h == "*") {
                gateway.filter_chain_match = Some(FilterChainMatch {
                    transport_protocol: None,
                    server_names: g.hosts.clone(),
                });
                listener_filters.push(tls_inspector());
            }
        }
        Listener {
            name: names::GATEWAY_LISTENER.into(),
            address: Address::new(self.inst.bind, g.port),
            traffic_direction: Some("OUTBOUND"),
            listener_filters,
            filter_chains: vec![gateway],
        }
    }

    pub(super) fn tracing(&self) -> Option<HcmTracing> {
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

pub(super) fn chain(
    name: &str,
    transport: Option<&str>,
    hcm: HttpConnectionManager,
    tls: Option<TransportSocket>,
) -> FilterChain {
    FilterChain {
        name: name.into(),
        filter_chain_match: transport.map(|t| FilterChainMatch {
            transport_protocol: Some(t.into()),
            server_names: vec![],
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
pub(super) fn admin_proxy_listener(
    name: &str,
    bind: &str,
    port: u16,
    path: &str,
    rewrite: Option<&str>,
) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        codec_type: "AUTO",
        rds: None,
        route_config: Some(RouteConfiguration {
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
                    ..Default::default()
                }],
            }],
        }),
        http_filters: vec![HttpFilter::inline(
            "envoy.filters.http.router",
            TypedConfig::Router(Empty {}),
        )],
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
