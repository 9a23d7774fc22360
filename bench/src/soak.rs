//! The soak run: one configuration through a million requests, sampling Envoy's RSS
//! and the Wasm VM's linear memory (the SDK's `wasmesh_wasm_memory_bytes` gauge) as it
//! goes. Growth is measured from the first sample after warm-up (100k requests), since
//! allocators and caches legitimately grow while they fill.

use crate::{load, pin, procfs};
use anyhow::{Context, Result};
use std::fmt::Write;
use std::time::Duration;
use wasmesh_integration::bootstrap::INGRESS;
use wasmesh_integration::envoy::{Envoy, Options};

pub struct Sample {
    pub requests: u64,
    pub rss: u64,
    pub wasm_memory: u64,
}

pub fn run(name: &str, bootstrap: &serde_json::Value, total: u64, header: &str) -> Result<String> {
    let envoy = Envoy::start_with(
        bootstrap,
        &Options::default().concurrency(1).log_level("warning"),
    )?;
    pin(envoy.pid(), 0)?;
    let url = format!("http://127.0.0.1:{}/bench", envoy.listener_port(INGRESS)?);
    let mut samples = Vec::new();
    let mut requests = 0;
    while requests < total {
        let t = load::wrk(&url, 16, Duration::from_secs(2), 1, header)?;
        requests += t.requests;
        let wasm_memory = envoy
            .admin()
            .stats()?
            .with_prefix("wasmcustom.wasmesh_wasm_memory_bytes")
            .map(|(_, v)| v)
            .max()
            .unwrap_or(0);
        samples.push(Sample {
            requests,
            rss: procfs::rss_bytes(envoy.pid())?,
            wasm_memory,
        });
        eprintln!("soak {name}: {requests} requests");
    }
    let base = samples
        .iter()
        .find(|s| s.requests >= 100_000)
        .context("the soak never got past warm-up")?;
    let last = samples.last().context("no samples")?;
    let growth = |a: u64, b: u64| {
        if a == 0 {
            0.0
        } else {
            (b as f64 - a as f64) / a as f64 * 100.0
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| requests | Envoy RSS (MiB) | Wasm linear memory (KiB) |\n|---:|---:|---:|"
    );
    for s in &samples {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} |",
            s.requests,
            s.rss as f64 / 1048576.0,
            s.wasm_memory / 1024
        );
    }
    let _ = writeln!(
        out,
        "\nAfter warm-up ({} requests) to the end ({} requests): RSS {:+.1}%, Wasm linear memory {:+.1}%.",
        base.requests,
        last.requests,
        growth(base.rss, last.rss),
        growth(base.wasm_memory, last.wasm_memory)
    );
    Ok(out)
}
