//! The access log: one JSON object per request, with Istio's keys (its default JSON
//! access-log format) plus the peer workloads and the trace id.
//!
//! Lines go through the SDK's log at `info`, so Envoy prints them as
//! `... wasm log <plugin> <vm>: wasmesh-telemetry: access_log {"start_time":...}`.
//! A shipper picks them with the marker `wasmesh-telemetry: access_log ` and takes
//! the rest of the line as JSON. Missing values are `null`; numbers are numbers.
//!
//! Only the fields printed or tested by the filter are fetched from the host, and
//! the filter runs before anything is formatted.

use crate::config::AccessLogConfig;
use crate::expr::{Expr, Value};
use crate::labels::{Facts, Label};
use crate::series::Measures;
use crate::trace::carried_trace_id;
use std::borrow::Cow;
use wasmesh_sdk::timestamp::rfc3339_millis;
use wasmesh_sdk::ConfigError;

/// What precedes the JSON on each line (after the SDK's `wasmesh-telemetry: `).
pub const MARKER: &str = "access_log ";

macro_rules! fields {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// An access-log key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Field { $($variant),* }
        impl Field {
            /// Every key, in the default order.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];
            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name),* }
            }
            pub fn from_name(name: &str) -> Option<Field> {
                match name { $($name => Some(Field::$variant),)* _ => None }
            }
        }
    };
}

fields! {
    StartTime = "start_time",
    Method = "method",
    Path = "path",
    Protocol = "protocol",
    ResponseCode = "response_code",
    ResponseFlags = "response_flags",
    ResponseCodeDetails = "response_code_details",
    BytesReceived = "bytes_received",
    BytesSent = "bytes_sent",
    Duration = "duration",
    UpstreamServiceTime = "upstream_service_time",
    XForwardedFor = "x_forwarded_for",
    UserAgent = "user_agent",
    RequestId = "request_id",
    Authority = "authority",
    UpstreamHost = "upstream_host",
    UpstreamCluster = "upstream_cluster",
    DownstreamRemoteAddress = "downstream_remote_address",
    RouteName = "route_name",
    TraceId = "trace_id",
    Reporter = "reporter",
    SourceWorkload = "source_workload",
    SourceNamespace = "source_namespace",
    SourcePrincipal = "source_principal",
    DestinationWorkload = "destination_workload",
    DestinationNamespace = "destination_namespace",
    DestinationService = "destination_service",
    ConnectionSecurityPolicy = "connection_security_policy",
}

/// The validated access-log settings.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub fields: Vec<Field>,
    pub filter: Option<Expr<Field>>,
}

impl AccessLog {
    pub fn new(c: &AccessLogConfig) -> Result<Self, ConfigError> {
        let fields = match &c.fields {
            None => Field::ALL.to_vec(),
            Some(names) => wasmesh_sdk::config::validate_list("fields", names, |n| {
                Field::from_name(n)
                    .ok_or_else(|| ConfigError::at("", format!("unknown field `{n}`")))
            })?,
        };
        if fields.is_empty() {
            return Err(ConfigError::at("fields", "list at least one field"));
        }
        let filter = match &c.filter {
            None => None,
            Some(text) => {
                Some(Expr::parse(text, &Field::from_name).map_err(|e| e.within("filter"))?)
            }
        };
        Ok(Self { fields, filter })
    }

    /// The JSON line for this request, or None when the filter excludes it.
    pub fn render(&self, record: &Record<'_, '_>) -> Option<String> {
        if let Some(filter) = &self.filter {
            if !filter.eval(&|f| record.value(f)) {
                return None;
            }
        }
        let mut out = String::with_capacity(64 * self.fields.len());
        out.push('{');
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(f.name());
            out.push_str("\":");
            match record.value(*f) {
                Value::Null => out.push_str("null"),
                Value::Num(n) => out.push_str(&format!("{n}")),
                Value::Str(s) => json_string(&s, &mut out),
            }
        }
        out.push('}');
        Some(out)
    }
}

/// One request, as the access log reads it.
pub struct Record<'r, 'a> {
    pub facts: &'r Facts<'a>,
    pub measures: &'r Measures,
    /// The trace this filter's own tracing saw or started; None when that is off, and
    /// the request's headers at the end of the stream tell.
    pub trace_id: Option<&'r str>,
}

