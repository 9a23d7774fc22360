//! The telemetry filter's configuration, as written, and its validation into the
//! runtime [`Runtime`]. Field names are camelCase like Istio's Telemetry API (whose
//! `tagOverrides` and metric selectors we mirror), since users paste from it.

use crate::accesslog::AccessLog;
use crate::exchange::Identity;
use crate::labels::{LabelValue, Source, StandardMetric};
use crate::series::{MetricSet, Override};
use crate::trace::{Format, Tracing};
use std::collections::BTreeMap;
use wasmesh_sdk::config::{validate_list, ConfigError, FromJson};
use wasmesh_sdk::names::header_name;

/// Which side of a request this sidecar reports (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromJson)]
#[config(rename_all = "lowercase")]
pub enum Reporter {
    /// The sidecar in front of the server (inbound): peer = the caller.
    #[default]
    Destination,
    /// The sidecar next to the client (outbound): peer = the callee.
    Source,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Destination => "destination",
            Reporter::Source => "source",
        }
    }
}

/// The mTLS mode of the listener the filter serves, in Istio's PeerAuthentication
/// words. STRICT and DISABLE settle `connection_security_policy` from config, so the
/// destination side does not ask the host about every request's connection
/// (`connection.mtls`, one host-to-guest crossing); PERMISSIVE asks. The generator sets
/// it from the mesh's mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromJson)]
pub enum MtlsMode {
    /// Every connection carries a verified client certificate.
    #[config(rename = "STRICT")]
    Strict,
    /// Either; asked per request.
    #[default]
    #[config(rename = "PERMISSIVE")]
    Permissive,
    /// No connection does.
    #[config(rename = "DISABLE")]
    Disable,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub reporter: Reporter,
    /// The listener's mTLS mode (destination side only).
    pub mtls: MtlsMode,
    /// This sidecar's workload; the generator fills it in.
    pub workload: WorkloadConfig,
    pub exchange: ExchangeConfig,
    pub metrics: MetricsConfig,
    pub access_log: AccessLogConfig,
    pub tracing: TracingConfig,
    pub custom_metrics: Vec<CustomMetricConfig>,
    /// Seeds the id generator (tests); from the host's entropy when absent.
    pub seed: Option<u64>,
}

#[derive(Debug, Default, Clone, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadConfig {
    pub name: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    /// SPIFFE ID, e.g. `spiffe://cluster.local/ns/default/sa/reviews`.
    pub principal: String,
    /// Service host, e.g. `reviews.default.svc.cluster.local`.
    pub service: String,
    /// Short service name; defaults to the first label of `service`.
    pub service_name: String,
    /// Defaults to `app`, else the workload name.
    pub canonical_service: String,
    /// Defaults to `version`, else `latest`.
    pub canonical_revision: String,
    pub cluster: String,
}

#[derive(Debug, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ExchangeConfig {
    pub enabled: bool,
    /// The header that carries identity between sidecars (stripped before apps).
    pub header: String,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            header: crate::exchange::DEFAULT_HEADER.to_string(),
        }
    }
}

