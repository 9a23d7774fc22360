//! Percent-encoding (RFC 3986 section 2.1): one encoder and one decoder for the whole
//! SDK and its filters. What each caller leaves unescaped, and whether `+` means a
//! space, differ on purpose, so they are named at the call.
//!
//! Path normalisation ([`crate::path`]) has stricter rules of its own (a malformed
//! escape is refused there, kept literally here) and shares only the byte-level pieces:
//! [`is_unreserved`] and [`escape`].

use std::borrow::Cow;

/// RFC 3986 section 2.3 `unreserved`: `A-Z a-z 0-9 - . _ ~`, never escaped.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `b` as an escape with upper-case hex: `/` is `%2F`.
pub fn escape(b: u8) -> [u8; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]
}

/// Appends `s` to `out`, escaping every byte that `keep` does not accept.
pub fn encode_into(s: &str, keep: impl Fn(u8) -> bool, out: &mut String) {
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            for e in escape(b) {
                out.push(char::from(e));
            }
        }
    }
}

/// `s` with every byte that `keep` does not accept escaped.
pub fn encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    encode_into(s, keep, &mut out);
    out
}

/// What a `+` means to [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plus {
    /// A space, as in a query string (`application/x-www-form-urlencoded`).
    Space,
    /// Itself, as everywhere else.
    Literal,
}

/// Decodes `%XX` escapes (and `+`, as `plus` says); a malformed escape is kept
/// literally, and bytes that do not form UTF-8 become U+FFFD.
pub fn decode(s: &str, plus: Plus) -> Cow<'_, str> {
    let plus_is_space = plus == Plus::Space;
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if plus_is_space && b == b'+' {
            out.push(b' ');
            i += 1;
            continue;
        }
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(hex_pair);
        match escaped {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The two bytes after a `%` as a byte value: two hex digits, nothing else (a sign
/// such as `%+5`, which `from_str_radix` would take, is a malformed escape).
fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match pair {
        [hi, lo] => u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_bytes_pass_and_the_rest_escape_in_upper_case() {
        assert_eq!(
            encode("a-Z_0.~ /?&=é", is_unreserved),
            "a-Z_0.~%20%2F%3F%26%3D%C3%A9"
        );
        assert_eq!(escape(b'/'), *b"%2F");
        let mut out = String::from("k=");
        encode_into(
            "a;b=c%",
            |b| b.is_ascii_graphic() && !b"%;=".contains(&b),
            &mut out,
        );
        assert_eq!(out, "k=a%3Bb%3Dc%25");
    }

    #[test]
    fn plus_is_a_space_only_when_asked() {
        assert_eq!(decode("a+b%20c", Plus::Space), "a b c");
        assert_eq!(decode("a+b%20c", Plus::Literal), "a+b c");
        assert!(matches!(decode("a+b", Plus::Literal), Cow::Borrowed("a+b")));
    }

    #[test]
    fn malformed_escapes_are_kept_and_bad_utf8_replaced() {
        assert_eq!(decode("100%", Plus::Literal), "100%");
        assert_eq!(decode("%zz%4", Plus::Space), "%zz%4");
        assert_eq!(decode("%C3%A9", Plus::Literal), "é");
        assert_eq!(decode("%FF", Plus::Literal), "\u{fffd}");
        // A sign is not a hex digit: `%+6` is not a way to write byte 6.
        assert_eq!(decode("%+61dmin", Plus::Literal), "%+61dmin");
        assert_eq!(decode("%-1x", Plus::Space), "%-1x");
    }

    #[test]
    fn encoding_then_decoding_gives_the_input_back() {
        for s in ["", "plain", "a b+c", "x=%41;y", "ü/?#"] {
            assert_eq!(decode(&encode(s, is_unreserved), Plus::Literal), s);
            assert_eq!(decode(&encode(s, is_unreserved), Plus::Space), s);
        }
    }
}