impl Record<'_, '_> {
    pub fn value(&self, f: Field) -> Value<'_> {
        let log = self.facts.log;
        let props = &log.props;
        let req = |h: &str| {
            log.request()
                .get(h)
                .map_or(Value::Null, |v| Value::Str(Cow::Borrowed(v)))
        };
        let prop = |p: &'static [&'static str]| {
            props
                .string(p)
                .filter(|s| !s.is_empty())
                .map_or(Value::Null, |s| Value::Str(Cow::Owned(s)))
        };
        let int =
            |p: &'static [&'static str]| props.int(p).map_or(Value::Null, |n| Value::Num(n as f64));
        let label = |l: Label| Value::Str(Cow::Borrowed(self.facts.label(l)));
        match f {
            Field::StartTime => props.int(&["request", "time"]).map_or(Value::Null, |ns| {
                Value::Str(Cow::Owned(rfc3339_millis(ns.div_euclid(1_000_000))))
            }),
            Field::Method => req(":method"),
            Field::Path => match log.request().get("x-envoy-original-path") {
                Some(p) => Value::Str(Cow::Borrowed(p)),
                None => req(":path"),
            },
            Field::Protocol => prop(&["request", "protocol"]),
            Field::ResponseCode => Value::Num(f64::from(self.facts.status.unwrap_or(0))),
            Field::ResponseFlags => label(Label::ResponseFlags),
            Field::ResponseCodeDetails => prop(&["response", "code_details"]),
            Field::BytesReceived => int(&["request", "size"]),
            Field::BytesSent => int(&["response", "size"]),
            Field::Duration => Value::Num(self.measures.duration_ms as f64),
            Field::UpstreamServiceTime => log
                .response()
                .get("x-envoy-upstream-service-time")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map_or(Value::Null, Value::Num),
            Field::XForwardedFor => req("x-forwarded-for"),
            Field::UserAgent => req("user-agent"),
            Field::RequestId => req("x-request-id"),
            Field::Authority => req(":authority"),
            Field::UpstreamHost => prop(&["upstream", "address"]),
            Field::UpstreamCluster => match prop(&["xds", "cluster_name"]) {
                Value::Null => prop(&["cluster_name"]),
                v => v,
            },
            Field::DownstreamRemoteAddress => prop(&["source", "address"]),
            Field::RouteName => match prop(&["xds", "route_name"]) {
                Value::Null => prop(&["route_name"]),
                v => v,
            },
            Field::TraceId => match self.trace_id {
                Some(t) => Value::Str(Cow::Borrowed(t)),
                None => carried_trace_id(log.request())
                    .map_or(Value::Null, |t| Value::Str(Cow::Owned(t))),
            },
            Field::Reporter => label(Label::Reporter),
            Field::SourceWorkload => label(Label::SourceWorkload),
            Field::SourceNamespace => label(Label::SourceWorkloadNamespace),
            Field::SourcePrincipal => label(Label::SourcePrincipal),
            Field::DestinationWorkload => label(Label::DestinationWorkload),
            Field::DestinationNamespace => label(Label::DestinationWorkloadNamespace),
            Field::DestinationService => label(Label::DestinationService),
            Field::ConnectionSecurityPolicy => label(Label::ConnectionSecurityPolicy),
        }
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{HeaderMap, LogView, StaticProperties};

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        json_string("a\"b\\c\n\u{1}é", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    /// The line for a GET of `/a?"q"` with `extra` request headers, answered `status`,
    /// when the filter's tracing saw `trace_id`.
    fn log_line(
        cfg: AccessLogConfig,
        status: u16,
        extra: &[(&str, &str)],
        trace_id: Option<&str>,
    ) -> Option<String> {
        let al = AccessLog::new(&cfg).unwrap();
        let props = StaticProperties::new().with("upstream.address", "10.0.0.2:80");
        let mut headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), "/a?\"q\"".to_string()),
        ];
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let log = LogView::new(HeaderMap::from_pairs(headers), HeaderMap::default(), &props);
        let facts = Facts {
            log: &log,
            standard: crate::labels::STANDARD_LABELS
                .iter()
                .map(|_| Cow::Borrowed("x"))
                .collect(),
            status: Some(status),
        };
        let m = Measures {
            duration_ms: 12,
            ..Measures::default()
        };
        al.render(&Record {
            facts: &facts,
            measures: &m,
            trace_id,
        })
    }

    #[test]
    fn selected_fields_in_order_and_filter() {
        let cfg = || AccessLogConfig {
            enabled: true,
            fields: Some(vec![
                "method".into(),
                "path".into(),
                "response_code".into(),
                "duration".into(),
                "upstream_host".into(),
                "user_agent".into(),
                "trace_id".into(),
            ]),
            filter: Some("response_code >= 500".into()),
        };
        assert_eq!(log_line(cfg(), 200, &[], Some("abc")), None);
        assert_eq!(
            log_line(cfg(), 503, &[], Some("abc")).unwrap(),
            r#"{"method":"GET","path":"/a?\"q\"","response_code":503,"duration":12,"upstream_host":"10.0.0.2:80","user_agent":null,"trace_id":"abc"}"#
        );
    }

    #[test]
    fn without_the_filters_tracing_the_trace_id_is_the_one_the_request_carries() {
        let cfg = || AccessLogConfig {
            enabled: true,
            fields: Some(vec!["trace_id".into()]),
            filter: None,
        };
        // What Envoy's Zipkin tracer writes into the upstream request.
        let zipkin = [
            ("x-b3-traceid", "d65cf4923b2b37a5"),
            ("x-b3-spanid", "1f2e3d4c5b6a7988"),
        ];
        assert_eq!(
            log_line(cfg(), 200, &zipkin, None).unwrap(),
            r#"{"trace_id":"d65cf4923b2b37a5"}"#
        );
        // The filter's own outcome wins when it has one; no context at all is null.
        assert_eq!(
            log_line(cfg(), 200, &zipkin, Some("abc")).unwrap(),
            r#"{"trace_id":"abc"}"#
        );
        assert_eq!(
            log_line(cfg(), 200, &[], None).unwrap(),
            r#"{"trace_id":null}"#
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = AccessLog::new(&AccessLogConfig {
            enabled: true,
            fields: Some(vec!["method".into(), "nope".into()]),
            filter: None,
        })
        .unwrap_err();
        assert_eq!(err.path, "fields[1]");
        let err = AccessLog::new(&AccessLogConfig {
            enabled: true,
            fields: None,
            filter: Some("code >= 500".into()),
        })
        .unwrap_err();
        assert_eq!(err.path, "filter");
        assert!(err.message.contains("unknown field `code`"));
    }
}
