//! Trace-context propagation: W3C `traceparent`/`tracestate` and B3 (single `b3`
//! header and the `x-b3-*` set).
//!
//! The filter reports no spans itself (Envoy's native tracer does, when the
//! generator configures one), so it never invents a span for a context that came
//! in: a valid incoming context is kept as it is, and is copied into the configured
//! formats that are missing, so that an app speaking only B3 and one speaking only
//! W3C continue the same trace. Only a request with no valid context gets a new
//! one (random ids), sampled per the incoming sampling-only header (`b3: 0`,
//! `x-b3-sampled`) if any, else per `samplingPercent`. Existing valid headers are
//! never rewritten: the sampling decision that came in is the one that travels on.
//! `tracestate` is left alone, except that a trace this filter starts drops a
//! stray one (W3C: no state without a valid parent). `x-request-id` is kept, and
//! added when missing.

use wasmesh_sdk::rand::Rng;
use wasmesh_sdk::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    W3c,
    B3,
    B3Multi,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "w3c" => Some(Format::W3c),
            "b3" => Some(Format::B3),
            "b3multi" => Some(Format::B3Multi),
            _ => None,
        }
    }
}

/// Validated tracing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    pub sampling_percent: f64,
    pub formats: Vec<Format>,
    pub request_id: bool,
}

/// A trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub trace_id: u128,
    /// B3 allows 64-bit trace ids: kept short in B3, zero-padded in W3C.
    pub short_trace_id: bool,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub sampled: Option<bool>,
    pub debug: bool,
}

impl Context {
    pub fn trace_id_hex(&self) -> String {
        if self.short_trace_id {
            hex(self.trace_id, 16)
        } else {
            hex(self.trace_id, 32)
        }
    }

    fn flag(&self) -> &'static str {
        match (self.debug, self.sampled) {
            (true, _) => "d",
            (false, Some(false)) => "0",
            _ => "1",
        }
    }
}

/// What the filter did, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Trace id as hex (32 digits, or 16 for a 64-bit B3 id).
    pub trace_id: String,
    pub sampled: bool,
    /// Whether this filter started the trace.
    pub created: bool,
}

fn hex_u128(s: &str, len: usize) -> Option<u128> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
}

fn hex_u64(s: &str) -> Option<u64> {
    hex_u128(s, 16)
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v != 0)
}

/// A trace id of 16 or 32 hex digits, not all zero.
fn trace_id(s: &str) -> Option<(u128, bool)> {
    let short = s.len() == 16;
    let id = hex_u128(s, if short { 16 } else { 32 })?;
    (id != 0).then_some((id, short))
}

/// `traceparent`: `VERSION-TRACEID-SPANID-FLAGS`, lower-case hex.
pub fn parse_traceparent(v: &str) -> Option<Context> {
    let v = v.trim();
    if v.len() < 55 || v.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let version = v.get(0..2)?;
    if version == "ff" || hex_u128(version, 2).is_none() {
        return None;
    }
    // Version 00 is exactly 55 bytes; later versions may append `-...` fields.
    if (version == "00" && v.len() != 55) || (v.len() > 55 && v.as_bytes()[55] != b'-') {
        return None;
    }
    let mut parts = v[..55].split('-');
    let (_, t, s, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let trace = hex_u128(t, 32).filter(|t| *t != 0)?;
    let span = hex_u64(s)?;
    let flags = u8::try_from(hex_u128(f, 2)?).ok()?;
    Some(Context {
        trace_id: trace,
        short_trace_id: false,
        span_id: span,
        parent_span_id: None,
        sampled: Some(flags & 1 == 1),
        debug: false,
    })
}

/// The B3 single header: a context, or `Err(decision)` for a sampling-only value.
pub fn parse_b3(v: &str) -> Option<Result<Context, bool>> {
    let v = v.trim();
    let sampling = |s: &str| match s {
        "1" => Some((Some(true), false)),
        "0" => Some((Some(false), false)),
        "d" => Some((Some(true), true)),
        _ => None,
    };
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() == 1 {
        let (decision, _) = sampling(parts[0])?;
        return decision.map(Err);
    }
    if parts.len() > 4 {
        return None;
    }
    let (trace, short) = trace_id(parts[0])?;
    let span = hex_u64(parts[1])?;
    let (sampled, debug) = match parts.get(2) {
        Some(s) => sampling(s)?,
        None => (None, false),
    };
    let parent = match parts.get(3) {
        Some(p) => Some(hex_u64(p)?),
        None => None,
    };
    Some(Ok(Context {
        trace_id: trace,
        short_trace_id: short,
        span_id: span,
        parent_span_id: parent,
        sampled,
        debug,
    }))
}

fn b3_sampled(headers: &HeaderMap) -> (Option<bool>, bool) {
    let debug = headers.get("x-b3-flags").is_some_and(|f| f.trim() == "1");
    let sampled = match headers.get("x-b3-sampled").map(str::trim) {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    };
    (if debug { Some(true) } else { sampled }, debug)
}

/// The `x-b3-*` set: needs trace and span ids.
pub fn parse_b3_multi(headers: &HeaderMap) -> Option<Context> {
    let (trace, short) = trace_id(headers.get("x-b3-traceid")?.trim())?;
    let span = hex_u64(headers.get("x-b3-spanid")?.trim())?;
    let parent = headers
        .get("x-b3-parentspanid")
        .and_then(|p| hex_u64(p.trim()));
    let (sampled, debug) = b3_sampled(headers);
    Some(Context {
        trace_id: trace,
        short_trace_id: short,
        span_id: span,
        parent_span_id: parent,
        sampled,
        debug,
    })
}

/// The trace id `headers` carry, as hex, in [`Tracing::apply`]'s precedence
/// (`traceparent`, `b3`, `x-b3-*`). The access log's `trace_id` when this filter's own
/// tracing is off: by the end of the stream the request headers hold the context
/// Envoy's tracer wrote into the upstream request.
pub fn carried_trace_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(parse_traceparent)
        .or_else(|| headers.get("b3").and_then(parse_b3).and_then(Result::ok))
        .or_else(|| parse_b3_multi(headers))
        .map(|ctx| ctx.trace_id_hex())
}

