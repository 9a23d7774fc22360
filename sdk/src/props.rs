//! Properties (connection and request attributes), read on demand and memoised.
//!
//! Most requests never need most properties, so none is fetched until a stage asks,
//! and each is fetched at most once per phase. Values are decoded the way Envoy
//! encodes them: strings as raw bytes, integers as little-endian i64, booleans as one byte.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Where property values come from: the host in a filter, a map in a native test.
pub trait PropertySource {
    /// The raw value at `path` (segments such as `["source", "address"]`), if any.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
}

/// The real host.
pub struct HostProperties;

impl PropertySource for HostProperties {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        crate::host::property(path).ok().flatten()
    }
}

/// A fixed set of properties for native tests, keyed by dotted path (`source.address`).
#[derive(Debug, Default, Clone)]
pub struct StaticProperties(HashMap<String, Vec<u8>>);

impl StaticProperties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a string property.
    pub fn with(mut self, dotted_path: &str, value: &str) -> Self {
        self.0
            .insert(dotted_path.to_string(), value.as_bytes().to_vec());
        self
    }

    /// Adds a raw property.
    pub fn with_bytes(mut self, dotted_path: &str, value: &[u8]) -> Self {
        self.0.insert(dotted_path.to_string(), value.to_vec());
        self
    }
}

impl PropertySource for StaticProperties {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.0.get(&path.join(".")).cloned()
    }
}

/// A fetched property: its path and value (None when the host has none).
type Memo = (&'static [&'static str], Option<Vec<u8>>);

/// Memoised, typed access to properties for one phase of one stream.
pub struct Properties<'a> {
    source: &'a dyn PropertySource,
    memo: RefCell<Vec<Memo>>,
}

impl<'a> Properties<'a> {
    pub fn new(source: &'a dyn PropertySource) -> Self {
        Self {
            source,
            memo: RefCell::new(Vec::new()),
        }
    }

    /// A raw property, fetched once.
    pub fn raw(&self, path: &'static [&'static str]) -> Option<Vec<u8>> {
        if let Some((_, v)) = self.memo.borrow().iter().find(|(p, _)| *p == path) {
            return v.clone();
        }
        let value = self.source.property(path);
        self.memo.borrow_mut().push((path, value.clone()));
        value
    }

    /// A string property (lossy UTF-8).
    pub fn string(&self, path: &'static [&'static str]) -> Option<String> {
        self.raw(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// An integer property (Envoy: little-endian i64).
    pub fn int(&self, path: &'static [&'static str]) -> Option<i64> {
        let bytes = self.raw(path)?;
        let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(i64::from_le_bytes(raw))
    }

    /// `source.address` as a socket address (`ip:port`).
    pub fn source_address(&self) -> Option<SocketAddr> {
        parse_address(&self.string(&["source", "address"])?)
    }

    /// The downstream peer's IP (the TCP peer, not `x-forwarded-for`).
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_address().map(|a| a.ip())
    }

    pub fn destination_port(&self) -> Option<u16> {
        if let Some(port) = self.int(&["destination", "port"]) {
            return u16::try_from(port).ok();
        }
        parse_address(&self.string(&["destination", "address"])?).map(|a| a.port())
    }

    /// The mTLS peer's URI SAN (a SPIFFE ID in a mesh), if the connection is mTLS.
    pub fn peer_principal(&self) -> Option<String> {
        self.string(&["connection", "uri_san_peer_certificate"])
            .filter(|s| !s.is_empty())
    }

    /// Whether the downstream connection is mutual TLS.
    pub fn mtls(&self) -> bool {
        self.raw(&["connection", "mtls"])
            .is_some_and(|b| b.first().is_some_and(|&x| x != 0))
    }

    /// The route's name: `xds.route_name` (Envoy 1.40 answers only that), else the
    /// older `route_name`.
    pub fn route_name(&self) -> Option<String> {
        self.string(&["xds", "route_name"])
            .or_else(|| self.string(&["route_name"]))
    }

    /// When the request started (`request.time`), in nanoseconds since the Unix epoch.
    pub fn request_time_nanos(&self) -> Option<i64> {
        self.int(&["request", "time"])
    }

    pub fn request_id(&self) -> Option<String> {
        self.string(&["request", "id"])
    }
}

/// Parses `1.2.3.4:80`, `[::1]:80`, or a bare IP (port 0).
pub fn parse_address(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Counting<'a>(&'a Cell<u32>);
    impl PropertySource for Counting<'_> {
        fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
            self.0.set(self.0.get() + 1);
            Some(b"10.0.0.1:5000".to_vec())
        }
    }

    #[test]
    fn each_property_is_fetched_once() {
        let calls = Cell::new(0);
        let source = Counting(&calls);
        let props = Properties::new(&source);
        assert_eq!(props.source_ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(props.source_ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn typed_getters_decode_envoy_encodings() {
        let source = StaticProperties::new()
            .with("source.address", "[::1]:8080")
            .with_bytes("destination.port", &9080i64.to_le_bytes())
            .with_bytes("connection.mtls", &[1])
            .with(
                "connection.uri_san_peer_certificate",
                "spiffe://td/ns/a/sa/b",
            )
            .with("route_name", "r1");
        let props = Properties::new(&source);
        assert_eq!(props.source_ip(), Some("::1".parse().unwrap()));
        assert_eq!(props.destination_port(), Some(9080));
        assert!(props.mtls());
        assert_eq!(
            props.peer_principal().as_deref(),
            Some("spiffe://td/ns/a/sa/b")
        );
        assert_eq!(props.route_name().as_deref(), Some("r1"));
        assert_eq!(props.request_id(), None);
    }

    #[test]
    fn bad_values_are_absent_not_errors() {
        let source = StaticProperties::new()
            .with("source.address", "not an address")
            .with_bytes("destination.port", &[1, 2]);
        let props = Properties::new(&source);
        assert_eq!(props.source_ip(), None);
        assert_eq!(props.destination_port(), None);
        assert!(!props.mtls());
    }
}
