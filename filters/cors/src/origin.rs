//! The `Origin` header, judged before any rule sees it, and the rules that allow one.
//!
//! Envoy hands its CORS filter the raw header (several `Origin` headers joined with a
//! comma) and echoes whatever an `allowOrigins` matcher accepts. Here an origin is
//! judged only when it is the one `Origin` header of the request and reads as a
//! serialised origin (`scheme://host[:port]`, RFC 6454) or `null`, at most
//! [`MAX_ORIGIN_LEN`] bytes. Anything else (two headers, a path, userinfo, spaces,
//! non-UTF-8 bytes, which the SDK has turned into U+FFFD) is allowed by no rule, so
//! the value we echo in `access-control-allow-origin` is always a plain origin.
//!
//! Matching follows Istio's StringMatch with two deliberate differences, both of which
//! only refuse origins Envoy would allow:
//! - a `prefix` holds only at a host boundary: `https://good.example` allows itself
//!   and `https://good.example:8443`, not `https://good.example.evil.com`. A prefix that
//!   itself ends in `/`, `.` or `:` (`https://`, `https://api.`) is open-ended, as written.
//! - `null` (sandboxed frames, `file:` pages) is allowed only by `exact: "null"`, never
//!   by `*`, a prefix or a regex: allowing it by accident lets any sandboxed page in.

use regex::Regex;
use wasmesh_sdk::config::ConfigError;
use wasmesh_sdk::matcher::full_regex;
use wasmesh_sdk::HeaderMap;

/// Longer than any real origin (a DNS name is at most 253 bytes): a longer value is
/// judged invalid without being matched.
pub const MAX_ORIGIN_LEN: usize = 1024;

/// What the request's `Origin` headers amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOrigin<'a> {
    /// No `Origin`, or an empty one: not a CORS request (Envoy's reading too).
    Absent,
    /// Something no rule may allow (see the module docs).
    Invalid,
    /// One well-formed origin, as sent.
    Valid(&'a str),
}

impl<'a> RequestOrigin<'a> {
    pub fn of(headers: &'a HeaderMap) -> Self {
        let mut values = headers.get_all("origin");
        let Some(first) = values.next() else {
            return RequestOrigin::Absent;
        };
        if values.next().is_some() {
            return RequestOrigin::Invalid;
        }
        if first.is_empty() {
            return RequestOrigin::Absent;
        }
        if is_serialized_origin(first) {
            RequestOrigin::Valid(first)
        } else {
            RequestOrigin::Invalid
        }
    }
}

