//! Fixed signing keys, their JWKS, and token minting (including the malformed and
//! malicious tokens of the attack corpus). Shared by authz's unit tests, its harness
//! tests and bench, and the real-Envoy tests.
//! The keys stay in filters/authz/tests/keys, where authz's own unit tests read the
//! public one too; the private keys there are test fixtures, not secrets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "shop";
/// 32 bytes, the HS256 minimum.
pub const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub struct Keys {
    pub rsa: RsaPrivateKey,
    pub rsa_other: RsaPrivateKey,
    pub ec: p256::ecdsa::SigningKey,
    pub ec384: p384::ecdsa::SigningKey,
    pub ed: ed25519_dalek::SigningKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaPrivateKey::from_pkcs8_pem(include_str!("../../authz/tests/keys/rsa.pem")).unwrap(),
        rsa_other: RsaPrivateKey::from_pkcs8_pem(include_str!(
            "../../authz/tests/keys/rsa-other.pem"
        ))
        .unwrap(),
        ec: p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap(),
        ec384: p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).unwrap(),
        ed: ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]),
    })
}

/// The RSA public key as DER (what an attacker would use as an HMAC secret).
pub fn rsa_public_der() -> &'static [u8] {
    include_bytes!("../../authz/tests/keys/rsa-pub.der")
}

/// The RSA public key as PEM, the other form an attacker would try as an HMAC secret.
pub fn rsa_public_pem() -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(rsa_public_der());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_jwk(key: &RsaPrivateKey, kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "use": "sig",
           "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
}

/// The public JWKS of the trusted keys: rsa-1 (RS*/PS*, no alg), es-1, es384-1, ed-1.
pub fn public_jwks() -> Value {
    let k = keys();
    let ec = k.ec.verifying_key().to_encoded_point(false);
    let ec384 = k.ec384.verifying_key().to_encoded_point(false);
    json!({"keys": [
        rsa_jwk(&k.rsa, "rsa-1"),
        {"kty": "EC", "crv": "P-256", "kid": "es-1", "x": b64(ec.x().unwrap()), "y": b64(ec.y().unwrap())},
        {"kty": "EC", "crv": "P-384", "kid": "es384-1", "x": b64(ec384.x().unwrap()), "y": b64(ec384.y().unwrap())},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64(k.ed.verifying_key().as_bytes())},
    ]})
}

/// [`public_jwks`] plus a P-256 key whose point is not on the curve (`bad-ec`): a
/// provider's broken key is skipped and the others serve.
pub fn jwks_with_an_off_curve_key() -> Value {
    let mut jwks = public_jwks();
    jwks["keys"].as_array_mut().unwrap().push(
        json!({"kty": "EC", "crv": "P-256", "kid": "bad-ec", "x": b64(&[1; 32]), "y": b64(&[2; 32])}),
    );
    jwks
}

/// A JWKS with only the other RSA key (for key-rotation tests).
pub fn other_jwks() -> Value {
    json!({"keys": [rsa_jwk(&keys().rsa_other, "rsa-2")]})
}