#[derive(Debug, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Like Istio's `Telemetry.metrics[].overrides`, applied in order.
    pub overrides: Vec<OverrideConfig>,
    /// Distinct label sets a VM defines before new peers are reported as `unknown`.
    pub max_series: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            overrides: Vec::new(),
            max_series: 1000,
        }
    }
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OverrideConfig {
    #[config(rename = "match")]
    pub matches: OverrideMatch,
    pub disabled: bool,
    pub tag_overrides: BTreeMap<String, TagOverrideConfig>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OverrideMatch {
    /// `REQUEST_COUNT`, `REQUEST_DURATION`, `REQUEST_SIZE`, `RESPONSE_SIZE` or
    /// `ALL_METRICS` (the default).
    pub metric: Option<String>,
    /// `CLIENT` (reporter=source), `SERVER` (reporter=destination) or
    /// `CLIENT_AND_SERVER` (the default).
    pub mode: Option<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TagOverrideConfig {
    /// `UPSERT` (the default) or `REMOVE`.
    pub operation: Option<String>,
    /// A value expression (see [`Source`]); required for `UPSERT`.
    pub value: Option<String>,
    /// Values kept as they are; anything else becomes `other`. Required for
    /// unbounded sources (headers, properties, the method).
    pub allow: Option<Vec<String>>,
    pub other: Option<String>,
}

#[derive(Debug, Default, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// Keys to print, in order; Istio's default set when absent.
    pub fields: Option<Vec<String>>,
    /// Only requests for which this holds are logged, e.g. `response_code >= 500`.
    pub filter: Option<String>,
}

#[derive(Debug, FromJson)]
#[config(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingConfig {
    pub enabled: bool,
    /// Chance (0..=100) that a trace this filter starts is sampled.
    pub sampling_percent: f64,
    /// Formats written when missing: `w3c`, `b3` (single header), `b3multi`.
    pub formats: Vec<String>,
    /// Adds an `x-request-id` (UUID v4) when a request has none.
    pub request_id: bool,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sampling_percent: 100.0,
            formats: vec!["w3c".into(), "b3".into(), "b3multi".into()],
            request_id: true,
        }
    }
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomMetricConfig {
    pub name: String,
    /// `COUNTER` or `HISTOGRAM`.
    #[config(rename = "type")]
    pub kind: String,
    /// Histograms: `request.duration_ms` (default), `request.bytes`, `response.bytes`.
    #[config(default)]
    pub value: Option<String>,
    #[config(default)]
    pub labels: Vec<CustomLabelConfig>,
}

#[derive(Debug, FromJson)]
#[config(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomLabelConfig {
    pub name: String,
    pub value: String,
    #[config(default)]
    pub allow: Option<Vec<String>>,
    #[config(default)]
    pub other: Option<String>,
}

/// The validated configuration.
pub struct Runtime {
    pub reporter: Reporter,
    pub mtls: MtlsMode,
    pub local: Identity,
    /// Exchange header name, when the exchange is on.
    pub exchange_header: Option<String>,
    pub metrics: MetricSet,
    pub access_log: Option<AccessLog>,
    pub tracing: Option<Tracing>,
    pub seed: Option<u64>,
}

impl Config {
    pub fn validate(&self) -> Result<Runtime, ConfigError> {
        if self.reporter == Reporter::Source && self.mtls != MtlsMode::Permissive {
            // The source side reports `unknown` whatever the connection; a mode here
            // was meant for the destination side's filter.
            return Err(ConfigError::at(
                "mtls",
                "applies to the destination reporter only",
            ));
        }
        let local = Identity::from_config(&self.workload).map_err(|e| e.within("workload"))?;
        let exchange_header = if self.exchange.enabled {
            Some(header_name(&self.exchange.header).map_err(|e| e.within("exchange.header"))?)
        } else {
            None
        };
        let overrides = validate_list("overrides", &self.metrics.overrides, |o| {
            validate_override(o, self.reporter)
        })
        .map_err(|e| e.within("metrics"))?;
        if self.metrics.max_series == 0 {
            return Err(ConfigError::at("metrics.maxSeries", "must be at least 1"));
        }
        let custom = validate_list("customMetrics", &self.custom_metrics, validate_custom)?;
        let metrics = MetricSet::new(
            self.reporter,
            self.metrics.enabled,
            &overrides,
            custom,
            self.metrics.max_series,
        )
        .map_err(|e| e.within("metrics"))?;
        let access_log = if self.access_log.enabled {
            Some(AccessLog::new(&self.access_log).map_err(|e| e.within("accessLog"))?)
        } else {
            None
        };
        let tracing = if self.tracing.enabled {
            Some(validate_tracing(&self.tracing).map_err(|e| e.within("tracing"))?)
        } else {
            None
        };
        Ok(Runtime {
            reporter: self.reporter,
            mtls: self.mtls,
            local,
            exchange_header,
            metrics,
            access_log,
            tracing,
            seed: self.seed,
        })
    }
}