impl Tracing {
    /// Reads the incoming context, creates one if needed, and writes the missing
    /// formats into `headers`.
    pub fn apply(&self, headers: &mut HeaderMap, rng: &mut Rng) -> Outcome {
        let w3c = headers.get("traceparent").and_then(parse_traceparent);
        let b3 = headers.get("b3").and_then(parse_b3);
        let multi = parse_b3_multi(headers);
        let b3_ctx = b3.and_then(Result::ok);
        // A sampling-only signal: `b3: 0|1|d`, or `x-b3-sampled`/`x-b3-flags` alone.
        let decision = b3
            .and_then(Result::err)
            .or_else(|| multi.is_none().then(|| b3_sampled(headers).0).flatten());

        let (mut ctx, created) = match w3c.or(b3_ctx).or(multi) {
            Some(ctx) => (ctx, false),
            None => {
                let trace_id = loop {
                    let id = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
                    if id != 0 {
                        break id;
                    }
                };
                let span_id = loop {
                    let id = rng.next_u64();
                    if id != 0 {
                        break id;
                    }
                };
                let sampled = decision.unwrap_or_else(|| rng.chance(self.sampling_percent));
                let ctx = Context {
                    trace_id,
                    short_trace_id: false,
                    span_id,
                    parent_span_id: None,
                    sampled: Some(sampled),
                    debug: false,
                };
                (ctx, true)
            }
        };
        if ctx.sampled.is_none() {
            // Deferred upstream: decide for the headers we add, keep theirs as they are.
            ctx.sampled = Some(decision.unwrap_or_else(|| rng.chance(self.sampling_percent)));
        }
        if created && w3c.is_none() {
            headers.remove("tracestate");
        }
        let trace_hex = ctx.trace_id_hex();
        for format in &self.formats {
            match format {
                Format::W3c if w3c.is_none() => {
                    let flags = if ctx.sampled == Some(true) {
                        "01"
                    } else {
                        "00"
                    };
                    let mut v = String::with_capacity(55);
                    v.push_str("00-");
                    push_hex(&mut v, ctx.trace_id, 32);
                    v.push('-');
                    push_hex(&mut v, u128::from(ctx.span_id), 16);
                    v.push('-');
                    v.push_str(flags);
                    headers.set("traceparent", &v);
                }
                Format::B3 if b3_ctx.is_none() => {
                    let mut v = String::with_capacity(68);
                    v.push_str(&trace_hex);
                    v.push('-');
                    push_hex(&mut v, u128::from(ctx.span_id), 16);
                    v.push('-');
                    v.push_str(ctx.flag());
                    if let Some(p) = ctx.parent_span_id {
                        v.push('-');
                        push_hex(&mut v, u128::from(p), 16);
                    }
                    headers.set("b3", &v);
                }
                Format::B3Multi if multi.is_none() => {
                    headers.set("x-b3-traceid", &trace_hex);
                    headers.set("x-b3-spanid", &hex(u128::from(ctx.span_id), 16));
                    match ctx.parent_span_id {
                        Some(p) => headers.set("x-b3-parentspanid", &hex(u128::from(p), 16)),
                        None => headers.remove("x-b3-parentspanid"),
                    }
                    if ctx.debug {
                        headers.set("x-b3-flags", "1");
                    }
                    headers.set(
                        "x-b3-sampled",
                        if ctx.sampled == Some(false) { "0" } else { "1" },
                    );
                }
                _ => {}
            }
        }
        if self.request_id && !headers.contains("x-request-id") {
            headers.set("x-request-id", &uuid_v4(rng));
        }
        Outcome {
            trace_id: trace_hex,
            sampled: ctx.sampled == Some(true),
            created,
        }
    }
}

