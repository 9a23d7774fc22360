//! A JSON rewrite: edits applied in order to a parsed document, and the content
//! types it applies to.

use crate::pointer::Pointer;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Remove(Pointer),
    /// Moves the value; nothing happens if `from` is absent.
    Rename(Pointer, Pointer),
    Set(Pointer, Value),
}

/// Removes first, then renames, then sets, each in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    pub edits: Vec<Edit>,
}

/// Why a body was not rewritten.
#[derive(Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// Not JSON, or nested deeper than serde_json's limit (128).
    Malformed,
}

impl Transform {
    /// Parses `body`, applies the edits and serialises the result (compact).
    pub fn rewrite(&self, body: &[u8]) -> Result<Vec<u8>, RewriteError> {
        let mut doc: Value = serde_json::from_slice(body).map_err(|_| RewriteError::Malformed)?;
        for edit in &self.edits {
            match edit {
                Edit::Remove(p) => {
                    p.remove(&mut doc);
                }
                Edit::Rename(from, to) => {
                    if let Some(v) = from.remove(&mut doc) {
                        to.set(&mut doc, v);
                    }
                }
                Edit::Set(p, v) => {
                    p.set(&mut doc, v.clone());
                }
            }
        }
        serde_json::to_vec(&doc).map_err(|_| RewriteError::Malformed)
    }
}

/// `application/json` or `application/<anything>+json`, parameters ignored, any case.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || (subtype.len() > 5
                && subtype
                    .get(subtype.len() - 5..)
                    .is_some_and(|s| s.eq_ignore_ascii_case("+json"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn edits_apply_in_order_and_keep_document_order() {
        let t = Transform {
            edits: vec![
                Edit::Remove(p("/secret")),
                Edit::Rename(p("/user_name"), p("/user/name")),
                Edit::Set(p("/v"), json!(2)),
            ],
        };
        let out = t
            .rewrite(br#"{"b":1,"secret":"x","user_name":"ann","a":[1]}"#)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[1],"b":1,"user":{"name":"ann"},"v":2}"#
        );
    }

    #[test]
    fn malformed_and_too_deep_bodies_are_refused_without_panicking() {
        let t = Transform {
            edits: vec![Edit::Remove(p("/a"))],
        };
        assert_eq!(t.rewrite(b"{\"a\":"), Err(RewriteError::Malformed));
        assert_eq!(t.rewrite(b"\xff"), Err(RewriteError::Malformed));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(t.rewrite(deep.as_bytes()), Err(RewriteError::Malformed));
        assert_eq!(t.rewrite(b"[1,2]").unwrap(), b"[1,2]");
    }

    #[test]
    fn content_type_guard() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/json",
            "application/jsonx",
            "application/+json",
            "",
            "json",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }
}
