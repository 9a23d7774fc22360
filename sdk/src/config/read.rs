//! Reading config types from a [`Json`] tree: the [`FromJson`] trait, its impls for
//! the field types configs use, and the non-generic pieces `#[derive(FromJson)]`
//! expands to.
//!
//! A [`Node`] is a value and where it sits, so an error names its field
//! (`rules[2].match.path.regex`): a bad value names itself, an unknown key names the
//! key, and a missing field names the object it is missing from. The messages are
//! serde_json's (`invalid type: string "x", expected u32`, ``unknown field `limt`,
//! expected one of ...``), as configs were read with serde until module size made
//! its derives too dear (see `wasmesh-sdk-derive`).

use super::decimal::shortest_decimal;
use super::tree::Json;
use super::{join_path, ConfigError};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

/// A config type read from the JSON tree. Derive it with `#[derive(FromJson)]`.
pub trait FromJson: Sized {
    /// Reads the value at `node`.
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError>;

    /// The value of a field that is absent from `object`: an error naming it, except
    /// for `Option`, which is `None`.
    fn missing(object: Node<'_, '_>, field: &str) -> Result<Self, ConfigError> {
        Err(object.error(format_args!("missing field `{field}`")))
    }
}

/// Where a value sits: a chain of steps back to the document root, each on the
/// stack frame that is reading that level.
#[derive(Debug, Clone, Copy)]
pub enum Path<'p> {
    Root,
    Field(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl<'p> Path<'p> {
    /// The path of member `name` of the object here.
    pub fn field(&'p self, name: &'p str) -> Path<'p> {
        Path::Field(self, name)
    }

    /// `a.b[0].c`; empty for the root. Built only when an error needs it.
    pub fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Field(parent, name) => join_path(&parent.render(), name),
            Path::Index(parent, i) => join_path(&parent.render(), &format!("[{i}]")),
        }
    }
}

/// A value of the tree, and where it is.
#[derive(Clone, Copy)]
pub struct Node<'v, 'p> {
    pub value: &'v Json,
    pub path: &'p Path<'p>,
}

impl<'v> Node<'v, '_> {
    /// An error at this node.
    #[inline(never)]
    pub fn error(&self, message: fmt::Arguments<'_>) -> ConfigError {
        ConfigError::at(self.path.render(), message.to_string())
    }

    /// `invalid type: string "x", expected a boolean`, at this node.
    #[inline(never)]
    pub fn invalid_type(&self, expected: &str) -> ConfigError {
        self.error(format_args!(
            "invalid type: {}, expected {expected}",
            Described(self.value)
        ))
    }

    /// An object's members, or an error naming what was expected (`struct Config`).
    pub fn members(&self, expected: &str) -> Result<&'v [(String, Json)], ConfigError> {
        match self.value {
            Json::Object(members) => Ok(members),
            _ => Err(self.invalid_type(expected)),
        }
    }

    /// A unit variant's name (a string), or an error naming the enum.
    pub fn variant(&self, expected: &str) -> Result<&'v str, ConfigError> {
        match self.value {
            Json::String(s) => Ok(s),
            _ => Err(self.invalid_type(expected)),
        }
    }

    /// ``unknown field `limt`, expected one of `name`, `limit` ``, at the key.
    #[inline(never)]
    pub fn unknown_field(&self, key: &str, known: &[&str]) -> ConfigError {
        match known {
            [] => self.error(format_args!("unknown field `{key}`, there are no fields")),
            _ => self.error(format_args!(
                "unknown field `{key}`, expected {}",
                OneOf(known)
            )),
        }
    }

    /// ``unknown variant `jump`, expected one of `allow`, `deny` ``.
    #[inline(never)]
    pub fn unknown_variant(&self, name: &str, known: &[&str]) -> ConfigError {
        match known {
            [] => self.error(format_args!(
                "unknown variant `{name}`, there are no variants"
            )),
            _ => self.error(format_args!(
                "unknown variant `{name}`, expected {}",
                OneOf(known)
            )),
        }
    }

    /// An integer in `min..=max`, named `expected` (`u16`) in errors.
    #[inline(never)]
    fn integer(&self, min: i64, max: u64, expected: &str) -> Result<Integer, ConfigError> {
        let in_range = match *self.value {
            Json::Int(n) if n >= min && (n < 0 || n.unsigned_abs() <= max) => Integer::Signed(n),
            Json::UInt(n) if n <= max => Integer::Unsigned(n),
            Json::Int(_) | Json::UInt(_) => {
                return Err(self.error(format_args!(
                    "invalid value: {}, expected {expected}",
                    Described(self.value)
                )))
            }
            _ => return Err(self.invalid_type(expected)),
        };
        Ok(in_range)
    }
}

/// An integer already checked to fit the target type.
enum Integer {
    Signed(i64),
    Unsigned(u64),
}

