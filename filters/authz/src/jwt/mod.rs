//! RequestAuthentication: JWT rules, token extraction, parsing and verification.
//!
//! A token is checked in this order, and the first failure answers 401: size; shape
//! (three base64url parts, no padding, JSON objects); `alg` (`none` and unknown
//! algorithms refused, `crit` refused); issuer selects the rule; signature with a key
//! the rule trusts (`kid` only narrows that set, see [`jwk`]); then `exp` (required),
//! `nbf` and `iat` with the configured skew, and `aud`.

pub mod cache;
pub mod der;
pub mod ec;
pub mod jwk;

use crate::config::{duration_or, JwtRuleConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwk::{Alg, Jwk};
use serde_json::{Map, Value};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;
use wasmesh_sdk::config::{validate_list, ConfigError, Json};
use wasmesh_sdk::Request;

/// Why a token was refused. Shown in `response_code_details` and logs, never in the
/// reply body (which is always `Jwt verification fails`, as Envoy answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed,
    AlgNone,
    UnsupportedAlg,
    UnknownIssuer,
    UnknownKid,
    BadSignature,
    MissingExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongAudience,
    /// The same header, parameter or cookie twice: which one would the upstream read?
    Ambiguous,
    /// Tokens in more than one location.
    Multiple,
    /// The issuer's keys could not be fetched.
    KeysUnavailable,
}

impl JwtError {
    pub fn code(self) -> &'static str {
        match self {
            JwtError::TooLarge => "jwt_too_large",
            JwtError::Malformed => "jwt_malformed",
            JwtError::AlgNone => "jwt_alg_none",
            JwtError::UnsupportedAlg => "jwt_unsupported_alg",
            JwtError::UnknownIssuer => "jwt_unknown_issuer",
            JwtError::UnknownKid => "jwt_unknown_kid",
            JwtError::BadSignature => "jwt_bad_signature",
            JwtError::MissingExp => "jwt_missing_exp",
            JwtError::Expired => "jwt_expired",
            JwtError::NotYetValid => "jwt_not_yet_valid",
            JwtError::IssuedInFuture => "jwt_issued_in_future",
            JwtError::WrongAudience => "jwt_audience_not_allowed",
            JwtError::Ambiguous => "jwt_ambiguous_location",
            JwtError::Multiple => "jwt_multiple_tokens",
            JwtError::KeysUnavailable => "jwks_unavailable",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Where a token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Header { name: String, prefix: String },
    Param(String),
    Cookie(String),
}

/// A remote JWKS and how it is kept fresh.
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
    pub refresh: Duration,
    pub retry: Duration,
    pub unavailable_status: u16,
}

#[derive(Debug)]
pub enum KeySource {
    Inline(Rc<Vec<Jwk>>),
    Remote(RemoteJwks),
}

#[derive(Debug)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub locations: Vec<Location>,
    pub keys: KeySource,
    pub output_payload_to_header: Option<String>,
    /// (header, claim path split on `.`)
    pub output_claim_to_headers: Vec<(String, Vec<String>)>,
    pub forward_original_token: bool,
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    wasmesh_sdk::names::header_name(name).map_err(|e| e.within(field))
}

/// Splits `http://host:port/path` into (authority, path).
fn split_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then(|| (authority.to_string(), path.to_string()))
}

