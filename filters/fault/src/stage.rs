//! The fault stage: picks the request's faults (a header fault if enabled and asked
//! for, else the first matching rule's), draws each against its percentage, then
//! delays (paused, resumed from the root's tick) and/or aborts, delay first as in
//! Envoy.

use crate::config::{Abort, Config, Delay, FaultConfig, DEFAULT_BODY};
use std::cell::{Cell, RefCell};
use std::time::Duration;
use wasmesh_sdk::metrics::Counter;
use wasmesh_sdk::rand::Rng;
use wasmesh_sdk::stage::LogView;
use wasmesh_sdk::{ConfigError, Decision, LocalReply, PathOptions, Request, Stage};

/// Envoy's header names, so tests and tools written for Envoy's fault filter work.
const ABORT_HEADER: &str = "x-envoy-fault-abort-request";
const ABORT_PCT_HEADER: &str = "x-envoy-fault-abort-request-percentage";
const DELAY_HEADER: &str = "x-envoy-fault-delay-request";
const DELAY_PCT_HEADER: &str = "x-envoy-fault-delay-request-percentage";
/// Longest delay a header may ask for: a client must not park streams for ever (and
/// a deadline past the clock's range would overflow).
const MAX_HEADER_DELAY_MS: u64 = 3_600_000;
/// Rule label of header-triggered faults in metrics.
const HEADER_RULE: &str = "header";

pub struct FaultStage {
    cfg: FaultConfig,
    /// Wasm is single-threaded and one VM holds one stage: a RefCell is enough.
    rng: RefCell<Rng>,
    /// Delays in progress on this worker (Envoy's `active_faults`).
    active: Cell<u32>,
    aborts: Counter,
    delays: Counter,
    skipped: Counter,
}

/// Per request: the abort to answer with after the delay, and whether this stream
/// holds an active-fault slot.
#[derive(Debug, Default)]
pub struct Stream {
    pending_abort: Option<(String, Abort)>,
    active: bool,
}

impl FaultStage {
    fn draw(&self, percentage: f64) -> bool {
        self.rng.borrow_mut().chance(percentage)
    }

    /// Header faults, if enabled and asked for: the status / delay from the header,
    /// the percentage from its header (default 100).
    fn header_faults(&self, req: &Request<'_>) -> Option<(Option<Abort>, Option<Delay>)> {
        if !self.cfg.header_faults {
            return None;
        }
        let pct = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|p| p.is_finite())
                .map_or(100.0, |p| p.clamp(0.0, 100.0))
        };
        let abort = req
            .headers
            .get(ABORT_HEADER)
            .and_then(|v| v.trim().parse::<u16>().ok())
            .filter(|s| (200..=599).contains(s))
            .map(|status| Abort {
                status,
                percentage: pct(ABORT_PCT_HEADER),
                body: DEFAULT_BODY.into(),
            });
        let delay = req
            .headers
            .get(DELAY_HEADER)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(|ms| Delay {
                duration: Duration::from_millis(ms.min(MAX_HEADER_DELAY_MS)),
                percentage: pct(DELAY_PCT_HEADER),
            });
        (abort.is_some() || delay.is_some()).then_some((abort, delay))
    }

    fn at_capacity(&self) -> bool {
        self.cfg
            .max_active_faults
            .is_some_and(|max| self.active.get() >= max)
    }

    fn release(&self, stream: &mut Stream) {
        if std::mem::take(&mut stream.active) {
            self.active.set(self.active.get().saturating_sub(1));
        }
    }

    fn abort_reply(&self, rule: &str, abort: &Abort) -> Decision {
        self.aborts.inc(&[rule]);
        let mut reply =
            LocalReply::new(abort.status, abort.body.as_bytes()).details("fault_filter_abort");
        if !abort.body.is_empty() {
            reply = reply.header("content-type", "text/plain");
        }
        Decision::Reply(reply)
    }
}

impl Stage for FaultStage {
    const NAME: &'static str = "wasmesh-fault";
    type Config = Config;
    type Stream = Stream;

    fn build(config: Config) -> Result<Self, ConfigError> {
        let cfg = config.validate()?;
        let rng = cfg.seed.map_or_else(Rng::from_entropy, Rng::from_seed);
        Ok(Self {
            cfg,
            rng: RefCell::new(rng),
            active: Cell::new(0),
            aborts: Counter::new("wasmesh_fault_aborts_total", &["rule"]),
            delays: Counter::new("wasmesh_fault_delays_total", &["rule"]),
            skipped: Counter::new("wasmesh_fault_overflow_total", &["rule"]),
        })
    }

