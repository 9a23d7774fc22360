//! Token verification: every algorithm, every refusal of the attack corpus.

use super::*;
use crate::config::JwtRuleConfig;
use crate::mint;
use serde_json::json;

fn rule(extra: Value) -> JwtRule {
    let mut c = json!({"issuer": mint::ISSUER, "audiences": [mint::AUDIENCE], "jwks": mint::public_jwks().to_string()});
    if let (Some(base), Some(more)) = (c.as_object_mut(), extra.as_object()) {
        base.extend(more.clone());
    }
    let c: JwtRuleConfig = wasmesh_sdk::config::from_value(&c).unwrap();
    JwtRule::compile(&c).unwrap()
}

fn keys(rule: &JwtRule) -> &[Jwk] {
    match &rule.keys {
        KeySource::Inline(k) => k,
        KeySource::Remote(_) => panic!("inline expected"),
    }
}

/// The whole check as the stage runs it, minus caching.
fn verify(rule: &JwtRule, token: &str, now: i64) -> Result<String, JwtError> {
    let t = parse(token, 8192)?;
    check_signature(&t, keys(rule))?;
    check_claims(rule, &t.claims, now, 60)?;
    Ok(principal(&t.claims))
}

#[test]
fn every_supported_algorithm_verifies() {
    let r = rule(json!({}));
    let now = mint::now();
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
    ] {
        let t = mint::token(alg, now);
        assert_eq!(
            verify(&r, &t, now),
            Ok(format!("{}/alice", mint::ISSUER)),
            "{alg}"
        );
    }
}

#[test]
fn hs256_only_with_an_explicitly_configured_key() {
    let now = mint::now();
    let hs = rule(json!({"jwks": mint::hmac_jwks().to_string()}));
    assert!(verify(&hs, &mint::token("HS256", now), now).is_ok());
    let no_alg = json!({"keys": [{"kty": "oct", "k": mint::b64(mint::HMAC_SECRET)}]});
    let c: JwtRuleConfig =
        wasmesh_sdk::config::from_value(&json!({"issuer": "i", "jwks": no_alg.to_string()}))
            .unwrap();
    assert!(JwtRule::compile(&c)
        .unwrap_err()
        .to_string()
        .contains("explicit `alg`"));
    let short = json!({"keys": [{"kty": "oct", "alg": "HS256", "k": mint::b64(b"short")}]});
    let c: JwtRuleConfig =
        wasmesh_sdk::config::from_value(&json!({"issuer": "i", "jwks": short})).unwrap();
    assert!(JwtRule::compile(&c)
        .unwrap_err()
        .to_string()
        .contains("shorter"));
    // A remote JWKS can never introduce a shared secret.
    assert!(jwk::parse_jwks(mint::hmac_jwks().to_string().as_bytes(), false).is_err());
}

#[test]
fn attack_corpus_is_refused_with_the_right_reason() {
    let r = rule(json!({}));
    let now = mint::now();
    let expect = |name: &str| -> JwtError {
        match name {
            n if n.starts_with("alg none") || n == "alg NoNe" => JwtError::AlgNone,
            "expired" => JwtError::Expired,
            "not yet valid (nbf)" => JwtError::NotYetValid,
            "issued in the future (iat)" => JwtError::IssuedInFuture,
            "no exp" => JwtError::MissingExp,
            "wrong iss" => JwtError::UnknownIssuer,
            "wrong aud" => JwtError::WrongAudience,
            "unknown kid" => JwtError::UnknownKid,
            "oversized" => JwtError::TooLarge,
            n if n.starts_with("HS256")
                || n.starts_with("tampered")
                || n.starts_with("untrusted")
                || n.starts_with("ES256 header")
                || n.starts_with("ES384 header")
                || n.starts_with("signature") =>
            {
                JwtError::BadSignature
            }
            _ => JwtError::Malformed,
        }
    };
    for (name, token) in mint::attack_tokens(now) {
        assert_eq!(verify(&r, &token, now), Err(expect(name)), "{name}");
    }
}

#[test]
fn clock_skew_bounds_exp_and_nbf() {
    let r = rule(json!({}));
    let now = mint::now();
    let mut c = mint::claims_at(now);
    c["exp"] = json!(now - 30);
    let t = mint::token_with("ES256", &c);
    assert!(
        verify(&r, &t, now).is_ok(),
        "30 s past exp is within the 60 s skew"
    );
    assert_eq!(verify(&r, &t, now + 31), Err(JwtError::Expired));
    c["exp"] = json!(now + 3600);
    c["nbf"] = json!(now + 30);
    let t = mint::token_with("ES256", &c);
    assert!(verify(&r, &t, now).is_ok());
    assert_eq!(verify(&r, &t, now - 31), Err(JwtError::NotYetValid));
    c["exp"] = json!((now + 100) as f64 + 0.5);
    assert!(
        verify(&r, &mint::token_with("ES256", &c), now).is_ok(),
        "fractional NumericDate"
    );
    c["exp"] = json!("tomorrow");
    assert_eq!(
        verify(&r, &mint::token_with("ES256", &c), now),
        Err(JwtError::Malformed)
    );
}