/// serde's list of the names it knew: `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``.
struct OneOf<'a>(&'a [&'a str]);

impl fmt::Display for OneOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "`{one}`"),
            [a, b] => write!(f, "`{a}` or `{b}`"),
            names => {
                f.write_str("one of ")?;
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{name}`")?;
                }
                Ok(())
            }
        }
    }
}

/// A value as serde_json's messages describe it; floats printed by
/// [`shortest_decimal`], so no module links core's float formatting for this.
struct Described<'a>(&'a Json);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "boolean `{b}`"),
            Json::Int(n) => write!(f, "integer `{n}`"),
            Json::UInt(n) => write!(f, "integer `{n}`"),
            Json::Float(x) => match shortest_decimal(*x) {
                Some(text) => write!(f, "floating point `{text}`"),
                None => f.write_str("floating point number"),
            },
            Json::String(s) => write!(f, "string {s:?}"),
            Json::Array(_) => f.write_str("sequence"),
            Json::Object(_) => f.write_str("map"),
        }
    }
}

impl FromJson for bool {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        match node.value {
            Json::Bool(b) => Ok(*b),
            _ => Err(node.invalid_type("a boolean")),
        }
    }
}

impl FromJson for String {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        match node.value {
            Json::String(s) => Ok(s.clone()),
            _ => Err(node.invalid_type("a string")),
        }
    }
}

/// Integers: any JSON integer in the type's range; fractions are refused.
macro_rules! integers {
    ($($ty:ident)*) => {$(
        impl FromJson for $ty {
            fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
                // Both bounds fit: the range was checked against them.
                let (min, max) = (i64::try_from($ty::MIN).unwrap_or(i64::MIN), $ty::MAX as u64);
                match node.integer(min, max, stringify!($ty))? {
                    Integer::Signed(n) => Ok(n as $ty),
                    Integer::Unsigned(n) => Ok(n as $ty),
                }
            }
        }
    )*};
}

integers!(u8 u16 u32 u64 usize i32 i64);

impl FromJson for f64 {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        match *node.value {
            Json::Float(x) => Ok(x),
            Json::Int(n) => Ok(n as f64),
            Json::UInt(n) => Ok(n as f64),
            _ => Err(node.invalid_type("f64")),
        }
    }
}

impl FromJson for Json {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        Ok(node.value.clone())
    }
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        match node.value {
            Json::Null => Ok(None),
            _ => T::from_json(node).map(Some),
        }
    }

    fn missing(_: Node<'_, '_>, _: &str) -> Result<Self, ConfigError> {
        Ok(None)
    }
}

impl<T: FromJson> FromJson for Box<T> {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        T::from_json(node).map(Box::new)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        let Json::Array(items) = node.value else {
            return Err(node.invalid_type("a sequence"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, value) in items.iter().enumerate() {
            let path = Path::Index(node.path, i);
            out.push(T::from_json(Node { value, path: &path })?);
        }
        Ok(out)
    }
}

/// A map-typed field: each member read with its key in the path.
fn read_map<T: FromJson, M: Default + Extend<(String, T)>>(
    node: Node<'_, '_>,
) -> Result<M, ConfigError> {
    let mut out = M::default();
    for (key, value) in node.members("a map")? {
        let path = node.path.field(key);
        let item = T::from_json(Node { value, path: &path })?;
        out.extend(Some((key.clone(), item)));
    }
    Ok(out)
}

impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        read_map(node)
    }
}

impl<T: FromJson, S: BuildHasher + Default> FromJson for HashMap<String, T, S> {
    fn from_json(node: Node<'_, '_>) -> Result<Self, ConfigError> {
        read_map(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: FromJson>(text: &str) -> Result<T, ConfigError> {
        let doc = Json::parse(text.as_bytes()).unwrap();
        T::from_json(Node {
            value: &doc,
            path: &Path::Root,
        })
    }

    #[test]
    fn integers_keep_to_their_range() {
        assert_eq!(read::<u16>("65535").unwrap(), u16::MAX);
        assert_eq!(read::<i64>("-9223372036854775808").unwrap(), i64::MIN);
        assert_eq!(read::<u64>("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(read::<i32>("-5").unwrap(), -5);
        let e = read::<u16>("65536").unwrap_err();
        assert_eq!(e.message, "invalid value: integer `65536`, expected u16");
        let e = read::<u32>("-1").unwrap_err();
        assert_eq!(e.message, "invalid value: integer `-1`, expected u32");
        let e = read::<i64>("18446744073709551615").unwrap_err();
        assert!(e.message.starts_with("invalid value"), "{e}");
        let e = read::<u32>("1.5").unwrap_err();
        assert_eq!(
            e.message,
            "invalid type: floating point `1.5`, expected u32"
        );
        let e = read::<u8>("\"7\"").unwrap_err();
        assert_eq!(e.message, "invalid type: string \"7\", expected u8");
    }

    #[test]
    fn floats_take_integers_too() {
        assert_eq!(read::<f64>("2").unwrap(), 2.0);
        assert_eq!(read::<f64>("-0.5").unwrap(), -0.5);
        assert_eq!(
            read::<f64>("null").unwrap_err().message,
            "invalid type: null, expected f64"
        );
    }

    #[test]
    fn lists_and_maps_name_the_bad_element() {
        let e = read::<Vec<u8>>("[1, 2, 300]").unwrap_err();
        assert_eq!(e.path, "[2]");
        let e = read::<BTreeMap<String, bool>>(r#"{"a": true, "b": 1}"#).unwrap_err();
        assert_eq!(e.path, "b");
        assert_eq!(e.message, "invalid type: integer `1`, expected a boolean");
        let e = read::<Vec<String>>(r#"{"a": 1}"#).unwrap_err();
        assert_eq!(e.message, "invalid type: map, expected a sequence");
    }

    #[test]
    fn options_read_null_as_none() {
        assert_eq!(read::<Option<String>>("null").unwrap(), None);
        assert_eq!(
            read::<Option<String>>("\"x\"").unwrap().as_deref(),
            Some("x")
        );
    }

    #[test]
    fn known_names_are_listed_as_serde_does() {
        let doc = Json::Null;
        let node = Node {
            value: &doc,
            path: &Path::Root,
        };
        let message = |known: &[&str]| node.unknown_field("x", known).message;
        assert_eq!(message(&[]), "unknown field `x`, there are no fields");
        assert_eq!(message(&["a"]), "unknown field `x`, expected `a`");
        assert_eq!(
            message(&["a", "b"]),
            "unknown field `x`, expected `a` or `b`"
        );
        assert_eq!(
            message(&["a", "b", "c"]),
            "unknown field `x`, expected one of `a`, `b`, `c`"
        );
    }
}
