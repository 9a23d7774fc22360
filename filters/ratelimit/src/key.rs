//! Rate-limit keys: which requests share a bucket.
//!
//! A key is built from parts written as strings in the config (`client_ip`,
//! `header:x-user`, `jwt_claim:sub`, ...). Each part's value is length-prefixed before
//! joining, so no value can forge another combination (`a|b`+`c` vs `a`+`b|c`). A part
//! whose value is missing (no such header, no claim) contributes an empty value: all
//! such requests share one bucket, so leaving a header out is no way around a limit.

use std::collections::HashMap;
use std::fmt::Write as _;
use wasmesh_sdk::config::{shortest_decimal, ConfigError, Json};
use wasmesh_sdk::matcher::Template;
use wasmesh_sdk::names::header_name;
use wasmesh_sdk::net::client_ip;
use wasmesh_sdk::Request;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client IP, after `xff_num_trusted_hops` trusted `x-forwarded-for` entries.
    ClientIp,
    /// A request header's values, joined by `,`.
    Header(String),
    /// The normalised path, without the query.
    Path,
    /// The first of the rule's `path_templates` that matches (else the path).
    PathTemplate,
    RouteName,
    Method,
    /// The host, without port, lower-cased.
    Host,
    /// A claim of the JWT payload forwarded (base64url JSON) in `jwt_payload_header`.
    JwtClaim(String),
}

#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub parts: Vec<KeyPart>,
    /// `(as written, parsed)`; the written form is the key value.
    pub templates: Vec<(String, Template)>,
}

/// What a key needs from the filter's config.
pub struct KeyContext<'c> {
    pub xff_num_trusted_hops: u32,
    pub jwt_payload_header: &'c str,
}

impl KeyPart {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let part = match s.split_once(':') {
            None => match s {
                "client_ip" => KeyPart::ClientIp,
                "path" => KeyPart::Path,
                "path_template" => KeyPart::PathTemplate,
                "route_name" => KeyPart::RouteName,
                "method" => KeyPart::Method,
                "host" => KeyPart::Host,
                _ => {
                    return Err(ConfigError::at(
                        "",
                        format!(
                            "unknown key part `{s}`: expected client_ip, header:NAME, path, \
                             path_template, route_name, method, host or jwt_claim:NAME"
                        ),
                    ))
                }
            },
            Some(("header", name)) => KeyPart::Header(header_name(&name.to_ascii_lowercase())?),
            Some(("jwt_claim", claim)) if !claim.is_empty() => KeyPart::JwtClaim(claim.into()),
            Some(_) => {
                return Err(ConfigError::at(
                    "",
                    format!("unknown key part `{s}`: expected header:NAME or jwt_claim:NAME"),
                ))
            }
        };
        Ok(part)
    }
}

impl KeyPart {
    /// The descriptor entry key a global rule sends for this part: Envoy's action
    /// names where Envoy has one (`remote_address`), else the part as written.
    pub fn descriptor_key(&self) -> String {
        match self {
            KeyPart::ClientIp => "remote_address".into(),
            KeyPart::Header(name) => format!("header:{name}"),
            KeyPart::Path => "path".into(),
            KeyPart::PathTemplate => "path_template".into(),
            KeyPart::RouteName => "route_name".into(),
            KeyPart::Method => "method".into(),
            KeyPart::Host => "host".into(),
            KeyPart::JwtClaim(claim) => format!("jwt_claim:{claim}"),
        }
    }
}

impl KeySpec {
    /// The request's key under this spec.
    pub fn build(&self, req: &Request<'_>, ctx: &KeyContext<'_>) -> String {
        let mut key = String::new();
        for value in self.values(req, ctx) {
            let _ = write!(key, "{}:{value};", value.len());
        }
        key
    }

