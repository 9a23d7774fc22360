//! Authz configs that are plain Istio (only `policies` and `jwtRules`) become native
//! AuthorizationPolicy and RequestAuthentication resources.

use super::meta;
use crate::istio;
use serde_json::Value;
use std::collections::BTreeMap;

/// An authz config that is plain Istio.
pub(super) struct NativeAuthz {
    policies: Vec<(String, String, Vec<Value>)>,
    jwt_rules: Vec<Value>,
}

/// Fields of a jwtRules entry that Istio has (the rest are wasmesh extensions).
const ISTIO_JWT_FIELDS: [&str; 9] = [
    "issuer",
    "audiences",
    "jwks",
    "jwksUri",
    "fromHeaders",
    "fromParams",
    "fromCookies",
    "outputPayloadToHeader",
    "forwardOriginalToken",
];

pub(super) fn native_authz(config: &Value) -> Option<NativeAuthz> {
    let obj = config.as_object()?;
    if obj.keys().any(|k| k != "policies" && k != "jwtRules") {
        return None;
    }
    let mut policies = Vec::new();
    for p in obj
        .get("policies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = p.as_object()?;
        if p.keys()
            .any(|k| !["name", "action", "rules"].contains(&k.as_str()))
        {
            return None;
        }
        let name = p.get("name")?.as_str()?.to_string();
        let action = p
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("ALLOW")
            .to_string();
        if !["ALLOW", "DENY", "AUDIT"].contains(&action.as_str()) {
            return None;
        }
        let rules = p
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        policies.push((name, action, rules));
    }
    let mut jwt_rules = Vec::new();
    for r in obj
        .get("jwtRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut r = r.as_object()?.clone();
        r.retain(|k, _| ISTIO_JWT_FIELDS.contains(&k.as_str()));
        // Istio wants the inline JWKS as a string.
        if let Some(jwks) = r.get_mut("jwks") {
            if !jwks.is_string() {
                *jwks = Value::String(jwks.to_string());
            }
        }
        jwt_rules.push(Value::Object(r));
    }
    Some(NativeAuthz {
        policies,
        jwt_rules,
    })
}

impl NativeAuthz {
    pub(super) fn resources(
        &self,
        service: &str,
        ns: &str,
        selector: &istio::WorkloadSelector,
    ) -> Vec<(&'static str, String, Value)> {
        let mut out = Vec::new();
        for (name, action, rules) in &self.policies {
            let ap = istio::AuthorizationPolicy {
                api_version: istio::SECURITY.into(),
                kind: "AuthorizationPolicy".into(),
                metadata: meta(name, ns, BTreeMap::new()),
                spec: istio::AuthorizationPolicySpec {
                    selector: selector.clone(),
                    action: action.clone(),
                    provider: None,
                    rules: rules.clone(),
                },
            };
            out.push((
                "AuthorizationPolicy",
                name.clone(),
                serde_json::to_value(ap).unwrap_or_default(),
            ));
        }
        if !self.jwt_rules.is_empty() {
            let ra = istio::RequestAuthentication {
                api_version: istio::SECURITY.into(),
                kind: "RequestAuthentication".into(),
                metadata: meta(service, ns, BTreeMap::new()),
                spec: istio::RequestAuthenticationSpec {
                    selector: selector.clone(),
                    jwt_rules: self.jwt_rules.clone(),
                },
            };
            out.push((
                "RequestAuthentication",
                service.to_string(),
                serde_json::to_value(ra).unwrap_or_default(),
            ));
        }
        out
    }
}
