//! The ABI's header-map wire format, without trusting its input.
//!
//! Little-endian: u32 count; per entry u32 key length and u32 value length; then each
//! key and each value followed by a NUL. A map from a misbehaving host decodes to as
//! many whole entries as it holds, never a panic.

/// The entries of a serialised header map as raw byte slices, in order. Truncated
/// input yields the entries before the cut.
pub fn wire_pairs(bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let read_u32 = move |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    // A count larger than the buffer could possibly hold is a lie: cap it.
    let count = read_u32(0).unwrap_or(0).min(bytes.len() / 8);
    let mut data = 4 + count * 8;
    (0..count).map_while(move |n| {
        let (klen, vlen) = (read_u32(4 + n * 8)?, read_u32(8 + n * 8)?);
        let key = bytes.get(data..data.checked_add(klen)?)?;
        data += klen + 1;
        let value = bytes.get(data..data.checked_add(vlen)?)?;
        data += vlen + 1;
        Some((key, value))
    })
}

/// Text from the host: checked as UTF-8 in one pass (the common case), converted
/// lossily only when that fails (Envoy allows obs-text bytes in values).
pub fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Decodes a serialised header map into owned pairs. Truncated input yields the
/// entries before the cut.
pub fn decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    wire_pairs(bytes)
        .map(|(k, v)| (lossy(k).into_owned(), lossy(v).into_owned()))
        .collect()
}

/// Encodes pairs in the wire format.
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size: usize = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len_u32(k.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs = [(":path", "/a"), ("x-b", ""), ("k", "v\u{e9}")];
        let decoded = decode_pairs(&encode_pairs(&pairs));
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn wire_layout_matches_the_abi() {
        let bytes = encode_pairs(&[("a", "bc")]);
        assert_eq!(
            bytes,
            [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        assert!(decode_pairs(&[]).is_empty());
        assert!(decode_pairs(&[1, 2]).is_empty());
        // Claims a million entries in 8 bytes.
        assert!(decode_pairs(&[0x40, 0x42, 0x0f, 0, 5, 0, 0, 0]).is_empty());
        // One entry whose key runs past the end.
        assert!(decode_pairs(&[1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, b'a']).is_empty());
        let mut truncated = encode_pairs(&[("a", "b"), ("c", "d")]);
        truncated.truncate(truncated.len() - 3);
        assert_eq!(decode_pairs(&truncated).len(), 1);
    }

    #[test]
    fn non_utf8_values_are_converted_lossily() {
        let bytes = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'k', 0, 0xff, 0];
        assert_eq!(decode_pairs(&bytes), vec![("k".into(), "\u{fffd}".into())]);
    }
}
