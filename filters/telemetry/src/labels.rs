//! Istio's standard metrics and labels, label value sources, and the rules that
//! keep label cardinality bounded.
//!
//! Bounded by construction: every standard label comes from config (this
//! workload), from a checked peer value ([`clean`]: short, plain characters, else
//! `unknown`), or from a small closed set (response code, flags, protocol). Nothing
//! unbounded (paths, authorities, raw header values) is a label unless an
//! allow-list maps it onto a fixed set first; config validation enforces that.

use std::borrow::Cow;
use wasmesh_sdk::{ConfigError, LogView};

pub const UNKNOWN: &str = "unknown";

pub const REQUESTS_TOTAL: &str = "istio_requests_total";
pub const REQUEST_DURATION: &str = "istio_request_duration_milliseconds";
pub const REQUEST_BYTES: &str = "istio_request_bytes";
pub const RESPONSE_BYTES: &str = "istio_response_bytes";

/// The four standard metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardMetric {
    RequestCount,
    RequestDuration,
    RequestSize,
    ResponseSize,
}

impl StandardMetric {
    pub const ALL: [StandardMetric; 4] = [
        StandardMetric::RequestCount,
        StandardMetric::RequestDuration,
        StandardMetric::RequestSize,
        StandardMetric::ResponseSize,
    ];

    /// The Telemetry API's name for it (`REQUEST_COUNT`, ...).
    pub fn from_istio(name: &str) -> Option<Self> {
        match name {
            "REQUEST_COUNT" => Some(Self::RequestCount),
            "REQUEST_DURATION" => Some(Self::RequestDuration),
            "REQUEST_SIZE" => Some(Self::RequestSize),
            "RESPONSE_SIZE" => Some(Self::ResponseSize),
            _ => None,
        }
    }

    pub fn metric_name(self) -> &'static str {
        match self {
            Self::RequestCount => REQUESTS_TOTAL,
            Self::RequestDuration => REQUEST_DURATION,
            Self::RequestSize => REQUEST_BYTES,
            Self::ResponseSize => RESPONSE_BYTES,
        }
    }
}

macro_rules! labels {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// Istio's standard labels, in the order they are encoded.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Label { $($variant),* }
        impl Label {
            pub const ALL: &'static [Label] = &[$(Label::$variant),*];
            pub fn name(self) -> &'static str {
                match self { $(Label::$variant => $name),* }
            }
            pub fn from_name(name: &str) -> Option<Label> {
                match name { $($name => Some(Label::$variant),)* _ => None }
            }
        }
        /// The names of [`Label::ALL`].
        pub const STANDARD_LABELS: &[&str] = &[$($name),*];
    };
}

labels! {
    Reporter = "reporter",
    SourceWorkload = "source_workload",
    SourceWorkloadNamespace = "source_workload_namespace",
    SourcePrincipal = "source_principal",
    SourceApp = "source_app",
    SourceVersion = "source_version",
    SourceCanonicalService = "source_canonical_service",
    SourceCanonicalRevision = "source_canonical_revision",
    SourceCluster = "source_cluster",
    DestinationWorkload = "destination_workload",
    DestinationWorkloadNamespace = "destination_workload_namespace",
    DestinationPrincipal = "destination_principal",
    DestinationApp = "destination_app",
    DestinationVersion = "destination_version",
    DestinationService = "destination_service",
    DestinationServiceName = "destination_service_name",
    DestinationServiceNamespace = "destination_service_namespace",
    DestinationCanonicalService = "destination_canonical_service",
    DestinationCanonicalRevision = "destination_canonical_revision",
    DestinationCluster = "destination_cluster",
    RequestProtocol = "request_protocol",
    ResponseCode = "response_code",
    GrpcResponseStatus = "grpc_response_status",
    ResponseFlags = "response_flags",
    ConnectionSecurityPolicy = "connection_security_policy",
}

