//! Trusted keys (JWK) and signature checks.
//!
//! The algorithm is pinned by the key, never chosen by the token: a key allows its JWK
//! `alg` if it states one, otherwise only the algorithms of its own type and curve
//! (RSA: RS*/PS*; P-256: ES256; P-384: ES384; Ed25519: EdDSA). Symmetric (`oct`) keys
//! are accepted only from inline JWKS and only with an explicit HS* `alg`, so an RSA
//! public key can never be used as an HMAC secret (the HS/RS confusion attack) and a
//! remote JWKS cannot smuggle in a shared secret. `none` is not an algorithm here.

use super::der;
use super::ec::{Curve, EcKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Verifier as _;
use hmac::{Hmac, Mac};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pss, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};
use wasmesh_sdk::config::Json;

/// RSA moduli shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;
/// HMAC secrets shorter than the hash output are refused (RFC 7518 section 3.2).
const MIN_HMAC_BYTES: usize = 32;

macro_rules! hmac_ok {
    ($digest:ty, $secret:expr, $input:expr, $signature:expr) => {
        match Hmac::<$digest>::new_from_slice($secret) {
            Ok(mut mac) => {
                mac.update($input);
                // Constant-time comparison.
                mac.verify_slice($signature).is_ok()
            }
            Err(_) => false,
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

impl Alg {
    /// The JWS name; `none` and anything unknown is `None`.
    pub fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            _ => return None,
        })
    }

    fn is_hmac(self) -> bool {
        matches!(self, Alg::Hs256 | Alg::Hs384 | Alg::Hs512)
    }
}

pub enum Material {
    Rsa(RsaKey),
    Ec(EcKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key bytes (an HMAC secret would end up in a log).
        f.write_str(match self {
            Material::Rsa(_) => "RSA",
            Material::Ec(key) => key.curve.name(),
            Material::Ed25519(_) => "Ed25519",
            Material::Hmac(_) => "oct",
        })
    }
}

