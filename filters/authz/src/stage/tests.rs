//! The stage natively: config refusals across features, and the token cache in use.

use super::*;
use crate::mint;
use serde_json::json;
use std::cell::Cell;
use wasmesh_sdk::{HeaderMap, StaticProperties};

fn build(v: serde_json::Value) -> Result<AuthzStage, ConfigError> {
    AuthzStage::build(wasmesh_sdk::config::from_value(&v).unwrap())
}

#[test]
fn config_refusals_name_the_field() {
    let err = |v| build(v).err().unwrap().to_string();
    assert!(err(json!({"missingCredentialStatus": 500})).starts_with("missingCredentialStatus"));
    assert!(err(json!({"extensionProviders": [{"name": "x"}]}))
        .starts_with("extensionProviders[0].envoyExtAuthzHttp"));
    let two = json!({
        "extensionProviders": [{"name": "a", "envoyExtAuthzHttp": {"cluster": "a"}},
                               {"name": "b", "envoyExtAuthzHttp": {"cluster": "b"}}],
        "policies": [{"name": "p1", "action": "CUSTOM", "provider": {"name": "a"}},
                     {"name": "p2", "action": "CUSTOM", "provider": {"name": "b"}}]});
    assert!(err(two).contains("same provider"));
    assert!(err(json!({"jwtRules": [{"issuer": "i"}]})).starts_with("jwtRules[0].jwks"));
}

#[test]
fn repeat_tokens_are_served_from_the_cache_until_exp() {
    let now = mint::now();
    let clock = std::rc::Rc::new(Cell::new(now));
    let c = clock.clone();
    let stage = build(json!({"jwtRules": [{"issuer": mint::ISSUER, "jwks": mint::public_jwks().to_string()}],
                             "policies": [{"name": "jwt", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]}))
    .unwrap()
    .with_clock(move || UNIX_EPOCH + Duration::from_secs(c.get() as u64));
    let props = StaticProperties::new();
    let token = mint::token("RS256", now);
    let run = || {
        let headers = HeaderMap::from_pairs(vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/".into()),
            ("authorization".into(), format!("Bearer {token}")),
        ]);
        let mut req = Request::new(headers, &props, PathOptions::default());
        stage.on_request(&mut req, &mut AuthzStream::default())
    };
    assert_eq!(run(), Decision::Continue);
    assert_eq!(stage.cached_tokens(), 1);
    assert_eq!(run(), Decision::Continue);
    clock.set(now + 3600 + 61);
    assert!(
        matches!(run(), Decision::Reply(r) if r.status == 401),
        "expired even though cached"
    );
    assert_eq!(stage.cached_tokens(), 0);
}
