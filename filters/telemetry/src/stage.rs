//! The telemetry stage. Requests: metadata exchange (strip the peer's header on the
//! server side, add ours on the client side) and trace context. Responses: the
//! reverse exchange. End of stream: one pass that computes the standard label values
//! once, then records the metrics and the access-log line from them.
//!
//! Properties are read only in `on_log` (Envoy fills sizes and flags in by then), each
//! at most once thanks to the SDK's memo, and only those needed. The duration is the
//! host's monotonic clock, read by the stage at the request headers and at the end of
//! the stream: a property read hands the guest data (a host-to-guest crossing, the
//! dearest kind of host call), a clock read writes eight bytes in place. Envoy's
//! `request.duration` is the fallback for streams this stage never saw start (an
//! earlier filter answered them).

use crate::accesslog::{Record, MARKER};
use crate::config::{Config, MtlsMode, Reporter, Runtime};
use crate::exchange::{service_from_cluster, short_name, Identity};
use crate::labels::{clean, response_flags, Facts, Label, UNKNOWN};
use crate::series::{HostSink, Measures};
use crate::trace::Outcome;
use std::borrow::Cow;
use std::cell::RefCell;
use std::time::Duration;
use wasmesh_sdk::host;
use wasmesh_sdk::rand::Rng;
use wasmesh_sdk::{ConfigError, Decision, LogView, Request, Response, Stage};

pub struct TelemetryStage {
    rt: Runtime,
    /// The exchange header value announcing this workload, rendered once.
    local_header: String,
    unknown: Identity,
    rng: RefCell<Rng>,
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct Stream {
    /// The other side, from the exchange header (None: it sent none).
    peer: Option<Identity>,
    grpc: bool,
    trace: Option<Outcome>,
    /// When this stage saw the request headers, on the host's monotonic clock (ns).
    started: Option<u64>,
}

impl Stage for TelemetryStage {
    const NAME: &'static str = "wasmesh-telemetry";
    type Config = Config;
    type Stream = Stream;

    fn build(config: Config) -> Result<Self, ConfigError> {
        let rt = config.validate()?;
        let rng = match rt.seed {
            Some(seed) => Rng::from_seed(seed),
            None => Rng::from_entropy(),
        };
        Ok(Self {
            local_header: rt.local.encode(),
            rt,
            unknown: Identity::unknown(),
            rng: RefCell::new(rng),
        })
    }

    fn on_request(&self, req: &mut Request<'_>, stream: &mut Stream) -> Decision {
        if self.records() {
            stream.started = host::monotonic_nanos().ok();
        }
        stream.grpc = req
            .headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/grpc"));
        if let Some(h) = &self.rt.exchange_header {
            match self.rt.reporter {
                Reporter::Destination => {
                    if let Some(v) = req.headers.get(h) {
                        stream.peer = Some(Identity::decode(v));
                        req.headers.remove(h);
                    }
                }
                // `set` also replaces whatever the app may have put there.
                Reporter::Source => req.headers.set(h, &self.local_header),
            }
        }
        if let Some(tracing) = &self.rt.tracing {
            stream.trace = Some(tracing.apply(&mut req.headers, &mut self.rng.borrow_mut()));
        }
        Decision::Continue
    }

    fn on_response(&self, resp: &mut Response<'_>, stream: &mut Stream) -> Decision {
        if let Some(h) = &self.rt.exchange_header {
            match self.rt.reporter {
                // Answer only a peer that announced itself: a plain client outside
                // the mesh learns nothing about this workload.
                Reporter::Destination if stream.peer.is_some() => {
                    resp.headers.set(h, &self.local_header)
                }
                Reporter::Destination => resp.headers.remove(h),
                Reporter::Source => {
                    if let Some(v) = resp.headers.get(h) {
                        stream.peer = Some(Identity::decode(v));
                        resp.headers.remove(h);
                    }
                }
            }
        }
        Decision::Continue
    }

