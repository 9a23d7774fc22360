//! Request path normalisation, applied before any path rule is matched.
//!
//! Path rules are only as strong as the path they see: `//admin`, `/a/../admin`,
//! `/%61dmin` and `/admin/.` all reach the same handler as `/admin` in most upstreams,
//! so a rule on `/admin` must see `/admin` for each of them. The steps, in order:
//!
//! 1. The fragment (`#...`) is dropped and the query (`?...`) split off; it is never
//!    part of the matched path.
//! 2. The path must start with `/` (or be exactly `*`); control characters (< 0x20,
//!    0x7f) are refused.
//! 3. Percent escapes are decoded when they encode an unreserved character
//!    (`A-Z a-z 0-9 - . _ ~`, RFC 3986 section 2.3); every other escape is kept, with
//!    upper-case hex. A malformed escape (`%zz`, `%4`) is refused. `%25` stays `%25`, so
//!    nothing is decoded twice.
//! 4. Escaped slashes (`%2F`, `%5C`) are refused by default ([`EscapedSlashes::Reject`]),
//!    since upstreams disagree on whether they separate segments. `Keep` leaves them
//!    escaped (one opaque segment); `Decode` turns them into `/`.
//! 5. A literal backslash is treated as `/` (as Windows-based upstreams do), unless
//!    `backslash_is_slash` is off.
//! 6. Repeated slashes are merged, and `.` and `..` segments are resolved
//!    (RFC 3986 section 5.2.4); `..` never climbs above the root.
//! 7. Path parameters (`;` and what follows, up to the next `/`) are dropped from each
//!    segment, as Tomcat, Jetty and Spring do, so `/admin;jsessionid=1` matches as
//!    `/admin`. A parameter on an empty, `.` or `..` segment (`/a/..;/admin`) is
//!    refused: such an upstream climbs there while one that keeps `;` does not.
//!
//! Two encodings that some upstreams decode and others do not are refused outright,
//! as escaped slashes are: a double-encoded escape (`%25` followed by two hex digits,
//! `%252e`), and escapes that do not decode to UTF-8 (overlong forms such as
//! `%C0%AE`, which lenient decoders read as `.`).
//!
//! Case is kept: matching is case-sensitive unless a rule asks otherwise.

use crate::config::FromJson;
use crate::percent::{escape, is_unreserved};
use std::borrow::Cow;
use std::fmt;

/// What to do with `%2F` and `%5C` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromJson)]
#[config(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Refuse the request (the safe default).
    #[default]
    Reject,
    /// Keep them escaped: they do not separate segments.
    Keep,
    /// Decode them to `/`: they separate segments.
    Decode,
}

/// Normalisation options, part of each filter's config as `path_normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromJson)]
#[config(default, deny_unknown_fields)]
pub struct PathOptions {
    pub escaped_slashes: EscapedSlashes,
    pub backslash_is_slash: bool,
}

impl Default for PathOptions {
    fn default() -> Self {
        Self {
            escaped_slashes: EscapedSlashes::Reject,
            backslash_is_slash: true,
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Empty,
    NotAbsolute,
    ControlCharacter,
    BadEscape,
    EscapedSlash,
    /// `%25` followed by two hex digits: an escape escaped again.
    DoubleEncoded,
    /// Escapes whose bytes are not UTF-8 (overlong forms such as `%C0%AE`).
    InvalidUtf8,
    /// A path parameter on an empty, `.` or `..` segment (`/a/..;/admin`).
    ParameterOnDotSegment,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "empty path",
            PathError::NotAbsolute => "path does not start with '/'",
            PathError::ControlCharacter => "control character in path",
            PathError::BadEscape => "malformed percent escape in path",
            PathError::EscapedSlash => "escaped slash (%2F or %5C) in path",
            PathError::DoubleEncoded => "double percent-encoding (%25XX) in path",
            PathError::InvalidUtf8 => "percent escapes in path are not UTF-8",
            PathError::ParameterOnDotSegment => "path parameter (;) on an empty or dot segment",
        })
    }
}

/// A request target split into its normalised path and its raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath<'a> {
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
}

/// Normalises a request's `:path`. Borrows when the path is already normal, which is
/// the common case, so most requests allocate nothing here.
pub fn normalize<'a>(raw: &'a str, opts: &PathOptions) -> Result<NormalizedPath<'a>, PathError> {
    let without_fragment = raw.split_once('#').map_or(raw, |(p, _)| p);
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path == "*" {
        return Ok(NormalizedPath {
            path: Cow::Borrowed(path),
            query,
        });
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(PathError::ControlCharacter);
    }
    if is_already_normal(path) {
        return Ok(NormalizedPath {
            path: Cow::Borrowed(path),
            query,
        });
    }
    if !escapes_are_utf8(path) {
        return Err(PathError::InvalidUtf8);
    }
    let decoded = decode_escapes(path, opts)?;
    Ok(NormalizedPath {
        path: Cow::Owned(remove_dot_segments(&strip_parameters(&decoded)?)),
        query,
    })
}