impl JwtRule {
    pub fn compile(c: &JwtRuleConfig) -> Result<Self, ConfigError> {
        if c.issuer.is_empty() {
            return Err(ConfigError::at("issuer", "an issuer is required"));
        }
        let keys = match (&c.jwks, &c.jwks_uri) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::at(
                    "jwks",
                    "give `jwks` or `jwksUri`, not both",
                ))
            }
            (None, None) => return Err(ConfigError::at("jwks", "`jwks` or `jwksUri` is required")),
            (Some(inline), None) => {
                let (keys, skipped) = match inline {
                    Json::String(text) => jwk::parse_jwks(text.as_bytes(), true),
                    document => jwk::jwks_from_tree(document.clone(), true),
                }
                .map_err(|e| ConfigError::at("jwks", e))?;
                if let Some(first) = skipped.first() {
                    // An inline key the user wrote but that cannot be used is a mistake
                    // worth refusing, unlike a remote provider's extra keys.
                    return Err(ConfigError::at("jwks", first.clone()));
                }
                KeySource::Inline(Rc::new(keys))
            }
            (None, Some(uri)) => {
                let (authority, path) = split_uri(uri).ok_or_else(|| {
                    ConfigError::at("jwksUri", format!("`{uri}` is not an http(s) URL"))
                })?;
                let cluster = c.cluster.clone().ok_or_else(|| {
                    ConfigError::at(
                        "cluster",
                        "a remote `jwksUri` needs the Envoy `cluster` that serves it",
                    )
                })?;
                let unavailable_status = c.jwks_unavailable_status.unwrap_or(503);
                if !(400..=599).contains(&unavailable_status) {
                    return Err(ConfigError::at(
                        "jwksUnavailableStatus",
                        "must be 400 to 599",
                    ));
                }
                KeySource::Remote(RemoteJwks {
                    cluster,
                    authority,
                    path,
                    timeout: duration_or("timeout", c.timeout.as_deref(), Duration::from_secs(5))?,
                    refresh: duration_or(
                        "jwksRefreshInterval",
                        c.jwks_refresh_interval.as_deref(),
                        Duration::from_secs(300),
                    )?,
                    retry: duration_or(
                        "jwksRetryInterval",
                        c.jwks_retry_interval.as_deref(),
                        Duration::from_secs(5),
                    )?,
                    unavailable_status,
                })
            }
        };
        let mut locations = validate_list("fromHeaders", &c.from_headers, |h| {
            Ok(Location::Header {
                name: header_name("name", &h.name)?,
                prefix: h.prefix.clone(),
            })
        })?;
        locations.extend(c.from_params.iter().map(|p| Location::Param(p.clone())));
        locations.extend(c.from_cookies.iter().map(|p| Location::Cookie(p.clone())));
        if locations.is_empty() {
            // Istio's defaults.
            locations.push(Location::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            });
            locations.push(Location::Param("access_token".into()));
        }
        let output_claim_to_headers =
            validate_list("outputClaimToHeaders", &c.output_claim_to_headers, |o| {
                if o.claim.is_empty() {
                    return Err(ConfigError::at("claim", "a claim name is required"));
                }
                Ok((
                    header_name("header", &o.header)?,
                    o.claim.split('.').map(str::to_string).collect(),
                ))
            })?;
        let output_payload_to_header = c
            .output_payload_to_header
            .as_deref()
            .map(|h| header_name("outputPayloadToHeader", h))
            .transpose()?;
        Ok(Self {
            issuer: c.issuer.clone(),
            audiences: c.audiences.clone(),
            locations,
            keys,
            output_payload_to_header,
            output_claim_to_headers,
            forward_original_token: c.forward_original_token,
        })
    }
}

/// A token found in a request, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub location: Location,
}

fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The token at one location, if any. A location present twice is ambiguous: the
/// filter would verify one value while the upstream might read the other.
pub fn extract(req: &Request<'_>, location: &Location) -> Result<Option<String>, JwtError> {
    match location {
        Location::Header { name, prefix } => {
            let mut values = req.headers.get_all(name);
            let Some(value) = values.next() else {
                return Ok(None);
            };
            if values.next().is_some() {
                return Err(JwtError::Ambiguous);
            }
            let token = if prefix.is_empty() {
                Some(value)
            } else {
                strip_prefix_ignore_case(value, prefix)
            };
            Ok(token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()))
        }
        Location::Param(name) => {
            let Some(query) = req.query() else {
                return Ok(None);
            };
            let count = query
                .split('&')
                .filter(|pair| {
                    let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
                    wasmesh_sdk::request::percent_decode(k) == name.as_str()
                })
                .count();
            if count > 1 {
                return Err(JwtError::Ambiguous);
            }
            Ok(req
                .query_param(name)
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()))
        }
        Location::Cookie(name) => {
            let mut found = None;
            for header in req.headers.get_all("cookie") {
                for pair in header.split(';') {
                    let Some((k, v)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    if k.trim() == name {
                        if found.is_some() {
                            return Err(JwtError::Ambiguous);
                        }
                        found = Some(v.trim().trim_matches('"').to_string());
                    }
                }
            }
            Ok(found.filter(|t| !t.is_empty()))
        }
    }
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub struct Token<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    pub signing_input: &'t str,
    pub payload_b64: &'t str,
    pub signature: Vec<u8>,
}

