//! Envoy's CEL foreign functions, `expr_create`, `expr_evaluate` and `expr_delete`, for
//! the one expression shape the SDK compiles: a list of attribute reads, each guarded,
//! `has(a.b) ? [a.b] : []`, or plain, `a.b` (an unset plain read fails the whole
//! evaluation, as in Envoy). Envoy compiles any CEL; the harness answers this
//! shape as Envoy serialises it and refuses other text with BadArgument (Envoy's answer
//! to text it cannot parse), so a filter that relies on more CEL fails visibly in tests
//! instead of getting a made-up value.

use super::{pairs, properties};
use crate::state::VmState;
use crate::Status;

use crate::state::ExprItem as Item;

/// Parses `[has(P) ? [P] : [], Q, ...]` into its items.
pub(crate) fn parse(text: &str) -> Option<Vec<Item>> {
    let body = text.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.split(',').map(parse_item).collect()
}

fn parse_item(item: &str) -> Option<Item> {
    let item = item.trim();
    let Some(guarded) = item.strip_prefix("has(") else {
        return Some((attribute(item)?, false));
    };
    let (guard, rest) = guarded.split_once(')')?;
    let (then, otherwise) = rest.trim().strip_prefix('?')?.split_once(':')?;
    let read = then.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if read != guard.trim() || otherwise.trim() != "[]" {
        return None;
    }
    Some((attribute(read)?, true))
}

/// `a.b.c` as `a\0b\0c`: at least a root and a field, each an identifier.
fn attribute(read: &str) -> Option<Vec<u8>> {
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

/// `expr_evaluate`: the list in the header-map wire format with elements in the key
/// slots; a guarded attribute is a one-element list when set and an empty one when
/// not, a plain one its value. Outside a stream nothing is bound, and an unset plain
/// attribute is an error: Envoy fails the evaluation for both.
pub(crate) fn evaluate(s: &mut VmState, token: &[u8]) -> Result<Vec<u8>, Status> {
    let items = expression(s, token)?.clone();
    if !s.streams.contains_key(&s.effective) {
        return Err(Status::InternalFailure);
    }
    let mut elements: Vec<Vec<u8>> = Vec::with_capacity(items.len());
    for (path, guarded) in &items {
        let value = properties::lookup(s, path);
        elements.push(match (value, guarded) {
            (value, true) => list(value.iter().map(Vec::as_slice)),
            (Some(value), false) => value,
            (None, false) => return Err(Status::InternalFailure),
        });
    }
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

fn expression<'s>(s: &'s VmState, token: &[u8]) -> Result<&'s Vec<Item>, Status> {
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
            parse("[has(response.code) ? [response.code] : [], connection.mtls]"),
            Some(vec![
                (b"response\0code".to_vec(), true),
                (b"connection\0mtls".to_vec(), false)
            ])
        );
        assert_eq!(parse("[]"), Some(vec![]));
        for refused in [
            "response.code",
            "[response]",
            "[has(response.code) ? response.code : []]",
            "[has(response.code) ? [request.path] : []]",
            "[has(response.code) ? [response.code] : [0]]",
            "[has(code) ? [code] : []]",
            "[has(request.headers['x']) ? [request.headers['x']] : []]",
        ] {
            assert_eq!(parse(refused), None, "{refused}");
        }
    }
}