fn validate_override(o: &OverrideConfig, reporter: Reporter) -> Result<Override, ConfigError> {
    let metrics = match o.matches.metric.as_deref() {
        None | Some("ALL_METRICS") => StandardMetric::ALL.to_vec(),
        Some(name) => vec![StandardMetric::from_istio(name).ok_or_else(|| {
            ConfigError::at(
                "match.metric",
                format!("unknown metric `{name}` (REQUEST_COUNT, REQUEST_DURATION, REQUEST_SIZE, RESPONSE_SIZE or ALL_METRICS)"),
            )
        })?],
    };
    let applies = match o.matches.mode.as_deref() {
        None | Some("CLIENT_AND_SERVER") => true,
        Some("CLIENT") => reporter == Reporter::Source,
        Some("SERVER") => reporter == Reporter::Destination,
        Some(other) => {
            return Err(ConfigError::at(
                "match.mode",
                format!("unknown mode `{other}` (CLIENT, SERVER or CLIENT_AND_SERVER)"),
            ))
        }
    };
    let mut tags = Vec::new();
    for (name, t) in &o.tag_overrides {
        let at = format!("tagOverrides.{name}");
        if !is_label_name(name) {
            return Err(ConfigError::at(
                at,
                "not a valid label name ([a-z_][a-z0-9_]*)",
            ));
        }
        match t.operation.as_deref() {
            Some("REMOVE") => tags.push((name.clone(), None)),
            None | Some("UPSERT") => {
                let value = t
                    .value
                    .as_deref()
                    .ok_or_else(|| ConfigError::at(&at, "UPSERT needs a `value`"))?;
                let v = label_value(value, t.allow.as_deref(), t.other.as_deref())
                    .map_err(|e| e.within(&at))?;
                tags.push((name.clone(), Some(v)));
            }
            Some(other) => {
                return Err(ConfigError::at(
                    format!("{at}.operation"),
                    format!("unknown operation `{other}` (UPSERT or REMOVE)"),
                ))
            }
        }
    }
    Ok(Override {
        metrics,
        applies,
        disabled: o.disabled,
        tags,
    })
}

/// A label value: its source, bounded by an allow-list where the source is unbounded.
fn label_value(
    value: &str,
    allow: Option<&[String]>,
    other: Option<&str>,
) -> Result<LabelValue, ConfigError> {
    let source = Source::parse(value).map_err(|e| e.within("value"))?;
    if allow.is_none() && !source.is_bounded() {
        return Err(ConfigError::at(
            "allow",
            format!("`{value}` can take any value: list the values to keep in `allow` (others become `other`)"),
        ));
    }
    for (i, a) in allow.unwrap_or_default().iter().enumerate() {
        if !crate::labels::is_clean_value(a) {
            return Err(ConfigError::at(
                format!("allow[{i}]"),
                format!("`{a}` is not a usable label value"),
            ));
        }
    }
    let other = other.unwrap_or("other");
    if !crate::labels::is_clean_value(other) {
        return Err(ConfigError::at(
            "other",
            format!("`{other}` is not a usable label value"),
        ));
    }
    Ok(LabelValue::new(
        source,
        allow.map(<[String]>::to_vec),
        other,
    ))
}