impl Label {
    pub const COUNT: usize = STANDARD_LABELS.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the value comes from the peer (source labels at the destination and
    /// vice versa): these are what collapse to `unknown` at the series cap.
    pub fn is_peer(self, reporter: crate::config::Reporter) -> bool {
        let name = self.name();
        match reporter {
            crate::config::Reporter::Destination => name.starts_with("source_"),
            crate::config::Reporter::Source => name.starts_with("destination_"),
        }
    }
}

/// Longest label value kept (a DNS name's limit).
pub const MAX_VALUE_LEN: usize = 253;

/// Whether `v` can be a label value as it is: non-empty, at most [`MAX_VALUE_LEN`]
/// bytes, letters, digits and `-._/:@` only. No `;` (our name encoding's separator),
/// nothing Prometheus must escape.
pub fn is_clean_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VALUE_LEN
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/' | b':' | b'@')
        })
}

/// `v` if it is clean, else `unknown` (never a mangled copy: a mangled value would
/// still be unbounded).
pub fn clean(v: &str) -> Cow<'_, str> {
    if is_clean_value(v) {
        Cow::Borrowed(v)
    } else {
        Cow::Borrowed(UNKNOWN)
    }
}

/// Where a configured label (tag override, custom metric label) takes its value.
///
/// Syntax: `'literal'`, `request.method`, `request.protocol`, `request.headers[NAME]`,
/// `response.headers[NAME]`, `response.code`, `response.code_class` (`2xx`),
/// `response.flags`, a standard label name (`destination_service_name`), or any
/// other dotted Envoy property path (`upstream.address`, `node.id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Literal(String),
    Method,
    Protocol,
    ResponseCode,
    ResponseCodeClass,
    ResponseFlags,
    RequestHeader(String),
    ResponseHeader(String),
    Standard(Label),
    /// Leaked once at configure time: the SDK's property cache keys on `'static` paths.
    Property(&'static [&'static str]),
}

impl Source {
    /// Reads a label's value expression; errors are at the expression itself (callers
    /// add the field).
    pub fn parse(text: &str) -> Result<Source, ConfigError> {
        let text = text.trim();
        if let Some(lit) = text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
        {
            if !is_clean_value(lit) {
                return Err(ConfigError::at(
                    "",
                    format!("`{lit}` is not a usable label value"),
                ));
            }
            return Ok(Source::Literal(lit.to_string()));
        }
        let header = |prefix: &str| -> Option<Result<String, ConfigError>> {
            let inner = text.strip_prefix(prefix)?.strip_suffix(']')?;
            let name = inner
                .trim_matches(|c| c == '\'' || c == '"')
                .to_ascii_lowercase();
            Some(
                if wasmesh_sdk::names::is_header_name(&name) || name.starts_with(':') {
                    Ok(name)
                } else {
                    Err(ConfigError::at(
                        "",
                        format!("`{inner}` is not a header name"),
                    ))
                },
            )
        };
        if let Some(name) = header("request.headers[") {
            return name.map(Source::RequestHeader);
        }
        if let Some(name) = header("response.headers[") {
            return name.map(Source::ResponseHeader);
        }
        Ok(match text {
            "request.method" => Source::Method,
            "request.protocol" => Source::Protocol,
            "response.code" => Source::ResponseCode,
            "response.code_class" => Source::ResponseCodeClass,
            "response.flags" => Source::ResponseFlags,
            _ => {
                if let Some(label) = Label::from_name(text) {
                    return Ok(Source::Standard(label));
                }
                let ok = !text.is_empty()
                    && text.split('.').all(|seg| {
                        !seg.is_empty()
                            && seg
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    });
                if !ok {
                    return Err(ConfigError::at("", format!("`{text}` is not a value expression (e.g. 'literal', request.method, request.headers[x-name], response.code, or a property path)")));
                }
                let segments: Vec<&'static str> = text
                    .split('.')
                    .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
                    .collect();
                Source::Property(Box::leak(segments.into_boxed_slice()))
            }
        })
    }

