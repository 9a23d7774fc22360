//! Several properties in one host call, through Envoy's CEL foreign functions.
//!
//! A property read that hands the guest data is the dearest kind of host call: Envoy
//! calls back into the VM to allocate the answer. Telemetry reads six or more such
//! properties per request in `on_log`. Envoy's `expr_create` compiles a CEL expression
//! once (in `on_configure`, on the root context, so every stream of that root can use
//! it), and `expr_evaluate` returns its value for the current stream in one call.
//!
//! The expression is a list with one element per property. A property Envoy may leave
//! unset is guarded, `has(a.b) ? [a.b] : []`: present, a one-element list; absent, an
//! empty one, so absence needs no per-type default and cannot fail the evaluation.
//! Properties Envoy always binds for a stream ([`ALWAYS_BOUND`]) are read plain, `a.b`:
//! a guard costs Envoy about three times a plain read (hostcost's `expr-6` against
//! `expr-6-plain`). Envoy serialises a list as the header-map wire format with each
//! element in a key slot (values empty), nested lists the same way, and each scalar
//! exactly as `proxy_get_property` would (raw string bytes, little-endian i64, one
//! byte for a bool), so a batched value decodes as the single read would.

use crate::host::wire_pairs;
use crate::props::PropertySource;
use std::cell::Cell;

/// A property path as stages name it: `&["response", "code"]`.
pub type Path = &'static [&'static str];

/// The roots CEL binds for a stream in Envoy. Other properties (`node`, `plugin_name`,
/// filter state) stay single reads.
const CEL_ROOTS: [&str; 7] = [
    "request",
    "response",
    "connection",
    "source",
    "destination",
    "upstream",
    "xds",
];

/// Stream attributes Envoy's CEL activation always has a value for (its
/// `response.flags`, sizes and `connection.mtls` are computed, never absent). Were one
/// ever missing, the evaluation would fail and the shell read one by one.
pub const ALWAYS_BOUND: [&[&str]; 4] = [
    &["response", "flags"],
    &["request", "total_size"],
    &["response", "total_size"],
    &["connection", "mtls"],
];

fn guarded(path: &[&str]) -> bool {
    !ALWAYS_BOUND.contains(&path)
}

/// Whether `path` can go in a batch: a CEL root, then at least one field, every segment
/// a plain identifier (`has()` needs a field selection; `a-b` would not parse).
pub fn batchable(path: &[&str]) -> bool {
    let ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    path.len() >= 2
        && path.first().is_some_and(|root| CEL_ROOTS.contains(root))
        && path.iter().all(|s| ident(s))
}

