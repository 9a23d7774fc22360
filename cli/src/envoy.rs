//! The subset of Envoy's v3 API the generator emits, as typed structs whose serde names
//! are the API's field names. A typo in a field is a compile error here instead of a
//! config Envoy refuses at start-up. `Any` fields are the internally tagged
//! [`TypedConfig`], whose tag is the `@type` URL.

use serde::Serialize;
use std::collections::BTreeMap;
use wasmesh_sdk::metrics::StatsTag;

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    pub node: Node,
    pub admin: Admin,
    #[serde(skip_serializing_if = "StaticResources::is_empty")]
    pub static_resources: StaticResources,
    /// Listeners and clusters from watched files instead ([`crate::xds_files`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_resources: Option<DynamicResources>,
    pub stats_config: StatsConfig,
    /// How often histograms are merged and become visible in `/stats/prometheus`.
    pub stats_flush_interval: String,
    /// Runtime flags; only bootstraps that load the native module set any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layered_runtime: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    pub cluster: String,
    /// Istio's node metadata keys (NAME, NAMESPACE, WORKLOAD_NAME, LABELS, ...): filters
    /// read the workload's identity from the `node.metadata` property.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub address: Address,
}

#[derive(Debug, Clone, Serialize)]
pub struct Address {
    pub socket_address: SocketAddress,
}