    fn path_options(&self) -> PathOptions {
        self.cfg.path_options
    }

    fn on_request(&self, req: &mut Request<'_>, stream: &mut Stream) -> Decision {
        let (rule, abort, delay) = match self.header_faults(req) {
            Some((abort, delay)) => (HEADER_RULE.to_string(), abort, delay),
            None => match self.cfg.rules.first_match(req) {
                Some((_, r)) => (r.name.clone(), r.abort.clone(), r.delay.clone()),
                None => return Decision::Continue,
            },
        };
        // Draw both now, so one request costs a fixed number of draws whatever happens.
        let abort = abort.filter(|a| self.draw(a.percentage));
        let delay = delay.filter(|d| self.draw(d.percentage));
        if abort.is_none() && delay.is_none() {
            return Decision::Continue;
        }
        if self.at_capacity() {
            self.skipped.inc(&[rule.as_str()]);
            return Decision::Continue;
        }
        match delay {
            Some(d) => {
                self.delays.inc(&[rule.as_str()]);
                self.active.set(self.active.get() + 1);
                stream.active = true;
                stream.pending_abort = abort.map(|a| (rule, a));
                Decision::Delay(d.duration)
            }
            None => match abort {
                Some(a) => self.abort_reply(&rule, &a),
                None => Decision::Continue,
            },
        }
    }

    fn on_request_resumed(&self, _req: &mut Request<'_>, stream: &mut Stream) -> Decision {
        self.release(stream);
        match stream.pending_abort.take() {
            Some((rule, a)) => self.abort_reply(&rule, &a),
            None => Decision::Continue,
        }
    }

    fn wants_response(&self) -> bool {
        false
    }