fn validate_custom(c: &CustomMetricConfig) -> Result<crate::series::CustomMetric, ConfigError> {
    use crate::series::{CustomMetric, Measure};
    use wasmesh_sdk::host::MetricKind;
    if !is_label_name(&c.name) {
        return Err(ConfigError::at(
            "name",
            format!("`{}` is not a valid metric name", c.name),
        ));
    }
    let (kind, measure) = match c.kind.as_str() {
        "COUNTER" => {
            if c.value.is_some() {
                return Err(ConfigError::at(
                    "value",
                    "a COUNTER counts requests: no `value`",
                ));
            }
            (MetricKind::Counter, Measure::Count)
        }
        "HISTOGRAM" => {
            let m = match c.value.as_deref() {
                None | Some("request.duration_ms") => Measure::DurationMs,
                Some("request.bytes") => Measure::RequestBytes,
                Some("response.bytes") => Measure::ResponseBytes,
                Some(other) => {
                    return Err(ConfigError::at(
                        "value",
                        format!("unknown value `{other}` (request.duration_ms, request.bytes, response.bytes)"),
                    ))
                }
            };
            (MetricKind::Histogram, m)
        }
        other => {
            return Err(ConfigError::at(
                "type",
                format!("unknown type `{other}` (COUNTER or HISTOGRAM)"),
            ))
        }
    };
    let labels = validate_list("labels", &c.labels, |l| {
        if !is_label_name(&l.name) {
            return Err(ConfigError::at(
                "name",
                format!("`{}` is not a valid label name", l.name),
            ));
        }
        Ok((
            l.name.clone(),
            label_value(&l.value, l.allow.as_deref(), l.other.as_deref())?,
        ))
    })?;
    let mut names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(ConfigError::at("labels", "label names must be unique"));
    }
    Ok(CustomMetric {
        name: c.name.clone(),
        kind,
        measure,
        labels,
    })
}

fn validate_tracing(t: &TracingConfig) -> Result<Tracing, ConfigError> {
    if !(0.0..=100.0).contains(&t.sampling_percent) {
        return Err(ConfigError::at("samplingPercent", "must be within 0..=100"));
    }
    let formats = validate_list("formats", &t.formats, |f| {
        Format::parse(f).ok_or_else(|| {
            ConfigError::at("", format!("unknown format `{f}` (w3c, b3 or b3multi)"))
        })
    })?;
    Ok(Tracing {
        sampling_percent: t.sampling_percent,
        formats,
        request_id: t.request_id,
    })
}

/// Prometheus label/metric name, lower-case: `[a-z_][a-z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Runtime, ConfigError> {
        wasmesh_sdk::config::parse::<Config>(json.as_bytes())?.validate()
    }

    #[test]
    fn empty_config_is_valid() {
        let rt = parse("").unwrap();
        assert_eq!(rt.reporter, Reporter::Destination);
        assert_eq!(rt.exchange_header.as_deref(), Some("x-wasmesh-peer"));
        assert!(rt.access_log.is_none());
        assert!(rt.tracing.is_some());
    }

    #[test]
    fn unbounded_override_without_allow_list_is_refused() {
        let err = parse(r#"{"metrics":{"overrides":[{"tagOverrides":{"request_host":{"value":"request.headers[host]"}}}]}}"#)
            .err()
            .unwrap();
        assert_eq!(
            err.path,
            "metrics.overrides[0].tagOverrides.request_host.allow"
        );
    }

    #[test]
    fn unknown_metric_and_mode_are_named() {
        let err = parse(r#"{"metrics":{"overrides":[{"match":{"metric":"NOPE"}}]}}"#)
            .err()
            .unwrap();
        assert_eq!(err.path, "metrics.overrides[0].match.metric");
        let err = parse(r#"{"metrics":{"overrides":[{"match":{"mode":"X"}}]}}"#)
            .err()
            .unwrap();
        assert_eq!(err.path, "metrics.overrides[0].match.mode");
    }

    #[test]
    fn custom_metric_errors_name_the_field() {
        let err = parse(r#"{"customMetrics":[{"name":"ok_total","type":"COUNTER","labels":[{"name":"m","value":"request.method"}]}]}"#)
            .err()
            .unwrap();
        assert_eq!(err.path, "customMetrics[0].labels[0].allow");
        let err = parse(r#"{"customMetrics":[{"name":"Bad-Name","type":"COUNTER"}]}"#)
            .err()
            .unwrap();
        assert_eq!(err.path, "customMetrics[0].name");
    }

    #[test]
    fn tracing_format_and_percent_are_checked() {
        assert_eq!(
            parse(r#"{"tracing":{"formats":["w3c","jaeger"]}}"#)
                .err()
                .unwrap()
                .path,
            "tracing.formats[1]"
        );
        assert_eq!(
            parse(r#"{"tracing":{"samplingPercent":101}}"#)
                .err()
                .unwrap()
                .path,
            "tracing.samplingPercent"
        );
    }
}
