//! wasmesh-bench-hostcost: a proxy-wasm filter that makes N host calls of one kind in
//! each request's header phase. The rig (`wasmesh-bench --host-costs`) compares it
//! with the do-nothing filter to price each kind of call in Envoy.
//!
//! Plugin configuration: `KIND,N`, with KIND one of [`Kind::ALL`]'s names.

// The filter is wasm-only; natively the crate is the list of kinds the rig reads.
#[cfg(target_arch = "wasm32")]
mod filter;

/// The kinds of host call measured; [`Kind::hands_data_back`] tells which make the
/// host also call the guest's allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Property,
    HeaderValue,
    HeaderMap,
    SharedGet,
    SetHeader,
    Counter,
    Histogram,
    LogLevel,
    /// One `expr_evaluate` of a CEL list of [`BATCH`]'s six attributes: what fetching
    /// six properties in one call costs, against six `property` calls (tried for
    /// telemetry's end-of-stream reads and reverted: docs/benchmarks.md).
    Expr6,
    /// The same six attributes unguarded (`[a.b, ...]`): what the guards cost.
    Expr6Plain,
    /// One guarded attribute: the fixed cost of an evaluation.
    Expr1,
    /// Envoy's `clear_route_cache` foreign function (the route is matched again).
    ClearRoute,
    /// One ES256 check by Envoy's `verify_signature` (BoringSSL), as authz makes for a
    /// token it has not cached.
    VerifyEs256,
    /// The same check in the guest with RustCrypto's `p256`, as authz made before.
    Es256InWasm,
    /// One RS256 check (2048-bit key) by Envoy's `verify_signature`.
    VerifyRs256,
    /// The same check in the guest with RustCrypto's `rsa`, as authz made before.
    Rs256InWasm,
    /// Six header writes, one call each (`set_map_value`), as telemetry writes a new
    /// request's trace headers: what [`Kind::MapReplace6`] is priced against.
    SetHeader6,
    /// The same six headers written in one call: the request's header map, fetched
    /// once per request, plus the six, through `set_map` (which replaces the map).
    MapReplace6,
}

/// The attributes `expr-6` reads, all bound in the request phase, each guarded with
/// `has()` so that an unset one cannot fail the whole evaluation.
pub const BATCH: &str = "[has(source.address) ? [source.address] : [], \
    has(source.port) ? [source.port] : [], \
    has(destination.address) ? [destination.address] : [], \
    has(destination.port) ? [destination.port] : [], \
    has(request.total_size) ? [request.total_size] : [], \
    has(connection.mtls) ? [connection.mtls] : []]";

/// [`BATCH`] without the guards: fails whole if one attribute is missing.
pub const BATCH_PLAIN: &str = "[source.address, source.port, destination.address, \
    destination.port, request.total_size, connection.mtls]";

impl Kind {
    pub const ALL: [(&'static str, Kind); 18] = [
        ("property", Kind::Property),
        ("header-value", Kind::HeaderValue),
        ("header-map", Kind::HeaderMap),
        ("shared-get", Kind::SharedGet),
        ("set-header", Kind::SetHeader),
        ("counter", Kind::Counter),
        ("histogram", Kind::Histogram),
        ("log-level", Kind::LogLevel),
        ("expr-6", Kind::Expr6),
        ("expr-6-plain", Kind::Expr6Plain),
        ("expr-1", Kind::Expr1),
        ("clear-route", Kind::ClearRoute),
        ("verify-es256", Kind::VerifyEs256),
        ("es256-in-wasm", Kind::Es256InWasm),
        ("verify-rs256", Kind::VerifyRs256),
        ("rs256-in-wasm", Kind::Rs256InWasm),
        ("set-header-6", Kind::SetHeader6),
        ("map-replace-6", Kind::MapReplace6),
    ];

    /// Whether the host hands the guest data back, which makes it call the guest's
    /// allocator: a second crossing, host to guest.
    pub fn hands_data_back(self) -> bool {
        matches!(
            self,
            Kind::Property
                | Kind::HeaderValue
                | Kind::HeaderMap
                | Kind::SharedGet
                | Kind::Expr6
                | Kind::Expr6Plain
                | Kind::Expr1
                | Kind::VerifyEs256
                | Kind::VerifyRs256
        )
    }
}