/// The trusted HS256 key, for a rule that explicitly configures it.
pub fn hmac_jwks() -> Value {
    json!({"keys": [{"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64(HMAC_SECRET)}]})
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims at `now`: iss, sub, aud, iat, exp in an hour.
pub fn claims_at(now: i64) -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": now, "exp": now + 3600,
           "groups": ["dev", "ops"], "org": {"team": "core"}})
}

/// Signs `header`.`claims` with `alg` using the matching fixture key (the RSA one for
/// RS/PS, the HMAC secret for HS unless `hmac_secret` overrides it).
pub fn sign_raw(header: &Value, claims: &Value, hmac_secret: Option<&[u8]>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let alg = header["alg"].as_str().unwrap_or("none");
    let sig = signature(alg, input.as_bytes(), hmac_secret);
    format!("{input}.{}", b64(&sig))
}

/// A token from header and payload text as given (so a member can repeat), signed
/// with the key `signer` names (see [`signature`]).
pub fn sign_text(header: &str, payload: &str, signer: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = signature(signer, input.as_bytes(), None);
    format!("{input}.{}", b64(&sig))
}

/// Signs with the key `signer` names (see [`signature`]) whatever the header says.
pub fn sign_as(header: &Value, claims: &Value, signer: &str) -> String {
    sign_text(&header.to_string(), &claims.to_string(), signer)
}

pub fn signature(alg: &str, input: &[u8], hmac_secret: Option<&[u8]>) -> Vec<u8> {
    use hmac::Mac;
    use p256::ecdsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    let k = keys();
    let hmac = |secret: &[u8]| {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        m.update(input);
        m.finalize().into_bytes().to_vec()
    };
    match alg {
        "RS256" => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(k.rsa.clone())
            .sign(input)
            .to_vec(),
        "RS384" => rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(k.rsa.clone())
            .sign(input)
            .to_vec(),
        "RS512" => rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(k.rsa.clone())
            .sign(input)
            .to_vec(),
        "PS256" => rsa::pss::SigningKey::<sha2::Sha256>::new(k.rsa.clone())
            .sign_with_rng(&mut rand_core::OsRng, input)
            .to_vec(),
        "ES256" => {
            let s: p256::ecdsa::Signature = k.ec.sign(input);
            s.to_bytes().to_vec()
        }
        "ES384" => {
            let s: p384::ecdsa::Signature = k.ec384.sign(input);
            s.to_bytes().to_vec()
        }
        "ES256-der" => {
            let s: p256::ecdsa::Signature = k.ec.sign(input);
            s.to_der().as_bytes().to_vec()
        }
        "zeros-64" => vec![0; 64],
        "EdDSA" => {
            use ed25519_dalek::Signer as _;
            k.ed.sign(input).to_bytes().to_vec()
        }
        "HS256" => hmac(hmac_secret.unwrap_or(HMAC_SECRET)),
        "RS256-other" => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(k.rsa_other.clone())
            .sign(input)
            .to_vec(),
        _ => b"x".to_vec(),
    }
}

/// The kid the fixture JWKS gives the key for `alg`.
pub fn kid_for(alg: &str) -> &'static str {
    match alg {
        "ES256" => "es-1",
        "ES384" => "es384-1",
        "EdDSA" => "ed-1",
        "HS256" => "hs-1",
        _ => "rsa-1",
    }
}

/// A valid token signed with `alg` by the trusted fixture key, claims at `now`.
pub fn token(alg: &str, now: i64) -> String {
    token_with(alg, &claims_at(now))
}

pub fn token_with(alg: &str, claims: &Value) -> String {
    sign_raw(
        &json!({"alg": alg, "typ": "JWT", "kid": kid_for(alg)}),
        claims,
        None,
    )
}

/// Replaces the payload of a signed token, keeping its signature.
pub fn tamper(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// Every attack token of the corpus, named, minted at `now` for the fixture issuer.
pub fn attack_tokens(now: i64) -> Vec<(&'static str, String)> {
    let good = claims_at(now);
    let mut expired = good.clone();
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 7200);
    let mut not_yet = good.clone();
    not_yet["nbf"] = json!(now + 3600);
    let mut future_iat = good.clone();
    future_iat["iat"] = json!(now + 3600);
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("other-service");
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut admin = good.clone();
    admin["sub"] = json!("admin");
    let valid = token("RS256", now);
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(good.to_string().as_bytes());
    vec![
        (
            "alg none, empty signature",
            format!("{none_header}.{payload}."),
        ),
        (
            "alg none, with signature",
            format!("{none_header}.{payload}.{}", b64(b"sig")),
        ),
        ("alg NoNe", sign_raw(&json!({"alg": "NoNe"}), &good, None)),
        ("expired", token_with("RS256", &expired)),
        ("not yet valid (nbf)", token_with("RS256", &not_yet)),
        (
            "issued in the future (iat)",
            token_with("RS256", &future_iat),
        ),
        ("no exp", token_with("RS256", &no_exp)),
        ("wrong iss", token_with("RS256", &wrong_iss)),
        ("wrong aud", token_with("RS256", &wrong_aud)),
        ("tampered payload", tamper(&valid, &admin)),
        (
            "HS256 signed with the RSA public key (DER)",
            sign_raw(
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &good,
                Some(rsa_public_der()),
            ),
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            sign_raw(&json!({"alg": "HS256"}), &good, Some(rsa_public_der())),
        ),
        (
            "unknown kid",
            sign_raw(&json!({"alg": "RS256", "kid": "attacker"}), &good, None),
        ),
        (
            "untrusted key, no kid",
            sign_as(&json!({"alg": "RS256"}), &good, "RS256-other"),
        ),
        (
            "untrusted key, trusted kid",
            sign_as(
                &json!({"alg": "RS256", "kid": "rsa-1"}),
                &good,
                "RS256-other",
            ),
        ),
        (
            "ES256 header on the RSA key",
            sign_raw(&json!({"alg": "ES256", "kid": "rsa-1"}), &good, None),
        ),
        (
            "malformed base64 header",
            format!("!!!.{payload}.{}", b64(b"sig")),
        ),
        (
            "padded base64",
            format!("{}=.{payload}.{}", b64(br#"{"alg":"RS256"}"#), b64(b"sig")),
        ),
        (
            "header not JSON",
            format!("{}.{payload}.{}", b64(b"{alg"), b64(b"sig")),
        ),
        (
            "payload not JSON",
            format!(
                "{}.{}.{}",
                b64(br#"{"alg":"RS256"}"#),
                b64(b"[1,2"),
                b64(b"sig")
            ),
        ),
        (
            "payload a JSON array",
            format!(
                "{}.{}.{}",
                b64(br#"{"alg":"RS256"}"#),
                b64(b"[1]"),
                b64(b"sig")
            ),
        ),
        (
            "two parts",
            format!("{}.{payload}", b64(br#"{"alg":"RS256"}"#)),
        ),
        ("four parts", format!("{valid}.x")),
        (
            "crit header",
            sign_raw(
                &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}),
                &good,
                None,
            ),
        ),
        ("signature truncated", valid[..valid.len() - 10].to_string()),
        // Members named twice, correctly signed: only the repetition is wrong.
        (
            "header names alg twice",
            sign_text(
                r#"{"alg":"none","alg":"RS256","kid":"rsa-1"}"#,
                &good.to_string(),
                "RS256",
            ),
        ),
        (
            "payload names a claim twice",
            sign_text(
                r#"{"alg":"RS256","kid":"rsa-1"}"#,
                &{
                    let text = good.to_string();
                    format!("{},\"sub\":\"admin\"}}", &text[..text.len() - 1])
                },
                "RS256",
            ),
        ),
        // ECDSA, which the Wasm build hands to the host as DER.
        (
            "tampered ES256 payload",
            tamper(&token("ES256", now), &admin),
        ),
        (
            "tampered ES384 payload",
            tamper(&token("ES384", now), &admin),
        ),
        (
            "signature in DER, not r||s, on the P-256 key",
            sign_as(&json!({"alg": "ES256", "kid": "es-1"}), &good, "ES256-der"),
        ),
        (
            "signature of zeros on the P-256 key",
            sign_as(&json!({"alg": "ES256", "kid": "es-1"}), &good, "zeros-64"),
        ),
        (
            "signature by the P-256 key under ES384 on the P-384 key",
            sign_as(&json!({"alg": "ES384", "kid": "es384-1"}), &good, "ES256"),
        ),
        (
            "ES384 header on the P-256 key",
            sign_as(&json!({"alg": "ES384", "kid": "es-1"}), &good, "ES384"),
        ),
        ("oversized", format!("{valid}{}", "A".repeat(20_000))),
    ]
}
