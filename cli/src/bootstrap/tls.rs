//! TLS: the SDS secrets each instance reads from its certificate directory, mutual TLS
//! between sidecars (SPIFFE identities checked on both sides), the gateway's server
//! certificate, and TLS origination to egress hosts.

use super::Builder;
use crate::envoy::*;
use crate::model::{EgressSpec, GatewayTls, GatewayTlsMode, ServiceSpec, SYSTEM_CA_BUNDLE};
use crate::names;
use crate::topology::Target;
use crate::GenerateOptions;

/// The SDS secret names, as Istio names them.
pub const SECRET_CERT: &str = "default";
pub const SECRET_CA: &str = "ROOTCA";
pub const SECRET_GATEWAY: &str = "gateway-tls";
/// The CA a MUTUAL gateway checks client certificates against (Istio's
/// `CREDENTIAL-cacert`).
pub const SECRET_GATEWAY_CA: &str = "gateway-tls-cacert";
/// SDS files inside an instance's certificate directory.
pub const SDS_CERT_FILE: &str = "cert.sds.yaml";
pub const SDS_CA_FILE: &str = "ca.sds.yaml";
pub const SDS_GATEWAY_FILE: &str = "gateway.sds.yaml";
pub const SDS_GATEWAY_CA_FILE: &str = "gateway-ca.sds.yaml";

/// The directory of an instance's SDS files, as Envoy sees it.
pub fn sds_dir(opts: &GenerateOptions, instance: &str) -> String {
    match opts.target {
        // Each instance sees only its own keys: compose mounts its directory alone.
        Target::Compose => opts.certs_dir.clone(),
        Target::Process { .. } => format!("{}/{}", opts.certs_dir, instance),
    }
}

impl Builder<'_> {
    fn sds(&self, secret: &str, file: &str) -> SdsSecretConfig {
        let dir = sds_dir(self.opts, &self.inst.name);
        SdsSecretConfig {
            name: secret.into(),
            sds_config: ConfigSource {
                path_config_source: PathConfigSource {
                    path: format!("{dir}/{file}"),
                    watched_directory: Some(WatchedDirectory { path: dir }),
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

    pub(super) fn downstream_mtls(&self) -> TransportSocket {
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

    /// A sidecar's client side of mTLS to `s`'s subset: its own certificate, the mesh
    /// CA, the callee's SPIFFE identity, and Istio's SNI.
    pub(super) fn upstream_mtls(&self, s: &ServiceSpec, subset: Option<&str>) -> TransportSocket {
        let san = names::service_spiffe_id(&self.mesh.mesh.trust_domain, s);
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            typed_config: TypedConfig::UpstreamTlsContext(Box::new(UpstreamTlsContext {
                common_tls_context: self.mtls_context(Some(san)),
                sni: names::outbound_sni(s, subset),
            })),
        }
    }

    /// The gateway's server certificate (from the mesh CA or the given files); with
    /// MUTUAL, a client certificate chaining to the gateway's CA secret is required.
    pub(super) fn gateway_tls(&self, t: &GatewayTls) -> TransportSocket {
        let mutual = t.mode == GatewayTlsMode::Mutual;
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            typed_config: TypedConfig::DownstreamTlsContext(Box::new(DownstreamTlsContext {
                common_tls_context: CommonTlsContext {
                    tls_certificate_sds_secret_configs: vec![
                        self.sds(SECRET_GATEWAY, SDS_GATEWAY_FILE)
                    ],
                    validation_context: None,
                    combined_validation_context: mutual.then(|| CombinedValidationContext {
                        default_validation_context: CertificateValidationContext {
                            trusted_ca: None,
                            match_typed_subject_alt_names: vec![],
                        },
                        validation_context_sds_secret_config: self
                            .sds(SECRET_GATEWAY_CA, SDS_GATEWAY_CA_FILE),
                    }),
                    alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                },
                require_client_certificate: mutual,
            })),
        }
    }
}

/// TLS origination to an external host.
pub(super) fn egress_tls(e: &EgressSpec) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        typed_config: TypedConfig::UpstreamTlsContext(Box::new(UpstreamTlsContext {
            common_tls_context: CommonTlsContext {
                validation_context: egress_validation(e),
                ..CommonTlsContext::default()
            },
            sni: e.host.clone(),
        })),
    }
}

/// The external server's certificate must chain to the trusted CAs and name the host
/// (a DNS SAN), as Istio's DestinationRule with `credentialName`/`caCertificates`
/// checks it; `insecureSkipVerify` turns both off.
fn egress_validation(e: &EgressSpec) -> Option<CertificateValidationContext> {
    if e.insecure_skip_verify {
        return None;
    }
    let ca = e
        .ca_certificates
        .clone()
        .unwrap_or_else(|| SYSTEM_CA_BUNDLE.to_string());
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