#[test]
fn audience_may_be_a_list_and_is_optional_when_unconfigured() {
    let now = mint::now();
    let mut c = mint::claims_at(now);
    c["aud"] = json!(["other", mint::AUDIENCE]);
    assert!(verify(&rule(json!({})), &mint::token_with("RS256", &c), now).is_ok());
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verify(&rule(json!({})), &mint::token_with("RS256", &c), now),
        Err(JwtError::WrongAudience)
    );
    assert!(verify(
        &rule(json!({"audiences": []})),
        &mint::token_with("RS256", &c),
        now
    )
    .is_ok());
}

#[test]
fn kid_selects_only_among_trusted_keys() {
    let r = rule(json!({}));
    let now = mint::now();
    let good = mint::claims_at(now);
    // A right kid with the wrong key and a kid naming another trusted key both fail.
    let t = mint::sign_raw(&json!({"alg": "RS256", "kid": "es-1"}), &good, None);
    assert_eq!(verify(&r, &t, now), Err(JwtError::BadSignature));
    // No kid: every trusted key of the right type is tried.
    let t = mint::sign_raw(&json!({"alg": "ES256"}), &good, None);
    assert!(verify(&r, &t, now).is_ok());
}

#[test]
fn weak_or_mismatched_keys_are_refused_at_config() {
    let bad = |jwks: Value| {
        let c: JwtRuleConfig =
            wasmesh_sdk::config::from_value(&json!({"issuer": "i", "jwks": jwks})).unwrap();
        JwtRule::compile(&c).unwrap_err().to_string()
    };
    let mut rsa = mint::public_jwks()["keys"][0].clone();
    rsa["alg"] = json!("HS256");
    assert!(bad(json!({"keys": [rsa]})).contains("does not fit"));
    assert!(
        bad(json!({"keys": [{"kty": "RSA", "n": mint::b64(&[0xff; 128]), "e": "AQAB"}]}))
            .contains("shorter than 2048")
    );
    assert!(bad(json!({"keys": []})).contains("no usable key"));
    assert!(bad(json!("not json")).contains("not JSON"));
}

#[test]
fn claims_to_header_values() {
    let now = mint::now();
    let c = mint::claims_at(now);
    let m = c.as_object().unwrap();
    assert_eq!(
        claim_header_value(m, &["sub".into()]).as_deref(),
        Some("alice")
    );
    assert_eq!(
        claim_header_value(m, &["groups".into()]).as_deref(),
        Some("dev,ops")
    );
    assert_eq!(
        claim_header_value(m, &["org".into(), "team".into()]).as_deref(),
        Some("core")
    );
    assert_eq!(claim_header_value(m, &["org".into()]), None);
    let evil = json!({"x": "a\r\nx-injected: 1"});
    assert_eq!(
        claim_header_value(evil.as_object().unwrap(), &["x".into()]),
        None
    );
}

#[test]
fn remote_rule_needs_a_cluster_and_an_http_uri() {
    let c: JwtRuleConfig =
        wasmesh_sdk::config::from_value(&json!({"issuer": "i", "jwksUri": "https://idp/keys"}))
            .unwrap();
    assert!(JwtRule::compile(&c)
        .unwrap_err()
        .to_string()
        .starts_with("cluster"));
    let c: JwtRuleConfig = wasmesh_sdk::config::from_value(
        &json!({"issuer": "i", "jwksUri": "ftp://idp/keys", "cluster": "idp"}),
    )
    .unwrap();
    assert!(JwtRule::compile(&c)
        .unwrap_err()
        .to_string()
        .starts_with("jwksUri"));
    let c: JwtRuleConfig =
        wasmesh_sdk::config::from_value(&json!({"issuer": "i", "jwksUri": "http://idp:8080/.well-known/jwks.json", "cluster": "idp"}))
            .unwrap();
    let KeySource::Remote(r) = JwtRule::compile(&c).unwrap().keys else {
        panic!()
    };
    assert_eq!(
        (r.authority.as_str(), r.path.as_str()),
        ("idp:8080", "/.well-known/jwks.json")
    );
}
