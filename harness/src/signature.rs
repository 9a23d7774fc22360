//! The host side of Envoy's `verify_signature` foreign function, for RSA (PKCS #1
//! v1.5, BoringSSL's default padding), P-256 and P-384 keys: the arguments are a
//! `VerifySignatureArguments` protobuf (hash name, DER SubjectPublicKeyInfo, signature,
//! text), the answer a `VerifySignatureResult`. As in Envoy 1.40, no key at all is
//! `BadArgument`; a key that does not import is a result whose error is "Failed to
//! initialize digest verify."; a signature that does not verify is a result without
//! `result = true`. EC signatures are DER.

use crate::Status;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256, Sha384, Sha512};

pub(crate) fn verify_signature(args: &[u8]) -> Result<Vec<u8>, Status> {
    let fields = Fields::parse(args).ok_or(Status::BadArgument)?;
    if fields.public_key.is_empty() {
        return Err(Status::BadArgument);
    }
    // As Envoy: a key that does not import is reported in the result, not by status.
    let Some(key) = Key::import(fields.public_key) else {
        return Ok(failure("Failed to initialize digest verify."));
    };
    // The digest, and the PKCS #1 v1.5 scheme that names it for an RSA key.
    let (digest, pkcs1) = match fields.hash {
        b"sha256" => (
            Sha256::digest(fields.text).to_vec(),
            rsa::Pkcs1v15Sign::new::<Sha256>(),
        ),
        b"sha384" => (
            Sha384::digest(fields.text).to_vec(),
            rsa::Pkcs1v15Sign::new::<Sha384>(),
        ),
        b"sha512" => (
            Sha512::digest(fields.text).to_vec(),
            rsa::Pkcs1v15Sign::new::<Sha512>(),
        ),
        other => {
            let name = String::from_utf8_lossy(other);
            return Ok(failure(&format!("{name} is not supported.")));
        }
    };
    let valid = match key {
        Key::Rsa(k) => k.verify(pkcs1, &digest, fields.signature).is_ok(),
        Key::P256(k) => p256::ecdsa::Signature::from_der(fields.signature)
            .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
        Key::P384(k) => p384::ecdsa::Signature::from_der(fields.signature)
            .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
    };
    Ok(if valid {
        vec![0x08, 0x01]
    } else {
        failure("Failed to verify digest.")
    })
}

/// A result with `result` left false (proto3 omits it) and an `error` message.
fn failure(message: &str) -> Vec<u8> {
    let mut out = vec![0x12];
    let mut len = message.len();
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(message.as_bytes());
    out
}

enum Key {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl Key {
    fn import(der: &[u8]) -> Option<Key> {
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(der) {
            return Some(Key::Rsa(k));
        }
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Some(Key::P256(k));
        }
        p384::ecdsa::VerifyingKey::from_public_key_der(der)
            .ok()
            .map(Key::P384)
    }
}

#[derive(Default)]
struct Fields<'a> {
    hash: &'a [u8],
    public_key: &'a [u8],
    signature: &'a [u8],
    text: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The length-delimited fields 1-4; `None` for anything that is not protobuf.
    fn parse(mut bytes: &'a [u8]) -> Option<Fields<'a>> {
        let mut f = Fields::default();
        while !bytes.is_empty() {
            let key = varint(&mut bytes)?;
            if key & 7 != 2 {
                return None;
            }
            let len = usize::try_from(varint(&mut bytes)?).ok()?;
            let value = bytes.get(..len)?;
            bytes = &bytes[len..];
            match key >> 3 {
                1 => f.hash = value,
                2 => f.public_key = value,
                3 => f.signature = value,
                4 => f.text = value,
                _ => {}
            }
        }
        Some(f)
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(n);
        }
    }
    None
}
