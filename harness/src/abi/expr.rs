//! Envoy's CEL foreign functions, `expr_create`, `expr_evaluate` and `expr_delete`, for
//! the one expression shape the SDK compiles: a list of guarded attribute reads,
//! `[has(a.b) ? [a.b] : [], ...]`. Envoy compiles any CEL; the harness answers this
//! shape as Envoy serialises it and refuses other text with BadArgument (Envoy's answer
//! to text it cannot parse), so a filter that relies on more CEL fails visibly in tests
//! instead of getting a made-up value.

use super::{pairs, properties};
use crate::state::VmState;
use crate::Status;

/// Parses `[has(P) ? [P] : [], ...]` into its attribute paths, each as the
/// NUL-separated bytes `proxy_get_property` takes.
pub(crate) fn parse(text: &str) -> Option<Vec<Vec<u8>>> {
    let body = text.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.split(',').map(parse_item).collect()
}

fn parse_item(item: &str) -> Option<Vec<u8>> {
    let (guard, rest) = item.trim().strip_prefix("has(")?.split_once(')')?;
    let (then, otherwise) = rest.trim().strip_prefix('?')?.split_once(':')?;
    let read = then.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if read != guard.trim() || otherwise.trim() != "[]" {
        return None;
    }
    let segments: Vec<&str> = read.split('.').collect();
    let ident = |s: &&str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (segments.len() >= 2 && segments.iter().all(ident)).then(|| segments.join("\0").into_bytes())
}

/// `expr_create`: the token, 4 bytes little-endian; Envoy numbers from 0 per root.
pub(crate) fn create(s: &mut VmState, text: &[u8]) -> Result<Vec<u8>, Status> {
    let paths = std::str::from_utf8(text)
        .ok()
        .and_then(parse)
        .ok_or(Status::BadArgument)?;
    let token = u32::try_from(s.expressions.len()).map_err(|_| Status::InternalFailure)?;
    s.expressions.push(Some(paths));
    Ok(token.to_le_bytes().to_vec())
}

/// `expr_evaluate`: the list, each present attribute as a one-element list and each
/// absent one as an empty list, in the header-map wire format with elements in the key
/// slots. Outside a stream nothing is bound, and Envoy fails the evaluation.
pub(crate) fn evaluate(s: &mut VmState, token: &[u8]) -> Result<Vec<u8>, Status> {
    let paths = expression(s, token)?.clone();
    if !s.streams.contains_key(&s.effective) {
        return Err(Status::InternalFailure);
    }
    let elements: Vec<Vec<u8>> = paths
        .iter()
        .map(|path| {
            let value = properties::lookup(s, path);
            list(value.iter().map(Vec::as_slice))
        })
        .collect();
    Ok(list(elements.iter().map(Vec::as_slice)))
}

/// `expr_delete`: frees the token; deleting an unknown token is not an error in Envoy.
pub(crate) fn delete(s: &mut VmState, token: &[u8]) -> Result<Vec<u8>, Status> {
    let index = token_index(token)?;
    if let Some(slot) = s.expressions.get_mut(index) {
        *slot = None;
    }
    Ok(Vec::new())
}

fn token_index(token: &[u8]) -> Result<usize, Status> {
    let raw: [u8; 4] = token.try_into().map_err(|_| Status::BadArgument)?;
    usize::try_from(u32::from_le_bytes(raw)).map_err(|_| Status::BadArgument)
}

fn expression<'s>(s: &'s VmState, token: &[u8]) -> Result<&'s Vec<Vec<u8>>, Status> {
    let index = token_index(token)?;
    s.expressions
        .get(index)
        .and_then(Option::as_ref)
        .ok_or(Status::NotFound)
}

/// Envoy's encoding of a CEL list: each element in a pair's key, the value empty.
fn list<'a>(elements: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    pairs::encode(elements.map(|e| (e, &b""[..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sdk_shape_only() {
        assert_eq!(
            parse("[has(response.code) ? [response.code] : [], has(xds.cluster_name) ? [xds.cluster_name] : []]"),
            Some(vec![b"response\0code".to_vec(), b"xds\0cluster_name".to_vec()])
        );
        assert_eq!(parse("[]"), Some(vec![]));
        for refused in [
            "response.code",
            "[response.code]",
            "[has(response.code) ? [request.path] : []]",
            "[has(response.code) ? [response.code] : [0]]",
            "[has(code) ? [code] : []]",
            "[has(request.headers['x']) ? [request.headers['x']] : []]",
        ] {
            assert_eq!(parse(refused), None, "{refused}");
        }
    }
}
