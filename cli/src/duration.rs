//! Durations as written in Istio YAML (`250ms`, `2s`, `1m`, `1h`, `1.5s`) and as Envoy's
//! JSON wants them (`0.250s`).

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;

/// A non-negative duration with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(u64);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Envoy's protobuf JSON form: seconds with up to three decimals and an `s`.
    pub fn envoy(self) -> String {
        let (s, ms) = (self.0 / 1000, self.0 % 1000);
        if ms == 0 {
            format!("{s}s")
        } else {
            format!("{s}.{ms:03}s")
        }
    }

    /// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        // The units are the filters' (the SDK's table); the number is read as a float,
        // so the mesh file also takes `1e3ms` and rounds to whole milliseconds.
        let Some((number, unit_ns)) = wasmesh_sdk::duration::split_unit(text.trim()) else {
            return Err(format!(
                "invalid duration {text:?}: expected a number with a unit (ms, s, m, h), like \"250ms\" or \"2s\""
            ));
        };
        // Every unit is a whole number of milliseconds, exact as a float.
        let unit_ms = (unit_ns / 1_000_000) as f64;
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: {number:?} is not a number"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("invalid duration {text:?}: must be zero or more"));
        }
        let ms = (value * unit_ms).round();
        if ms > 1e15 {
            return Err(format!("invalid duration {text:?}: too long"));
        }
        // In range and non-negative: checked just above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Self(ms as u64))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}s", self.0 / 1000)
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(de::Error::custom)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Duration;

    #[test]
    fn parses_istio_units_and_prints_envoy_seconds() {
        assert_eq!(Duration::parse("250ms").unwrap().envoy(), "0.250s");
        assert_eq!(Duration::parse("2s").unwrap().envoy(), "2s");
        assert_eq!(Duration::parse("1.5s").unwrap().envoy(), "1.500s");
        assert_eq!(Duration::parse("1m").unwrap().as_millis(), 60_000);
        assert!(Duration::parse("5").is_err());
        assert!(Duration::parse("-1s").is_err());
    }
}