    /// Each part's value for the request, in order (a missing value is empty).
    pub fn values(&self, req: &Request<'_>, ctx: &KeyContext<'_>) -> Vec<String> {
        let mut claims: Option<HashMap<String, String>> = None;
        let mut values = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let value: String = match part {
                KeyPart::ClientIp => client_ip(
                    req.headers.get_all("x-forwarded-for"),
                    ctx.xff_num_trusted_hops,
                    req.props.source_ip(),
                )
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
                KeyPart::Header(name) => req.headers.get_all(name).collect::<Vec<_>>().join(","),
                KeyPart::Path => path_of(req),
                KeyPart::PathTemplate => {
                    let path = path_of(req);
                    self.templates
                        .iter()
                        .find(|(_, t)| t.matches(&path))
                        .map_or(path, |(written, _)| written.clone())
                }
                KeyPart::RouteName => req.props.route_name().unwrap_or_default(),
                KeyPart::Method => req.method().to_string(),
                KeyPart::Host => req.host().into_owned(),
                KeyPart::JwtClaim(claim) => claims
                    .get_or_insert_with(|| {
                        jwt_claims(req.headers.get(ctx.jwt_payload_header).unwrap_or(""))
                    })
                    .get(claim)
                    .cloned()
                    .unwrap_or_default(),
            };
            values.push(value);
        }
        values
    }
}

/// The normalised path; a path normalisation refuses is used raw (it still counts).
fn path_of(req: &Request<'_>) -> String {
    match req.path() {
        Ok(p) => p.to_string(),
        Err(_) => req.raw_path().to_string(),
    }
}

/// The scalar claims of a base64url-encoded JSON payload (Envoy jwt_authn's
/// `forward_payload_header`); empty when it does not decode, or names a claim twice.
/// The payload was verified by the filter that forwarded it: this only reads it.
pub fn jwt_claims(header: &str) -> HashMap<String, String> {
    let Some(json) = base64url_decode(header.trim()) else {
        return HashMap::new();
    };
    let Ok(Json::Object(members)) = Json::parse(&json) else {
        return HashMap::new();
    };
    members
        .into_iter()
        .filter_map(|(name, value)| Some((name, claim_key(value)?)))
        .collect()
}

