//! Bootstrap builders: small `serde_json::Value`s a test can read at a glance and
//! tweak with `pointer_mut` when it needs something unusual.
//!
//! Every address is 127.0.0.1 port 0; [`crate::Envoy`] reads the bound ports back from
//! the admin API, so parallel tests never race for a free port.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The name of the listener the builders create (`envoy.listener_url(INGRESS)`); its
/// HTTP stats are `http.ingress.*`.
pub const INGRESS: &str = "ingress";
/// The cluster `proxy_to` routes to; its stats are `cluster.upstream.*`.
pub const UPSTREAM: &str = "upstream";

/// What Envoy does when a plugin traps or fails (Envoy 1.40 `failure_policy`): the
/// generator's own type.
pub use wasmesh::model::FailurePolicy;

/// One Proxy-Wasm HTTP filter in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct WasmFilter {
    /// The filter's (and plugin's) name, also its `plugin_name` property.
    pub name: String,
    pub wasm_path: PathBuf,
    /// Plugin configuration, handed to `on_configure` as JSON text. `Null` sends none.
    pub config: Value,
    pub root_id: String,
    /// Plugins sharing a vm_id (and code) share a VM, hence shared data.
    pub vm_id: String,
    /// `None` leaves Envoy's default (FAIL_CLOSED).
    pub failure_policy: Option<FailurePolicy>,
}

impl WasmFilter {
    /// A filter named `name` running `wasm_path`, with no configuration, root_id and
    /// vm_id equal to `name`.
    pub fn new(name: &str, wasm_path: impl AsRef<Path>) -> WasmFilter {
        WasmFilter {
            name: name.to_string(),
            wasm_path: wasm_path.as_ref().to_path_buf(),
            config: Value::Null,
            root_id: name.to_string(),
            vm_id: name.to_string(),
            failure_policy: None,
        }
    }

    pub fn config(mut self, config: Value) -> WasmFilter {
        self.config = config;
        self
    }

    pub fn root_id(mut self, root_id: &str) -> WasmFilter {
        self.root_id = root_id.to_string();
        self
    }

    pub fn vm_id(mut self, vm_id: &str) -> WasmFilter {
        self.vm_id = vm_id.to_string();
        self
    }

    pub fn failure_policy(mut self, policy: FailurePolicy) -> WasmFilter {
        self.failure_policy = Some(policy);
        self
    }

    /// The `http_filters` entry for this filter.
    pub fn to_http_filter(&self) -> Value {
        // The configuration travels as a StringValue so the plugin gets exactly the
        // JSON text, not a protobuf Struct re-encoding of it.
        let configuration = match &self.config {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut config = json!({
            "name": self.name,
            "root_id": self.root_id,
            "vm_config": {
                "vm_id": self.vm_id,
                "runtime": wasmesh::model::WasmRuntime::V8.envoy_name(),
                "code": { "local": { "filename": self.wasm_path.to_string_lossy() } },
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration,
            },
        });
        if let Some(policy) = self.failure_policy {
            config["failure_policy"] = json!(policy.as_str());
        }
        json!({
            "name": self.name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": config,
            },
        })
    }
}

/// Admin on 127.0.0.1:0, one listener [`INGRESS`] whose every request goes through
/// `filters` (in order) and then to cluster [`UPSTREAM`] at 127.0.0.1:`upstream_port`.
pub fn proxy_to(upstream_port: u16, filters: &[WasmFilter]) -> Value {
    proxy_through(upstream_port, wasm_filters(filters))
}

/// Like [`proxy_to`] with any `http_filters` entries (the router is appended), e.g. the
/// native build's dynamic-module filters.
pub fn proxy_through(upstream_port: u16, http_filters: Vec<Value>) -> Value {
    let route = json!({ "match": { "prefix": "/" }, "route": { "cluster": UPSTREAM } });
    json!({
        "admin": admin(),
        "static_resources": {
            "listeners": [http_listener(INGRESS, http_filters, vec![route])],
            "clusters": [static_cluster(UPSTREAM, upstream_port)],
        },
    })
}

/// Like [`proxy_to`] but Envoy answers every request itself with `status` and `body`:
/// no upstream, so a benchmark measures only Envoy and the filters.
pub fn direct_response(status: u16, body: &str, filters: &[WasmFilter]) -> Value {
    direct_response_through(status, body, wasm_filters(filters))
}

/// Like [`direct_response`] with any `http_filters` entries (the router is appended).
pub fn direct_response_through(status: u16, body: &str, http_filters: Vec<Value>) -> Value {
    let route = json!({
        "match": { "prefix": "/" },
        "direct_response": { "status": status, "body": { "inline_string": body } },
    });
    json!({
        "admin": admin(),
        "static_resources": {
            "listeners": [http_listener(INGRESS, http_filters, vec![route])],
        },
    })
}

/// The native module's name in `dynamic_module_config`: Envoy loads `lib<name>.so`
/// from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` (crate wasmesh-native, filters/native).
pub const NATIVE_MODULE: &str = "wasmesh_native";

/// The `http_filters` entry running the native module's stage `stage` (`headers`,
/// `fault`) with `config`, the same JSON the stage's Wasm filter takes.
pub fn native_filter(stage: &str, config: &Value) -> Value {
    json!({
        "name": format!("wasmesh.native.{stage}"),
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": { "name": NATIVE_MODULE },
            "filter_name": stage,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config.to_string(),
            },
        },
    })
}

/// The admin block: loopback only, on a free port.
pub fn admin() -> Value {
    json!({ "address": socket_address(0) })
}

/// `{"socket_address": {"address": "127.0.0.1", "port_value": port}}`.
pub fn socket_address(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

/// The `http_filters` entries for `filters`, without the router.
pub fn wasm_filters(filters: &[WasmFilter]) -> Vec<Value> {
    filters.iter().map(WasmFilter::to_http_filter).collect()
}

/// A listener on 127.0.0.1:0 named `name` (HTTP stats prefix `name` too) running
/// `http_filters` then the router, with one virtual host matching every domain.
pub fn http_listener(name: &str, http_filters: Vec<Value>, routes: Vec<Value>) -> Value {
    let mut filters = http_filters;
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    }));
    json!({
        "name": name,
        "address": socket_address(0),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    "route_config": {
                        "name": format!("{name}_routes"),
                        "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }],
                    },
                    "http_filters": filters,
                },
            }],
        }],
    })
}

/// Envoy 1.40 prints a dynamic module's metrics in `/stats/prometheus` under its
/// metrics namespace (`envoy_dynamicmodulescustom_istio_requests_total`); this runtime
/// flag strips that prefix, as Envoy always does for Wasm's, so the native module's
/// metrics carry the same names as the Wasm filters' (`istio_requests_total`).
pub fn with_native_metric_names(mut bootstrap: Value) -> Value {
    bootstrap["layered_runtime"] = json!({"layers": [{"name": "static", "static_layer": {
        "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": true}}]});
    bootstrap
}

/// A STATIC cluster with one endpoint at 127.0.0.1:`port`.
pub fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(port) } }] }],
        },
    })
}
