//! Properties (connection and request attributes) in the native build.
//!
//! Proxy-Wasm reads a property by path (`source.address`); the dynamic-module ABI reads
//! an attribute by numeric id, as a string, an integer or a bool. [`attribute`] maps the
//! paths the stages read to Envoy 1.40's ids, each pinned by a real-Envoy test
//! (`tests/envoy.rs`), and the shell encodes the answer as Proxy-Wasm would (integers
//! as little-endian i64, bools as one byte), so stages read them unchanged.
//!
//! Envoy 1.40 answers only some attributes through this ABI (`request.time`,
//! `request.duration`, the sizes, `response.flags` and `response.code_details` among
//! those it does not): a path with no mapping reads as absent, and the first read of
//! each says so in Envoy's log, so a stage that depends on one degrades visibly.

use std::collections::HashSet;
use std::sync::Mutex;

/// How Envoy answers an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    String(u32),
    Int(u32),
    Bool(u32),
}

/// `envoy_dynamic_module_type_attribute_id` values (Envoy 1.40.0's `abi.h`).
mod id {
    pub const REQUEST_ID: u32 = 9;
    pub const REQUEST_PROTOCOL: u32 = 10;
    pub const RESPONSE_CODE: u32 = 15;
    pub const SOURCE_ADDRESS: u32 = 24;
    pub const DESTINATION_ADDRESS: u32 = 26;
    pub const DESTINATION_PORT: u32 = 27;
    pub const CONNECTION_MTLS: u32 = 29;
    pub const CONNECTION_URI_SAN_PEER_CERTIFICATE: u32 = 37;
    pub const UPSTREAM_ADDRESS: u32 = 41;
    pub const XDS_ROUTE_NAME: u32 = 61;
}

/// The attribute behind a property path, if Envoy answers it through this ABI.
pub fn attribute(path: &[&str]) -> Option<Attribute> {
    use Attribute::*;
    Some(match path {
        ["request", "id"] => String(id::REQUEST_ID),
        ["request", "protocol"] => String(id::REQUEST_PROTOCOL),
        ["response", "code"] => Int(id::RESPONSE_CODE),
        ["source", "address"] => String(id::SOURCE_ADDRESS),
        ["destination", "address"] => String(id::DESTINATION_ADDRESS),
        ["destination", "port"] => Int(id::DESTINATION_PORT),
        ["connection", "mtls"] => Bool(id::CONNECTION_MTLS),
        ["connection", "uri_san_peer_certificate"] => {
            String(id::CONNECTION_URI_SAN_PEER_CERTIFICATE)
        }
        ["upstream", "address"] => String(id::UPSTREAM_ADDRESS),
        ["xds", "route_name"] | ["route_name"] => String(id::XDS_ROUTE_NAME),
        _ => return None,
    })
}

/// An integer property as Proxy-Wasm encodes it.
pub fn encode_int(value: u64) -> Vec<u8> {
    i64::try_from(value)
        .unwrap_or(i64::MAX)
        .to_le_bytes()
        .to_vec()
}

/// A bool property as Proxy-Wasm encodes it.
pub fn encode_bool(value: bool) -> Vec<u8> {
    vec![u8::from(value)]
}

// Used by the ABI glue, which unit tests leave out (it needs Envoy's symbols).
#[cfg_attr(test, allow(dead_code))]
static REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Says once per path, in Envoy's log, that a property has no mapping.
#[cfg_attr(test, allow(dead_code))]
pub fn report_unmapped(path: &[&str]) {
    let dotted = path.join(".");
    if let Ok(mut reported) = REPORTED.lock() {
        if reported
            .get_or_insert_with(HashSet::new)
            .insert(dotted.clone())
        {
            wasmesh_sdk::warn!(
                "property `{dotted}` is not available in the native build; stages see it as absent"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paths_stages_read_map_to_attributes() {
        assert_eq!(
            attribute(&["source", "address"]),
            Some(Attribute::String(24))
        );
        assert_eq!(
            attribute(&["route_name"]),
            attribute(&["xds", "route_name"])
        );
        assert_eq!(attribute(&["request", "time"]), None);
    }

    #[test]
    fn values_are_encoded_as_proxy_wasm_encodes_them() {
        assert_eq!(encode_int(503), 503i64.to_le_bytes());
        assert_eq!(encode_int(u64::MAX), i64::MAX.to_le_bytes());
        assert_eq!(encode_bool(true), [1]);
    }
}