impl Address {
    pub fn new(address: &str, port: u16) -> Self {
        Self {
            socket_address: SocketAddress {
                address: address.to_string(),
                port_value: port,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SocketAddress {
    pub address: String,
    pub port_value: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaticResources {
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
}

impl StaticResources {
    fn is_empty(&self) -> bool {
        self.listeners.is_empty() && self.clusters.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DynamicResources {
    pub lds_config: ConfigSource,
    pub cds_config: ConfigSource,
}

/// A route configuration by name, from its own source (`rds`).
#[derive(Debug, Clone, Serialize)]
pub struct Rds {
    pub route_config_name: String,
    pub config_source: ConfigSource,
}

/// An HTTP filter's config from its own source (ECDS); the filter's name is the
/// resource's name.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionConfigSource {
    pub config_source: ConfigSource,
    pub type_urls: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsConfig {
    pub stats_tags: Vec<StatsTag>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub histogram_bucket_settings: Vec<HistogramBucketSettings>,
}

/// Istio's buckets come from the telemetry filter, which owns the metric names.
pub use wasmesh_telemetry::buckets::HistogramBucketSettings;

#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    pub name: String,
    pub address: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_filters: Vec<ListenerFilter>,
    pub filter_chains: Vec<FilterChain>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerFilter {
    pub name: String,
    pub typed_config: TypedConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterChain {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_chain_match: Option<FilterChainMatch>,
    pub filters: Vec<NetworkFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_socket: Option<TransportSocket>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterChainMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_protocol: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkFilter {
    pub name: String,
    pub typed_config: TypedConfig,
}

/// `google.protobuf.Any` payloads, tagged with their type URL.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "@type")]
pub enum TypedConfig {
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    )]
    HttpConnectionManager(Box<HttpConnectionManager>),
    #[serde(rename = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")]
    Wasm(Box<Wasm>),
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
    )]
    DynamicModuleFilter(Box<DynamicModuleFilter>),
    #[serde(rename = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router")]
    Router(Empty),
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
    )]
    TlsInspector(Empty),
    #[serde(rename = "type.googleapis.com/google.protobuf.StringValue")]
    StringValue { value: String },
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    )]
    DownstreamTlsContext(Box<DownstreamTlsContext>),
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    )]
    UpstreamTlsContext(Box<UpstreamTlsContext>),
    #[serde(rename = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig")]
    ZipkinConfig(ZipkinConfig),
    #[serde(rename = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig")]
    OpenTelemetryConfig(OpenTelemetryConfig),
    #[serde(rename = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions")]
    HttpProtocolOptions(HttpProtocolOptions),
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_config: Option<RouteConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rds: Option<Rds>,
    pub http_filters: Vec<HttpFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<HcmTracing>,
    /// Paths are normalised before routing and before filters match on them.
    pub normalize_path: bool,
    pub merge_slashes: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_client_cert_details: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_current_client_cert_details: Option<ClientCertDetails>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientCertDetails {
    pub uri: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HcmTracing {
    pub random_sampling: Percent,
    pub provider: TracingProvider,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percent {
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TracingProvider {
    pub name: String,
    pub typed_config: TypedConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct ZipkinConfig {
    pub collector_cluster: String,
    pub collector_endpoint: String,
    pub collector_endpoint_version: &'static str,
    pub collector_hostname: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenTelemetryConfig {
    pub grpc_service: GrpcService,
    pub service_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrpcService {
    pub envoy_grpc: EnvoyGrpc,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvoyGrpc {
    pub cluster_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpFilter {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typed_config: Option<TypedConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_discovery: Option<ExtensionConfigSource>,
}

impl HttpFilter {
    /// A filter whose config is inline.
    pub fn inline(name: impl Into<String>, typed_config: TypedConfig) -> Self {
        Self {
            name: name.into(),
            typed_config: Some(typed_config),
            config_discovery: None,
        }
    }
}

/// A stage of the native dynamic module (`libwasmesh_native.so`).
#[derive(Debug, Clone, Serialize)]
pub struct DynamicModuleFilter {
    pub dynamic_module_config: DynamicModuleConfig,
    /// The stage: `authz`, `fault`, `headers`, `ratelimit`, `telemetry` or `mesh`.
    pub filter_name: String,
    /// The stage's JSON config, as the Wasm filter takes it.
    pub filter_config: TypedConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct DynamicModuleConfig {
    /// Envoy loads `lib<name>.so` from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Wasm {
    pub config: PluginConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginConfig {
    pub name: String,
    pub root_id: String,
    pub vm_config: VmConfig,
    /// A StringValue, so the plugin receives exactly our JSON text.
    pub configuration: TypedConfig,
    pub failure_policy: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmConfig {
    pub vm_id: String,
    pub runtime: &'static str,
    pub code: AsyncDataSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct AsyncDataSource {
    pub local: DataSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    pub filename: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteConfiguration {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectAction>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<HeaderValueOption>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_remove: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RedirectAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_redirect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_redirect: Option<String>,
    pub response_code: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderValueOption {
    pub header: HeaderValue,
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (Istio's set) or `APPEND_IF_EXISTS_OR_ADD` (add).
    pub append_action: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryParameterMatcher {
    pub name: String,
    pub string_match: StringMatcher,
}

#[derive(Debug, Clone, Serialize)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<InlineString>,
}

/// A `DataSource` given inline.
#[derive(Debug, Clone, Serialize)]
pub struct InlineString {
    pub inline_string: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_regex: Option<RegexMatcher>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatcher>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_parameters: Vec<QueryParameterMatcher>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegexMatcher {
    pub regex: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderMatcher {
    pub name: String,
    pub string_match: StringMatcher,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StringMatcher {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_regex: Option<RegexMatcher>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted_clusters: Option<WeightedClusters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rewrite_literal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_mirror_policies: Vec<RequestMirrorPolicy>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hash_policy: Vec<HashPolicy>,
}

/// What a consistent-hash cluster hashes: one request header.
#[derive(Debug, Clone, Serialize)]
pub struct HashPolicy {
    pub header: HashHeader,
}

#[derive(Debug, Clone, Serialize)]
pub struct HashHeader {
    pub header_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightedClusters {
    pub clusters: Vec<ClusterWeight>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterWeight {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetryPolicy {
    pub retry_on: String,
    pub num_retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Retry on another host than the one that failed (Istio's default).
    pub retry_host_predicate: Vec<NamedExtension>,
    pub host_selection_retry_max_attempts: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamedExtension {
    pub name: String,
    pub typed_config: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestMirrorPolicy {
    pub cluster: String,
    pub runtime_fraction: RuntimeFractionalPercent,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeFractionalPercent {
    pub default_value: FractionalPercent,
}

#[derive(Debug, Clone, Serialize)]
pub struct FractionalPercent {
    pub numerator: u32,
    pub denominator: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub connect_timeout: String,
    pub lb_policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_lookup_family: Option<&'static str>,
    pub load_assignment: ClusterLoadAssignment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CircuitBreakers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_socket: Option<TransportSocket>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub typed_extension_protocol_options: BTreeMap<String, TypedConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpProtocolOptions {
    pub explicit_http_config: ExplicitHttpConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExplicitHttpConfig {
    pub http2_protocol_options: Empty,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterLoadAssignment {
    pub cluster_name: String,
    pub endpoints: Vec<LocalityLbEndpoints>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalityLbEndpoints {
    pub lb_endpoints: Vec<LbEndpoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LbEndpoint {
    pub endpoint: Endpoint,
}

#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub address: Address,
}

#[derive(Debug, Clone, Serialize)]
pub struct CircuitBreakers {
    pub thresholds: Vec<Thresholds>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Thresholds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub interval: String,
    pub base_ejection_time: String,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransportSocket {
    pub name: String,
    pub typed_config: TypedConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownstreamTlsContext {
    pub common_tls_context: CommonTlsContext,
    #[serde(skip_serializing_if = "is_false")]
    pub require_client_certificate: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTlsContext {
    pub common_tls_context: CommonTlsContext,
    pub sni: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CommonTlsContext {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_certificate_sds_secret_configs: Vec<SdsSecretConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_context: Option<CertificateValidationContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combined_validation_context: Option<CombinedValidationContext>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn_protocols: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CombinedValidationContext {
    pub default_validation_context: CertificateValidationContext,
    pub validation_context_sds_secret_config: SdsSecretConfig,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CertificateValidationContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_ca: Option<DataSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_typed_subject_alt_names: Vec<SubjectAltNameMatcher>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubjectAltNameMatcher {
    pub san_type: &'static str,
    pub matcher: StringMatcher,
}

#[derive(Debug, Clone, Serialize)]
pub struct SdsSecretConfig {
    pub name: String,
    pub sds_config: ConfigSource,
}

/// An xDS source that is a file: Envoy re-reads it when a new version is renamed
/// into place (an atomic move, never a write in place).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSource {
    pub path_config_source: PathConfigSource,
    pub resource_api_version: &'static str,
}

impl ConfigSource {
    /// `path`, reloaded when a file is moved onto it.
    pub fn file(path: String) -> Self {
        Self {
            path_config_source: PathConfigSource {
                path,
                watched_directory: None,
            },
            resource_api_version: "V3",
        }
    }
}

/// A file-based SDS resource. Envoy watches the directory for a file moved into
/// place, so `wasmesh certs rotate` (write, then rename) reloads without a restart.
#[derive(Debug, Clone, Serialize)]
pub struct PathConfigSource {
    pub path: String,
    /// Without it, Envoy watches `path` itself for a move onto it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watched_directory: Option<WatchedDirectory>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchedDirectory {
    pub path: String,
}
