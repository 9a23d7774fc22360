//! The wire form of `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`:
//! the request is encoded and the response decoded by hand, in plain Rust, so the
//! filter carries no protobuf runtime (and builds for wasm32-wasip1 as it is).
//!
//! Only the fields the filter uses are written or read; every other field of the
//! response is skipped by its wire type, as protobuf requires of unknown fields. The
//! decoder works on untrusted bytes: every length is checked, nothing panics, and a
//! malformed message is an error the caller treats as a failed call.

/// `RateLimitRequest` (fields 1 domain, 2 descriptors, 3 hits_addend).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitRequest {
    pub domain: String,
    /// Each descriptor is its entries, `(key, value)`, in order.
    pub descriptors: Vec<Vec<(String, String)>>,
    pub hits_addend: u32,
}

/// `RateLimitResponse.Code` and `DescriptorStatus.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Code {
    #[default]
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    fn from_wire(v: u64) -> Self {
        match v {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// `DescriptorStatus`: the fields the draft-03 headers need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescriptorStatus {
    pub code: Code,
    /// `current_limit.requests_per_unit`, when the service sent a limit.
    pub limit: Option<u32>,
    /// `current_limit.unit` (1 second ... 7 week), 0 when absent.
    pub unit: u32,
    pub limit_remaining: u32,
    /// `duration_until_reset` in whole seconds, rounded up.
    pub reset_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitResponse {
    pub overall_code: Code,
    pub statuses: Vec<DescriptorStatus>,
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

// ---- encoding ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

impl RateLimitRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.domain.is_empty() {
            put_bytes(&mut out, 1, self.domain.as_bytes());
        }
        for descriptor in &self.descriptors {
            let mut d = Vec::new();
            for (key, value) in descriptor {
                let mut e = Vec::new();
                put_bytes(&mut e, 1, key.as_bytes());
                put_bytes(&mut e, 2, value.as_bytes());
                put_bytes(&mut d, 1, &e);
            }
            put_bytes(&mut out, 2, &d);
        }
        if self.hits_addend != 0 {
            put_varint(&mut out, 3 << 3);
            put_varint(&mut out, u64::from(self.hits_addend));
        }
        out
    }
}

impl Code {
    fn to_wire(self) -> u64 {
        match self {
            Code::Unknown => 0,
            Code::Ok => 1,
            Code::OverLimit => 2,
        }
    }
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_varint(out, u64::from(field << 3));
        put_varint(out, v);
    }
}

/// The service's side: tests and the `wasmesh ratelimit-server` answer with these.
impl RateLimitResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint_field(&mut out, 1, self.overall_code.to_wire());
        for s in &self.statuses {
            let mut st = Vec::new();
            put_varint_field(&mut st, 1, s.code.to_wire());
            if let Some(limit) = s.limit {
                let mut l = Vec::new();
                put_varint_field(&mut l, 1, u64::from(limit));
                put_varint_field(&mut l, 2, u64::from(s.unit));
                put_bytes(&mut st, 2, &l);
            }
            put_varint_field(&mut st, 3, u64::from(s.limit_remaining));
            if let Some(reset) = s.reset_s {
                let mut d = Vec::new();
                put_varint_field(&mut d, 1, reset);
                put_bytes(&mut st, 4, &d);
            }
            put_bytes(&mut out, 2, &st);
        }
        out
    }
}

