//! The configurations under test, as Envoy bootstraps. Every one answers with a
//! direct response (no upstream), so only Envoy and its filters are measured; the
//! proxy variant adds an upstream to show what a real hop costs.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use wasmesh_integration::bootstrap::{self, WasmFilter};
use wasmesh_integration::rls;

pub struct BenchConfig {
    pub name: String,
    pub what: String,
    pub bootstrap: Value,
}

/// Where the modules and fixtures are.
pub struct Inputs {
    pub root: PathBuf,
    pub jwks: String,
    pub token: String,
}

impl Inputs {
    pub fn load(root: &Path) -> Result<Self> {
        let fixtures = root.join("bench/fixtures");
        Ok(Self {
            root: root.to_path_buf(),
            jwks: std::fs::read_to_string(fixtures.join("jwks.json"))
                .context("bench/fixtures/jwks.json")?
                .trim()
                .to_string(),
            token: std::fs::read_to_string(fixtures.join("token.jwt"))
                .context("bench/fixtures/token.jwt")?
                .trim()
                .to_string(),
        })
    }

    /// Where `scripts/bench.sh` builds the native module (release), the directory
    /// every benchmarked Envoy gets as `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    pub fn native_dir(&self) -> PathBuf {
        self.root.join("target/release")
    }

    fn native_module_built(&self) -> bool {
        self.native_dir()
            .join(format!("lib{}.so", bootstrap::NATIVE_MODULE))
            .exists()
    }

    fn module(&self, name: &str) -> PathBuf {
        self.root.join(format!("dist/filters/{name}.wasm"))
    }

    /// The filter's benchmark config from `bench/configs/<name>.json`, with the JWKS
    /// substituted where it says `$JWKS`.
    fn filter_config(&self, name: &str) -> Result<Value> {
        let path = self.root.join(format!("bench/configs/{name}.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let text = text.replace("\"$JWKS\"", &serde_json::to_string(&self.jwks)?);
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn wasm(&self, name: &str) -> Result<WasmFilter> {
        Ok(
            WasmFilter::new(&format!("wasmesh.{name}"), self.module(name))
                .config(self.filter_config(name)?),
        )
    }
}

const BODY: &str = "ok";

fn direct(filters: &[WasmFilter]) -> Value {
    bootstrap::direct_response(200, BODY, filters)
}

/// The configurations whose modules exist; missing ones are listed in the second value
/// (so a run says what it could not measure instead of silently skipping it).
/// `rls_port` is the rate limit service's ([`RLS_CONFIG`]), for the global rows.
pub fn all(
    inputs: &Inputs,
    upstream_port: u16,
    rls_port: u16,
) -> Result<(Vec<BenchConfig>, Vec<String>)> {
    let mut configs = vec![
        BenchConfig {
            name: "bare".into(),
            what: "Envoy, direct response, no filters (the baseline)".into(),
            bootstrap: direct(&[]),
        },
        BenchConfig {
            name: "bare-proxy".into(),
            what: "Envoy proxying to an upstream, no filters".into(),
            bootstrap: bootstrap::proxy_to(upstream_port, &[]),
        },
        BenchConfig {
            name: "noop-wasm".into(),
            what: "a Rust proxy-wasm filter that does nothing (the Wasm floor)".into(),
            bootstrap: direct(&[WasmFilter::new(
                "noop",
                inputs
                    .root
                    .join("target/wasm/wasm32-wasip1/wasm/wasmesh_bench_noop.wasm"),
            )]),
        },
        BenchConfig {
            name: "native-chain".into(),
            what: "native fault 0%, jwt_authn (RS256, token cache), rbac, local_ratelimit, header_mutation"
                .into(),
            bootstrap: native_chain(&inputs.jwks),
        },
    ];
    let mut missing = Vec::new();
    for name in [
        "headers",
        "ratelimit",
        "fault",
        "authz",
        "telemetry",
        "cors",
        "body",
    ] {
        if inputs.module(name).exists()
            && inputs
                .root
                .join(format!("bench/configs/{name}.json"))
                .exists()
        {
            configs.push(BenchConfig {
                name: name.into(),
                what: format!("the {name} filter alone"),
                bootstrap: direct(&[inputs.wasm(name)?]),
            });
        } else {
            missing.push(name.to_string());
        }
    }
    // Each stage in the native dynamic module (docs/native-target.md), with the same
    // configs as its Wasm filter, and the five as the module's pipeline (`mesh`).
    for (stage, config, native) in [
        ("headers", "headers", "headers-native"),
        ("fault", "fault", "fault-native"),
        ("ratelimit", "ratelimit", "ratelimit-native"),
        ("authz", "authz", "authz-native"),
        ("telemetry", "telemetry", "telemetry-native"),
        ("cors", "cors", "cors-native"),
        ("body", "body", "body-native"),
        ("mesh", "mesh", "chain-mesh-native"),
    ] {
        if inputs.native_module_built() {
            let filter = bootstrap::native_filter(stage, &inputs.filter_config(config)?);
            configs.push(BenchConfig {
                what: format!(
                    "the {stage} stage in the native dynamic module (libwasmesh_native.so)"
                ),
                name: native.into(),
                bootstrap: bootstrap::with_native_metric_names(bootstrap::direct_response_through(
                    200,
                    BODY,
                    vec![filter],
                )),
            });
        } else {
            missing.push(native.into());
        }
    }
    global_rate_limit_rows(inputs, upstream_port, rls_port, &mut configs, &mut missing)?;
    let chain = ["telemetry", "authz", "ratelimit", "headers", "fault"];
    if chain.iter().all(|n| !missing.iter().any(|m| m == n)) {
        let filters: Result<Vec<WasmFilter>> = chain.iter().map(|n| inputs.wasm(n)).collect();
        configs.push(BenchConfig {
            name: "chain-separate".into(),
            what: "telemetry, authz, ratelimit, headers, fault as five Wasm filters".into(),
            bootstrap: direct(&filters?),
        });
    } else {
        missing.push("chain-separate".into());
    }
    if inputs.module("mesh").exists() && inputs.root.join("bench/configs/mesh.json").exists() {
        configs.push(BenchConfig {
            name: "chain-mesh".into(),
            what: "the same five stages in the one-VM mesh module".into(),
            bootstrap: direct(&[inputs.wasm("mesh")?]),
        });
    } else {
        missing.push("chain-mesh".into());
    }
    Ok((configs, missing))
}

/// The same configurations with modules from `dir` (`--baseline DIR`: the filters as
/// built from another commit), named `<configuration>@base`, for an A/B comparison in
/// one interleaved run. Only modules present in `dir` are added.
pub fn baseline(inputs: &Inputs, dir: &Path) -> Result<Vec<BenchConfig>> {
    let mut out = Vec::new();
    for (module, config) in [
        ("headers", "headers"),
        ("ratelimit", "ratelimit"),
        ("fault", "fault"),
        ("authz", "authz"),
        ("telemetry", "telemetry"),
        ("cors", "cors"),
        ("body", "body"),
        ("mesh", "chain-mesh"),
    ] {
        let path = dir.join(format!("{module}.wasm"));
        if !path.exists() {
            continue;
        }
        let filter = WasmFilter::new(&format!("wasmesh.{module}"), path)
            .config(inputs.filter_config(module)?);
        out.push(BenchConfig {
            name: format!("{config}@base"),
            what: format!("{config} with {module}.wasm from {}", dir.display()),
            bootstrap: direct(&[filter]),
        });
    }
    anyhow::ensure!(!out.is_empty(), "no filter modules in {}", dir.display());
    Ok(out)
}

/// The rate limit service's config for the global rows: one descriptor, the rule
/// `bench`, with a limit no run reaches, so every request costs one allowed call.
pub const RLS_CONFIG: &str = "domain: bench\ndescriptors:\n  - key: generic_key\n    value: bench\n    rate_limit: {unit: second, requests_per_unit: 1000000000}\n";

/// Global rate limiting: our ratelimit filter asking the rate limit service on every
/// request (`ratelimit-global`, direct response like the other rows), and the same
/// through a proxied route next to Envoy's own ratelimit filter asking the same
/// service for the same descriptor (Envoy's filter only runs on routes that forward,
/// so those two compare with `bare-proxy`).
fn global_rate_limit_rows(
    inputs: &Inputs,
    upstream_port: u16,
    rls_port: u16,
    configs: &mut Vec<BenchConfig>,
    missing: &mut Vec<String>,
) -> Result<()> {
    let names = [
        "ratelimit-global",
        "ratelimit-global-proxy",
        "envoy-ratelimit-proxy",
    ];
    let with_rls = |mut bootstrap: Value| {
        let mut clusters = bootstrap["static_resources"]["clusters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        clusters.push(rls::cluster(rls_port));
        bootstrap["static_resources"]["clusters"] = Value::Array(clusters);
        bootstrap
    };
    // The native stage makes the same call over the ABI's HTTP callout
    // (filters/native/src/grpc.rs).
    if inputs.native_module_built() {
        let filter =
            bootstrap::native_filter("ratelimit", &inputs.filter_config("ratelimit-global")?);
        configs.push(BenchConfig {
            name: "ratelimit-global-native".into(),
            what: "ratelimit-global in the native dynamic module (the call as an HTTP/2 callout)"
                .into(),
            bootstrap: with_rls(bootstrap::with_native_metric_names(
                bootstrap::direct_response_through(200, BODY, vec![filter]),
            )),
        });
    } else {
        missing.push("ratelimit-global-native".into());
    }
    if !inputs.module("ratelimit").exists() {
        missing.extend(names.iter().map(|n| n.to_string()));
        return Ok(());
    }
    let ours = WasmFilter::new("wasmesh.ratelimit", inputs.module("ratelimit"))
        .config(inputs.filter_config("ratelimit-global")?);
    configs.push(BenchConfig {
        name: names[0].into(),
        what: "the ratelimit filter, one global rule: a ShouldRateLimit call per request".into(),
        bootstrap: with_rls(direct(std::slice::from_ref(&ours))),
    });
    configs.push(BenchConfig {
        name: names[1].into(),
        what: "ratelimit-global on a proxied route (compare with bare-proxy)".into(),
        bootstrap: with_rls(bootstrap::proxy_to(upstream_port, &[ours])),
    });
    let envoys = json!({"name": "envoy.filters.http.ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
        "domain": "bench", "timeout": "1s", "failure_mode_deny": false,
        "rate_limit_service": {"transport_api_version": "V3",
            "grpc_service": {"envoy_grpc": {"cluster_name": rls::CLUSTER}}}}});
    let mut envoy_row = with_rls(bootstrap::proxy_through(upstream_port, vec![envoys]));
    envoy_row["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["rate_limits"] =
        json!([{"actions": [{"generic_key": {"descriptor_value": "bench"}}]}]);
    configs.push(BenchConfig {
        name: names[2].into(),
        what: "Envoy's own ratelimit filter, same service and descriptor (compare with bare-proxy)"
            .into(),
        bootstrap: envoy_row,
    });
    Ok(())
}

/// The closest native Envoy chain to our filter chain.
fn native_chain(jwks: &str) -> Value {
    let hundred = |n: u32| json!({"numerator": n, "denominator": "HUNDRED"});
    let filters = vec![
        json!({"name": "envoy.filters.http.fault", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": {"http_status": 503, "percentage": hundred(0)}}}),
        json!({"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": {
                "issuer": "https://bench.wasmesh.dev", "audiences": ["bench"], "forward": true,
                "local_jwks": {"inline_string": jwks},
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                // Our authz caches verified tokens; so does the closest native chain.
                "jwt_cache_config": {"jwt_cache_size": 100}}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}),
        json!({"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "DENY", "policies": {"deny-admin": {
                "permissions": [{"url_path": {"path": {"prefix": "/admin"}}}],
                "principals": [{"any": true}]}}}}}),
        json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "bench_rl",
            "token_bucket": {"max_tokens": 1_000_000_000u64, "tokens_per_fill": 1_000_000_000u64, "fill_interval": "1s"},
            "filter_enabled": {"runtime_key": "rl_enabled", "default_value": hundred(100)},
            "filter_enforced": {"runtime_key": "rl_enforced", "default_value": hundred(100)}}}),
        json!({"name": "envoy.filters.http.header_mutation", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": [{"append": {"header": {"key": "x-bench", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}],
                "response_mutations": [{"append": {"header": {"key": "x-served-by", "value": "bench"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}]}}}),
    ];
    let route = json!({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": BODY}}});
    json!({
        "admin": bootstrap::admin(),
        "static_resources": {"listeners": [bootstrap::http_listener(bootstrap::INGRESS, filters, vec![route])]},
    })
}
