//! API-key and basic-auth consumers: named clients that policies can name
//! (`source.consumers`, `when: request.auth.consumer`) and upstreams can read (a header).
//!
//! Secrets are held only as SHA-256 digests, so a config dump or a heap read does not
//! reveal them, and keys are looked up by digest, so the time a lookup takes does not
//! depend on how much of a guessed key is right. Passwords are compared in constant time.

use crate::config::{ApiKeysConfig, BasicAuthConfig};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use wasmesh_sdk::config::{validate_list, ConfigError};
use wasmesh_sdk::Request;

pub const DEFAULT_CONSUMER_HEADER: &str = "x-wasmesh-consumer";

type Digest32 = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// A credential was given and is wrong.
    Invalid,
    /// The credential's header or parameter appears twice.
    Ambiguous,
}

/// An accepted credential: the consumer, and the header to strip before the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub consumer: String,
    pub strip_header: Option<String>,
}

fn sha256(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

fn parse_hex32(field: &str, text: &str) -> Result<Digest32, ConfigError> {
    let bytes = text.trim().as_bytes();
    let bad = || ConfigError::at(field, "must be 64 hex digits (a SHA-256)");
    if bytes.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn secret(field: &str, clear: Option<&str>, hashed: Option<&str>) -> Result<Digest32, ConfigError> {
    match (clear, hashed) {
        (Some(c), None) if !c.is_empty() => Ok(sha256(c.as_bytes())),
        (None, Some(h)) => parse_hex32(&format!("{field}Sha256"), h),
        _ => Err(ConfigError::at(
            field,
            format!("give exactly one of `{field}` or `{field}Sha256`"),
        )),
    }
}

fn consumer_header(name: Option<&str>) -> String {
    name.unwrap_or(DEFAULT_CONSUMER_HEADER).to_ascii_lowercase()
}

#[derive(Debug)]
pub struct ApiKeys {
    from_headers: Vec<String>,
    from_params: Vec<String>,
    by_digest: HashMap<Digest32, String>,
    forward_key: bool,
    pub consumer_header: String,
}

impl ApiKeys {
    pub fn compile(c: &ApiKeysConfig) -> Result<Self, ConfigError> {
        let mut by_digest = HashMap::new();
        let list = validate_list("consumers", &c.consumers, |k| {
            if k.name.is_empty() {
                return Err(ConfigError::at("name", "a consumer needs a name"));
            }
            Ok((
                secret("key", k.key.as_deref(), k.key_sha256.as_deref())?,
                k.name.clone(),
            ))
        })?;
        for (i, (digest, name)) in list.into_iter().enumerate() {
            if by_digest.insert(digest, name).is_some() {
                return Err(ConfigError::at(
                    format!("consumers[{i}]"),
                    "the same key is given twice",
                ));
            }
        }
        let mut from_headers: Vec<String> = c
            .from_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if from_headers.is_empty() && c.from_params.is_empty() {
            from_headers.push("x-api-key".into());
        }
        Ok(Self {
            from_headers,
            from_params: c.from_params.clone(),
            by_digest,
            forward_key: c.forward_key,
            consumer_header: consumer_header(c.consumer_header.as_deref()),
        })
    }

    /// `Ok(None)` when the request carries no key.
    pub fn authenticate(&self, req: &Request<'_>) -> Result<Option<Accepted>, CredentialError> {
        for header in &self.from_headers {
            let mut values = req.headers.get_all(header);
            let Some(key) = values.next() else { continue };
            if values.next().is_some() {
                return Err(CredentialError::Ambiguous);
            }
            return self.lookup(key.trim()).map(|consumer| {
                Some(Accepted {
                    consumer,
                    strip_header: (!self.forward_key).then(|| header.clone()),
                })
            });
        }
        for param in &self.from_params {
            if let Some(key) = req.query_param(param) {
                return self.lookup(key.trim()).map(|consumer| {
                    Some(Accepted {
                        consumer,
                        strip_header: None,
                    })
                });
            }
        }
        Ok(None)
    }

    fn lookup(&self, key: &str) -> Result<String, CredentialError> {
        self.by_digest
            .get(&sha256(key.as_bytes()))
            .cloned()
            .ok_or(CredentialError::Invalid)
    }
}

#[derive(Debug)]
pub struct BasicAuth {
    users: HashMap<String, Digest32>,
    forward: bool,
    pub consumer_header: String,
}

/// Constant-time equality of two digests.
fn same(a: &Digest32, b: &Digest32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl BasicAuth {
    pub fn compile(c: &BasicAuthConfig) -> Result<Self, ConfigError> {
        let list = validate_list("consumers", &c.consumers, |u| {
            if u.username.is_empty() || u.username.contains(':') {
                return Err(ConfigError::at(
                    "username",
                    "must be non-empty and without `:`",
                ));
            }
            Ok((
                u.username.clone(),
                secret(
                    "password",
                    u.password.as_deref(),
                    u.password_sha256.as_deref(),
                )?,
            ))
        })?;
        Ok(Self {
            users: list.into_iter().collect(),
            forward: c.forward_credentials,
            consumer_header: consumer_header(c.consumer_header.as_deref()),
        })
    }

    /// `Ok(None)` when the request carries no `Basic` credentials.
    pub fn authenticate(&self, req: &Request<'_>) -> Result<Option<Accepted>, CredentialError> {
        let mut values = req.headers.get_all("authorization");
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(CredentialError::Ambiguous);
        }
        let Some(encoded) = value
            .get(..6)
            .filter(|p| p.eq_ignore_ascii_case("basic "))
            .map(|_| value[6..].trim())
        else {
            return Ok(None);
        };
        let decoded = STANDARD
            .decode(encoded)
            .map_err(|_| CredentialError::Invalid)?;
        let text = String::from_utf8(decoded).map_err(|_| CredentialError::Invalid)?;
        let (user, password) = text.split_once(':').ok_or(CredentialError::Invalid)?;
        let given = sha256(password.as_bytes());
        // An unknown user costs the same comparison as a known one.
        let expected = self.users.get(user).copied().unwrap_or([0xff; 32]);
        if same(&given, &expected) && self.users.contains_key(user) {
            Ok(Some(Accepted {
                consumer: user.to_string(),
                strip_header: (!self.forward).then(|| "authorization".to_string()),
            }))
        } else {
            Err(CredentialError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{HeaderMap, PathOptions, StaticProperties};

    fn req<'a>(props: &'a StaticProperties, path: &str, headers: &[(&str, &str)]) -> Request<'a> {
        let mut pairs = vec![(":path".to_string(), path.to_string())];
        pairs.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Request::new(HeaderMap::from_pairs(pairs), props, PathOptions::default())
    }

    fn api_keys() -> ApiKeys {
        let c: ApiKeysConfig = wasmesh_sdk::config::from_value(&serde_json::json!({
            "fromHeaders": ["x-api-key"], "fromParams": ["api_key"],
            "consumers": [{"name": "alice", "key": "k-alice"},
                          {"name": "bob", "keySha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]
        }))
        .unwrap();
        ApiKeys::compile(&c).unwrap()
    }

    #[test]
    fn api_key_from_header_or_param_names_the_consumer() {
        let p = StaticProperties::new();
        let k = api_keys();
        let got = k
            .authenticate(&req(&p, "/", &[("x-api-key", "k-alice")]))
            .unwrap()
            .unwrap();
        assert_eq!(got.consumer, "alice");
        assert_eq!(got.strip_header.as_deref(), Some("x-api-key"));
        let got = k
            .authenticate(&req(&p, "/?api_key=k-alice", &[]))
            .unwrap()
            .unwrap();
        assert_eq!(got.consumer, "alice");
        assert_eq!(k.authenticate(&req(&p, "/", &[])), Ok(None));
    }

    #[test]
    fn wrong_or_duplicate_api_key_is_refused() {
        let p = StaticProperties::new();
        let k = api_keys();
        assert_eq!(
            k.authenticate(&req(&p, "/", &[("x-api-key", "nope")])),
            Err(CredentialError::Invalid)
        );
        assert_eq!(
            k.authenticate(&req(
                &p,
                "/",
                &[("x-api-key", "nope"), ("x-api-key", "k-alice")]
            )),
            Err(CredentialError::Ambiguous)
        );
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let c: BasicAuthConfig = wasmesh_sdk::config::from_value(&serde_json::json!({
            "consumers": [{"username": "carol", "password": "s3cret"}]
        }))
        .unwrap();
        let b = BasicAuth::compile(&c).unwrap();
        let p = StaticProperties::new();
        let auth = |v: &str| b.authenticate(&req(&p, "/", &[("authorization", v)]));
        let good = format!("Basic {}", STANDARD.encode("carol:s3cret"));
        assert_eq!(auth(&good).unwrap().unwrap().consumer, "carol");
        assert_eq!(
            auth(&format!("Basic {}", STANDARD.encode("carol:wrong"))),
            Err(CredentialError::Invalid)
        );
        assert_eq!(
            auth(&format!("Basic {}", STANDARD.encode("dave:s3cret"))),
            Err(CredentialError::Invalid)
        );
        assert_eq!(auth("Basic !!!"), Err(CredentialError::Invalid));
        assert_eq!(auth("Bearer abc"), Ok(None));
    }

    #[test]
    fn config_errors_name_the_field() {
        let c: ApiKeysConfig = wasmesh_sdk::config::from_value(&serde_json::json!({
            "consumers": [{"name": "a", "key": "x", "keySha256": "00"}]
        }))
        .unwrap();
        assert!(ApiKeys::compile(&c)
            .unwrap_err()
            .to_string()
            .starts_with("consumers[0].key"));
        let c: ApiKeysConfig = wasmesh_sdk::config::from_value(&serde_json::json!({
            "consumers": [{"name": "a", "key": "x"}, {"name": "b", "key": "x"}]
        }))
        .unwrap();
        assert!(ApiKeys::compile(&c)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
