//! A serde `Deserializer` over a [`Json`] tree that knows where it is, so an error
//! names its field (`rules[2].match.path.regex`).
//!
//! This replaces serde_json's streaming deserializer wrapped in serde_path_to_error:
//! that pair instantiated every config type's visitors twice over (the wrapper's
//! types around serde_json's); dropping them took 10-15% off every module. Here each
//! config type is instantiated once, over [`Node`], and the path costs a pointer per
//! level.
//! An error takes the path of the innermost value it passes through, as with
//! serde_path_to_error: a bad value names itself, an unknown key names the key, and a
//! missing field names the object it is missing from.

use super::tree::Json;
use super::{join_path, ConfigError};
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use std::fmt;

/// A deserialization error, with the path of the value it arose at once known.
#[derive(Debug)]
pub struct Error {
    path: Option<String>,
    message: String,
}

impl Error {
    /// Gives the error `path` unless a value deeper down already gave it one.
    fn at(mut self, path: &Path<'_>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.render());
        }
        self
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self {
            path: None,
            message: message.to_string(),
        }
    }

    // serde's own versions print the value with `Unexpected`'s Display, whose float
    // arm links core's float formatting: 18 KB in every module, for one error message.
    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "invalid type: {}, expected {expected}",
            Described(unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "invalid value: {}, expected {expected}",
            Described(unexpected)
        ))
    }
}

/// An unexpected value in serde's words, with floats printed by [`shortest_decimal`].
struct Described<'a>(Unexpected<'a>);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Unexpected::Bool(b) => write!(f, "boolean `{b}`"),
            Unexpected::Unsigned(n) => write!(f, "integer `{n}`"),
            Unexpected::Signed(n) => write!(f, "integer `{n}`"),
            Unexpected::Float(x) => match shortest_decimal(x) {
                Some(text) => write!(f, "floating point `{text}`"),
                None => f.write_str("floating point number"),
            },
            Unexpected::Char(c) => write!(f, "character `{c}`"),
            Unexpected::Str(s) => write!(f, "string {s:?}"),
            Unexpected::Bytes(_) => f.write_str("byte array"),
            Unexpected::Unit => f.write_str("unit value"),
            Unexpected::Option => f.write_str("Option value"),
            Unexpected::NewtypeStruct => f.write_str("newtype struct"),
            Unexpected::Seq => f.write_str("sequence"),
            Unexpected::Map => f.write_str("map"),
            Unexpected::Enum => f.write_str("enum"),
            Unexpected::UnitVariant => f.write_str("unit variant"),
            Unexpected::NewtypeVariant => f.write_str("newtype variant"),
            Unexpected::TupleVariant => f.write_str("tuple variant"),
            Unexpected::StructVariant => f.write_str("struct variant"),
            Unexpected::Other(other) => f.write_str(other),
        }
    }
}

/// `x` as the shortest decimal with at most 15 fraction digits that parses back to
/// it (`1.5`, `-0.25`, `3.0`), using integer formatting only; `None` when there is
/// none. Exact: `n / 10^k` with both exact in f64 is correctly rounded, as parsing
/// the decimal text is, so a match is the value the config's author wrote.
pub fn shortest_decimal(x: f64) -> Option<String> {
    let mut scale = 1.0_f64;
    for digits in 0..=15usize {
        let scaled = (x * scale).round();
        if scaled.abs() < 9_007_199_254_740_992.0 && scaled / scale == x {
            // In range, so the cast is exact.
            let n = scaled as i64;
            let magnitude = n.unsigned_abs().to_string();
            let sign = if x.is_sign_negative() { "-" } else { "" };
            if digits == 0 {
                return Some(format!("{sign}{magnitude}.0"));
            }
            let padded = format!("{magnitude:0>width$}", width = digits + 1);
            let (whole, fraction) = padded.split_at(padded.len() - digits);
            return Some(format!("{sign}{whole}.{fraction}"));
        }
        scale *= 10.0;
    }
    None
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for ConfigError {
    fn from(e: Error) -> Self {
        ConfigError::at(e.path.unwrap_or_default(), e.message)
    }
}

/// Where a value sits: a chain of steps back to the document root, each on the
/// stack frame that is deserializing that level.
#[derive(Debug, Clone, Copy)]
pub enum Path<'p> {
    Root,
    Field(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
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

impl<'de> Deserializer<'de> for Node<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let path = self.path;
        match self.value {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(*b),
            Json::Int(n) => visitor.visit_i64(*n),
            Json::UInt(n) => visitor.visit_u64(*n),
            Json::Float(f) => visitor.visit_f64(*f),
            Json::String(s) => visitor.visit_borrowed_str(s),
            Json::Array(items) => visitor.visit_seq(Items::new(items, path)),
            Json::Object(members) => visitor.visit_map(Members::new(members, path)),
        }
        .map_err(|e| e.at(path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Json::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(self.path))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// `"name"` for a unit variant, `{"name": value}` for the others, as serde_json.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Json::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Json::Object(members) if members.len() == 1 => {
                let (name, value) = &members[0];
                visitor.visit_enum(Variant {
                    name,
                    value,
                    path: self.path,
                })
            }
            other => Err(de::Error::invalid_type(
                other.unexpected(),
                &"a variant name, or an object with one key",
            )),
        }
        .map_err(|e| e.at(self.path))
    }

    // The typed entry points below hand each visitor only the kind of value it asks
    // for and refuse the rest themselves. Routing them through `deserialize_any`
    // would instantiate every visitor method of every type, such as the array form of
    // each config struct, which no config uses: 5-6% of each module.

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Json::Object(members) => visitor
                .visit_map(Members::new(members, self.path))
                .map_err(|e| e.at(self.path)),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Json::Array(items) => visitor
                .visit_seq(Items::new(items, self.path))
                .map_err(|e| e.at(self.path)),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Json::String(s) => visitor
                .visit_borrowed_str::<Error>(s)
                .map_err(|e| e.at(self.path)),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Json::Bool(b) => visitor.visit_bool::<Error>(*b).map_err(|e| e.at(self.path)),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Json::Null => visitor.visit_unit::<Error>().map_err(|e| e.at(self.path)),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf
    }
}

