//! The names a config gives, each checked by one rule: header names (RFC 9110 tokens)
//! and rule names (plain, since they end up in shared-data keys and metric labels).
//!
//! Envoy and HTTP/2 carry header names in lower case, so a config's header name is
//! read case-insensitively and kept lower-cased ([`header_name`]). A field that is
//! used as written must already be lower case ([`is_lower_case_header_name`]).

use crate::config::ConfigError;

/// RFC 9110 `tchar`: the bytes a token (and so a header name) is made of.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An RFC 9110 token, in any case: a header name as a user may write it.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// A header name as HTTP/2 and Envoy carry it: a token with no upper-case letter.
pub fn is_lower_case_header_name(name: &str) -> bool {
    is_header_name(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

/// The error for a header name that is not a token, at the document root (callers
/// add the field with [`ConfigError::within`]).
pub fn invalid_header_name(name: &str) -> ConfigError {
    ConfigError::at("", format!("`{name}` is not a valid header name"))
}

/// Checks a header name written in any case and returns it lower-cased.
pub fn header_name(name: &str) -> Result<String, ConfigError> {
    if is_header_name(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(invalid_header_name(name))
    }
}

/// A rule (or domain) name: 1 to 64 bytes of letters, digits, `_`, `-` and `.`.
pub fn rule_name(name: &str) -> Result<(), ConfigError> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        Ok(())
    } else {
        Err(ConfigError::at(
            "",
            "must be non-empty and use only letters, digits, `_`, `-` and `.`",
        ))
    }
}

/// Rule names within one list (`field`, such as `rules`) must differ: the first repeat
/// is reported at its own index (`rules[2].name`).
pub fn unique_rule_names<'n>(
    field: &str,
    names: impl IntoIterator<Item = &'n str>,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        if seen.contains(&name) {
            return Err(ConfigError::at(
                format!("{field}[{i}].name"),
                format!("duplicate rule name `{name}`"),
            ));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_tokens_in_any_case() {
        for ok in ["x-user", "X-User", "a", "!#$%&'*+-.^_`|~", "X_9"] {
            assert!(is_header_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a:b", "x\u{e9}", ":path", "a/b", "a\"b", "(a)"] {
            assert!(!is_header_name(bad), "{bad}");
        }
    }

    #[test]
    fn lower_case_header_names_refuse_capitals() {
        assert!(is_lower_case_header_name("x-jwt-payload"));
        assert!(!is_lower_case_header_name("X-Jwt-Payload"));
        assert!(!is_lower_case_header_name(""));
        assert!(!is_lower_case_header_name("a b"));
    }

    #[test]
    fn header_name_is_lower_cased_and_errors_quote_it_as_written() {
        assert_eq!(header_name("X-User"), Ok("x-user".to_string()));
        let err = header_name("Bad Name").unwrap_err();
        assert_eq!(err.path, "");
        assert_eq!(err.message, "`Bad Name` is not a valid header name");
        assert_eq!(
            err.within("header").to_string(),
            "header: `Bad Name` is not a valid header name"
        );
    }

    #[test]
    fn a_repeated_rule_name_is_reported_at_the_repeat() {
        assert!(unique_rule_names("rules", ["a", "b"]).is_ok());
        let err = unique_rule_names("rules", ["a", "b", "a"]).unwrap_err();
        assert_eq!(err.to_string(), "rules[2].name: duplicate rule name `a`");
    }

    #[test]
    fn rule_names_are_plain_and_short() {
        assert!(rule_name("per-user_1.v2").is_ok());
        assert!(rule_name(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "a/b", "a:b", &"a".repeat(65)] {
            let err = rule_name(bad).unwrap_err();
            assert_eq!(
                err.message,
                "must be non-empty and use only letters, digits, `_`, `-` and `.`"
            );
        }
    }
}
