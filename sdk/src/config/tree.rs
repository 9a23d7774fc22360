//! A parsed JSON document that keeps members in document order and refuses a key
//! given twice, so `{"limit": 1, "limit": 100}` is an error rather than a silent pick.
//!
//! Configs are parsed into this tree once and then deserialized from it by
//! [`super::de`], which tracks field paths. Holding the document as a tree lets the
//! mesh module hand each stage its own subtree without printing and re-parsing it.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use std::collections::HashSet;
use std::fmt;

/// One JSON value. Numbers keep the kind the parser saw, so an integer never passes
/// through `f64` on its way to a `u64` field.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Json {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    /// Members in document order; keys are unique.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses a JSON document (serde_json's parser), refusing a key given twice.
    pub fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// How serde's error messages describe this value (`invalid type: map, ...`).
    pub fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Json::Null => Unexpected::Unit,
            Json::Bool(b) => Unexpected::Bool(*b),
            Json::Int(n) => Unexpected::Signed(*n),
            Json::UInt(n) => Unexpected::Unsigned(*n),
            Json::Float(f) => Unexpected::Float(*f),
            Json::String(s) => Unexpected::Str(s),
            Json::Array(_) => Unexpected::Seq,
            Json::Object(_) => Unexpected::Map,
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

impl From<Json> for serde_json::Value {
    /// For code that reads documents as serde_json values after the tree has refused
    /// repeated keys (authz's JWT headers and payloads).
    fn from(json: Json) -> Self {
        use serde_json::Value;
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Int(n) => Value::from(n),
            Json::UInt(n) => Value::from(n),
            Json::Float(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
            Json::String(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(members) => {
                // Inserted one by one: collecting would link BTreeMap's bulk build
                // and a sort, about 10 KB, for maps the parser builds this way anyway.
                let mut map = serde_json::Map::new();
                for (k, v) in members {
                    map.insert(k, Value::from(v));
                }
                Value::Object(map)
            }
        }
    }
}

impl From<&serde_json::Value> for Json {
    /// For native code that holds a config as a serde_json value (the CLI, tests)
    /// and reads it as the filter would.
    fn from(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Json::UInt(u),
                (None, Some(i)) => Json::Int(i),
                (None, None) => Json::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Json::from(v)))
                    .collect(),
            ),
        }
    }
}

struct TreeVisitor;

/// Objects up to this many members check for a repeated key by scanning.
const SCAN_LIMIT: usize = 32;

fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate field `{key}`"))
}

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::UInt(n))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Json, E> {
        Ok(Json::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members: Vec<(String, Json)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            // A config-sized object is checked as each key arrives, so the error
            // points at the repeat; larger ones (JWT payloads come from requests) are
            // checked once at their end with a hash set (std's, keyed per process),
            // so the check is never quadratic.
            if members.len() < SCAN_LIMIT && members.iter().any(|(k, _)| *k == key) {
                return Err(duplicate(&key));
            }
            let value = map.next_value()?;
            members.push((key, value));
        }
        if members.len() > SCAN_LIMIT {
            let mut seen = HashSet::with_capacity(members.len());
            if let Some((key, _)) = members.iter().find(|(k, _)| !seen.insert(k.as_str())) {
                return Err(duplicate(key));
            }
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Json, serde_json::Error> {
        Json::parse(text.as_bytes())
    }

    #[test]
    fn members_keep_document_order() {
        let Json::Object(members) = parse(r#"{"b": 1, "a": [true, null], "c": -2.5}"#).unwrap()
        else {
            panic!("not an object")
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert_eq!(members[0].1, Json::UInt(1));
        assert_eq!(
            members[1].1,
            Json::Array(vec![Json::Bool(true), Json::Null])
        );
        assert_eq!(members[2].1, Json::Float(-2.5));
    }

    #[test]
    fn integers_keep_their_kind() {
        assert_eq!(parse("-3").unwrap(), Json::Int(-3));
        assert_eq!(parse("18446744073709551615").unwrap(), Json::UInt(u64::MAX));
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let err = parse(r#"{"rules": [{"limit": 1, "limit": 100}]}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `limit`"), "{err}");
    }

    #[test]
    fn a_key_given_twice_in_a_large_object_is_refused() {
        let members: Vec<String> = (0..200).map(|i| format!("\"k{i}\": {i}")).collect();
        let ok = format!("{{{}}}", members.join(","));
        let Json::Object(parsed) = parse(&ok).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(parsed.len(), 200);
        let twice = format!("{{{}, \"k150\": 0}}", members.join(","));
        let err = parse(&twice).unwrap_err();
        assert!(err.to_string().contains("duplicate field `k150`"), "{err}");
    }

    #[test]
    fn trees_and_serde_json_values_convert_both_ways() {
        let text = r#"{"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}}"#;
        let tree = parse(text).unwrap();
        let value = serde_json::Value::from(tree.clone());
        assert_eq!(
            value,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(Json::from(&value), tree);
    }

    #[test]
    fn nesting_is_bounded_by_the_parser() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("recursion limit"));
    }
}