    fn on_log(&self, log: &LogView<'_>, stream: &mut Stream) {
        if !self.records() {
            return;
        }
        let status = log.status();
        let elapsed = stream.started.and_then(|t0| {
            let now = host::monotonic_nanos().ok()?;
            Some(Duration::from_nanos(now.saturating_sub(t0)))
        });
        let measures = measures(log, elapsed);
        let facts = Facts {
            log,
            standard: self.standard_labels(log, stream, status),
            status,
        };
        self.rt.metrics.record(&facts, &measures, &HostSink);
        if let Some(al) = &self.rt.access_log {
            let record = Record {
                facts: &facts,
                measures: &measures,
                trace_id: stream.trace.as_ref().map(|t| t.trace_id.as_str()),
            };
            if let Some(line) = al.render(&record) {
                wasmesh_sdk::info!("{MARKER}{line}");
            }
        }
    }
}

/// Sizes from the properties Envoy fills in by the end of the stream; the duration
/// as timed by the stage, or Envoy's `request.duration` for a stream it did not time.
pub fn measures(log: &LogView<'_>, elapsed: Option<Duration>) -> Measures {
    let non_negative = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let duration_ms = match elapsed {
        Some(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        None => non_negative(log.props.int(&["request", "duration"])) / 1_000_000,
    };
    Measures {
        duration_ms,
        request_bytes: non_negative(log.props.int(&["request", "total_size"])),
        response_bytes: non_negative(log.props.int(&["response", "total_size"])),
    }
}

impl TelemetryStage {
    /// Whether the end of a stream records anything (metrics or an access-log line);
    /// if not, the stream is neither timed nor measured.
    fn records(&self) -> bool {
        !self.rt.metrics.is_empty() || self.rt.access_log.is_some()
    }

    /// Istio's standard label values for this request, in [`Label::ALL`] order.
    pub fn standard_labels<'s>(
        &'s self,
        log: &LogView<'_>,
        stream: &'s Stream,
        status: Option<u16>,
    ) -> Vec<Cow<'s, str>> {
        let peer = stream.peer.as_ref().unwrap_or(&self.unknown);
        let local = &self.rt.local;
        let reporter = self.rt.reporter;
        let (src, dst) = match reporter {
            Reporter::Destination => (peer, local),
            Reporter::Source => (local, peer),
        };
        let b = |s: &'s String| Cow::Borrowed(s.as_str());
        let mtls = reporter == Reporter::Destination
            && match self.rt.mtls {
                MtlsMode::Strict => true,
                MtlsMode::Disable => false,
                MtlsMode::Permissive => log.props.mtls(),
            };
        // The verified certificate beats what the peer claims about itself.
        let source_principal = if mtls {
            log.props
                .peer_principal()
                .map(|p| Cow::Owned(clean(&p).into_owned()))
                .unwrap_or_else(|| b(&src.principal))
        } else {
            b(&src.principal)
        };
        let (service, service_name): (Cow<'s, str>, Cow<'s, str>) = if dst.service != UNKNOWN {
            (b(&dst.service), b(&dst.service_name))
        } else {
            // Envoy 1.40 names it `xds.cluster_name`; older Wasm hosts `cluster_name`.
            let cluster = log
                .props
                .string(&["xds", "cluster_name"])
                .or_else(|| log.props.string(&["cluster_name"]));
            match cluster
                .as_deref()
                .and_then(service_from_cluster)
                .map(|s| clean(s).into_owned())
            {
                Some(s) => {
                    let short = short_name(&s).to_string();
                    (Cow::Owned(s), Cow::Owned(short))
                }
                None => (Cow::Borrowed(UNKNOWN), Cow::Borrowed(UNKNOWN)),
            }
        };
        let grpc_status: Cow<'s, str> = if stream.grpc {
            match log.response().get("grpc-status") {
                Some(s) => Cow::Owned(clean(s).into_owned()),
                None => log
                    .props
                    .int(&["response", "grpc_status"])
                    .map_or(Cow::Borrowed(UNKNOWN), |n| Cow::Owned(n.to_string())),
            }
        } else {
            Cow::Borrowed("")
        };
        let flags = log
            .props
            .int(&["response", "flags"])
            .and_then(|f| u64::try_from(f).ok())
            .map_or(Cow::Borrowed("-"), response_flags);
        let mut v: Vec<Cow<'s, str>> = Vec::with_capacity(Label::COUNT);
        for label in Label::ALL {
            v.push(match label {
                Label::Reporter => Cow::Borrowed(reporter.as_str()),
                Label::SourceWorkload => b(&src.workload),
                Label::SourceWorkloadNamespace => b(&src.namespace),
                Label::SourcePrincipal => source_principal.clone(),
                Label::SourceApp => b(&src.app),
                Label::SourceVersion => b(&src.version),
                Label::SourceCanonicalService => b(&src.canonical_service),
                Label::SourceCanonicalRevision => b(&src.canonical_revision),
                Label::SourceCluster => b(&src.cluster),
                Label::DestinationWorkload => b(&dst.workload),
                Label::DestinationWorkloadNamespace => b(&dst.namespace),
                Label::DestinationPrincipal => b(&dst.principal),
                Label::DestinationApp => b(&dst.app),
                Label::DestinationVersion => b(&dst.version),
                Label::DestinationService => service.clone(),
                Label::DestinationServiceName => service_name.clone(),
                Label::DestinationServiceNamespace => b(&dst.namespace),
                Label::DestinationCanonicalService => b(&dst.canonical_service),
                Label::DestinationCanonicalRevision => b(&dst.canonical_revision),
                Label::DestinationCluster => b(&dst.cluster),
                Label::RequestProtocol => Cow::Borrowed(if stream.grpc { "grpc" } else { "http" }),
                Label::ResponseCode => match status {
                    Some(s) => Cow::Owned(s.to_string()),
                    None => Cow::Borrowed("0"),
                },
                Label::GrpcResponseStatus => grpc_status.clone(),
                Label::ResponseFlags => flags.clone(),
                Label::ConnectionSecurityPolicy => Cow::Borrowed(match (reporter, mtls) {
                    (Reporter::Source, _) => UNKNOWN,
                    (Reporter::Destination, true) => "mutual_tls",
                    (Reporter::Destination, false) => "none",
                }),
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{HeaderMap, StaticProperties};

    fn log_view(props: &StaticProperties) -> LogView<'_> {
        LogView::new(HeaderMap::default(), HeaderMap::default(), props)
    }

    #[test]
    fn a_stream_seen_starting_is_timed_by_the_guest_clock() {
        // Envoy's duration says 5 s; the stage's own clock, 20 ms.
        let props =
            StaticProperties::new().with_bytes("request.duration", &5_000_000_000i64.to_le_bytes());
        let m = measures(&log_view(&props), Some(Duration::from_micros(20_900)));
        assert_eq!(m.duration_ms, 20);
    }

    /// `connection_security_policy` and `source_principal` for a destination stage
    /// with mTLS mode `mode` on a connection described by `props`.
    fn security_labels(mode: &str, props: &StaticProperties) -> (String, String) {
        let config = wasmesh_sdk::config::from_value(&serde_json::json!({"mtls": mode})).unwrap();
        let stage = TelemetryStage::build(config).unwrap();
        let stream = Stream::default();
        let log = log_view(props);
        let labels = stage.standard_labels(&log, &stream, Some(200));
        let at = |l: Label| labels[Label::ALL.iter().position(|x| *x == l).unwrap()].to_string();
        (
            at(Label::ConnectionSecurityPolicy),
            at(Label::SourcePrincipal),
        )
    }

    #[test]
    fn the_mtls_mode_settles_the_connection_security_policy() {
        let peer = "spiffe://cluster.local/ns/default/sa/productpage";
        let mtls = StaticProperties::new()
            .with_bytes("connection.mtls", &[1])
            .with("connection.uri_san_peer_certificate", peer);
        let plain = StaticProperties::new();
        // PERMISSIVE asks the connection.
        assert_eq!(security_labels("PERMISSIVE", &mtls).0, "mutual_tls");
        assert_eq!(security_labels("PERMISSIVE", &mtls).1, peer);
        assert_eq!(security_labels("PERMISSIVE", &plain).0, "none");
        // STRICT does not ask (no `connection.mtls` here) and still reads the verified
        // certificate for the principal.
        let strict = StaticProperties::new().with("connection.uri_san_peer_certificate", peer);
        assert_eq!(
            security_labels("STRICT", &strict),
            ("mutual_tls".into(), peer.into())
        );
        // DISABLE trusts no certificate, whatever the properties say.
        assert_eq!(security_labels("DISABLE", &mtls).0, "none");
        assert_ne!(security_labels("DISABLE", &mtls).1, peer);
    }

    #[test]
    fn an_mtls_mode_on_the_source_side_is_refused() {
        let config: Config = wasmesh_sdk::config::from_value(
            &serde_json::json!({"reporter": "source", "mtls": "STRICT"}),
        )
        .unwrap();
        let err = TelemetryStage::build(config).err().unwrap();
        assert_eq!(
            err.to_string(),
            "mtls: applies to the destination reporter only"
        );
        let err = wasmesh_sdk::config::from_value::<Config>(&serde_json::json!({"mtls": "strict"}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mtls: unknown variant `strict`, expected one of `STRICT`, `PERMISSIVE`, `DISABLE`"
        );
    }

    #[test]
    fn a_stream_not_seen_starting_falls_back_to_envoys_duration() {
        let props = StaticProperties::new()
            .with_bytes("request.duration", &1_500_000i64.to_le_bytes())
            .with_bytes("request.total_size", &300i64.to_le_bytes());
        let m = measures(&log_view(&props), None);
        assert_eq!(m.duration_ms, 1);
        assert_eq!(m.request_bytes, 300);
    }
}
