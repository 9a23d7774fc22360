//! Signature checks by the host: Envoy's `verify_signature` foreign function, which
//! runs BoringSSL's `EVP_DigestVerify`. A filter that leaves public-key maths to Envoy
//! need not link a curve implementation (P-256 and P-384 were 136 KB of authz.wasm),
//! and spends no Wasm time on it (docs/benchmarks.md prices both ways).
//!
//! The call takes and returns protocol buffers (Envoy's `VerifySignatureArguments`
//! and `VerifySignatureResult`); this module writes and reads the few fields by hand.

use super::{foreign_function, HostError};

/// How the host judged a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// The host could not use the key (not a SubjectPublicKeyInfo it imports).
    BadKey,
}

/// Checks `signature` over `text` with the DER SubjectPublicKeyInfo `public_key` and
/// the digest `hash` (`sha256`, `sha384`, `sha512`). For an EC key the signature is
/// DER (`ECDSA-Sig-Value`), as BoringSSL expects; for RSA it is PKCS #1 v1.5.
pub fn verify_signature(
    hash: &str,
    public_key: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Result<Verdict, HostError> {
    let mut args =
        Vec::with_capacity(hash.len() + public_key.len() + signature.len() + text.len() + 20);
    field(&mut args, 1, hash.as_bytes());
    field(&mut args, 2, public_key);
    field(&mut args, 3, signature);
    field(&mut args, 4, text);
    match foreign_function("verify_signature", &args) {
        Ok(Some(result)) => Ok(verdict(&result)),
        // No buffer at all is the host's NotFound: it has no such function. (Envoy
        // always answers with a result message, empty or not.)
        Ok(None) => Err(HostError::NotFound),
        Err(HostError::BadArgument) => Ok(Verdict::BadKey),
        Err(e) => Err(e),
    }
}

/// Appends a length-delimited field (wire type 2).
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint at `*at`, advancing it; `None` when the bytes end first.
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(n);
        }
    }
    None
}

/// What Envoy answers when the key does not import: `importPublicKeyDER` hands back
/// an object holding no key, and `verifySignature` reports this instead of a status
/// (source/common/crypto/utility_impl.cc). Only a missing key is BadArgument.
const KEY_NOT_USABLE: &[u8] = b"Failed to initialize digest verify";

/// The verdict in a `VerifySignatureResult`: `result` (field 1, a bool; proto3 leaves
/// out a false one) and `error` (field 2). A message that does not parse is Invalid.
fn verdict(result: &[u8]) -> Verdict {
    let mut at = 0;
    let mut valid = false;
    let mut error: &[u8] = &[];
    while at < result.len() {
        let Some(key) = read_varint(result, &mut at) else {
            return Verdict::Invalid;
        };
        match key & 7 {
            0 => match read_varint(result, &mut at) {
                Some(v) if key >> 3 == 1 => valid = v != 0,
                Some(_) => {}
                None => return Verdict::Invalid,
            },
            2 => {
                let Some(len) = read_varint(result, &mut at) else {
                    return Verdict::Invalid;
                };
                match usize::try_from(len).ok().and_then(|l| at.checked_add(l)) {
                    Some(end) if end <= result.len() => {
                        if key >> 3 == 2 {
                            error = &result[at..end];
                        }
                        at = end;
                    }
                    _ => return Verdict::Invalid,
                }
            }
            _ => return Verdict::Invalid,
        }
    }
    if valid {
        Verdict::Valid
    } else if error.starts_with(KEY_NOT_USABLE) {
        Verdict::BadKey
    } else {
        Verdict::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_length_delimited_fields() {
        let mut out = Vec::new();
        field(&mut out, 1, b"sha256");
        field(&mut out, 4, &[7u8; 300]);
        assert_eq!(&out[..8], b"\x0a\x06sha256");
        // 300 = 0b10_0101100: two varint bytes.
        assert_eq!(&out[8..11], &[0x22, 0xac, 0x02]);
        assert_eq!(out.len(), 11 + 300);
    }

    #[test]
    fn the_result_reads_field_one_and_the_error() {
        assert_eq!(verdict(&[0x08, 0x01]), Verdict::Valid);
        // Envoy adds an error string when the check fails; proto3 omits `false`.
        assert_eq!(verdict(b"\x12\x05nope!"), Verdict::Invalid);
        assert_eq!(verdict(&[]), Verdict::Invalid);
        assert_eq!(verdict(b"\x12\x00\x08\x01"), Verdict::Valid);
        let unusable = b"\x12\x23Failed to initialize digest verify.";
        assert_eq!(verdict(unusable), Verdict::BadKey);
        // Truncated or unknown wire types are not a pass.
        assert_eq!(verdict(&[0x08]), Verdict::Invalid);
        assert_eq!(verdict(&[0x08, 0x01, 0x12, 0x05, b'x']), Verdict::Invalid);
        assert_eq!(verdict(&[0x0d, 0, 0, 0, 0]), Verdict::Invalid);
    }
}
