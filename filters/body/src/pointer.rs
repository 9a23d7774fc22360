//! JSON pointers (RFC 6901): parsed once at configure time, applied to a parsed body.
//!
//! `set` creates missing object members along the way (so `/meta/source` works on a
//! body without `meta`), replaces an array element by index, and appends with `-`;
//! it never turns a scalar into a container. `remove` of a path that is not there is
//! not an error: a rewrite applies to the bodies that have the field.

use serde_json::Value;
use wasmesh_sdk::ConfigError;

/// A parsed pointer: its reference tokens, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
    text: String,
}

impl Pointer {
    /// `""` is the whole document, which no rewrite may replace or remove.
    pub fn parse(text: &str) -> Result<Pointer, ConfigError> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(ConfigError::at(
                "",
                format!("`{text}` is not a JSON pointer (it must start with `/`)"),
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            tokens.push(unescape(raw).ok_or_else(|| {
                ConfigError::at(
                    "",
                    format!("`{text}`: `~` must be followed by 0 or 1 (RFC 6901)"),
                )
            })?);
        }
        Ok(Pointer {
            tokens,
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `other` lies inside this pointer's value (a rename into itself).
    pub fn contains(&self, other: &Pointer) -> bool {
        other.tokens.len() > self.tokens.len() && other.tokens.starts_with(&self.tokens)
    }

    /// Removes the value at this pointer; returns it if it was there.
    pub fn remove(&self, doc: &mut Value) -> Option<Value> {
        let (last, parents) = self.tokens.split_last()?;
        match walk(doc, parents)? {
            Value::Object(map) => map.remove(last.as_str()),
            Value::Array(items) => {
                let i = index(last, items.len())?;
                Some(items.remove(i))
            }
            _ => None,
        }
    }

    /// Sets the value at this pointer; false if the path cannot hold it (a scalar in
    /// the way, an array index out of range).
    pub fn set(&self, doc: &mut Value, value: Value) -> bool {
        let Some((last, parents)) = self.tokens.split_last() else {
            return false;
        };
        let mut at = doc;
        for token in parents {
            at = match at {
                Value::Object(map) => map
                    .entry(token.clone())
                    .or_insert_with(|| Value::Object(serde_json::Map::new())),
                Value::Array(items) => match index(token, items.len()) {
                    Some(i) => &mut items[i],
                    None => return false,
                },
                _ => return false,
            };
        }
        match at {
            Value::Object(map) => {
                map.insert(last.clone(), value);
                true
            }
            Value::Array(items) if last == "-" => {
                items.push(value);
                true
            }
            Value::Array(items) => match index(last, items.len()) {
                Some(i) => {
                    items[i] = value;
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

/// The value at `tokens` below `doc`, without creating anything.
fn walk<'v>(doc: &'v mut Value, tokens: &[String]) -> Option<&'v mut Value> {
    let mut at = doc;
    for token in tokens {
        at = match at {
            Value::Object(map) => map.get_mut(token.as_str())?,
            Value::Array(items) => {
                let i = index(token, items.len())?;
                items.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(at)
}

/// An array index per RFC 6901: digits, no leading zero, inside the array.
fn index(token: &str, len: usize) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok().filter(|i| *i < len)
}

/// `~1` is `/`, `~0` is `~`; any other `~` is malformed.
fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn escapes_follow_rfc_6901() {
        let mut doc = json!({"a/b": 1, "m~n": 2, "": 3});
        assert_eq!(p("/a~1b").remove(&mut doc), Some(json!(1)));
        assert_eq!(p("/m~0n").remove(&mut doc), Some(json!(2)));
        assert_eq!(p("/").remove(&mut doc), Some(json!(3)));
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }

    #[test]
    fn set_creates_members_but_never_replaces_a_scalar_on_the_way() {
        let mut doc = json!({"a": 1, "list": [1, 2]});
        assert!(p("/meta/source").set(&mut doc, json!("mesh")));
        assert!(p("/list/0").set(&mut doc, json!(9)));
        assert!(p("/list/-").set(&mut doc, json!(3)));
        assert!(!p("/list/7").set(&mut doc, json!(0)));
        assert!(!p("/list/01").set(&mut doc, json!(0)));
        assert!(!p("/a/b").set(&mut doc, json!(0)));
        assert_eq!(
            doc,
            json!({"a": 1, "list": [9, 2, 3], "meta": {"source": "mesh"}})
        );
    }

    #[test]
    fn remove_of_a_missing_path_is_nothing() {
        let mut doc = json!({"a": {"b": [1]}});
        assert_eq!(p("/a/c").remove(&mut doc), None);
        assert_eq!(p("/x/y").remove(&mut doc), None);
        assert_eq!(p("/a/b/5").remove(&mut doc), None);
        assert_eq!(p("/a/b/0").remove(&mut doc), Some(json!(1)));
    }

    #[test]
    fn removing_keeps_the_other_members() {
        let mut doc: Value = serde_json::from_str(r#"{"z":1,"a":2,"m":3}"#).unwrap();
        p("/a").remove(&mut doc);
        assert_eq!(doc, json!({"z": 1, "m": 3}));
    }
}
