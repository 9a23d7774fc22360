//! A real TLS client (rustls) for tests that must tell a refused TLS handshake from
//! any other failure: a plaintext answer, a refused TCP connect, an HTTP error.
//!
//! With TLS 1.3 a client finishes its side of the handshake before the server has
//! checked the client's certificate, so a server's refusal of that certificate
//! arrives as an alert on the first read: [`TlsClient::get`] sends a request and
//! reads, and reports a refusal wherever in that exchange it came.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::http::{self, Connection};

pub use rustls::{AlertDescription, CertificateError};

/// A TLS session carrying HTTP/1.1.
pub type TlsConnection = Connection<StreamOwned<ClientConnection, TcpStream>>;

/// How a TLS exchange ended without an HTTP response.
#[derive(Debug)]
pub enum Failure {
    /// The peer refused the handshake with this alert (e.g. `UnknownCA`,
    /// `CertificateRequired`, `HandshakeFailure`).
    Alert(AlertDescription),
    /// This client refused the peer's certificate (e.g. `NotValidForName`,
    /// `UnknownIssuer`).
    PeerCertificate(CertificateError),
    /// The peer closed the connection mid-handshake, before any certificate, without
    /// an alert (Envoy with no filter chain for the client's SNI does this).
    ClosedInHandshake,
    /// Not a TLS refusal: a refused connect, a timeout, a closed connection after
    /// the handshake, garbage.
    Other(anyhow::Error),
}

impl Failure {
    fn classify(err: anyhow::Error, handshaking: bool) -> Failure {
        let io_err = err.chain().find_map(|e| e.downcast_ref::<io::Error>());
        let tls_err = io_err
            .and_then(|e| e.get_ref())
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        match tls_err {
            Some(rustls::Error::AlertReceived(alert)) => Failure::Alert(*alert),
            Some(rustls::Error::InvalidCertificate(c)) => Failure::PeerCertificate(c.clone()),
            _ if handshaking
                && io_err.is_some_and(|e| {
                    matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    )
                }) =>
            {
                Failure::ClosedInHandshake
            }
            _ => Failure::Other(err),
        }
    }
}

/// Whose certificate the server must present, beyond chaining to the trusted CA.
#[derive(Debug, Clone)]
pub enum ServerIdentity {
    /// A DNS name: the SNI sent (a gateway's host).
    Sni,
    /// A SPIFFE ID as URI SAN (a sidecar: mesh certificates name no DNS host).
    Spiffe(String),
}

/// A client trusting one CA, optionally presenting a certificate of its own.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Trusts the CA certificate(s) in `ca_pem` and checks the server's name against
    /// the SNI; presents `identity` (chain PEM, key PEM) when given. ALPN offers
    /// HTTP/1.1 only.
    pub fn new(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<TlsClient> {
        TlsClient::with_server_identity(ca_pem, identity, ServerIdentity::Sni)
    }

    /// As [`TlsClient::new`], for a sidecar: the server's certificate must chain to
    /// the CA and carry `spiffe` (Istio's check), whatever the SNI.
    pub fn mesh(ca_pem: &str, identity: Option<(&str, &str)>, spiffe: &str) -> Result<TlsClient> {
        TlsClient::with_server_identity(
            ca_pem,
            identity,
            ServerIdentity::Spiffe(spiffe.to_string()),
        )
    }

    fn with_server_identity(
        ca_pem: &str,
        identity: Option<(&str, &str)>,
        server: ServerIdentity,
    ) -> Result<TlsClient> {
        // Deprecated for lacking post-quantum key exchange, which a test client of
        // Envoy's classical TLS does not need; aws-lc-rs would need cmake to build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("CA PEM")?)?;
        }
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match server {
            ServerIdentity::Sni => builder.with_root_certificates(roots),
            ServerIdentity::Spiffe(spiffe) => {
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SpiffeVerifier { webpki, spiffe }))
            }
        };
        let mut config = match identity {
            Some((chain_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .context("client chain PEM")?;
                let key =
                    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("client key PEM")?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// Connects to `addr` naming `sni`, completes the handshake, and returns the
    /// session for kept-alive requests.
    pub fn connect(&self, addr: SocketAddr, sni: &str) -> Result<TlsConnection, Failure> {
        let name = ServerName::try_from(sni.to_string())
            .map_err(|e| Failure::Other(anyhow!("SNI {sni:?}: {e}")))?;
        let session = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| Failure::Other(e.into()))?;
        let tcp = TcpStream::connect_timeout(&addr, http::TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))
            .map_err(Failure::Other)?;
        let set_timeouts = tcp
            .set_read_timeout(Some(http::TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(http::TIMEOUT)));
        set_timeouts.map_err(|e| Failure::Other(e.into()))?;
        let mut stream = StreamOwned::new(session, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .context("TLS handshake")
                .map_err(|e| Failure::classify(e, true))?;
        }
        Ok(Connection::new(stream))
    }

    /// One `GET path` (with `host`) on a new connection: the response, or how the
    /// exchange failed.
    pub fn get(
        &self,
        addr: SocketAddr,
        sni: &str,
        path: &str,
        host: &str,
    ) -> Result<http::Response, Failure> {
        let mut conn = self.connect(addr, sni)?;
        // A refusal of this client's certificate reaches it here, as TLS 1.3 has it.
        let handshaking = conn.stream().conn.is_handshaking();
        conn.get(path, host)
            .map_err(|e| Failure::classify(e, handshaking))
    }
}

/// The DER of the certificate the server presented on `conn`.
pub fn peer_certificate(conn: &TlsConnection) -> Option<Vec<u8>> {
    conn.stream()
        .conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.as_ref().to_vec())
}

/// The DER of the first certificate in `pem`.
pub fn first_certificate_der(pem: &str) -> Result<Vec<u8>> {
    let cert = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| anyhow!("no certificate in PEM"))??;
    Ok(cert.as_ref().to_vec())
}

/// webpki's chain check, then the SPIFFE ID instead of a DNS name: webpki checks the
/// chain before the name, so "not valid for name" means the chain passed.
#[derive(Debug)]
struct SpiffeVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    spiffe: String,
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(verified) => Ok(verified),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if contains(end_entity.as_ref(), self.spiffe.as_bytes()) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Whether the DER holds `needle` (a SAN URI is stored as its plain bytes).
fn contains(der: &[u8], needle: &[u8]) -> bool {
    der.windows(needle.len()).any(|w| w == needle)
}

/// What a TLS-only listener sent back to a plaintext HTTP request, read until it
/// closed the connection.
#[derive(Debug)]
pub struct PlaintextAnswer {
    pub bytes: Vec<u8>,
}

impl PlaintextAnswer {
    /// Refused as TLS refuses a non-TLS client: nothing at all, or a TLS alert record
    /// (content type 21, version 3.x), never an HTTP response.
    pub fn is_tls_refusal(&self) -> bool {
        matches!(self.bytes.as_slice(), [] | [21, 3, _, ..])
    }
}

/// Sends a plaintext HTTP request to `addr` and reads whatever comes back until the
/// server closes (a reset counts as closed).
pub fn send_plaintext(addr: SocketAddr) -> Result<PlaintextAnswer> {
    use std::io::{Read, Write};
    let mut tcp = TcpStream::connect_timeout(&addr, http::TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(http::TIMEOUT))?;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: plaintext\r\n\r\n")?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e).context("reading the plaintext answer"),
        }
    }
    Ok(PlaintextAnswer { bytes })
}
