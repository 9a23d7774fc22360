//! The HTTP filters of a chain: each wasmesh filter as an Envoy Wasm filter in phase
//! order (or, with `--bundle`, one mesh-module filter running them all), then the router.
//! With `--target-filters native` the same stages and configs run in the native dynamic
//! module instead (docs/native-target.md).

use super::Builder;
use crate::chains;
use crate::envoy::*;
use crate::model::{FailurePolicy, FilterSpec};
use crate::{FilterTarget, NATIVE_MODULE};
use serde_json::{json, Value};

impl Builder<'_> {
    /// Wasm filters in phase order (or one mesh-module filter running them all, with
    /// `--bundle`), then the router. `chain_mtls`: the mTLS mode of the inbound filter
    /// chain these run on, for telemetry's `mtls` (None off the inbound listener).
    pub(super) fn http_filters(
        &self,
        filters: &[FilterSpec],
        chain_mtls: Option<&str>,
    ) -> Vec<HttpFilter> {
        let mut sorted: Vec<&FilterSpec> = filters.iter().collect();
        sorted.sort_by_key(|f| f.name);
        let configs: Vec<(&FilterSpec, Value)> = sorted
            .into_iter()
            .map(|f| {
                let mut config = chains::generated_config(self.mesh, f, || self.workload());
                if let Some(mode) = chain_mtls {
                    chains::with_chain_mtls(f, &mut config, mode);
                }
                (f, config)
            })
            .collect();
        let mut out: Vec<HttpFilter> = if self.opts.bundle && !configs.is_empty() {
            let config = crate::bundle::config(configs.iter().map(|(f, c)| (f.name, c)));
            let policy = crate::bundle::strictest(configs.iter().map(|(f, _)| f.failure_policy));
            let module = format!("{}/{}", self.opts.filters_dir, crate::bundle::WASM_FILE);
            vec![self.filter(crate::bundle::NAME, &module, &config, policy)]
        } else {
            configs
                .iter()
                .map(|(f, c)| {
                    let module = f.module.clone().unwrap_or_else(|| {
                        format!("{}/{}", self.opts.filters_dir, f.name.wasm_file())
                    });
                    self.filter(f.name.as_str(), &module, c, f.failure_policy)
                })
                .collect()
        };
        out.push(HttpFilter::inline(
            "envoy.filters.http.router",
            TypedConfig::Router(Empty {}),
        ));
        out
    }

    /// Stage `name` as the filter target builds it; `module` is the `.wasm` it runs in
    /// (unused by the native target).
    fn filter(
        &self,
        name: &str,
        module: &str,
        config: &Value,
        failure_policy: FailurePolicy,
    ) -> HttpFilter {
        match self.opts.filter_target {
            FilterTarget::Wasm => self.wasm_filter(name, module, config, failure_policy),
            // No VM to fail: a native stage that cannot run fails its request (a panic is
            // caught and the hook answers as failed), which is FAIL_CLOSED's behaviour.
            FilterTarget::Native => native_filter(name, config),
        }
    }

    fn wasm_filter(
        &self,
        name: &str,
        module: &str,
        config: &Value,
        failure_policy: FailurePolicy,
    ) -> HttpFilter {
        HttpFilter::inline(
            format!("wasmesh.{name}"),
            TypedConfig::Wasm(Box::new(Wasm {
                config: PluginConfig {
                    name: name.into(),
                    root_id: name.into(),
                    vm_config: VmConfig {
                        vm_id: name.into(),
                        runtime: self.mesh.mesh.wasm_runtime.envoy_name(),
                        code: AsyncDataSource {
                            local: DataSource {
                                filename: match &self.opts.pinned_modules {
                                    Some(pinned) => pinned.resolve(module),
                                    None => module.to_string(),
                                },
                            },
                        },
                    },
                    configuration: TypedConfig::StringValue {
                        value: config.to_string(),
                    },
                    failure_policy: failure_policy.as_str(),
                },
            })),
        )
    }
}

/// Stage `name` (a filter's, or `mesh`: the pipeline) in the native dynamic module.
fn native_filter(name: &str, config: &Value) -> HttpFilter {
    HttpFilter::inline(
        format!("wasmesh.{name}"),
        TypedConfig::DynamicModuleFilter(Box::new(DynamicModuleFilter {
            dynamic_module_config: DynamicModuleConfig {
                name: NATIVE_MODULE.into(),
            },
            filter_name: name.into(),
            filter_config: TypedConfig::StringValue {
                value: config.to_string(),
            },
        })),
    )
}

/// The runtime flags a bootstrap needs for its filter target: the native module's
/// metrics keep the Wasm filters' names in `/stats/prometheus` (`istio_requests_total`,
/// not `envoy_dynamicmodulescustom_istio_requests_total`).
pub(super) fn runtime_flags(target: FilterTarget) -> Option<Value> {
    match target {
        FilterTarget::Wasm => None,
        FilterTarget::Native => Some(json!({"layers": [{"name": "static", "static_layer": {
            "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": true}}]})),
    }
}
