//! ECDSA keys (ES256 on P-256, ES384 on P-384).
//!
//! In Wasm the host verifies: Envoy's `verify_signature` (BoringSSL), given the key as
//! a DER SubjectPublicKeyInfo and the signature as DER. Linking the RustCrypto curves
//! instead cost 136 KB of every module with authz in it. Natively (unit tests) the
//! RustCrypto curves check the same DER encodings, so the encodings are tested on both
//! paths; the harness and Envoy check the Wasm path.

use super::der;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The curve of a JWK `crv`.
    pub fn from_name(crv: &str) -> Option<Curve> {
        match crv {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// Bytes in one coordinate, and in each half of a JWS signature (RFC 7518 3.4).
    fn width(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// The digest JWS pairs with the curve.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn hash(self) -> &'static str {
        match self {
            Curve::P256 => "sha256",
            Curve::P384 => "sha384",
        }
    }

    /// id-ecPublicKey with the curve's OID, as a DER AlgorithmIdentifier.
    fn algorithm(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[
                0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
                0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ],
            Curve::P384 => &[
                0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                0x81, 0x04, 0x00, 0x22,
            ],
        }
    }
}

/// A trusted EC public key, held as the DER SubjectPublicKeyInfo the verifier takes.
#[derive(Clone)]
pub struct EcKey {
    pub curve: Curve,
    spki: Vec<u8>,
}

impl EcKey {
    /// The key with JWK coordinates `x` and `y`; refused unless it is a point on the
    /// curve (the verifier imports it once here to find out).
    pub fn from_coordinates(curve: Curve, x: &[u8], y: &[u8]) -> Result<EcKey, String> {
        if x.len() != curve.width() || y.len() != curve.width() {
            return Err(format!(
                "{} coordinates must be {} bytes",
                curve.name(),
                curve.width()
            ));
        }
        // The uncompressed point: 04 || x || y.
        let point = [&[0x04][..], x, y].concat();
        let spki = der::subject_public_key_info(curve.algorithm(), &point);
        let key = EcKey { curve, spki };
        backend::check_key(&key)?;
        Ok(key)
    }

    /// Checks a JWS signature (`r || s`, fixed width) over `input`.
    pub fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        der_signature(signature, self.curve.width())
            .is_some_and(|der| backend::verify(self, input, &der))
    }
}

/// A JWS `r || s` as DER `ECDSA-Sig-Value` (SEQUENCE { INTEGER r, INTEGER s });
/// `None` unless it is exactly two halves of `width` bytes.
fn der_signature(raw: &[u8], width: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * width {
        return None;
    }
    let (r, s) = raw.split_at(width);
    Some(der::sequence(&[
        &der::unsigned_integer(r),
        &der::unsigned_integer(s),
    ]))
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::EcKey;
    use crate::jwt::jwk::{host_imports, host_verifies};

    pub fn check_key(key: &EcKey) -> Result<(), String> {
        if host_imports(key.curve.hash(), &key.spki)? {
            Ok(())
        } else {
            Err(format!("bad {} point", key.curve.name()))
        }
    }

    pub fn verify(key: &EcKey, input: &[u8], der: &[u8]) -> bool {
        host_verifies(key.curve.hash(), &key.spki, der, input)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod backend {
    use super::{Curve, EcKey};
    use p256::ecdsa::signature::Verifier as _;
    use p256::pkcs8::DecodePublicKey as _;

    pub fn check_key(key: &EcKey) -> Result<(), String> {
        let imported = match key.curve {
            Curve::P256 => p256::ecdsa::VerifyingKey::from_public_key_der(&key.spki).is_ok(),
            Curve::P384 => p384::ecdsa::VerifyingKey::from_public_key_der(&key.spki).is_ok(),
        };
        if imported {
            Ok(())
        } else {
            Err(format!("bad {} point", key.curve.name()))
        }
    }

    pub fn verify(key: &EcKey, input: &[u8], der: &[u8]) -> bool {
        match key.curve {
            Curve::P256 => {
                let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(&key.spki) else {
                    return false;
                };
                p256::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify(input, &s).is_ok())
            }
            Curve::P384 => {
                let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(&key.spki) else {
                    return false;
                };
                p384::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify(input, &s).is_ok())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_become_minimal_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 5; // r = 5
        raw[32] = 0x80; // s has its top bit set
        let der = der_signature(&raw, 32).unwrap();
        assert_eq!(
            &der[..9],
            &[0x30, 38, 0x02, 0x01, 0x05, 0x02, 33, 0x00, 0x80]
        );
        assert_eq!(der.len(), 2 + 38);
        // r = 0 keeps one zero byte.
        let der = der_signature(&[0u8; 64], 32).unwrap();
        assert_eq!(der, [0x30, 6, 0x02, 1, 0, 0x02, 1, 0]);
        assert!(der_signature(&raw[..63], 32).is_none());
    }

    #[test]
    fn keys_decode_as_the_curve_crates_public_key() {
        use p256::pkcs8::DecodePublicKey;
        let secret = p256::SecretKey::from_slice(&[7; 32]).unwrap();
        let point = p256::EncodedPoint::from(secret.public_key());
        let (x, y) = (point.x().unwrap(), point.y().unwrap());
        let key = EcKey::from_coordinates(Curve::P256, x, y).unwrap();
        let decoded = p256::PublicKey::from_public_key_der(&key.spki).unwrap();
        assert_eq!(decoded, secret.public_key());
    }

    #[test]
    fn a_point_off_the_curve_is_refused() {
        let err = EcKey::from_coordinates(Curve::P256, &[1; 32], &[2; 32]).err();
        assert_eq!(err.as_deref(), Some("bad P-256 point"));
        assert!(EcKey::from_coordinates(Curve::P384, &[1; 32], &[2; 32]).is_err());
    }
}