    /// Whether every value the source can produce comes from a small fixed set.
    pub fn is_bounded(&self) -> bool {
        !matches!(
            self,
            Source::Method
                | Source::RequestHeader(_)
                | Source::ResponseHeader(_)
                | Source::Property(_)
        )
    }
}

/// A configured label value: a source, optionally mapped through an allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelValue {
    source: Source,
    allow: Option<Vec<String>>,
    other: String,
}

impl LabelValue {
    pub fn new(source: Source, allow: Option<Vec<String>>, other: &str) -> Self {
        Self {
            source,
            allow,
            other: other.to_string(),
        }
    }

    /// The value for this request: the source's value if allowed (or bounded), else
    /// `other`; `unknown` when the source has nothing.
    pub fn resolve<'f>(&'f self, facts: &'f Facts<'_>) -> Cow<'f, str> {
        let raw = facts.source(&self.source);
        match (&self.allow, raw) {
            (Some(allow), Some(v)) => {
                if allow.iter().any(|a| *a == v) {
                    v
                } else {
                    Cow::Borrowed(self.other.as_str())
                }
            }
            (Some(_), None) => Cow::Borrowed(self.other.as_str()),
            (None, Some(v)) if is_clean_value(&v) => v,
            (None, Some(_)) => Cow::Borrowed(UNKNOWN),
            (None, None) => Cow::Borrowed(UNKNOWN),
        }
    }

    /// The value used once the series cap is reached.
    pub fn collapsed(&self) -> &str {
        match &self.source {
            Source::Literal(l) => l,
            _ => &self.other,
        }
    }
}

/// What one finished request looks like to the metrics: the standard label values
/// (computed once) and the log view for sources that read headers or properties.
pub struct Facts<'a> {
    pub log: &'a LogView<'a>,
    pub standard: Vec<Cow<'a, str>>,
    pub status: Option<u16>,
}

impl<'a> Facts<'a> {
    pub fn label(&self, label: Label) -> &str {
        self.standard
            .get(label.index())
            .map_or(UNKNOWN, |c| c.as_ref())
    }

    fn source<'s>(&'s self, source: &'s Source) -> Option<Cow<'s, str>> {
        match source {
            Source::Literal(l) => Some(Cow::Borrowed(l)),
            Source::Method => self.log.request().get(":method").map(Cow::Borrowed),
            Source::Protocol => Some(Cow::Borrowed(self.label(Label::RequestProtocol))),
            Source::ResponseCode => Some(Cow::Borrowed(self.label(Label::ResponseCode))),
            Source::ResponseFlags => Some(Cow::Borrowed(self.label(Label::ResponseFlags))),
            Source::ResponseCodeClass => Some(Cow::Borrowed(code_class(self.status))),
            Source::Standard(l) => Some(Cow::Borrowed(self.label(*l))),
            Source::RequestHeader(h) => self.log.request().get(h).map(Cow::Borrowed),
            Source::ResponseHeader(h) => self.log.response().get(h).map(Cow::Borrowed),
            Source::Property(path) => self
                .log
                .props
                .raw(path)
                .map(|b| Cow::Owned(render_property(&b))),
        }
    }
}

/// `2xx`, `4xx`, ...; `unknown` without a response.
pub fn code_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => UNKNOWN,
    }
}

/// A property value as text: printable UTF-8 as is; otherwise an 8-byte value as an
/// integer, a 1-byte value as a boolean.
pub fn render_property(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) => s.to_string(),
        _ => match bytes.len() {
            8 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                i64::from_le_bytes(raw).to_string()
            }
            1 => (bytes[0] != 0).to_string(),
            _ => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

