//! The subject, SAN and expiry of a PEM certificate, for `wasmesh proxy-config
//! secrets`: what a person checks when mTLS fails (whose certificate, valid until).

use x509_parser::extensions::GeneralName;

/// What `proxy-config secrets` shows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    /// The subject alternative names, comma-separated, `-` when there are none.
    pub san: String,
    /// `not after`, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
}

/// The first certificate of `pem` (a chain's leaf), or `None` when there is none or
/// it does not parse.
pub fn first(pem: &str) -> Option<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::URI(u) => (*u).to_string(),
                    GeneralName::DNSName(d) => (*d).to_string(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let t = cert.validity().not_after.to_datetime();
    Some(CertInfo {
        subject: cert.subject().to_string(),
        san: if sans.is_empty() {
            "-".into()
        } else {
            sans.join(",")
        },
        not_after: format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
    })
}