/// True when no step would change the path: no escapes, no backslashes, no empty,
/// `.` or `..` segments, no path parameters.
fn is_already_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.iter().any(|&b| b == b'%' || b == b'\\' || b == b';') {
        return false;
    }
    // Every segment after the leading '/' must be non-empty (except a final trailing
    // slash) and not a dot segment.
    let rest = &path[1..];
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether the path, every escape decoded, is UTF-8. The raw text is (it is a `str`),
/// so only escapes can break it: an overlong `%C0%AE` or a stray `%FF`.
fn escapes_are_utf8(path: &str) -> bool {
    let bytes = path.as_bytes();
    if !bytes.windows(2).any(|w| w[0] == b'%' && w[1] >= b'8') {
        return true;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hi = bytes.get(i + 1).copied().and_then(hex_value);
        let lo = bytes.get(i + 2).copied().and_then(hex_value);
        match (bytes[i], hi, lo) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).is_ok()
}

/// Step 7: drops each segment's `;` parameters; refuses one on an empty or dot segment.
fn strip_parameters(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.contains(';') {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match segment.split_once(';') {
            Some(("" | "." | "..", _)) => return Err(PathError::ParameterOnDotSegment),
            Some((name, _)) => out.push_str(name),
            None => out.push_str(segment),
        }
    }
    Ok(Cow::Owned(out))
}

