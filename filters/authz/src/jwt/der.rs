//! The little DER that Envoy's `verify_signature` needs from us: public keys as
//! SubjectPublicKeyInfo and ECDSA signatures as `ECDSA-Sig-Value`.
//!
//! Written out rather than taken from the `der` crate the `rsa` crate already uses:
//! its encoder (`EncodePublicKey::to_public_key_der` for the RSA keys alone) added
//! 11.8 KB to authz.wasm when tried in session 6, for a few fixed shapes. The tests
//! hold the output to RustCrypto: the RSA key byte for byte against the `rsa` crate's
//! encoding, the EC keys by decoding them with `p256`.

/// A tag-length-value with definite length (short form below 128 bytes, else long).
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - first) as u8);
        out.extend_from_slice(&bytes[first..]);
    }
    out.extend_from_slice(content);
    out
}

/// An INTEGER holding the unsigned big-endian `magnitude`, minimally encoded: no
/// leading zeros (one kept for zero), and a zero in front when the top bit is set,
/// since INTEGER is signed.
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude.iter().position(|&b| b != 0);
    let digits = match first {
        Some(i) => &magnitude[i..],
        None => &[0u8][..],
    };
    if digits[0] & 0x80 != 0 {
        tlv(0x02, &[&[0u8][..], digits].concat())
    } else {
        tlv(0x02, digits)
    }
}

pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// SubjectPublicKeyInfo: the algorithm identifier (already DER) and the key bits.
pub fn subject_public_key_info(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let bits = tlv(0x03, &[&[0u8][..], key].concat());
    sequence(&[algorithm, &bits])
}

/// rsaEncryption (1.2.840.113549.1.1.1) with its NULL parameters.
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// An RSA public key (big-endian modulus and exponent) as SubjectPublicKeyInfo.
pub fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let key = sequence(&[&unsigned_integer(modulus), &unsigned_integer(exponent)]);
    subject_public_key_info(RSA_ALGORITHM, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_switch_to_the_long_form_at_128() {
        assert_eq!(&tlv(0x04, &[1; 127])[..2], &[0x04, 127]);
        assert_eq!(&tlv(0x04, &[1; 128])[..3], &[0x04, 0x81, 128]);
        assert_eq!(&tlv(0x04, &[1; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn integers_are_minimal() {
        assert_eq!(unsigned_integer(&[0, 0, 5]), [0x02, 1, 5]);
        assert_eq!(unsigned_integer(&[0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), [0x02, 1, 0]);
        assert_eq!(unsigned_integer(&[]), [0x02, 1, 0]);
    }

    #[test]
    fn rsa_keys_match_the_rsa_crates_encoding() {
        use rsa::pkcs8::EncodePublicKey;
        use rsa::traits::PublicKeyParts;
        let der = include_bytes!("../../tests/keys/rsa-pub.der");
        let key =
            <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(der).unwrap();
        let ours = rsa_public_key(&key.n().to_bytes_be(), &key.e().to_bytes_be());
        assert_eq!(ours, key.to_public_key_der().unwrap().as_bytes());
    }
}
