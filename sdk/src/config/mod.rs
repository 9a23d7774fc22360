//! Plugin configuration: JSON parsed with serde, errors that name the field.
//!
//! Every filter parses its raw configuration bytes once, in `on_configure`, into its
//! own serde type and then validates that into a runtime object. Both steps report a
//! [`ConfigError`] whose `path` is the dotted/indexed path of the offending field
//! (`rules[2].match.path.regex`), so the log line Envoy prints says exactly what to fix.
//!
//! The bytes are parsed into a [`Json`] tree (serde_json's parser; duplicate keys are
//! refused) and the config type is deserialized from the tree by a deserializer that
//! tracks the path (`de`).

mod de;
mod tree;

pub use de::shortest_decimal;
pub use tree::Json;

use serde::de::DeserializeOwned;
use std::fmt;

/// A configuration problem at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path such as `rules[2].match.path`; empty for the document root.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Prefixes this error's path with `parent` (a field name or `name[i]`), so nested
    /// validators can report paths relative to themselves and callers add the rest.
    pub fn within(mut self, parent: &str) -> Self {
        self.path = join_path(parent, &self.path);
        self
    }
}

/// Joins two field-path fragments: `a` + `b` → `a.b`, `a` + `[1].b` → `a[1].b`.
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (false, true) => parent.to_string(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses a plugin configuration. Empty input (no `configuration` in Envoy) parses as
/// `{}` so that filters whose fields all have defaults need no config at all.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return from_json(&Json::Null);
    }
    // A syntax error has no field to name, so it keeps serde_json's line and column.
    let doc = Json::parse(bytes).map_err(|e| ConfigError::at("", format!("invalid JSON: {e}")))?;
    from_json(&doc)
}

/// Deserializes a config from a parsed document; `null` stands for `{}`, as empty
/// input does for [`parse`]. Errors name the field, relative to `doc`.
pub fn from_json<T: DeserializeOwned>(doc: &Json) -> Result<T, ConfigError> {
    let empty = Json::Object(Vec::new());
    let value = if *doc == Json::Null { &empty } else { doc };
    T::deserialize(de::Node {
        value,
        path: &de::Path::Root,
    })
    .map_err(ConfigError::from)
}

/// Validation helper: a list of items, each validated with its index in the path.
pub fn validate_list<T, U>(
    field: &str,
    items: &[T],
    mut validate: impl FnMut(&T) -> Result<U, ConfigError>,
) -> Result<Vec<U>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| validate(item).map_err(|e| e.within(&format!("{field}[{i}]"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be parsed, not read
    struct Rule {
        name: String,
        #[serde(default)]
        limit: u32,
    }

    #[test]
    fn empty_config_is_an_empty_object() {
        let root: Root = parse(b"  ").unwrap();
        assert!(root.rules.is_empty());
    }

    #[test]
    fn type_error_names_the_indexed_field() {
        let err =
            parse::<Root>(br#"{"rules":[{"name":"a"},{"name":"b","limit":"x"}]}"#).unwrap_err();
        assert_eq!(err.path, "rules[1].limit");
        assert!(err.message.contains("invalid type"), "{err}");
        assert!(!err.message.contains("line"), "{err}");
    }

    #[test]
    fn unknown_field_is_refused_with_its_location() {
        let err = parse::<Root>(br#"{"rules":[{"name":"a","limt":3}]}"#).unwrap_err();
        assert_eq!(err.path, "rules[0].limt");
        assert!(err.message.contains("unknown field `limt`"), "{err}");
    }

    #[test]
    fn missing_field_names_the_parent() {
        let err = parse::<Root>(br#"{"rules":[{}]}"#).unwrap_err();
        assert_eq!(err.path, "rules[0]");
        assert!(err.message.contains("missing field `name`"), "{err}");
    }

    #[test]
    fn syntax_error_is_reported_with_its_position() {
        let err = parse::<Root>(b"{\"rules\": [").unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");
        assert!(err.message.contains("line 1 column 11"), "{err}");
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let err = parse::<Root>(br#"{"rules":[{"name":"a","limit":1,"limit":2}]}"#).unwrap_err();
        assert!(err.message.contains("duplicate field `limit`"), "{err}");
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    enum Action {
        Allow,
        Deny { reason: String },
        Delay(u32),
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Policy {
        actions: Vec<Action>,
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        weights: std::collections::BTreeMap<String, f64>,
    }

    #[test]
    fn enums_options_and_maps_deserialize_as_with_serde_json() {
        let p: Policy = parse(
            br#"{"actions":["allow",{"deny":{"reason":"no"}},{"delay":5}],"note":null,"weights":{"a":1,"b":0.5}}"#,
        )
        .unwrap();
        assert_eq!(
            p.actions,
            [
                Action::Allow,
                Action::Deny {
                    reason: "no".into()
                },
                Action::Delay(5)
            ]
        );
        assert_eq!(p.note, None);
        assert_eq!(p.weights["a"], 1.0);
        assert_eq!(p.weights["b"], 0.5);
    }

    #[test]
    fn errors_inside_enums_and_maps_name_their_place() {
        let at = |json: &[u8]| parse::<Policy>(json).unwrap_err();
        let e = at(br#"{"actions":["allow",{"deny":{"reasn":"x"}}]}"#);
        assert_eq!(e.path, "actions[1].deny.reasn");
        assert!(e.message.contains("unknown field `reasn`"), "{e}");
        let e = at(br#"{"actions":[{"delay":-1}]}"#);
        assert_eq!(e.path, "actions[0].delay");
        assert!(e.message.contains("integer `-1`"), "{e}");
        let e = at(br#"{"actions":["jump"]}"#);
        assert_eq!(e.path, "actions[0]");
        assert!(e.message.contains("unknown variant `jump`"), "{e}");
        let e = at(br#"{"actions":[],"weights":{"a":"heavy"}}"#);
        assert_eq!(e.path, "weights.a");
        assert!(e.message.contains("invalid type: string \"heavy\""), "{e}");
        let e = at(br#"{"actions":[{"delay":1.5}]}"#);
        assert_eq!(e.path, "actions[0].delay");
        assert!(
            e.message.contains("floating point `1.5`, expected u32"),
            "{e}"
        );
        let e = at(br#"{"actions":[{"allow":null,"deny":{}}]}"#);
        assert_eq!(e.path, "actions[0]");
    }

    #[test]
    fn null_config_is_an_empty_object() {
        let root: Root = from_json(&Json::Null).unwrap();
        assert!(root.rules.is_empty());
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(parse::<Root>(b"{} x").is_err());
    }

    #[test]
    fn nested_validation_errors_compose_paths() {
        let items = vec![1, 2, 3];
        let err = validate_list("limits", &items, |n| {
            if *n == 3 {
                Err(ConfigError::at("value", "too big"))
            } else {
                Ok(*n)
            }
        })
        .unwrap_err()
        .within("rules[4]");
        assert_eq!(err.to_string(), "rules[4].limits[2].value: too big");
    }

    #[test]
    fn join_path_handles_roots_and_indices() {
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(join_path("a", ""), "a");
        assert_eq!(join_path("a", "[0].b"), "a[0].b");
        assert_eq!(join_path("a", "b"), "a.b");
    }
}