/// A base64url JSON object. A member named twice makes it malformed: which copy
/// counts would be up to the parser (`{"alg":"none","alg":"RS256"}`), and RFC 7519
/// section 4 allows refusing it.
fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    match Json::parse(&bytes).map(Value::from) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

/// Splits and decodes a compact JWS. Nothing here is trusted yet.
pub fn parse(token: &str, max_bytes: usize) -> Result<Token<'_>, JwtError> {
    if token.len() > max_bytes {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header = decode_object(h)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(JwtError::AlgNone);
    }
    let alg = Alg::parse(alg_name).ok_or(JwtError::UnsupportedAlg)?;
    if header.contains_key("crit") {
        // RFC 7515 4.1.11: extensions we do not understand must fail verification.
        return Err(JwtError::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    let claims = decode_object(p)?;
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    if signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(Token {
        alg,
        kid,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload_b64: p,
        signature,
    })
}

/// The unverified `iss`, used only to pick which rule (and so which keys) to try.
pub fn issuer(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("iss").and_then(Value::as_str)
}

/// Checks the signature with the trusted keys. A `kid` narrows the candidates to keys
/// with that kid (or none), never beyond the trusted set.
pub fn check_signature(token: &Token<'_>, keys: &[Jwk]) -> Result<(), JwtError> {
    let mut candidates = keys.iter().filter(|k| match (&token.kid, &k.kid) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    });
    let mut any = false;
    let ok = candidates.any(|k| {
        any = true;
        k.verify(token.alg, token.signing_input.as_bytes(), &token.signature)
    });
    match (ok, any) {
        (true, _) => Ok(()),
        (false, false) => Err(JwtError::UnknownKid),
        (false, true) => Err(JwtError::BadSignature),
    }
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        // NumericDate may have a fraction; whole seconds are precise enough for skews in seconds.
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or(JwtError::Malformed),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// Checks time claims and audience; returns `exp`.
pub fn check_claims(
    rule: &JwtRule,
    claims: &Map<String, Value>,
    now: i64,
    skew: i64,
) -> Result<i64, JwtError> {
    if issuer(claims) != Some(rule.issuer.as_str()) {
        return Err(JwtError::UnknownIssuer);
    }
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingExp)?;
    if now > exp.saturating_add(skew) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if now.saturating_add(skew) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = numeric_date(claims, "iat")? {
        if iat > now.saturating_add(skew) {
            return Err(JwtError::IssuedInFuture);
        }
    }
    if !rule.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => rule.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| rule.audiences.iter().any(|want| want == a)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    Ok(exp)
}

/// `iss/sub`, Istio's request principal.
pub fn principal(claims: &Map<String, Value>) -> String {
    let iss = issuer(claims).unwrap_or("");
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    format!("{iss}/{sub}")
}

/// A claim's header value: strings as they are, scalars as text, string lists joined
/// by commas (Envoy's `claim_to_headers`); objects are not output.
pub fn claim_header_value(claims: &Map<String, Value>, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let v = rest
        .iter()
        .try_fold(claims.get(first)?, |v, seg| v.as_object()?.get(seg))?;
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .join(","),
        _ => return None,
    };
    // A header value cannot carry control characters; such a claim is not forwarded.
    (!text.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f)).then_some(text)
}

#[cfg(test)]
mod tests;