/// A random (version 4) UUID.
pub fn uuid_v4(rng: &mut Rng) -> String {
    let hi = (rng.next_u64() & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (rng.next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut id = String::with_capacity(36);
    for (value, digits) in [
        (hi >> 32, 8),
        ((hi >> 16) & 0xffff, 4),
        (hi & 0xffff, 4),
        (lo >> 48, 4),
        (lo & 0xffff_ffff_ffff, 12),
    ] {
        if !id.is_empty() {
            id.push('-');
        }
        push_hex(&mut id, u128::from(value), digits);
    }
    id
}

/// `value`'s low `digits` (at most 32) hex digits, zero-padded, lower case. The hot
/// path writes several ids per request: digits go into a stack buffer from 64-bit
/// halves (a u128 shift per digit is a libcall in wasm) and reach the string at once.
fn push_hex(out: &mut String, value: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = digits.min(32) as usize;
    let mut buf = [0u8; 32];
    let halves = [value as u64, (value >> 64) as u64];
    for (i, slot) in buf.iter_mut().rev().take(digits).enumerate() {
        let word = halves[i / 16] >> ((i % 16) * 4);
        *slot = HEX[(word & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    out.push_str(std::str::from_utf8(&buf[32 - digits..]).unwrap_or_default());
}

fn hex(value: u128, digits: u32) -> String {
    let mut out = String::with_capacity(digits as usize);
    push_hex(&mut out, value, digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn hex_matches_format() {
        for v in [
            0u128,
            1,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            0x4bf9_2f35_77b3_4da6,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(hex(v, 32), format!("{v:032x}"));
            assert_eq!(hex(v, 16), format!("{:016x}", v as u64));
            assert_eq!(hex(v, 20), format!("{:020x}", v & ((1 << 80) - 1)));
            assert_eq!(hex(v, 12), format!("{:012x}", v as u64 & 0xffff_ffff_ffff));
            assert_eq!(hex(v, 4), format!("{:04x}", v as u16));
        }
        let mut rng = Rng::from_seed(7);
        let id = uuid_v4(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4', "version 4: {id}");
    }

    fn all() -> Tracing {
        Tracing {
            sampling_percent: 100.0,
            formats: vec![Format::W3c, Format::B3, Format::B3Multi],
            request_id: true,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn traceparent_validation() {
        let ctx = parse_traceparent(TP).unwrap();
        assert_eq!(ctx.span_id, 0x00f0_67aa_0ba9_02b7);
        assert_eq!(ctx.sampled, Some(true));
        assert!(
            parse_traceparent(&TP.replace("-01", "-00"))
                .unwrap()
                .sampled
                == Some(false)
        );
        assert!(parse_traceparent(&TP.to_uppercase()).is_none());
        assert!(parse_traceparent(&TP.replace("00-4b", "ff-4b")).is_none());
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent(&format!("{TP}-x")).is_none(),
            "v00 is exactly 55 bytes"
        );
        assert!(parse_traceparent(&format!("01{}-future", &TP[2..])).is_some());
    }

    #[test]
    fn w3c_incoming_is_kept_and_copied_to_b3() {
        let mut h = headers(&[
            ("traceparent", TP),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-request-id", "abc"),
        ]);
        let out = all().apply(&mut h, &mut Rng::from_seed(1));
        assert!(!out.created);
        assert_eq!(out.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h.get("traceparent"), Some(TP));
        assert_eq!(h.get("tracestate"), Some("congo=t61rcWkgMzE"));
        assert_eq!(
            h.get("b3"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1")
        );
        assert_eq!(
            h.get("x-b3-traceid"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(h.get("x-b3-spanid"), Some("00f067aa0ba902b7"));
        assert_eq!(h.get("x-b3-sampled"), Some("1"));
        assert_eq!(h.get("x-request-id"), Some("abc"));
        assert!(!h.ops().iter().any(
            |op| matches!(op, wasmesh_sdk::headers::HeaderOp::Set(k, _) if k == "traceparent")
        ));
    }

    #[test]
    fn b3_single_with_debug_and_parent() {
        let mut h = headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90",
        )]);
        let out = all().apply(&mut h, &mut Rng::from_seed(1));
        assert!(out.sampled);
        assert_eq!(
            h.get("traceparent"),
            Some("00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01")
        );
        assert_eq!(h.get("x-b3-flags"), Some("1"));
        assert_eq!(h.get("x-b3-parentspanid"), Some("05e3ac9a4f6e3b90"));
    }

    #[test]
    fn b3_multi_unsampled_stays_unsampled_and_short_ids_pad_for_w3c() {
        let mut h = headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "0"),
        ]);
        let out = all().apply(&mut h, &mut Rng::from_seed(1));
        assert!(!out.sampled);
        assert_eq!(
            h.get("traceparent"),
            Some("00-0000000000000000a3ce929d0e0e4736-00f067aa0ba902b7-00")
        );
        assert_eq!(h.get("b3"), Some("a3ce929d0e0e4736-00f067aa0ba902b7-0"));
    }

    #[test]
    fn none_incoming_creates_one_context_in_every_format() {
        let mut h = headers(&[("tracestate", "stray=1")]);
        let out = all().apply(&mut h, &mut Rng::from_seed(7));
        assert!(out.created && out.sampled);
        assert_eq!(out.trace_id.len(), 32);
        let tp = parse_traceparent(h.get("traceparent").unwrap()).unwrap();
        assert_eq!(format!("{:032x}", tp.trace_id), out.trace_id);
        assert_eq!(h.get("x-b3-traceid"), Some(out.trace_id.as_str()));
        assert!(h.get("b3").unwrap().starts_with(&out.trace_id));
        assert_eq!(h.get("tracestate"), None);
        let rid = h.get("x-request-id").unwrap();
        assert_eq!(rid.len(), 36);
        assert_eq!(&rid[14..15], "4");
    }

    #[test]
    fn sampling_only_decision_is_respected_for_new_contexts() {
        let mut h = headers(&[("b3", "0")]);
        let out = all().apply(&mut h, &mut Rng::from_seed(3));
        assert!(out.created && !out.sampled);
        assert!(h.get("traceparent").unwrap().ends_with("-00"));
        assert_eq!(h.get("x-b3-sampled"), Some("0"));
        let mut never = all();
        never.sampling_percent = 0.0;
        let mut h = headers(&[]);
        assert!(!never.apply(&mut h, &mut Rng::from_seed(3)).sampled);
    }

    #[test]
    fn invalid_traceparent_is_replaced() {
        let mut h = headers(&[("traceparent", "garbage")]);
        let out = all().apply(&mut h, &mut Rng::from_seed(5));
        assert!(out.created);
        assert!(parse_traceparent(h.get("traceparent").unwrap()).is_some());
    }

    #[test]
    fn the_carried_trace_id_follows_the_precedence_of_apply() {
        let map = |pairs: &[(&str, &str)]| {
            HeaderMap::from_pairs(
                pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let multi = [
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ];
        let b3 = ("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-1");
        assert_eq!(
            carried_trace_id(&map(&multi)).as_deref(),
            Some("80f198ee56343ba864fe8b2a57d3eff7")
        );
        let mut with_b3 = multi.to_vec();
        with_b3.push(b3);
        assert_eq!(
            carried_trace_id(&map(&with_b3)).as_deref(),
            Some("a3ce929d0e0e4736")
        );
        with_b3.push(("traceparent", TP));
        assert_eq!(
            carried_trace_id(&map(&with_b3)).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // Malformed contexts carry nothing.
        assert_eq!(
            carried_trace_id(&map(&[("traceparent", "00-zz"), ("b3", "1")])),
            None
        );
    }

    #[test]
    fn only_configured_formats_are_written() {
        let t = Tracing {
            formats: vec![Format::W3c],
            ..all()
        };
        let mut h = headers(&[]);
        t.apply(&mut h, &mut Rng::from_seed(5));
        assert!(h.contains("traceparent"));
        assert!(!h.contains("b3") && !h.contains("x-b3-traceid"));
    }
}