    fn on_log(&self, _log: &LogView<'_>, stream: &mut Stream) {
        // A client that gave up during its delay still frees its slot.
        self.release(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmesh_sdk::{config, HeaderMap, StaticProperties};

    fn stage(json: &str) -> FaultStage {
        config::parse::<Config>(json.as_bytes())
            .and_then(FaultStage::build)
            .unwrap()
    }

    fn build_err(json: &str) -> String {
        match config::parse::<Config>(json.as_bytes()).and_then(FaultStage::build) {
            Ok(_) => panic!("config accepted: {json}"),
            Err(e) => e.to_string(),
        }
    }

    fn run(s: &FaultStage, headers: &[(&str, &str)]) -> (Decision, Stream) {
        let props = StaticProperties::new();
        let headers = HeaderMap::from_pairs(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut req = Request::new(headers, &props, s.path_options());
        let mut stream = Stream::default();
        let d = s.on_request(&mut req, &mut stream);
        (d, stream)
    }

    fn resume(s: &FaultStage, stream: &mut Stream) -> Decision {
        let props = StaticProperties::new();
        let mut req = Request::new(HeaderMap::default(), &props, s.path_options());
        s.on_request_resumed(&mut req, stream)
    }

    #[test]
    fn abort_at_100_percent() {
        let s = stage(r#"{"abort":{"http_status":503}}"#);
        let Decision::Reply(r) = run(&s, &[]).0 else {
            panic!()
        };
        assert_eq!(
            (r.status, r.body.as_slice()),
            (503, b"fault filter abort".as_slice())
        );
        assert_eq!(r.details, "fault_filter_abort");
    }

    #[test]
    fn delay_then_abort() {
        let s = stage(r#"{"abort":{"http_status":500,"body":""},"delay":{"fixed_delay":"1.5s"}}"#);
        let (d, mut stream) = run(&s, &[]);
        assert_eq!(d, Decision::Delay(Duration::from_millis(1500)));
        assert_eq!(s.active.get(), 1);
        let Decision::Reply(r) = resume(&s, &mut stream) else {
            panic!()
        };
        assert_eq!((r.status, r.body.len()), (500, 0));
        assert_eq!(s.active.get(), 0);
    }

    #[test]
    fn percentages_are_drawn_per_request_and_seeded() {
        let cfg = r#"{"seed":7,"abort":{"http_status":503,"percentage":30}}"#;
        let count = |s: &FaultStage| {
            (0..10_000)
                .filter(|_| matches!(run(s, &[]).0, Decision::Reply(_)))
                .count()
        };
        let (a, b) = (count(&stage(cfg)), count(&stage(cfg)));
        assert_eq!(a, b, "same seed, same decisions");
        assert!((2_800..3_200).contains(&a), "{a}");
        assert_eq!(
            count(&stage(r#"{"abort":{"http_status":503,"percentage":0}}"#)),
            0
        );
    }

    #[test]
    fn max_active_faults_caps_delays_in_progress() {
        let s = stage(r#"{"max_active_faults":2,"delay":{"fixed_delay":"1s"}}"#);
        let (d1, mut s1) = run(&s, &[]);
        let (d2, mut s2) = run(&s, &[]);
        let (d3, _) = run(&s, &[]);
        assert!(matches!(d1, Decision::Delay(_)) && matches!(d2, Decision::Delay(_)));
        assert_eq!(d3, Decision::Continue);
        resume(&s, &mut s1);
        assert!(matches!(run(&s, &[]).0, Decision::Delay(_)));
        // A stream that ends while delayed frees its slot once.
        let props = StaticProperties::new();
        let view = LogView::new(HeaderMap::default(), HeaderMap::default(), &props);
        s.on_log(&view, &mut s2);
        s.on_log(&view, &mut s2);
        assert_eq!(s.active.get(), 1);
    }

    #[test]
    fn header_faults_only_when_enabled() {
        let off = stage(r#"{"delay":{"fixed_delay":"1s","percentage":0}}"#);
        assert_eq!(run(&off, &[(ABORT_HEADER, "418")]).0, Decision::Continue);
        let on = stage(r#"{"header_faults":true}"#);
        let Decision::Reply(r) = run(&on, &[(ABORT_HEADER, "418")]).0 else {
            panic!()
        };
        assert_eq!(r.status, 418);
        assert_eq!(
            run(&on, &[(DELAY_HEADER, "250")]).0,
            Decision::Delay(Duration::from_millis(250))
        );
        assert_eq!(
            run(&on, &[(ABORT_HEADER, "418"), (ABORT_PCT_HEADER, "0")]).0,
            Decision::Continue
        );
        for junk in ["", "abc", "99", "600", "-1", "4180"] {
            assert_eq!(
                run(&on, &[(ABORT_HEADER, junk)]).0,
                Decision::Continue,
                "{junk}"
            );
        }
        assert_eq!(run(&on, &[(DELAY_HEADER, "0")]).0, Decision::Continue);
        assert_eq!(
            run(&on, &[(DELAY_HEADER, "18446744073709551615")]).0,
            Decision::Delay(Duration::from_secs(3600))
        );
        assert_eq!(run(&on, &[]).0, Decision::Continue);
    }

    #[test]
    fn malformed_config_names_the_field() {
        let cases = [
            ("{}", "nothing to inject"),
            (
                r#"{"abort":{"http_status":99}}"#,
                "abort.http_status: must be 200-599",
            ),
            (
                r#"{"abort":{"http_status":503,"percentage":101}}"#,
                "abort.percentage: must be 0-100",
            ),
            (
                r#"{"delay":{"fixed_delay":"1"}}"#,
                "delay.fixed_delay: `1` is not a duration",
            ),
            (
                r#"{"delay":{"fixed_delay":"0s"}}"#,
                "delay.fixed_delay: must be more than 0",
            ),
            (
                r#"{"delay":{"percentage":5}}"#,
                "missing field `fixed_delay`",
            ),
            (
                r#"{"rules":[{"name":"a"}]}"#,
                "rules[0]: set `abort`, `delay` or both",
            ),
            (
                r#"{"rules":[{"name":"","abort":{"http_status":503}}]}"#,
                "rules[0].name",
            ),
            (
                r#"{"rules":[{"name":"a","abort":{"http_status":503}},{"name":"a","abort":{"http_status":503}}]}"#,
                "rules[1].name: duplicate",
            ),
            (
                r#"{"rules":[{"name":"a","match":{"path":{"regex":"("}},"abort":{"http_status":503}}]}"#,
                "rules[0].match.path.regex",
            ),
            (
                r#"{"header_faults":true,"max_active_faults":0}"#,
                "max_active_faults: must be at least 1",
            ),
            (r#"{"header_faults":true,"seed":-1}"#, "seed"),
            (
                r#"{"header_faults":true,"abrot":{}}"#,
                "unknown field `abrot`",
            ),
        ];
        for (json, want) in cases {
            let err = build_err(json);
            assert!(err.contains(want), "{json}\n  got: {err}\n  want: {want}");
        }
    }
}
