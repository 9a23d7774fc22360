//! Workload identity and the metadata exchange between sidecars.
//!
//! The client sidecar adds one request header naming its workload; the server
//! sidecar reads and strips it before the app, and answers with its own on the
//! response, which the client sidecar reads and strips before the client app. Each
//! side thus knows the other and fills both `source_*` and `destination_*` labels.
//!
//! Wire format (one header, default `x-wasmesh-peer`): `key=value` pairs joined by
//! `;`, keys one letter (`w` workload, `n` namespace, `a` app, `v` version,
//! `p` principal, `s` service, `c` canonical service, `r` canonical revision,
//! `k` cluster), values percent-encoded for `%`, `;`, `=` and bytes outside
//! printable ASCII. Unknown keys are ignored (room to grow). Not JSON and not base64
//! protobuf as in Istio: the local header value is rendered once at configure time,
//! and parsing a peer's is one split with no allocation beyond the values.
//!
//! Peer values are untrusted: each is checked with [`crate::labels::clean`], so a
//! hostile peer yields `unknown`, never an unbounded label value.

use crate::config::WorkloadConfig;
use crate::labels::{clean, is_clean_value, UNKNOWN};
use wasmesh_sdk::percent::{self, Plus};
use wasmesh_sdk::ConfigError;

pub const DEFAULT_HEADER: &str = "x-wasmesh-peer";

/// A workload's identity, every field a clean label value (`unknown` when not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub workload: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    pub principal: String,
    pub service: String,
    pub service_name: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
}

impl Default for Identity {
    fn default() -> Self {
        Self::unknown()
    }
}

impl Identity {
    pub fn unknown() -> Self {
        let u = || UNKNOWN.to_string();
        Self {
            workload: u(),
            namespace: u(),
            app: u(),
            version: u(),
            principal: u(),
            service: u(),
            service_name: u(),
            canonical_service: u(),
            canonical_revision: u(),
            cluster: u(),
        }
    }

    /// The local identity, with Istio's defaults for derived fields.
    pub fn from_config(c: &WorkloadConfig) -> Result<Self, ConfigError> {
        let field = |name: &str, v: &str| -> Result<String, ConfigError> {
            if v.is_empty() {
                Ok(UNKNOWN.to_string())
            } else if is_clean_value(v) {
                Ok(v.to_string())
            } else {
                Err(ConfigError::at(
                    name,
                    format!("`{v}` is not a usable label value (at most 253 bytes of letters, digits and -._/:@)"),
                ))
            }
        };
        let mut id = Identity {
            workload: field("name", &c.name)?,
            namespace: field("namespace", &c.namespace)?,
            app: field("app", &c.app)?,
            version: field("version", &c.version)?,
            principal: field("principal", &c.principal)?,
            service: field("service", &c.service)?,
            service_name: field("serviceName", &c.service_name)?,
            canonical_service: field("canonicalService", &c.canonical_service)?,
            canonical_revision: field("canonicalRevision", &c.canonical_revision)?,
            cluster: field("cluster", &c.cluster)?,
        };
        id.fill_defaults();
        Ok(id)
    }

    /// Istio's derivations: canonical service from app or workload, revision from
    /// version or `latest`, service name from the service host's first label.
    fn fill_defaults(&mut self) {
        if self.canonical_service == UNKNOWN {
            if self.app != UNKNOWN {
                self.canonical_service = self.app.clone();
            } else if self.workload != UNKNOWN {
                self.canonical_service = self.workload.clone();
            }
        }
        // `latest` only for a workload we know: an anonymous peer stays all `unknown`.
        if self.canonical_revision == UNKNOWN {
            if self.version != UNKNOWN {
                self.canonical_revision = self.version.clone();
            } else if self.workload != UNKNOWN {
                self.canonical_revision = "latest".to_string();
            }
        }
        if self.service_name == UNKNOWN && self.service != UNKNOWN {
            self.service_name = short_name(&self.service).to_string();
        }
    }