/// The batchable paths of `paths`, each once, in first-seen order.
pub fn batch_paths(paths: impl IntoIterator<Item = Path>) -> Vec<Path> {
    let mut out: Vec<Path> = Vec::new();
    for path in paths {
        if batchable(path) && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// The CEL expression that fetches `paths` (all [`batchable`]).
pub fn expression(paths: &[Path]) -> String {
    let items: Vec<String> = paths
        .iter()
        .map(|p| {
            let dotted = p.join(".");
            if guarded(p) {
                format!("has({dotted}) ? [{dotted}] : []")
            } else {
                dotted
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Decodes `expr_evaluate`'s answer for the [`expression`] of `paths`: per path its
/// value, or None when absent. A malformed answer (the wrong number of elements, a
/// guarded element that is not a list of at most one) is None as a whole: the caller
/// then reads the properties one by one.
pub fn decode(bytes: &[u8], paths: &[Path]) -> Option<Vec<Option<Vec<u8>>>> {
    let mut out = Vec::with_capacity(paths.len());
    for ((element, _), path) in wire_pairs(bytes).zip(paths) {
        if !guarded(path) {
            out.push(Some(element.to_vec()));
            continue;
        }
        let mut inner = wire_pairs(element);
        let value = inner.next().map(|(v, _)| v.to_vec());
        if inner.next().is_some() {
            return None;
        }
        out.push(value);
    }
    (out.len() == paths.len() && wire_pairs(bytes).count() == paths.len()).then_some(out)
}

/// Batched values first, single reads from `fallback` for anything else.
pub struct Prefetched<'a> {
    paths: &'a [Path],
    values: Vec<Option<Vec<u8>>>,
    fallback: &'a dyn PropertySource,
}

impl<'a> Prefetched<'a> {
    /// `values` as [`decode`] returned them for `paths`.
    pub fn new(
        paths: &'a [Path],
        values: Vec<Option<Vec<u8>>>,
        fallback: &'a dyn PropertySource,
    ) -> Self {
        Self {
            paths,
            values,
            fallback,
        }
    }
}

impl PropertySource for Prefetched<'_> {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match self.paths.iter().position(|p| *p == path) {
            Some(i) => self.values.get(i).cloned().flatten(),
            None => self.fallback.property(path),
        }
    }
}

/// A batch compiled on the host: its paths and Envoy's token for the expression.
pub struct HostBatch {
    paths: Vec<Path>,
    token: [u8; 4],
    /// A failed evaluation is logged once, not on every request.
    warned: Cell<bool>,
}

impl HostBatch {
    /// Compiles the batchable `paths` on the host. Call it from the root context's
    /// `on_configure`: Envoy keeps expressions per root context, and its streams can
    /// then use them. None when nothing is batchable or the host has no CEL (an Envoy
    /// built without it, a host that does not offer `expr_create`): properties are then
    /// read one by one, as they always can be.
    pub fn create(paths: impl IntoIterator<Item = Path>) -> Option<Self> {
        let paths = batch_paths(paths);
        if paths.is_empty() {
            return None;
        }
        match crate::host::foreign_function("expr_create", expression(&paths).as_bytes()) {
            Ok(Some(token)) => match <[u8; 4]>::try_from(token.as_slice()) {
                Ok(token) => Some(Self {
                    paths,
                    token,
                    warned: Cell::new(false),
                }),
                Err(_) => None,
            },
            Ok(None) => None,
            Err(e) => {
                crate::info!("end-of-stream properties are read one by one (expr_create: {e})");
                None
            }
        }
    }

    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// Every path's value for the current stream, in one host call; None if the host
    /// refused (the caller reads one by one instead).
    pub fn fetch(&self) -> Option<Vec<Option<Vec<u8>>>> {
        let answer = crate::host::foreign_function("expr_evaluate", &self.token);
        let values = match &answer {
            Ok(Some(bytes)) => decode(bytes, &self.paths),
            _ => None,
        };
        if values.is_none() && !self.warned.replace(true) {
            let why = match answer {
                Err(e) => e.to_string(),
                Ok(_) => "an answer that is not the expected list".to_string(),
            };
            crate::warn!(
                "end-of-stream properties fall back to single reads (expr_evaluate: {why})"
            );
        }
        values
    }

    /// Frees the expression on the host (a reconfigured root compiles a new one). A
    /// stream still holding this batch then gets NotFound and reads one by one.
    pub fn delete(&self) {
        let _ = crate::host::foreign_function("expr_delete", &self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::encode_pairs;
    use crate::props::StaticProperties;

    /// Envoy's list encoding: each element in a key slot, values empty.
    fn list(elements: &[&[u8]]) -> Vec<u8> {
        let mut out = (elements.len() as u32).to_le_bytes().to_vec();
        for e in elements {
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        for e in elements {
            out.extend_from_slice(e);
            out.extend_from_slice(&[0, 0]);
        }
        out
    }

    #[test]
    fn only_cel_field_selections_batch() {
        assert!(batchable(&["response", "code"]));
        assert!(batchable(&["connection", "uri_san_peer_certificate"]));
        assert!(batchable(&["xds", "cluster_name"]));
        assert!(!batchable(&["cluster_name"]), "no field to has()");
        assert!(!batchable(&["node", "id"]), "not a stream attribute");
        assert!(!batchable(&["request", "headers", "x-b3-traceid"]));
        assert!(!batchable(&["request", "Code"]));
        assert!(!batchable(&["request", ""]));
        assert!(!batchable(&["response", "code) || true"]));
    }

    #[test]
    fn paths_dedupe_and_drop_unbatchable() {
        let paths = batch_paths([
            &["response", "code"][..],
            &["node", "id"],
            &["response", "code"],
            &["request", "duration"],
        ]);
        assert_eq!(
            paths,
            vec![&["response", "code"][..], &["request", "duration"]]
        );
    }

    #[test]
    fn expression_guards_what_may_be_unset() {
        assert_eq!(
            expression(&[&["response", "code"], &["connection", "mtls"]]),
            "[has(response.code) ? [response.code] : [], connection.mtls]"
        );
    }

    #[test]
    fn decodes_present_absent_and_binary_values() {
        let code = 200i64.to_le_bytes();
        // A binary value holding NULs and what looks like a length must survive.
        let paths: [Path; 4] = [
            &["response", "code"],
            &["request", "duration"],
            &["connection", "uri_san_peer_certificate"],
            &["connection", "mtls"],
        ];
        let answer = list(&[&list(&[&code]), &list(&[]), &list(&[b"spiffe://a"]), &[1]]);
        let values = decode(&answer, &paths).unwrap();
        assert_eq!(
            values,
            vec![
                Some(code.to_vec()),
                None,
                Some(b"spiffe://a".to_vec()),
                Some(vec![1])
            ]
        );
    }

    #[test]
    fn malformed_answers_are_refused_whole() {
        let code: Path = &["response", "code"];
        let one = list(&[&list(&[b"a"])]);
        assert_eq!(decode(&one, &[code, code]), None, "too few elements");
        assert_eq!(
            decode(&list(&[&list(&[b"a"]), b"x"]), &[code]),
            None,
            "too many"
        );
        assert_eq!(
            decode(&list(&[&list(&[b"a", b"b"])]), &[code]),
            None,
            "two values"
        );
        assert_eq!(decode(&one[..one.len() - 3], &[code]), None, "truncated");
        assert_eq!(decode(b"", &[]), Some(vec![]));
        // A map where a list belongs: its first key is taken as the value, and the
        // map's second entry makes it malformed.
        let map = encode_pairs(&[("a", "1"), ("b", "2")]);
        assert_eq!(decode(&list(&[&map]), &[code]), None);
    }

    #[test]
    fn prefetched_answers_batched_paths_and_falls_back_for_others() {
        let paths: Vec<Path> = vec![&["response", "code"], &["connection", "mtls"]];
        let fallback = StaticProperties::new()
            .with("node.id", "sidecar~1")
            .with("response.code", "not asked");
        let source = Prefetched::new(&paths, vec![Some(b"x".to_vec()), None], &fallback);
        assert_eq!(source.property(&["response", "code"]), Some(b"x".to_vec()));
        assert_eq!(
            source.property(&["connection", "mtls"]),
            None,
            "batched as absent"
        );
        assert_eq!(
            source.property(&["node", "id"]),
            Some(b"sidecar~1".to_vec())
        );
    }
}
