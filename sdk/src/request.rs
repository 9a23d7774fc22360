//! The request view a stage reads: headers fetched once, the normalised path computed
//! once, properties on demand.

use crate::headers::HeaderMap;
use crate::path::{normalize, PathError, PathOptions};
use crate::percent::{self, Plus};
use crate::props::{Properties, PropertySource};
use std::borrow::Cow;
use std::cell::OnceCell;

/// One request, as stages see it in the request phase.
pub struct Request<'a> {
    pub headers: HeaderMap,
    pub props: Properties<'a>,
    /// Set by a stage that changed what routing depends on (path, host, headers), so
    /// the shell asks Envoy to pick the route again (`clear_route_cache`).
    pub clear_route_cache: bool,
    path_options: PathOptions,
    normalized: OnceCell<Result<String, PathError>>,
}

impl<'a> Request<'a> {
    pub fn new(
        headers: HeaderMap,
        props: &'a dyn PropertySource,
        path_options: PathOptions,
    ) -> Self {
        Self {
            headers,
            props: Properties::new(props),
            clear_route_cache: false,
            path_options,
            normalized: OnceCell::new(),
        }
    }

    /// Changes how the path is normalised (a pipeline's stages may differ); the
    /// cached result is dropped only when the options really change.
    pub fn set_path_options(&mut self, options: PathOptions) {
        if options != self.path_options {
            self.path_options = options;
            self.normalized = OnceCell::new();
        }
    }

    pub fn method(&self) -> &str {
        self.headers.get(":method").unwrap_or("")
    }

    /// `:path` exactly as received (with the query).
    pub fn raw_path(&self) -> &str {
        self.headers.get(":path").unwrap_or("")
    }

    /// The normalised path (no query), or why the path is refused; see [`crate::path`].
    pub fn path(&self) -> Result<&str, PathError> {
        self.normalized
            .get_or_init(|| {
                normalize(self.raw_path(), &self.path_options).map(|n| n.path.into_owned())
            })
            .as_ref()
            .map(String::as_str)
            .map_err(|e| *e)
    }

    /// The raw query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        let raw = self.raw_path();
        let raw = raw.split_once('#').map_or(raw, |(p, _)| p);
        raw.split_once('?').map(|(_, q)| q)
    }

    /// The first value of query parameter `name`, percent-decoded (`+` as space).
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        query_param(self.query()?, name)
    }

    /// The host from `:authority` (or `host`), without port, lower-cased only if needed.
    pub fn host(&self) -> Cow<'_, str> {
        let authority = self
            .headers
            .get(":authority")
            .or_else(|| self.headers.get("host"))
            .unwrap_or("");
        let host = strip_port(authority);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        }
    }
}

/// `example.com:80` → `example.com`; `[::1]:80` → `[::1]`.
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Finds `name` in a query string and decodes its value.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes a query string's `%XX` and `+`; malformed escapes are kept literally.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    percent::decode(s, Plus::Space)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::props::StaticProperties;

    fn request<'a>(props: &'a StaticProperties, pairs: &[(&str, &str)]) -> Request<'a> {
        let headers = HeaderMap::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Request::new(headers, props, PathOptions::default())
    }

    #[test]
    fn path_is_normalised_and_query_kept_apart() {
        let props = StaticProperties::new();
        let req = request(&props, &[(":path", "//a/../admin?x=%41+b&y")]);
        assert_eq!(req.path(), Ok("/admin"));
        assert_eq!(req.query(), Some("x=%41+b&y"));
        assert_eq!(req.query_param("x").as_deref(), Some("A b"));
        assert_eq!(req.query_param("y").as_deref(), Some(""));
        assert_eq!(req.query_param("z"), None);
    }

    #[test]
    fn host_drops_the_port_and_case() {
        let props = StaticProperties::new();
        assert_eq!(
            request(&props, &[(":authority", "Api.Example.com:8080")]).host(),
            "api.example.com"
        );
        assert_eq!(request(&props, &[("host", "[::1]:80")]).host(), "[::1]");
        assert_eq!(request(&props, &[]).host(), "");
    }

    #[test]
    fn refused_path_is_an_error() {
        let props = StaticProperties::new();
        assert_eq!(
            request(&props, &[(":path", "/a%2Fb")]).path(),
            Err(PathError::EscapedSlash)
        );
        assert_eq!(request(&props, &[]).path(), Err(PathError::Empty));
    }
}