/// `null`, or `scheme://host[:port]` with an ASCII host name, IPv4 address or
/// bracketed IPv6 address, and a port of one to five digits.
pub fn is_serialized_origin(s: &str) -> bool {
    if s.len() > MAX_ORIGIN_LEN {
        return false;
    }
    if s == "null" {
        return true;
    }
    let Some((scheme, authority)) = s.split_once("://") else {
        return false;
    };
    let mut scheme_bytes = scheme.bytes();
    let scheme_ok = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return false;
    }
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let Some((inside, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (is_ipv6_literal(inside), port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (is_host_name(host), Some(port)),
            None => (is_host_name(authority), None),
        },
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn is_ipv6_literal(inside: &str) -> bool {
    !inside.is_empty()
        && inside
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
}

/// One `allowOrigins` entry, compiled.
#[derive(Debug, Clone)]
pub enum OriginMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

/// The bytes after which a prefix is open-ended by its own choice.
const OPEN_PREFIX_END: [u8; 3] = [b'/', b'.', b':'];

impl OriginMatch {
    /// Compiles Istio's StringMatch; errors are relative to the entry.
    pub fn compile(
        exact: Option<&str>,
        prefix: Option<&str>,
        regex: Option<&str>,
    ) -> Result<Self, ConfigError> {
        match (exact, prefix, regex) {
            (Some(e), None, None) => {
                if e.is_empty() {
                    return Err(ConfigError::at("exact", "must not be empty"));
                }
                Ok(OriginMatch::Exact(e.to_string()))
            }
            (None, Some(p), None) => {
                if p.is_empty() {
                    return Err(ConfigError::at(
                        "prefix",
                        "must not be empty (write `exact: \"*\"` to allow every origin)",
                    ));
                }
                Ok(OriginMatch::Prefix(p.to_string()))
            }
            (None, None, Some(r)) => full_regex(r)
                .map(OriginMatch::Regex)
                .map_err(|e| e.within("regex")),
            _ => Err(ConfigError::at(
                "",
                "set exactly one of `exact`, `prefix`, `regex`",
            )),
        }
    }

    /// Whether this entry allows `origin`, a value [`is_serialized_origin`] accepted.
    pub fn allows(&self, origin: &str) -> bool {
        if origin == "null" {
            return matches!(self, OriginMatch::Exact(e) if e == "null");
        }
        match self {
            OriginMatch::Exact(e) => e == "*" || e == origin,
            OriginMatch::Prefix(p) => match origin.strip_prefix(p.as_str()) {
                None => false,
                Some("") => true,
                Some(rest) => {
                    p.bytes()
                        .last()
                        .is_some_and(|b| OPEN_PREFIX_END.contains(&b))
                        || rest
                            .strip_prefix(':')
                            .is_some_and(|port| port.bytes().all(|b| b.is_ascii_digit()))
                }
            },
            OriginMatch::Regex(r) => r.is_match(origin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(e: &str) -> OriginMatch {
        OriginMatch::compile(Some(e), None, None).unwrap()
    }
    fn prefix(p: &str) -> OriginMatch {
        OriginMatch::compile(None, Some(p), None).unwrap()
    }
    fn regex(r: &str) -> OriginMatch {
        OriginMatch::compile(None, None, Some(r)).unwrap()
    }

    #[test]
    fn serialized_origins_are_told_from_anything_else() {
        for ok in [
            "https://good.example",
            "http://localhost:8080",
            "https://10.0.0.1",
            "https://[::1]:443",
            "https://[2001:db8::1]",
            "null",
            "chrome-extension://abcdef",
            "HTTPS://GOOD.EXAMPLE",
        ] {
            assert!(is_serialized_origin(ok), "{ok}");
        }
        for bad in [
            "",
            "good.example",
            "https://",
            "https://good.example/",
            "https://good.example/path",
            "https://user@good.example",
            "https://good.example, https://evil.example",
            "https://good.example evil",
            "https://good.example:",
            "https://good.example:123456",
            "https://good.example:80a",
            "https://[::1",
            "https://[]",
            "https://[::1]x",
            "https://[::1]:",
            "https://g\u{fffd}od.example",
            "1https://x",
            "Null",
            "null ",
            "https://good.example\t",
        ] {
            assert!(!is_serialized_origin(bad), "{bad:?}");
        }
        let huge = format!("https://{}.example", "a".repeat(MAX_ORIGIN_LEN));
        assert!(!is_serialized_origin(&huge));
    }

    #[test]
    fn request_origin_takes_exactly_one_header() {
        let map = |pairs: &[(&str, &str)]| {
            HeaderMap::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(RequestOrigin::of(&map(&[])), RequestOrigin::Absent);
        assert_eq!(
            RequestOrigin::of(&map(&[("origin", "")])),
            RequestOrigin::Absent
        );
        let one = map(&[("Origin", "https://good.example")]);
        assert_eq!(
            RequestOrigin::of(&one),
            RequestOrigin::Valid("https://good.example")
        );
        let two = map(&[
            ("origin", "https://good.example"),
            ("origin", "https://good.example"),
        ]);
        assert_eq!(RequestOrigin::of(&two), RequestOrigin::Invalid);
        let path = map(&[("origin", "https://good.example/x")]);
        assert_eq!(RequestOrigin::of(&path), RequestOrigin::Invalid);
    }

    #[test]
    fn exact_is_case_sensitive_and_star_allows_any_but_null() {
        assert!(exact("https://good.example").allows("https://good.example"));
        assert!(!exact("https://good.example").allows("https://GOOD.example"));
        assert!(!exact("https://good.example").allows("https://good.example.evil.com"));
        assert!(exact("*").allows("https://anything.example"));
        assert!(!exact("*").allows("null"));
        assert!(exact("null").allows("null"));
    }

    #[test]
    fn prefix_holds_only_at_a_host_boundary() {
        let p = prefix("https://good.example");
        assert!(p.allows("https://good.example"));
        assert!(p.allows("https://good.example:8443"));
        assert!(!p.allows("https://good.example.evil.com"));
        assert!(!p.allows("https://good.examplevil.com"));
        assert!(!p.allows("http://good.example"));
        assert!(!p.allows("null"));
        assert!(prefix("https://").allows("https://any.example"));
        assert!(prefix("https://api.").allows("https://api.example.com"));
        assert!(prefix("https://good.example:").allows("https://good.example:1"));
    }

    #[test]
    fn regex_is_a_full_match_and_never_allows_null() {
        let r = regex(r"https://[a-z]+\.good\.example");
        assert!(r.allows("https://app.good.example"));
        assert!(!r.allows("https://app.good.example.evil.com"));
        assert!(!r.allows("https://evil.com.good.example.x"));
        assert!(!regex(".*").allows("null"));
        assert!(regex(".*").allows("https://x.example"));
    }

    #[test]
    fn bad_matches_are_refused() {
        let err = |e: Option<&str>, p: Option<&str>, r: Option<&str>| {
            OriginMatch::compile(e, p, r).unwrap_err().to_string()
        };
        assert!(err(None, None, None).contains("set exactly one"));
        assert!(err(Some("a"), Some("b"), None).contains("set exactly one"));
        assert!(err(None, Some(""), None).starts_with("prefix: must not be empty"));
        assert!(err(Some(""), None, None).starts_with("exact: must not be empty"));
        assert!(err(None, None, Some("(")).starts_with("regex: invalid regex"));
    }
}
