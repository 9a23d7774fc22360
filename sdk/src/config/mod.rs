//! Plugin configuration: JSON read into typed configs, errors that name the field.
//!
//! Every filter parses its raw configuration bytes once, in `on_configure`, into its
//! own config type (`#[derive(FromJson)]`) and then validates that into a runtime
//! object. Both steps report a
//! [`ConfigError`] whose `path` is the dotted/indexed path of the offending field
//! (`rules[2].match.path.regex`), so the log line Envoy prints says exactly what to fix.
//!
//! The bytes are parsed into a [`Json`] tree (serde_json's parser; duplicate keys are
//! refused) and the config type is read from the tree by its [`FromJson`] impl, which
//! tracks the path (`read`).

mod decimal;
mod read;
mod tree;

pub use decimal::shortest_decimal;
pub use read::{FromJson, Node, Path};
pub use tree::Json;
pub use wasmesh_sdk_derive::FromJson;

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
pub fn parse<T: FromJson>(bytes: &[u8]) -> Result<T, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return from_json(&Json::Null);
    }
    // A syntax error has no field to name, so it keeps serde_json's line and column.
    let doc = Json::parse(bytes).map_err(|e| ConfigError::at("", format!("invalid JSON: {e}")))?;
    from_json(&doc)
}

/// Reads a config from a parsed document; `null` stands for `{}`, as empty input does
/// for [`parse`]. Errors name the field, relative to `doc`.
pub fn from_json<T: FromJson>(doc: &Json) -> Result<T, ConfigError> {
    let empty = Json::Object(Vec::new());
    let value = if *doc == Json::Null { &empty } else { doc };
    T::from_json(Node {
        value,
        path: &Path::Root,
    })
}

/// Reads a config held as a serde_json value, as the filter reads its bytes: for
/// native code (the CLI, tests).
pub fn from_value<T: FromJson>(value: &serde_json::Value) -> Result<T, ConfigError> {
    from_json(&Json::from(value))
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

    #[derive(Debug, FromJson)]
    #[config(deny_unknown_fields)]
    struct Root {
        #[config(default)]
        rules: Vec<Rule>,
    }

    #[derive(Debug, FromJson)]
    #[config(deny_unknown_fields)]
    #[allow(dead_code)] // fields exist to be parsed, not read
    struct Rule {
        name: String,
        #[config(default)]
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

    #[derive(Debug, FromJson, PartialEq)]
    #[config(rename_all = "camelCase")]
    enum Action {
        Allow,
        DenyAll,
        #[config(rename = "LOG")]
        Log,
    }

    #[derive(Debug, FromJson)]
    #[config(deny_unknown_fields, rename_all = "camelCase")]
    struct Policy {
        actions: Vec<Action>,
        note: Option<String>,
        #[config(default)]
        weights: std::collections::BTreeMap<String, f64>,
        #[config(default = "three", alias = "maxTries")]
        max_attempts: u32,
        #[config(rename = "match")]
        matches: Option<Box<Root>>,
    }

    fn three() -> u32 {
        3
    }

    #[derive(Debug, Default, FromJson)]
    #[config(default)]
    struct Defaults {
        limit: u32,
        name: String,
        // serde's rule: a field's own default beats the type's Default (0 here).
        #[config(default = "three")]
        tries: u32,
    }

    #[test]
    fn enums_options_maps_and_renames_read_as_with_serde() {
        let p: Policy = parse(
            br#"{"actions":["allow","denyAll","LOG"],"note":null,"weights":{"a":1,"b":0.5},"match":{}}"#,
        )
        .unwrap();
        assert_eq!(p.actions, [Action::Allow, Action::DenyAll, Action::Log]);
        assert_eq!(p.note, None);
        assert_eq!(p.weights["a"], 1.0);
        assert_eq!(p.weights["b"], 0.5);
        assert_eq!(
            p.max_attempts, 3,
            "a default function fills a missing field"
        );
        assert!(p.matches.is_some_and(|m| m.rules.is_empty()));
        let p: Policy = parse(br#"{"actions":[],"maxTries":5}"#).unwrap();
        assert_eq!(p.max_attempts, 5, "an alias reads as the field");
        let e = parse::<Policy>(br#"{"actions":[],"maxTries":5,"maxAttempts":6}"#).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("maxAttempts", "duplicate field `maxAttempts`"),
            "a field and its alias are one field"
        );
        assert!(p.matches.is_none(), "a missing Option is None");
        let d: Defaults = parse(br#"{"limit":7}"#).unwrap();
        assert_eq!((d.limit, d.name.as_str(), d.tries), (7, "", 3));
        let d: Defaults = parse(br#"{"tries":1}"#).unwrap();
        assert_eq!((d.limit, d.tries), (0, 1));
    }

    #[test]
    fn errors_inside_enums_and_maps_name_their_place() {
        let at = |json: &[u8]| parse::<Policy>(json).unwrap_err();
        let e = at(br#"{"actions":[],"match":{"rules":[{"name":"a","limt":1}]}}"#);
        assert_eq!(e.path, "match.rules[0].limt");
        assert_eq!(
            e.message,
            "unknown field `limt`, expected `name` or `limit`"
        );
        let e = at(br#"{"actions":[],"match":{"rules":[{"name":"a","limit":-1}]}}"#);
        assert_eq!(e.path, "match.rules[0].limit");
        assert_eq!(e.message, "invalid value: integer `-1`, expected u32");
        let e = at(br#"{"actions":["allow","jump"]}"#);
        assert_eq!(e.path, "actions[1]");
        assert_eq!(
            e.message,
            "unknown variant `jump`, expected one of `allow`, `denyAll`, `LOG`"
        );
        let e = at(br#"{"actions":[true]}"#);
        assert_eq!(
            e.message,
            "invalid type: boolean `true`, expected enum Action"
        );
        let e = at(br#"{"actions":[],"weights":{"a":"heavy"}}"#);
        assert_eq!(e.path, "weights.a");
        assert_eq!(e.message, "invalid type: string \"heavy\", expected f64");
        let e = at(br#"{"actions":[],"maxAttempts":1.5}"#);
        assert_eq!(e.path, "maxAttempts");
        assert_eq!(
            e.message,
            "invalid type: floating point `1.5`, expected u32"
        );
        let e = at(br#"{"note":"x"}"#);
        assert_eq!(e.path, "");
        assert_eq!(e.message, "missing field `actions`");
        let e = at(br#"[]"#);
        assert_eq!(e.message, "invalid type: sequence, expected struct Policy");
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
