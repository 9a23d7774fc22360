//! What each kind of host call costs in Envoy: `wasmesh-bench --host-costs` runs the
//! do-nothing filter and, per kind, a filter making [`CALLS`] such calls per request
//! (`bench/hostcost`), interleaved like the main run. A call's price is the extra CPU
//! per request divided by [`CALLS`], also given as a ratio to the fixed cost of the
//! do-nothing filter (its CPU per request above bare Envoy's, same run).

use crate::configs::{BenchConfig, Inputs};
use crate::{median, Running};
use anyhow::{Context, Result};
use serde_json::Value;
use wasmesh_bench_hostcost::Kind;
use wasmesh_integration::bootstrap::{self, WasmFilter};

/// Calls per request: enough to stand well above the run-to-run noise.
pub const CALLS: u32 = 20;

/// bare and noop-wasm from the main list, then one configuration per kind.
/// With `only`, just the kinds it names.
pub fn configs(
    inputs: &Inputs,
    all: &[BenchConfig],
    only: Option<&[String]>,
) -> Result<Vec<BenchConfig>> {
    let module = inputs
        .root
        .join("target/wasm/wasm32-wasip1/wasm/wasmesh_bench_hostcost.wasm");
    let mut configs: Vec<BenchConfig> = all
        .iter()
        .filter(|c| c.name == "bare" || c.name == "noop-wasm")
        .map(|c| BenchConfig {
            name: c.name.clone(),
            what: c.what.clone(),
            bootstrap: c.bootstrap.clone(),
        })
        .collect();
    anyhow::ensure!(configs.len() == 2, "bare and noop-wasm are needed");
    anyhow::ensure!(
        module.exists(),
        "{} is missing (scripts/bench.sh builds it)",
        module.display()
    );
    if let Some(unknown) = only
        .unwrap_or_default()
        .iter()
        .find(|n| !Kind::ALL.iter().any(|(kind, _)| kind == n) && *n != "bare" && *n != "noop-wasm")
    {
        anyhow::bail!("--only: no host-call kind `{unknown}`");
    }
    let wanted = |kind: &str| only.is_none_or(|names| names.iter().any(|n| n == kind));
    for (kind, _) in Kind::ALL.into_iter().filter(|(kind, _)| wanted(kind)) {
        let filter =
            WasmFilter::new("hostcost", &module).config(Value::String(format!("{kind},{CALLS}")));
        configs.push(BenchConfig {
            name: kind.to_string(),
            what: format!("{CALLS} `{kind}` calls per request"),
            bootstrap: bootstrap::direct_response(200, "ok", &[filter]),
        });
    }
    Ok(configs)
}

/// The Markdown table: µs per call and its ratio to the Wasm floor's fixed cost.
pub fn report(running: &[Running], calls: u32) -> String {
    let cpu = |name: &str| {
        running
            .iter()
            .find(|r| r.config.name == name)
            .map(|r| median(r.cpu_per_request.clone()))
            .context(name.to_string())
    };
    let (Ok(bare), Ok(noop)) = (cpu("bare"), cpu("noop-wasm")) else {
        return "bare or noop-wasm was not measured".into();
    };
    let floor = noop - bare;
    let mut out = format!(
        "bare {bare:.1} µs CPU per request; the do-nothing filter {noop:.1} µs, so the Wasm \
         floor's fixed cost is {floor:.1} µs per request.\n\n\
         | call | hands data back | µs per call | per call / floor's fixed cost |\n\
         |---|---|---:|---:|\n"
    );
    for (kind, data) in Kind::ALL.map(|(name, kind)| (name, kind.hands_data_back())) {
        let Ok(with_calls) = cpu(kind) else { continue };
        let per_call = (with_calls - noop) / f64::from(calls);
        out.push_str(&format!(
            "| {kind} | {} | {per_call:.2} | {:.2}x |\n",
            if data { "yes" } else { "no" },
            per_call / floor
        ));
    }
    out
}