/// A claim's value as a key: strings as they are, integers and booleans as JSON
/// writes them, other numbers as their shortest decimal (`1.5`) or, when that is long
/// (`1e300`, or an integer past u64), their bits in hex, so distinct values keep
/// distinct keys; arrays, objects and null are not keys.
fn claim_key(value: Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s),
        Json::Bool(b) => Some(b.to_string()),
        Json::Int(n) => Some(n.to_string()),
        Json::UInt(n) => Some(n.to_string()),
        Json::Float(x) => {
            Some(shortest_decimal(x).unwrap_or_else(|| format!("f64:{:x}", x.to_bits())))
        }
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// Base64url (or standard base64), padding optional.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{HeaderMap, PathOptions, StaticProperties};

    fn spec(parts: &[&str], templates: &[&str]) -> KeySpec {
        KeySpec {
            parts: parts.iter().map(|p| KeyPart::parse(p).unwrap()).collect(),
            templates: templates
                .iter()
                .map(|t| (t.to_string(), Template::parse(t).unwrap()))
                .collect(),
        }
    }

    fn key(
        spec: &KeySpec,
        props: &StaticProperties,
        headers: &[(&str, &str)],
        hops: u32,
    ) -> String {
        let headers = HeaderMap::from_pairs(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let req = Request::new(headers, props, PathOptions::default());
        spec.build(
            &req,
            &KeyContext {
                xff_num_trusted_hops: hops,
                jwt_payload_header: "x-jwt-payload",
            },
        )
    }

    #[test]
    fn parts_are_length_prefixed() {
        let props = StaticProperties::new();
        let s = spec(&["header:a", "header:b"], &[]);
        let k1 = key(&s, &props, &[("a", "x;1:y"), ("b", "")], 0);
        let k2 = key(&s, &props, &[("a", "x"), ("b", "y")], 0);
        assert_eq!(k1, "5:x;1:y;0:;");
        assert_ne!(k1, k2);
    }

    #[test]
    fn client_ip_honours_trusted_hops_only() {
        let props = StaticProperties::new().with("source.address", "10.0.0.9:4000");
        let s = spec(&["client_ip"], &[]);
        let xff = [("x-forwarded-for", "6.6.6.6, 1.2.3.4")];
        assert_eq!(key(&s, &props, &xff, 0), "8:10.0.0.9;");
        assert_eq!(key(&s, &props, &xff, 1), "7:1.2.3.4;");
    }

    #[test]
    fn path_template_groups_paths() {
        let props = StaticProperties::new();
        let s = spec(&["path_template"], &["/users/{id}", "/files/{**}"]);
        let k = |p: &str| key(&s, &props, &[(":path", p)], 0);
        assert_eq!(k("/users/1?x"), k("/users/2"));
        assert_eq!(k("/users/1"), "11:/users/{id};");
        assert_eq!(k("/files/a/b"), "11:/files/{**};");
        assert_eq!(k("/other//x/../y"), "8:/other/y;");
    }

    #[test]
    fn path_method_route_host() {
        let props = StaticProperties::new().with("route_name", "r1");
        let s = spec(&["path", "method", "route_name", "host"], &[]);
        let k = key(
            &s,
            &props,
            &[
                (":path", "/a/./b?q"),
                (":method", "GET"),
                (":authority", "Ex.com:80"),
            ],
            0,
        );
        assert_eq!(k, "4:/a/b;3:GET;2:r1;6:ex.com;");
    }

    #[test]
    fn jwt_claims_come_from_the_forwarded_payload() {
        // {"sub":"alice","n":3,"adm":true,"groups":["a"],"o":{"x":1}}
        let payload =
            "eyJzdWIiOiJhbGljZSIsIm4iOjMsImFkbSI6dHJ1ZSwiZ3JvdXBzIjpbImEiXSwibyI6eyJ4IjoxfX0";
        let claims = jwt_claims(payload);
        assert_eq!(claims.get("sub").map(String::as_str), Some("alice"));
        assert_eq!(claims.get("n").map(String::as_str), Some("3"));
        assert_eq!(claims.get("adm").map(String::as_str), Some("true"));
        assert!(!claims.contains_key("groups") && !claims.contains_key("o"));
        // {"sub":"alice","sub":"mallory"}: a claim named twice voids the payload.
        assert!(jwt_claims("eyJzdWIiOiJhbGljZSIsInN1YiI6Im1hbGxvcnkifQ").is_empty());
        // {"r":1.5,"z":null}
        let claims = jwt_claims("eyJyIjoxLjUsInoiOm51bGx9");
        assert_eq!(claims.get("r").map(String::as_str), Some("1.5"));
        assert!(!claims.contains_key("z"));
        // {"a":1e300,"b":12345678901234567890123}: no short decimal, still distinct keys.
        let claims = jwt_claims("eyJhIjoxZTMwMCwiYiI6MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjN9");
        assert_eq!(
            claims.get("a").map(String::as_str),
            Some("f64:7e37e43c8800759c")
        );
        assert!(claims.get("b").is_some_and(|b| b.starts_with("f64:")));
        let props = StaticProperties::new();
        let s = spec(&["jwt_claim:sub"], &[]);
        assert_eq!(
            key(&s, &props, &[("x-jwt-payload", payload)], 0),
            "5:alice;"
        );
        assert_eq!(key(&s, &props, &[("x-jwt-payload", "%%%")], 0), "0:;");
        assert_eq!(key(&s, &props, &[], 0), "0:;");
    }

    #[test]
    fn bad_parts_are_refused() {
        for bad in [
            "ip",
            "header:",
            "header:Bad Name",
            "jwt_claim:",
            "cookie:x",
            "",
        ] {
            assert!(KeyPart::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            KeyPart::parse("header:X-User").unwrap(),
            KeyPart::Header("x-user".into())
        );
    }
}