impl RateLimitRequest {
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut req = RateLimitRequest::default();
        let mut r = fields(buf);
        while let Some(field) = r.next() {
            match field? {
                (1, Value::Bytes(b)) => req.domain = utf8(b)?,
                (2, Value::Bytes(b)) => {
                    let mut entries = Vec::new();
                    let mut d = fields(b);
                    while let Some(f) = d.next() {
                        if let (1, Value::Bytes(e)) = f? {
                            let (mut key, mut value) = (String::new(), String::new());
                            let mut er = fields(e);
                            while let Some(f) = er.next() {
                                match f? {
                                    (1, Value::Bytes(k)) => key = utf8(k)?,
                                    (2, Value::Bytes(v)) => value = utf8(v)?,
                                    _ => {}
                                }
                            }
                            entries.push((key, value));
                        }
                    }
                    req.descriptors.push(entries);
                }
                (3, Value::Varint(v)) => req.hits_addend = v as u32,
                (1..=3, _) => return Err(DecodeError("request field has the wrong wire type")),
                _ => {}
            }
        }
        Ok(req)
    }
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
}

// ---- decoding ----

/// One field of a message: its number and its value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width values (wire types 1 and 5): skipped, never used here.
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError("length too large"))?;
        if n > self.buf.len() {
            return Err(DecodeError("length past the end"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Option<Result<(u64, Value<'a>), DecodeError>> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.field())
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), DecodeError> {
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 {
            return Err(DecodeError("field number 0"));
        }
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok((number, value))
    }
}

fn fields(buf: &[u8]) -> Reader<'_> {
    Reader { buf }
}

impl RateLimitResponse {
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut resp = RateLimitResponse::default();
        let mut r = fields(buf);
        while let Some(field) = r.next() {
            match field? {
                (1, Value::Varint(v)) => resp.overall_code = Code::from_wire(v),
                (2, Value::Bytes(b)) => resp.statuses.push(DescriptorStatus::decode(b)?),
                (1 | 2, _) => return Err(DecodeError("field 1 or 2 has the wrong wire type")),
                _ => {}
            }
        }
        Ok(resp)
    }
}