/// One trusted key.
#[derive(Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it states one.
    pub alg: Option<Alg>,
    pub material: Material,
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`.
    pub fn allows(&self, alg: Alg) -> bool {
        if let Some(pinned) = self.alg {
            return pinned == alg;
        }
        match self.material {
            Material::Rsa(_) => matches!(
                alg,
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ),
            Material::Ec(ref key) => match key.curve {
                Curve::P256 => alg == Alg::Es256,
                Curve::P384 => alg == Alg::Es384,
            },
            Material::Ed25519(_) => alg == Alg::EdDsa,
            // Parsing refuses oct keys without `alg`; this keeps the rule local too.
            Material::Hmac(_) => false,
        }
    }

    /// Checks `signature` over `input` with `alg`; false for any mismatch.
    pub fn verify(&self, alg: Alg, input: &[u8], signature: &[u8]) -> bool {
        if !self.allows(alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Rsa(key), Alg::Rs256) => key.pkcs1(Hash::Sha256, input, signature),
            (Material::Rsa(key), Alg::Rs384) => key.pkcs1(Hash::Sha384, input, signature),
            (Material::Rsa(key), Alg::Rs512) => key.pkcs1(Hash::Sha512, input, signature),
            (Material::Rsa(key), Alg::Ps256) => key
                .key
                .verify(Pss::new::<Sha256>(), &Sha256::digest(input), signature)
                .is_ok(),
            (Material::Rsa(key), Alg::Ps384) => key
                .key
                .verify(Pss::new::<Sha384>(), &Sha384::digest(input), signature)
                .is_ok(),
            (Material::Rsa(key), Alg::Ps512) => key
                .key
                .verify(Pss::new::<Sha512>(), &Sha512::digest(input), signature)
                .is_ok(),
            // `allows` has matched the alg to the curve.
            (Material::Ec(key), Alg::Es256 | Alg::Es384) => key.verify(input, signature),
            (Material::Ed25519(key), Alg::EdDsa) => ed25519_dalek::Signature::from_slice(signature)
                // verify_strict also refuses small-order keys and malleable signatures.
                .is_ok_and(|sig| {
                    key.verify_strict(input, &sig).is_ok() && key.verify(input, &sig).is_ok()
                }),
            (Material::Hmac(secret), Alg::Hs256) => hmac_ok!(Sha256, secret, input, signature),
            (Material::Hmac(secret), Alg::Hs384) => hmac_ok!(Sha384, secret, input, signature),
            (Material::Hmac(secret), Alg::Hs512) => hmac_ok!(Sha512, secret, input, signature),
            _ => false,
        }
    }
}

/// An RSA public key, and the same key as DER SubjectPublicKeyInfo for the host.
pub struct RsaKey {
    key: RsaPublicKey,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    spki: Vec<u8>,
}

impl RsaKey {
    /// RS256/384/512 (PKCS #1 v1.5). In Wasm, Envoy's `verify_signature` checks it
    /// (BoringSSL, whose default RSA padding this is): a 2048-bit check in Wasm costs
    /// about a millisecond, which any token with a trusted `kid` and a bad signature
    /// could make a worker spend. PSS has no host check (Envoy pads PKCS #1 only), so
    /// it stays in the module.
    fn pkcs1(&self, hash: Hash, input: &[u8], signature: &[u8]) -> bool {
        #[cfg(target_arch = "wasm32")]
        {
            let name = match hash {
                Hash::Sha256 => "sha256",
                Hash::Sha384 => "sha384",
                Hash::Sha512 => "sha512",
            };
            host_verifies(name, &self.spki, signature, input)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rsa::Pkcs1v15Sign;
            let check = |scheme: Pkcs1v15Sign, digest: &[u8]| {
                self.key.verify(scheme, digest, signature).is_ok()
            };
            match hash {
                Hash::Sha256 => check(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input)),
                Hash::Sha384 => check(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(input)),
                Hash::Sha512 => check(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input)),
            }
        }
    }
}

/// The digest of an RS* algorithm.
#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// Whether the host (Envoy's `verify_signature`) finds `signature` valid; false for
/// any failure of the call.
#[cfg(target_arch = "wasm32")]
pub fn host_verifies(hash: &str, spki: &[u8], signature: &[u8], input: &[u8]) -> bool {
    use wasmesh_sdk::host::{verify_signature, Verdict};
    matches!(
        verify_signature(hash, spki, signature, input),
        Ok(Verdict::Valid)
    )
}

/// Whether the host can import the key `spki`, asked once when a JWKS is read so that a
/// key the host refuses, or a host without `verify_signature`, shows in the log then
/// rather than as denied requests. With an empty signature the host answers BadKey
/// only if the key does not import; a key it imports just fails to verify.
#[cfg(target_arch = "wasm32")]
pub fn host_imports(hash: &str, spki: &[u8]) -> Result<bool, String> {
    use wasmesh_sdk::host::{verify_signature, Verdict};
    match verify_signature(hash, spki, &[], &[]) {
        Ok(Verdict::BadKey) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(format!(
            "the host cannot verify signatures (verify_signature: {e})"
        )),
    }
}

fn b64(value: Option<&Value>, field: &str) -> Result<Vec<u8>, String> {
    let text = value
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing `{field}`"))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("`{field}` is not base64url"))
}

/// Parses one JWK. `allow_symmetric` is true only for inline JWKS.
pub fn parse_jwk(v: &Value, allow_symmetric: bool) -> Result<Jwk, String> {
    if let Some(u) = v.get("use").and_then(Value::as_str) {
        if u != "sig" {
            return Err(format!("`use` is `{u}`, not `sig`"));
        }
    }
    let kid = v.get("kid").and_then(Value::as_str).map(str::to_string);
    let alg = match v.get("alg").and_then(Value::as_str) {
        Some(name) => Some(Alg::parse(name).ok_or_else(|| format!("unsupported alg `{name}`"))?),
        None => None,
    };
    let kty = v.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = v.get("crv").and_then(Value::as_str).unwrap_or("");
    let material = match kty {
        "RSA" => {
            let (n, e) = (b64(v.get("n"), "n")?, b64(v.get("e"), "e")?);
            let key = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
                .map_err(|e| format!("bad RSA key: {e}"))?;
            if key.n().bits() < MIN_RSA_BITS {
                return Err(format!("RSA key shorter than {MIN_RSA_BITS} bits"));
            }
            let spki = der::rsa_public_key(&n, &e);
            #[cfg(target_arch = "wasm32")]
            if !host_imports("sha256", &spki)? {
                return Err("the host refuses this RSA key".into());
            }
            Material::Rsa(RsaKey { key, spki })
        }
        "EC" => {
            let curve =
                Curve::from_name(crv).ok_or_else(|| format!("unsupported EC curve `{crv}`"))?;
            let (x, y) = (b64(v.get("x"), "x")?, b64(v.get("y"), "y")?);
            Material::Ec(EcKey::from_coordinates(curve, &x, &y)?)
        }
        "OKP" if crv == "Ed25519" => {
            let x: [u8; 32] = b64(v.get("x"), "x")?
                .try_into()
                .map_err(|_| "Ed25519 `x` is not 32 bytes".to_string())?;
            Material::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "bad Ed25519 key".to_string())?,
            )
        }
        "oct" => {
            if !allow_symmetric {
                return Err("symmetric keys are accepted only in inline `jwks`".into());
            }
            if !alg.is_some_and(Alg::is_hmac) {
                return Err("an `oct` key needs an explicit `alg` of HS256, HS384 or HS512".into());
            }
            let k = b64(v.get("k"), "k")?;
            if k.len() < MIN_HMAC_BYTES {
                return Err(format!("HMAC secret shorter than {MIN_HMAC_BYTES} bytes"));
            }
            Material::Hmac(k)
        }
        other => return Err(format!("unsupported key type `{other}` `{crv}`")),
    };
    // A pinned alg must fit the key type; HS on an RSA key would be nonsense.
    let jwk = Jwk {
        kid,
        alg: None,
        material,
    };
    if let Some(a) = alg {
        if !jwk.allows(a) && !matches!(jwk.material, Material::Hmac(_)) {
            return Err(format!("alg {a:?} does not fit a {:?} key", jwk.material));
        }
    }
    Ok(Jwk { alg, ..jwk })
}

/// Parses a JWK Set. Keys that cannot be used are skipped and described in the second
/// list (a provider may publish encryption keys beside signing keys); a set without any
/// usable key is an error.
pub fn parse_jwks(text: &[u8], allow_symmetric: bool) -> Result<(Vec<Jwk>, Vec<String>), String> {
    // Through the SDK's tree, as tokens are: one JSON parser in the module, and a
    // member named twice is an error rather than the parser's choice.
    let doc = Json::parse(text).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    jwks_from_tree(doc, allow_symmetric)
}

/// A JWKS document already parsed (an inline `jwks` written as an object).
pub fn jwks_from_tree(doc: Json, allow_symmetric: bool) -> Result<(Vec<Jwk>, Vec<String>), String> {
    let doc = Value::from(doc);
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no `keys` array")?;
    let mut good = Vec::new();
    let mut skipped = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match parse_jwk(k, allow_symmetric) {
            Ok(jwk) => good.push(jwk),
            Err(e) => skipped.push(format!("keys[{i}]: {e}")),
        }
    }
    if good.is_empty() {
        return Err(format!("JWKS has no usable key ({})", skipped.join("; ")));
    }
    Ok((good, skipped))
}
