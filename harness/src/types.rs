//! Plain data the tests read and write: ABI enums, header maps, property values and the
//! records of what a filter did (local responses, callouts, metrics, logs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Proxy-Wasm status codes (`WasmResult` in Envoy), as returned by host calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    BadExpression = 5,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    ResultMismatch = 9,
    InternalFailure = 10,
    BrokenConnection = 11,
    Unimplemented = 12,
}

/// What a filter callback asked the host to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Continue,
    /// Stop iteration (and, for bodies, buffer): the filter resumes the stream later.
    Pause,
}

impl Action {
    pub(crate) fn from_raw(raw: u32) -> Action {
        if raw == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// Log levels of `proxy_log` (spdlog's order, as Envoy uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl Level {
    pub(crate) fn from_raw(raw: u32) -> Option<Level> {
        Some(match raw {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            5 => Level::Critical,
            _ => return None,
        })
    }
}

/// One `proxy_log` call (or a line the guest wrote to stdout/stderr through WASI, which
/// Envoy logs at info/error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: Level,
    pub worker: usize,
    /// The context the callback ran for (root or stream), 0 during `_initialize`.
    pub context_id: u32,
    pub message: String,
}

/// An HTTP header map as Envoy keeps it: ordered, keys lower-cased, duplicates allowed.
/// Values are bytes, as in Envoy: its HTTP/1 codec lets obs-text (0x80-0xFF) through, so
/// a filter can be handed a value that is not UTF-8. The `&str` accessors show only the
/// values that are UTF-8 (every value a test passes as a string); the `_bytes` ones show all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap(pub(crate) Vec<(String, Vec<u8>)>);

impl HeaderMap {
    /// Builds a map from pairs, lower-casing keys like Envoy's codecs do. Values may be
    /// strings or raw bytes.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> HeaderMap {
        HeaderMap(
            pairs
                .iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_vec()))
                .collect(),
        )
    }
    /// First value of a header (case-insensitive), as `proxy_get_header_map_value` returns;
    /// None also when that value is not UTF-8 (see [`HeaderMap::get_bytes`]).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    /// First value of a header (case-insensitive), whatever its bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    /// Every UTF-8 value of a header, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect()
    }
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Every entry, values as bytes.
    pub fn pairs(&self) -> &[(String, Vec<u8>)] {
        &self.0
    }
    /// The entries whose value is UTF-8, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), std::str::from_utf8(v).ok()?)))
    }
    /// Sum of key and value lengths: what Envoy's `get_header_map_size` reports.
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
    pub(crate) fn add(&mut self, key: &str, value: &[u8]) {
        self.0.push((key.to_ascii_lowercase(), value.to_vec()));
    }
    pub(crate) fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
    }
    /// Removes every value and appends the new one at the end: what Envoy 1.40's
    /// `replace_header_map_value` does (the conformance suite shows the upstream seeing the
    /// replaced header after the others).
    pub(crate) fn replace(&mut self, key: &str, value: &[u8]) {
        self.remove(key);
        self.add(key, value);
    }
}

/// Builds request headers with the pseudo-headers Envoy always presents:
/// `:method`, `:path`, `:authority` and `:scheme` (http).
pub fn request(method: &str, path: &str, authority: &str) -> Vec<(String, String)> {
    vec![
        (":method".into(), method.into()),
        (":path".into(), path.into()),
        (":authority".into(), authority.into()),
        (":scheme".into(), "http".into()),
    ]
}

/// Builds response headers carrying `:status`.
pub fn response(status: u16) -> Vec<(String, String)> {
    vec![(":status".into(), status.to_string())]
}

/// A `send_local_response` the filter made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    /// Headers the filter added (Envoy adds `:status`, content-type and length itself).
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Response code details, with whitespace replaced by `_` as Envoy does.
    pub details: String,
    /// gRPC status, if the filter passed one in 0..=16 (-1 means none).
    pub grpc_status: Option<u32>,
}