impl DescriptorStatus {
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut s = DescriptorStatus::default();
        let mut r = fields(buf);
        while let Some(field) = r.next() {
            match field? {
                (1, Value::Varint(v)) => s.code = Code::from_wire(v),
                (2, Value::Bytes(b)) => {
                    let mut limit = fields(b);
                    let mut per_unit = 0u32;
                    while let Some(f) = limit.next() {
                        match f? {
                            (1, Value::Varint(v)) => per_unit = v as u32,
                            (2, Value::Varint(v)) => s.unit = v as u32,
                            _ => {}
                        }
                    }
                    s.limit = Some(per_unit);
                }
                (3, Value::Varint(v)) => s.limit_remaining = v as u32,
                (4, Value::Bytes(b)) => s.reset_s = Some(duration_seconds_ceil(b)?),
                (1..=4, _) => return Err(DecodeError("status field has the wrong wire type")),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// A `google.protobuf.Duration` (1 seconds, 2 nanos) in whole seconds, rounded up;
/// negative durations count as zero.
fn duration_seconds_ceil(buf: &[u8]) -> Result<u64, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut r = fields(buf);
    while let Some(f) = r.next() {
        match f? {
            (1, Value::Varint(v)) => seconds = v as i64,
            (2, Value::Varint(v)) => nanos = i64::from(v as i32),
            _ => {}
        }
    }
    let seconds = u64::try_from(seconds).unwrap_or(0);
    Ok(if nanos > 0 {
        seconds.saturating_add(1)
    } else {
        seconds
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encodes_as_protobuf_does() {
        let req = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![vec![("k".into(), "v".into())]],
            hits_addend: 1,
        };
        // domain "d"; descriptor { entry { key "k", value "v" } }; hits_addend 1.
        let want = [
            0x0a, 1, b'd', 0x12, 8, 0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 1,
        ];
        assert_eq!(req.encode(), want);
    }

    #[test]
    fn empty_values_still_encode_their_entry() {
        let req = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![vec![("k".into(), String::new())]],
            hits_addend: 0,
        };
        assert_eq!(
            req.encode(),
            [0x0a, 1, b'd', 0x12, 7, 0x0a, 5, 0x0a, 1, b'k', 0x12, 0]
        );
    }

    #[test]
    fn long_lengths_use_multi_byte_varints() {
        let req = RateLimitRequest {
            domain: "x".repeat(300),
            ..Default::default()
        };
        let out = req.encode();
        assert_eq!(&out[..3], [0x0a, 0xac, 0x02]);
        assert_eq!(out.len(), 303);
    }

    /// Builds a response by hand: overall code, one status with every field, and an
    /// unknown field of each wire type, which must be skipped.
    fn sample_response() -> Vec<u8> {
        let mut status = Vec::new();
        status.extend([0x08, 2]); // code OVER_LIMIT
        let limit = [0x08, 10, 0x10, 2, 0x1a, 1, b'n']; // 10 per minute, name "n"
        status.push(0x12);
        status.push(limit.len() as u8);
        status.extend(limit);
        status.extend([0x18, 0]); // limit_remaining 0
        let reset = [0x08, 41, 0x10, 5]; // 41 s + 5 ns
        status.push(0x22);
        status.push(reset.len() as u8);
        status.extend(reset);
        let mut out = vec![0x08, 2]; // overall OVER_LIMIT
        out.push(0x12);
        out.push(status.len() as u8);
        out.extend(status);
        out.extend([0x1a, 2, 0xff, 0xff]); // response_headers_to_add: skipped
        out.extend([0x45, 1, 2, 3, 4]); // field 8, fixed32: skipped
        out.extend([0x49, 1, 2, 3, 4, 5, 6, 7, 8]); // field 9, fixed64: skipped
        out
    }

    #[test]
    fn response_decodes_with_unknown_fields_skipped() {
        let resp = RateLimitResponse::decode(&sample_response()).unwrap();
        assert_eq!(resp.overall_code, Code::OverLimit);
        assert_eq!(
            resp.statuses,
            [DescriptorStatus {
                code: Code::OverLimit,
                limit: Some(10),
                unit: 2,
                limit_remaining: 0,
                reset_s: Some(42),
            }]
        );
    }

    #[test]
    fn empty_response_is_unknown() {
        let resp = RateLimitResponse::decode(&[]).unwrap();
        assert_eq!(resp.overall_code, Code::Unknown);
        assert!(resp.statuses.is_empty());
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        let cases: [&[u8]; 7] = [
            &[0x08],             // varint missing
            &[0x12, 5, 1],       // length past the end
            &[0x0b],             // wire type 3 (group)
            &[0x00, 1],          // field 0
            &[0x08; 11],         // varint never ends
            &[0x0a, 1, 1],       // overall_code as bytes
            &[0x12, 2, 0x22, 9], // nested duration past the end
        ];
        for bytes in cases {
            assert!(RateLimitResponse::decode(bytes).is_err(), "{bytes:?}");
        }
        // Every prefix of a valid message either decodes or errors; none panics.
        let full = sample_response();
        for n in 0..full.len() {
            let _ = RateLimitResponse::decode(&full[..n]);
        }
    }

    #[test]
    fn both_messages_round_trip() {
        let req = RateLimitRequest {
            domain: "mesh".into(),
            descriptors: vec![
                vec![
                    ("generic_key".into(), "api".into()),
                    ("remote_address".into(), "10.0.0.1".into()),
                ],
                vec![("generic_key".into(), "all".into())],
            ],
            hits_addend: 1,
        };
        assert_eq!(RateLimitRequest::decode(&req.encode()).unwrap(), req);
        let resp = RateLimitResponse::decode(&sample_response()).unwrap();
        assert_eq!(RateLimitResponse::decode(&resp.encode()).unwrap(), resp);
    }

    #[test]
    fn negative_duration_is_zero() {
        // seconds = -1 as a ten-byte varint.
        let mut d = vec![0x08];
        d.extend([0xff; 9]);
        d.push(0x01);
        assert_eq!(duration_seconds_ceil(&d).unwrap(), 0);
    }
}