    /// The exchange header value announcing this identity.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (key, value) in self.fields() {
            if value == UNKNOWN {
                continue;
            }
            if !out.is_empty() {
                out.push(';');
            }
            out.push(key);
            out.push('=');
            percent::encode_into(value, kept_in_exchange, &mut out);
        }
        out
    }

    /// A peer's identity from its exchange header value; bad values are `unknown`.
    pub fn decode(header: &str) -> Self {
        let mut id = Identity::unknown();
        for pair in header.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = clean(&percent::decode(value, Plus::Literal)).into_owned();
            let slot = match key.trim() {
                "w" => &mut id.workload,
                "n" => &mut id.namespace,
                "a" => &mut id.app,
                "v" => &mut id.version,
                "p" => &mut id.principal,
                "s" => &mut id.service,
                "c" => &mut id.canonical_service,
                "r" => &mut id.canonical_revision,
                "k" => &mut id.cluster,
                _ => continue,
            };
            *slot = value;
        }
        id.fill_defaults();
        id
    }

    fn fields(&self) -> [(char, &str); 9] {
        [
            ('w', &self.workload),
            ('n', &self.namespace),
            ('a', &self.app),
            ('v', &self.version),
            ('p', &self.principal),
            ('s', &self.service),
            ('c', &self.canonical_service),
            ('r', &self.canonical_revision),
            ('k', &self.cluster),
        ]
    }
}

/// `reviews.default.svc.cluster.local` → `reviews`.
pub fn short_name(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// The service host in an Istio outbound cluster name (`outbound|9080||reviews.default.svc.cluster.local`).
pub fn service_from_cluster(cluster: &str) -> Option<&str> {
    let mut parts = cluster.split('|');
    if parts.next()? != "outbound" {
        return None;
    }
    let host = parts.nth(2)?;
    (!host.is_empty()).then_some(host)
}

/// What the exchange header's values carry unescaped: printable ASCII except `%` and the
/// header's own separators `;` and `=`.
fn kept_in_exchange(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'%' | b';' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviews() -> Identity {
        Identity::from_config(&WorkloadConfig {
            name: "reviews-v1".into(),
            namespace: "default".into(),
            app: "reviews".into(),
            version: "v1".into(),
            principal: "spiffe://cluster.local/ns/default/sa/reviews".into(),
            service: "reviews.default.svc.cluster.local".into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn identity_round_trips_through_the_header() {
        let id = reviews();
        let header = id.encode();
        assert_eq!(
            header,
            "w=reviews-v1;n=default;a=reviews;v=v1;p=spiffe://cluster.local/ns/default/sa/reviews;s=reviews.default.svc.cluster.local;c=reviews;r=v1"
        );
        assert_eq!(Identity::decode(&header), id);
    }

    #[test]
    fn defaults_follow_istio() {
        let id = reviews();
        assert_eq!(id.service_name, "reviews");
        assert_eq!(id.canonical_service, "reviews");
        assert_eq!(id.canonical_revision, "v1");
        let bare = Identity::from_config(&WorkloadConfig {
            name: "w".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(bare.canonical_service, "w");
        assert_eq!(bare.canonical_revision, "latest");
    }

    #[test]
    fn hostile_peer_values_become_unknown() {
        let long = "x".repeat(300);
        let id = Identity::decode(&format!("w={long};n=a%20b;a=ok;v=%3B;zz=1;broken"));
        assert_eq!(id.workload, UNKNOWN);
        assert_eq!(id.namespace, UNKNOWN, "space is not a label character");
        assert_eq!(id.app, "ok");
        assert_eq!(id.version, UNKNOWN);
    }

    #[test]
    fn empty_or_garbage_header_is_all_unknown() {
        assert_eq!(Identity::decode(""), Identity::decode("%%%;==;"));
        assert_eq!(Identity::decode(""), Identity::unknown());
    }

    #[test]
    fn bad_config_value_is_refused() {
        let err = Identity::from_config(&WorkloadConfig {
            app: "a;b".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.path, "app");
    }

    #[test]
    fn cluster_names_give_the_service() {
        assert_eq!(
            service_from_cluster("outbound|9080||reviews.default.svc.cluster.local"),
            Some("reviews.default.svc.cluster.local")
        );
        assert_eq!(service_from_cluster("inbound|9080||"), None);
        assert_eq!(service_from_cluster("upstream"), None);
    }
}
