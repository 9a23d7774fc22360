//! The mesh CA and workload certificates, delivered to Envoy through file-based SDS.
//!
//! Not part of the pure generator output: keys never go into version control. Layout
//! under the certificates directory (default `.wasmesh/certs`, git-ignored):
//!
//! ```text
//! ca.pem, ca-key.pem            the mesh CA (kept across rotations)
//! <instance>/cert.sds.yaml      SDS secret "default": the workload's chain and key
//! <instance>/ca.sds.yaml        SDS secret "ROOTCA": the mesh CA
//! <gateway>/gateway.sds.yaml    SDS secret "gateway-tls": the gateway's serving cert
//! <gateway>/gateway-ca.sds.yaml SDS secret "gateway-tls-cacert": MUTUAL's client CA
//! ```
//!
//! Each SDS file is written to a temporary name and renamed into place: Envoy watches
//! the directory for moves, so a rotation reloads the secret without a restart and a
//! reader never sees half a file.

use crate::bootstrap::{
    SDS_CA_FILE, SDS_CERT_FILE, SDS_GATEWAY_CA_FILE, SDS_GATEWAY_FILE, SECRET_CA, SECRET_CERT,
    SECRET_GATEWAY, SECRET_GATEWAY_CA,
};
use crate::model::{GatewayTlsMode, MeshFile};
use crate::names;
use crate::topology::{self, InstanceKind, Target};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Workload certificates live this long; `wasmesh certs rotate` renews them.
pub const WORKLOAD_VALIDITY_DAYS: i64 = 30;
const CA_VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Rcgen { what: String, source: rcgen::Error },
    #[error("{0}")]
    Other(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn rc(what: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Rcgen {
        what: what.to_string(),
        source,
    }
}

/// A certificate authority: its PEM certificate and its signing key.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
}

/// An issued certificate chain (leaf, then CA) and its key, in PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

