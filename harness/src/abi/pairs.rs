//! The header-map wire format: u32 count; per entry u32 key length and u32 value length;
//! then each key and each value followed by a NUL byte. All little-endian.

use crate::Status;

pub(crate) fn encode<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let count = pairs.clone().count();
    let size: usize = 4 + pairs
        .clone()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

pub(crate) fn encode_map(map: &crate::HeaderMap) -> Vec<u8> {
    encode(map.0.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<usize, Status> {
    let b = bytes.get(at..at + 4).ok_or(Status::BadArgument)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Decodes a serialized map; malformed input is a BadArgument, as in Envoy. Keys are
/// read as text, values kept as bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Status> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = u32_at(bytes, 0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let at = 4 + i * 8;
        sizes.push((u32_at(bytes, at)?, u32_at(bytes, at + 4)?));
    }
    let mut at = 4 + count * 8;
    let mut out = Vec::with_capacity(sizes.len());
    for (klen, vlen) in sizes {
        let k = bytes.get(at..at + klen).ok_or(Status::BadArgument)?;
        at += klen + 1;
        let v = bytes.get(at..at + vlen).ok_or(Status::BadArgument)?;
        at += vlen + 1;
        if at > bytes.len() {
            return Err(Status::BadArgument);
        }
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_documented_layout() {
        let pairs = [(b"a".as_slice(), b"bc".as_slice())];
        let bytes = encode(pairs.iter().copied());
        assert_eq!(bytes, b"\x01\0\0\0\x01\0\0\0\x02\0\0\0a\0bc\0");
        assert_eq!(decode(&bytes), Ok(vec![("a".into(), b"bc".to_vec())]));
    }

    #[test]
    fn truncated_input_is_a_bad_argument() {
        assert_eq!(decode(b"\x01\0\0\0\x05\0\0\0"), Err(Status::BadArgument));
    }
}