impl Node<'_, '_> {
    /// `invalid type: string "x", expected a boolean`, at this node.
    fn mismatch(&self, expected: &dyn de::Expected) -> Error {
        <Error as de::Error>::invalid_type(self.value.unexpected(), expected).at(self.path)
    }
}

struct Items<'v, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'v, Json>>,
    path: &'p Path<'p>,
}

impl<'v, 'p> Items<'v, 'p> {
    fn new(items: &'v [Json], path: &'p Path<'p>) -> Self {
        Self {
            items: items.iter().enumerate(),
            path,
        }
    }
}

impl<'de> SeqAccess<'de> for Items<'de, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((i, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, i);
        seed.deserialize(Node { value, path: &path })
            .map(Some)
            .map_err(|e| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Members<'v, 'p> {
    members: std::slice::Iter<'v, (String, Json)>,
    /// The member whose key was just handed out and whose value comes next.
    pending: Option<&'v (String, Json)>,
    path: &'p Path<'p>,
}

impl<'v, 'p> Members<'v, 'p> {
    fn new(members: &'v [(String, Json)], path: &'p Path<'p>) -> Self {
        Self {
            members: members.iter(),
            pending: None,
            path,
        }
    }
}

impl<'de> MapAccess<'de> for Members<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(member) = self.members.next() else {
            return Ok(None);
        };
        self.pending = Some(member);
        let key = BorrowedStrDeserializer::<Error>::new(&member.0);
        // An unknown or misspelt key names itself.
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.at(&Path::Field(self.path, &member.0)))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((name, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        let path = Path::Field(self.path, name);
        seed.deserialize(Node { value, path: &path })
            .map_err(|e| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

/// `{"name": value}` as an enum variant.
struct Variant<'v, 'p> {
    name: &'v str,
    value: &'v Json,
    path: &'p Path<'p>,
}

impl<'de, 'p> EnumAccess<'de> for Variant<'de, 'p> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let name = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.name))?;
        Ok((name, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'de, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            Json::Null => Ok(()),
            other => Err(de::Error::invalid_type(other.unexpected(), &"unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        let path = Path::Field(self.path, self.name);
        seed.deserialize(Node {
            value: self.value,
            path: &path,
        })
        .map_err(|e| e.at(&path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        let path = Path::Field(self.path, self.name);
        Node {
            value: self.value,
            path: &path,
        }
        .deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let path = Path::Field(self.path, self.name);
        Node {
            value: self.value,
            path: &path,
        }
        .deserialize_map(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::shortest_decimal;

    #[test]
    fn floats_print_as_written() {
        for (x, text) in [
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (3.0, "3.0"),
            (0.1, "0.1"),
            (1.1, "1.1"),
            (123456.789, "123456.789"),
            (0.000001, "0.000001"),
            (-0.0, "-0.0"),
            (std::f64::consts::PI, "3.141592653589793"),
        ] {
            assert_eq!(shortest_decimal(x).as_deref(), Some(text), "{x}");
        }
    }

    #[test]
    fn floats_without_a_short_decimal_are_not_printed() {
        assert_eq!(shortest_decimal(1e300), None);
        assert_eq!(shortest_decimal(0.1 + 0.2), None);
        assert_eq!(shortest_decimal(1e-20), None);
    }
}