fn ca_params(mesh_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "wasmesh");
    dn.push(DnType::CommonName, format!("wasmesh {mesh_name} mesh CA"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

impl Ca {
    /// A new CA for the mesh `mesh_name`.
    pub fn generate(mesh_name: &str) -> Result<Ca, CertError> {
        let key = KeyPair::generate().map_err(rc("generating the CA key"))?;
        let mut params = ca_params(mesh_name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key).map_err(rc("signing the CA"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
            params,
        })
    }

    /// The CA written by [`Ca::save`]. Its issuer name is rebuilt from the mesh name,
    /// the same way it was made, so nothing needs parsing the certificate.
    pub fn load(dir: &Path, mesh_name: &str) -> Result<Ca, CertError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(rc("reading ca-key.pem"))?;
        Ok(Ca {
            cert_pem,
            key,
            params: ca_params(mesh_name),
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), CertError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_atomic(&dir.join("ca.pem"), self.cert_pem.as_bytes())?;
        write_private(&dir.join("ca-key.pem"), self.key.serialize_pem().as_bytes())
    }

    /// A leaf certificate with a SPIFFE URI SAN (and DNS SANs), for client and server use.
    pub fn issue(&self, spiffe: Option<&str>, dns: &[String]) -> Result<Issued, CertError> {
        let key = KeyPair::generate().map_err(rc("generating a workload key"))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "wasmesh");
        p.distinguished_name = dn;
        if let Some(uri) = spiffe {
            let ia5 = uri
                .to_string()
                .try_into()
                .map_err(rc("the SPIFFE ID as a URI SAN"))?;
            p.subject_alt_names.push(SanType::URI(ia5));
        }
        for name in dns {
            let ia5 = name.clone().try_into().map_err(rc("a DNS SAN"))?;
            p.subject_alt_names.push(SanType::DnsName(ia5));
        }
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(WORKLOAD_VALIDITY_DAYS);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(rc("signing a workload certificate"))?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What [`ensure`] and [`rotate`] did.
#[derive(Debug, Default)]
pub struct Report {
    pub ca_created: bool,
    pub issued: Vec<String>,
}

/// Creates the CA if missing and issues certificates for instances that have none.
pub fn ensure(mesh: &MeshFile, dir: &Path) -> Result<Report, CertError> {
    issue_all(mesh, dir, false)
}

/// Re-issues every workload's certificate under the existing CA (created if missing).
/// Running Envoys pick the new ones up through SDS.
pub fn rotate(mesh: &MeshFile, dir: &Path) -> Result<Report, CertError> {
    issue_all(mesh, dir, true)
}

fn issue_all(mesh: &MeshFile, dir: &Path, renew: bool) -> Result<Report, CertError> {
    let mut report = Report::default();
    let ca = if dir.join("ca.pem").exists() && dir.join("ca-key.pem").exists() {
        Ca::load(dir, &mesh.mesh.name)?
    } else {
        let ca = Ca::generate(&mesh.mesh.name)?;
        ca.save(dir)?;
        report.ca_created = true;
        ca
    };
    // Names do not depend on the target; compose has no port limit to trip on.
    let instances =
        topology::instances(mesh, Target::Compose).map_err(|e| CertError::Other(e.to_string()))?;
    let td = &mesh.mesh.trust_domain;
    for inst in &instances {
        let idir = dir.join(&inst.name);
        let cert_file = idir.join(SDS_CERT_FILE);
        let gateway_ca = match (inst.kind, &mesh.gateway) {
            (InstanceKind::Gateway, Some(g)) => {
                g.tls.as_ref().filter(|t| t.mode == GatewayTlsMode::Mutual)
            }
            _ => None,
        };
        let complete = cert_file.exists()
            && gateway_ca.is_none_or(|_| idir.join(SDS_GATEWAY_CA_FILE).exists());
        if !renew && !report.ca_created && complete {
            continue;
        }
        std::fs::create_dir_all(&idir).map_err(io(&idir))?;
        let spiffe = match inst.kind {
            InstanceKind::Sidecar { service, .. } => names::service_spiffe_id(td, service),
            InstanceKind::Gateway => {
                let ns = mesh
                    .gateway
                    .as_ref()
                    .map_or("default", |g| g.namespace.as_str());
                names::spiffe_id(td, ns, &names::gateway_service_account(&inst.name))
            }
        };
        let issued = ca.issue(Some(&spiffe), &[])?;
        write_private(
            &cert_file,
            &tls_secret(SECRET_CERT, &issued.chain_pem, &issued.key_pem),
        )?;
        write_atomic(&idir.join(SDS_CA_FILE), &ca_secret(&ca.cert_pem))?;
        if let (InstanceKind::Gateway, Some(g)) = (inst.kind, &mesh.gateway) {
            if g.tls.is_some() {
                let (chain, key) = gateway_cert(&ca, g)?;
                write_private(
                    &idir.join(SDS_GATEWAY_FILE),
                    &tls_secret(SECRET_GATEWAY, &chain, &key),
                )?;
            }
        }
        if let Some(t) = gateway_ca {
            let ca_pem = match &t.ca_certificates {
                Some(file) => std::fs::read_to_string(file).map_err(io(file))?,
                None => ca.cert_pem.clone(),
            };
            write_atomic(
                &idir.join(SDS_GATEWAY_CA_FILE),
                &validation_secret(SECRET_GATEWAY_CA, &ca_pem),
            )?;
        }
        report.issued.push(inst.name.clone());
    }
    Ok(report)
}

fn gateway_cert(ca: &Ca, g: &crate::model::GatewaySpec) -> Result<(String, String), CertError> {
    if let (Some(cert), Some(key)) = g.tls.as_ref().map_or((None, None), |t| {
        (t.cert_file.as_ref(), t.key_file.as_ref())
    }) {
        let chain = std::fs::read_to_string(cert).map_err(io(cert))?;
        let key_pem = std::fs::read_to_string(key).map_err(io(key))?;
        return Ok((chain, key_pem));
    }
    let mut dns: Vec<String> = g
        .hosts
        .iter()
        .filter(|h| !h.contains('*'))
        .cloned()
        .collect();
    if dns.is_empty() {
        dns.push("localhost".into());
    }
    let issued = ca.issue(None, &dns)?;
    Ok((issued.chain_pem, issued.key_pem))
}

/// An SDS DiscoveryResponse holding one TLS certificate secret (JSON is valid YAML).
pub fn tls_secret(name: &str, chain_pem: &str, key_pem: &str) -> Vec<u8> {
    sds(json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": name,
        "tls_certificate": {
            "certificate_chain": { "inline_string": chain_pem },
            "private_key": { "inline_string": key_pem },
        },
    }))
}

/// An SDS DiscoveryResponse holding the trust bundle.
pub fn ca_secret(ca_pem: &str) -> Vec<u8> {
    validation_secret(SECRET_CA, ca_pem)
}

/// An SDS DiscoveryResponse holding the CA bundle `name` checks peers against.
fn validation_secret(name: &str, ca_pem: &str) -> Vec<u8> {
    sds(json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": name,
        "validation_context": { "trusted_ca": { "inline_string": ca_pem } },
    }))
}

fn sds(secret: serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(&json!({ "resources": [secret] })).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Writes via a temporary file and a rename, so Envoy's directory watch sees one move.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    write_with_mode(path, bytes, 0o644)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