impl LocalResponse {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Kinds of `proxy_define_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// A metric's state, host-wide (summed across workers as Envoy's stats are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub kind: MetricKind,
    /// Counter or gauge value; for histograms, the number of recorded samples.
    pub value: u64,
    /// Recorded histogram samples, in order.
    pub samples: Vec<u64>,
}

/// State of an outgoing call the filter made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Pending,
    Answered,
    /// Failed by the test (a reset): delivered with zero headers.
    Failed,
    /// Its timeout passed on the manual clock: delivered as Envoy does, a 504 response
    /// with body `upstream request timeout`.
    TimedOut,
    /// The stream that made it finished first: Envoy cancels, nothing is delivered.
    Cancelled,
}

/// An `proxy_http_call` the filter made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub worker: usize,
    pub context_id: u32,
    pub cluster: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    /// None when the filter passed 0 (no timeout).
    pub timeout: Option<Duration>,
    pub state: CallState,
    pub(crate) deadline_ns: Option<u64>,
}

/// A gRPC call or stream the filter opened. A unary call is answered by the test
/// ([`crate::Host::respond_grpc_call`], [`crate::Host::fail_grpc_call`]) or times out
/// as the clock advances; streams are recorded only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    pub token: u32,
    pub worker: usize,
    pub context_id: u32,
    pub service: String,
    pub method: String,
    pub cluster: String,
    pub initial_metadata: HeaderMap,
    /// The unary request, or every message sent on a stream.
    pub messages: Vec<Vec<u8>>,
    pub streaming: bool,
    pub state: GrpcState,
    /// The unary call's timeout (none when the filter passed 0).
    pub timeout: Option<Duration>,
    pub(crate) deadline_ns: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcState {
    Open,
    Cancelled,
    Closed,
    /// A unary call answered with a message (`proxy_on_grpc_receive`).
    Answered,
    /// A unary call that ended with this non-OK status (`proxy_on_grpc_close`).
    Failed(u32),
    /// A unary call whose timeout passed: it failed with DEADLINE_EXCEEDED (4).
    TimedOut,
}

/// A `proxy_call_foreign_function` the filter made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCall {
    pub worker: usize,
    pub context_id: u32,
    pub name: String,
    pub args: Vec<u8>,
}

/// Something the host noticed that a test may want to assert: a trap, a host call misused
/// (e.g. `send_local_response` twice), a map read outside its phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub worker: usize,
    pub context_id: u32,
    pub message: String,
}

/// A property value, encoded the way Envoy serialises CEL values for `proxy_get_property`:
/// strings as raw bytes; integers, doubles and booleans as native little-endian bytes;
/// timestamps and durations as i64 nanoseconds; maps in the header-map wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyValue(pub Vec<u8>);

impl PropertyValue {
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        PropertyValue(b.into())
    }
    pub fn string(s: &str) -> Self {
        PropertyValue(s.as_bytes().to_vec())
    }
    pub fn int(i: i64) -> Self {
        PropertyValue(i.to_le_bytes().to_vec())
    }
    pub fn uint(u: u64) -> Self {
        PropertyValue(u.to_le_bytes().to_vec())
    }
    pub fn double(d: f64) -> Self {
        PropertyValue(d.to_le_bytes().to_vec())
    }
    pub fn bool(b: bool) -> Self {
        PropertyValue(vec![u8::from(b)])
    }
    pub fn duration(d: Duration) -> Self {
        Self::int(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
    pub fn timestamp(t: SystemTime) -> Self {
        let nanos = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        Self::int(nanos)
    }
    pub fn map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Self {
        PropertyValue(crate::abi::pairs::encode(
            pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
        ))
    }
}

impl From<&str> for PropertyValue {
    fn from(s: &str) -> Self {
        Self::string(s)
    }
}
impl From<String> for PropertyValue {
    fn from(s: String) -> Self {
        PropertyValue(s.into_bytes())
    }
}
impl From<&[u8]> for PropertyValue {
    fn from(b: &[u8]) -> Self {
        Self::bytes(b)
    }
}
impl From<Vec<u8>> for PropertyValue {
    fn from(b: Vec<u8>) -> Self {
        PropertyValue(b)
    }
}
impl From<i64> for PropertyValue {
    fn from(i: i64) -> Self {
        Self::int(i)
    }
}
impl From<u64> for PropertyValue {
    fn from(u: u64) -> Self {
        Self::uint(u)
    }
}
impl From<f64> for PropertyValue {
    fn from(d: f64) -> Self {
        Self::double(d)
    }
}
impl From<bool> for PropertyValue {
    fn from(b: bool) -> Self {
        Self::bool(b)
    }
}
impl From<Duration> for PropertyValue {
    fn from(d: Duration) -> Self {
        Self::duration(d)
    }
}
impl From<SystemTime> for PropertyValue {
    fn from(t: SystemTime) -> Self {
        Self::timestamp(t)
    }
}

/// Joins property path segments with NUL, the ABI's encoding.
pub(crate) fn property_key(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}
