//! Templated header values: literal text with Envoy-style `%OPERATOR%` substitutions.
//!
//! Supported operators (names follow Envoy's access-log command operators where
//! Envoy has one): `%REQ(name)%`, `%METHOD%`, `%PATH%` (normalised, no query),
//! `%HOST%`, `%SOURCE_IP%` (= `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`),
//! `%ROUTE_NAME%`, `%REQUEST_ID%`, `%PEER_PRINCIPAL%` (= `%DOWNSTREAM_PEER_URI_SAN%`),
//! `%START_TIME%` (RFC 3339, UTC, milliseconds), `%START_TIME_UNIX_MS%`; `%%` is a
//! literal `%`. Values are resolved from the request, so response edits see the
//! request they answer.

use std::borrow::Cow;
use wasmesh_sdk::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    RequestHeader(String),
    Method,
    Path,
    Host,
    SourceIp,
    RouteName,
    RequestId,
    PeerPrincipal,
    StartTime,
    StartTimeUnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Op(Operator),
}

/// A parsed value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Supplies operator values when a template is rendered.
pub trait Resolve {
    fn resolve(&self, op: &Operator) -> Cow<'_, str>;
}

impl Template {
    /// Reads a header value template; errors are at the value itself (callers add the
    /// field).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_text(text).map_err(|m| ConfigError::at("", m))
    }

    fn parse_text(text: &str) -> Result<Self, String> {
        if text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err("CR, LF and NUL are not allowed in header values".into());
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('%') {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                literal.push('%');
                rest = tail;
                continue;
            }
            let end = after.find('%').ok_or_else(|| {
                format!("unterminated operator in `{text}` (write `%%` for a literal %)")
            })?;
            let op = parse_operator(&after[..end])?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Op(op));
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// A template that is plain text.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    pub fn render(&self, ctx: &dyn Resolve) -> String {
        if let Some(s) = self.literal() {
            return s.to_string();
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Op(op) => out.push_str(&ctx.resolve(op)),
            }
        }
        out
    }
}

fn parse_operator(name: &str) -> Result<Operator, String> {
    if let Some(inner) = name.strip_prefix("REQ(").and_then(|s| s.strip_suffix(')')) {
        if inner.is_empty() {
            return Err("`%REQ()%` needs a header name".into());
        }
        return Ok(Operator::RequestHeader(inner.to_ascii_lowercase()));
    }
    Ok(match name {
        "METHOD" => Operator::Method,
        "PATH" => Operator::Path,
        "HOST" => Operator::Host,
        "SOURCE_IP" | "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Operator::SourceIp,
        "ROUTE_NAME" => Operator::RouteName,
        "REQUEST_ID" => Operator::RequestId,
        "PEER_PRINCIPAL" | "DOWNSTREAM_PEER_URI_SAN" => Operator::PeerPrincipal,
        "START_TIME" => Operator::StartTime,
        "START_TIME_UNIX_MS" => Operator::StartTimeUnixMs,
        other => return Err(format!("unknown operator `%{other}%`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Resolve for Fixed {
        fn resolve(&self, op: &Operator) -> Cow<'_, str> {
            match op {
                Operator::RequestHeader(h) => Cow::Owned(format!("<{h}>")),
                Operator::Method => "GET".into(),
                other => Cow::Owned(format!("{other:?}")),
            }
        }
    }

    #[test]
    fn literals_and_operators_render() {
        let t = Template::parse("user=%REQ(X-User)% m=%METHOD% 100%%").unwrap();
        assert_eq!(t.render(&Fixed), "user=<x-user> m=GET 100%");
        assert_eq!(Template::parse("plain").unwrap().literal(), Some("plain"));
        assert_eq!(Template::parse("").unwrap().render(&Fixed), "");
        assert_eq!(
            Template::parse("%SOURCE_IP%").unwrap().render(&Fixed),
            "SourceIp"
        );
        assert_eq!(
            Template::parse("%DOWNSTREAM_PEER_URI_SAN%")
                .unwrap()
                .render(&Fixed),
            "PeerPrincipal"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Template::parse("%NOPE%")
            .unwrap_err()
            .message
            .contains("unknown operator"));
        assert!(Template::parse("50%")
            .unwrap_err()
            .message
            .contains("unterminated"));
        assert!(Template::parse("%REQ()%").is_err());
        assert!(Template::parse("a\r\nb")
            .unwrap_err()
            .message
            .contains("CR"));
        assert!(Template::parse("a\0").is_err());
    }
}