/// Steps 3 to 5: decode what is safe to decode, and map backslashes.
fn decode_escapes(path: &str, opts: &PathOptions) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            let decoded = hi * 16 + lo;
            let hex_at = |at: usize| bytes.get(at).copied().and_then(hex_value).is_some();
            if decoded == b'%' && hex_at(i + 3) && hex_at(i + 4) {
                // `%25` + `2e` is `%2e` once decoded, `.` twice.
                return Err(PathError::DoubleEncoded);
            }
            if is_unreserved(decoded) {
                out.push(decoded);
            } else if decoded == b'/' || decoded == b'\\' {
                match opts.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Decode => out.push(b'/'),
                    EscapedSlashes::Keep => out.extend_from_slice(&escape(decoded)),
                }
            } else if decoded < 0x20 || decoded == 0x7f {
                // An escaped NUL or newline is as dangerous to an upstream as a raw one.
                return Err(PathError::ControlCharacter);
            } else {
                out.extend_from_slice(&escape(decoded));
            }
            i += 3;
        } else if b == b'\\' && opts.backslash_is_slash {
            out.push(b'/');
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    // Only ASCII was decoded and the rest copied from valid UTF-8 at char boundaries
    // (escapes are ASCII), so this cannot fail; a lossy conversion keeps it panic-free.
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Step 6: merge slashes and resolve dot segments. `path` starts with '/'.
fn remove_dot_segments(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        trailing_slash = false;
        match seg {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                stack.pop();
                trailing_slash = true;
            }
            s => stack.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &stack {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize(raw, &PathOptions::default()).map(|n| n.path.into_owned())
    }

    fn norm_with(raw: &str, escaped_slashes: EscapedSlashes) -> Result<String, PathError> {
        let opts = PathOptions {
            escaped_slashes,
            ..PathOptions::default()
        };
        normalize(raw, &opts).map(|n| n.path.into_owned())
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for p in ["/", "/admin", "/a/b/c/", "/users/42", "/a.b/c..d/.e"] {
            let n = normalize(p, &PathOptions::default()).unwrap();
            assert!(matches!(n.path, Cow::Borrowed(_)), "{p}");
            assert_eq!(n.path, p);
        }
    }

    #[test]
    fn repeated_slashes_merge() {
        assert_eq!(norm("//admin").unwrap(), "/admin");
        assert_eq!(norm("/a///b//").unwrap(), "/a/b/");
    }

    #[test]
    fn dot_segments_resolve() {
        assert_eq!(norm("/./admin").unwrap(), "/admin");
        assert_eq!(norm("/a/../admin").unwrap(), "/admin");
        assert_eq!(norm("/a/b/../../admin").unwrap(), "/admin");
        assert_eq!(norm("/admin/.").unwrap(), "/admin/");
        assert_eq!(norm("/admin/x/..").unwrap(), "/admin/");
    }

    #[test]
    fn dot_dot_never_climbs_above_root() {
        assert_eq!(norm("/../../admin").unwrap(), "/admin");
        assert_eq!(norm("/..").unwrap(), "/");
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_eq!(norm("/a/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/a/%2E%2E/admin").unwrap(), "/admin");
        assert_eq!(norm("/a/.%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/%2e/admin").unwrap(), "/admin");
    }

    #[test]
    fn unreserved_escapes_decode_others_stay() {
        assert_eq!(norm("/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/a%7eb").unwrap(), "/a~b");
        assert_eq!(norm("/a%20b").unwrap(), "/a%20b");
        assert_eq!(norm("/a%3fb").unwrap(), "/a%3Fb");
        // A literal percent sign stays escaped.
        assert_eq!(norm("/100%25").unwrap(), "/100%25");
        assert_eq!(norm("/100%25off").unwrap(), "/100%25off");
    }

    #[test]
    fn double_encoding_is_refused() {
        // Decoded once it is "%61", twice "a": upstreams differ, so neither is guessed.
        assert_eq!(norm("/%2561dmin"), Err(PathError::DoubleEncoded));
        assert_eq!(norm("/a/%252e%252e/admin"), Err(PathError::DoubleEncoded));
        assert_eq!(norm("/a%252Fadmin"), Err(PathError::DoubleEncoded));
    }

    #[test]
    fn escapes_that_are_not_utf8_are_refused() {
        // Overlong forms of `.` and `/`, which lenient decoders accept.
        assert_eq!(norm("/a/%C0%AE%C0%AE/admin"), Err(PathError::InvalidUtf8));
        assert_eq!(norm("/a%c0%afadmin"), Err(PathError::InvalidUtf8));
        assert_eq!(norm("/a/%E0%80%AE/admin"), Err(PathError::InvalidUtf8));
        assert_eq!(norm("/a%FF"), Err(PathError::InvalidUtf8));
        assert_eq!(norm("/caf%C3%A9").unwrap(), "/caf%C3%A9");
        assert_eq!(norm("/café").unwrap(), "/café");
    }

    #[test]
    fn path_parameters_are_dropped_for_matching() {
        assert_eq!(norm("/admin;jsessionid=1").unwrap(), "/admin");
        assert_eq!(norm("/admin;x=1/users;y").unwrap(), "/admin/users");
        assert_eq!(norm("/a;v=2/../admin").unwrap(), "/admin");
        // An escaped `;` is not a parameter to any upstream: it stays.
        assert_eq!(norm("/admin%3Bx").unwrap(), "/admin%3Bx");
    }

    #[test]
    fn a_parameter_on_a_dot_segment_is_refused() {
        for p in [
            "/a/..;/admin",
            "/a/.;x/admin",
            "/a/%2e%2e;/admin",
            "/a/;x/../admin",
            "/a/;",
        ] {
            assert_eq!(norm(p), Err(PathError::ParameterOnDotSegment), "{p}");
        }
    }

    #[test]
    fn encoded_slashes_follow_the_option() {
        assert_eq!(norm("/a%2Fadmin"), Err(PathError::EscapedSlash));
        assert_eq!(norm("/a%5cadmin"), Err(PathError::EscapedSlash));
        assert_eq!(
            norm_with("/a%2fadmin", EscapedSlashes::Keep).unwrap(),
            "/a%2Fadmin"
        );
        assert_eq!(
            norm_with("/x/..%2Fadmin", EscapedSlashes::Decode).unwrap(),
            "/admin"
        );
        assert_eq!(
            norm_with("/x/..%5Cadmin", EscapedSlashes::Decode).unwrap(),
            "/admin"
        );
    }

    #[test]
    fn backslashes_are_separators() {
        assert_eq!(norm("/a\\..\\admin").unwrap(), "/admin");
        let opts = PathOptions {
            backslash_is_slash: false,
            ..PathOptions::default()
        };
        assert_eq!(normalize("/a\\b", &opts).unwrap().path, "/a\\b");
    }

    #[test]
    fn query_and_fragment_are_split_off() {
        let n = normalize("/admin?x=1#frag", &PathOptions::default()).unwrap();
        assert_eq!(n.path, "/admin");
        assert_eq!(n.query, Some("x=1"));
        assert_eq!(norm("/admin?").unwrap(), "/admin");
        assert_eq!(norm("/admin#").unwrap(), "/admin");
        assert_eq!(norm("//admin/..?/x").unwrap(), "/");
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(norm(""), Err(PathError::Empty));
        assert_eq!(norm("admin"), Err(PathError::NotAbsolute));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%"), Err(PathError::BadEscape));
        assert_eq!(norm("/a\nb"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a%0Ab"), Err(PathError::ControlCharacter));
    }

    #[test]
    fn case_is_kept() {
        assert_eq!(norm("/ADMIN").unwrap(), "/ADMIN");
    }

    #[test]
    fn asterisk_form_is_allowed() {
        assert_eq!(norm("*").unwrap(), "*");
    }

    #[test]
    fn non_ascii_survives() {
        assert_eq!(norm("/caf\u{e9}/../x").unwrap(), "/x");
        assert_eq!(norm("/%C3%A9").unwrap(), "/%C3%A9");
    }
}