/// Envoy's response flags (the `response.flags` bit set) as the short codes access
/// logs and Istio's `response_flags` label use, comma-joined; `-` for none. Bit order
/// is Envoy's `CoreResponseFlag` enum.
pub fn response_flags(bits: u64) -> Cow<'static, str> {
    const CODES: [&str; 30] = [
        "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
        "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF",
        "DO", "DR", "UDO",
    ];
    if bits == 0 {
        return Cow::Borrowed("-");
    }
    let mut out = String::new();
    for (i, code) in CODES.iter().enumerate() {
        if bits & (1 << i) != 0 {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(code);
        }
    }
    if out.is_empty() {
        return Cow::Borrowed(UNKNOWN);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{HeaderMap, StaticProperties};

    #[test]
    fn standard_label_table_is_consistent() {
        assert_eq!(Label::ALL.len(), Label::COUNT);
        for (i, l) in Label::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
            assert_eq!(Label::from_name(l.name()), Some(*l));
        }
        for name in [
            "reporter",
            "source_workload",
            "destination_service",
            "response_code",
            "grpc_response_status",
            "connection_security_policy",
        ] {
            assert!(STANDARD_LABELS.contains(&name), "{name}");
        }
    }

    #[test]
    fn clean_values_only() {
        assert!(is_clean_value("spiffe://cluster.local/ns/a/sa/b"));
        assert!(is_clean_value("reviews-v1"));
        assert!(!is_clean_value(""));
        assert!(!is_clean_value("a b"));
        assert!(!is_clean_value("a;b=c"));
        assert!(!is_clean_value("/api/users/123?x=1"));
        assert!(!is_clean_value(&"x".repeat(254)));
        assert_eq!(clean("a\"b"), UNKNOWN);
    }

    #[test]
    fn sources_parse() {
        assert_eq!(Source::parse("'v1'"), Ok(Source::Literal("v1".into())));
        assert_eq!(Source::parse("request.method"), Ok(Source::Method));
        assert_eq!(
            Source::parse("request.headers['X-Tenant']"),
            Ok(Source::RequestHeader("x-tenant".into()))
        );
        assert_eq!(
            Source::parse("destination_service_name"),
            Ok(Source::Standard(Label::DestinationServiceName))
        );
        match Source::parse("upstream.address").unwrap() {
            Source::Property(p) => assert_eq!(p, ["upstream", "address"]),
            other => panic!("{other:?}"),
        }
        assert!(Source::parse("request.headers[a b]").is_err());
        assert!(Source::parse("has space").is_err());
        assert!(Source::parse("'a;b'").is_err());
        assert!(Source::ResponseCode.is_bounded());
        assert!(!Source::RequestHeader("x".into()).is_bounded());
    }

    #[test]
    fn allow_list_maps_unlisted_values_to_other() {
        let props = StaticProperties::new();
        let log = LogView::new(
            HeaderMap::from_pairs(vec![
                (":method".into(), "PURGE".into()),
                ("x-tenant".into(), "acme".into()),
            ]),
            HeaderMap::default(),
            &props,
        );
        let facts = Facts {
            log: &log,
            standard: Vec::new(),
            status: Some(503),
        };
        let method = LabelValue::new(Source::Method, Some(vec!["GET".into()]), "other");
        assert_eq!(method.resolve(&facts), "other");
        let tenant = LabelValue::new(
            Source::RequestHeader("x-tenant".into()),
            Some(vec!["acme".into()]),
            "other",
        );
        assert_eq!(tenant.resolve(&facts), "acme");
        let missing = LabelValue::new(Source::RequestHeader("x-no".into()), Some(vec![]), "none");
        assert_eq!(missing.resolve(&facts), "none");
        let class = LabelValue::new(Source::ResponseCodeClass, None, "other");
        assert_eq!(class.resolve(&facts), "5xx");
    }

    #[test]
    fn flags_render_like_envoy() {
        assert_eq!(response_flags(0), "-");
        assert_eq!(response_flags(1 << 5), "UF");
        assert_eq!(response_flags((1 << 1) | (1 << 8)), "UH,NR");
        assert_eq!(response_flags(1 << 40), UNKNOWN);
    }

    #[test]
    fn properties_render_by_shape() {
        assert_eq!(render_property(b"10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(render_property(&42i64.to_le_bytes()), "42");
        assert_eq!(render_property(&[1]), "true");
    }
}
