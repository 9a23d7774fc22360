//! wasmesh-bench: Envoy 1.40 with one worker, our filters against bare Envoy and the
//! closest native filters, measured in one interleaved run.
//!
//! Method: every configuration runs in its own Envoy (one worker, pinned to CPU 0)
//! for the whole run; the load generator runs on CPU 1. Throughput at saturation is
//! measured with wrk (16 connections), in rounds that visit the configurations in
//! turn (A B C ... A B C ...), and the median round is kept; every figure is a ratio
//! against bare Envoy measured in the same run. Latency is then measured open loop at
//! half of bare Envoy's saturation rate, or at half of the configuration's own when its
//! capacity is below that rate (past saturation a p99 measures only the queue); the
//! table says which rate each row used. CPU time per request comes from
//! /proc/PID/stat, memory from VmRSS after every configuration served >100k requests.

mod configs;
mod host_costs;
mod load;
mod procfs;
mod report;
mod soak;

use anyhow::{bail, Context, Result};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use wasmesh_integration::bootstrap::INGRESS;
use wasmesh_integration::echo::EchoServer;
use wasmesh_integration::envoy::{Envoy, Options};
use wasmesh_integration::rls;

/// Envoy 1.40 with our filters against bare Envoy and native filters: throughput,
/// latency, CPU and memory, written to docs/bench/.
#[derive(Parser)]
#[command(name = "wasmesh-bench", args_override_self = true)]
struct Cli {
    /// Seconds of load per configuration in each round and for the latency run.
    #[arg(long = "duration", value_name = "S", default_value_t = 5)]
    duration_secs: u64,
    /// Rounds of throughput over all configurations; the median round is kept.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,
    /// Measure only these configurations (besides bare and noop-wasm).
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Run the soak instead: this many requests through the named configuration.
    #[arg(long, num_args = 2, value_names = ["CONFIG", "REQUESTS"])]
    soak: Option<Vec<String>>,
    /// Price each kind of host call instead.
    #[arg(long)]
    host_costs: bool,
    /// Also run each filter with its module from this directory.
    #[arg(long, value_name = "DIR")]
    baseline: Option<PathBuf>,
}

struct Args {
    duration: Duration,
    rounds: usize,
    only: Option<Vec<String>>,
    /// Run the soak instead: this many requests through the named configuration.
    soak: Option<(String, u64)>,
    /// Price each kind of host call instead (see [`host_costs`]).
    host_costs: bool,
    /// Also run each filter with its module from this directory ([`configs::baseline`]).
    baseline: Option<PathBuf>,
}

/// The arguments, or an exit: `--help` prints the usage, an argument error one line.
fn parse_args() -> Args {
    let cli: Cli = wasmesh_cli_args::parse();
    // clap hands --soak exactly its two values.
    let soak = cli.soak.map(|pair| {
        let (name, requests) = (pair[0].clone(), &pair[1]);
        let Ok(n) = requests.parse() else {
            wasmesh_cli_args::exit(Cli::command().error(
                ErrorKind::ValueValidation,
                format!("invalid value '{requests}' for '--soak <CONFIG> <REQUESTS>': not a count of requests"),
            ))
        };
        (name, n)
    });
    Args {
        duration: Duration::from_secs(cli.duration_secs),
        rounds: cli.rounds,
        only: cli.only,
        soak,
        host_costs: cli.host_costs,
        baseline: cli.baseline,
    }
}

/// The open-loop rate a configuration's latency is measured at: half of bare Envoy's
/// saturation rate, or half of its own when it saturates below that (a rate past a
/// configuration's capacity measures only its queue).
fn latency_rate(bare_rps: f64, own_rps: f64) -> u32 {
    let half_bare = bare_rps / 2.0;
    let rate = if own_rps < half_bare {
        own_rps / 2.0
    } else {
        half_bare
    };
    (rate as u32).max(1)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) struct Running {
    pub(crate) config: configs::BenchConfig,
    envoy: Envoy,
    url: String,
    addr: String,
    rps: Vec<f64>,
    pub(crate) cpu_per_request: Vec<f64>,
}

fn main() -> Result<()> {
    let args = parse_args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let inputs = configs::Inputs::load(&root)?;
    let echo = EchoServer::start()?;
    // The rate limit service the global rows ask (release build, from scripts/bench.sh);
    // it inherits the rig's CPU, so it shares CPU 1 with the load generators.
    let rls_dir = std::env::temp_dir().join(format!("wasmesh-bench-rls-{}", std::process::id()));
    let rls = rls::Server::start_binary(
        &root.join("target/release/wasmesh-ratelimit-server"),
        &rls_dir,
        configs::RLS_CONFIG,
        0,
    )
    .context("starting the rate limit service (scripts/bench.sh builds it)")?;
    let (mut all, missing) = configs::all(&inputs, echo.port(), rls.port)?;
    if let Some(dir) = &args.baseline {
        all.extend(configs::baseline(&inputs, dir)?);
    }
    if let Some(only) = &args.only {
        // A configuration's baseline twin goes with it.
        all.retain(|c| {
            let name = c.name.trim_end_matches("@base");
            name == "bare" || name == "noop-wasm" || only.iter().any(|o| o == name)
        });
    }
    if !missing.is_empty() {
        eprintln!(
            "not measured (module or bench/configs/<name>.json missing): {}",
            missing.join(", ")
        );
    }
    let header = format!("authorization: Bearer {}", inputs.token);
    if let Some((name, total)) = &args.soak {
        let config = all
            .iter()
            .find(|c| &c.name == name)
            .with_context(|| format!("no configuration {name}"))?;
        let table = soak::run(name, &config.bootstrap, *total, &header)?;
        println!("{table}");
        let out = root.join("docs/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join(format!("soak-{name}.md")), &table)?;
        return Ok(());
    }

    if args.host_costs {
        let configs = host_costs::configs(&inputs, &all, args.only.as_deref())?;
        let running = measure(configs, &args, &header, &inputs.native_dir())?;
        let table = host_costs::report(&running, host_costs::CALLS);
        println!("{table}");
        // A run of some kinds only does not replace the table of all of them.
        let name = if args.only.is_some() {
            "host-costs-only.md"
        } else {
            "host-costs.md"
        };
        let out = root.join("docs/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join(name), &table)?;
        eprintln!("wrote docs/bench/{name}");
        return Ok(());
    }

    let running = measure(all, &args, &header, &inputs.native_dir())?;
    let bare_rps = median(running[0].rps.clone());
    let noop_rps = running
        .iter()
        .find(|r| r.config.name == "noop-wasm")
        .map_or(bare_rps, |r| median(r.rps.clone()));
    let bare_rate = (bare_rps / 2.0) as u32;
    let mut latencies = Vec::new();
    for r in &running {
        let rate = latency_rate(bare_rps, median(r.rps.clone()));
        let l = load::open_loop(&r.addr, rate, args.duration, 32, &header)?;
        eprintln!(
            "latency {:<16} at {rate} req/s: p50 {:.0} µs, p99 {:.0} µs",
            r.config.name, l.p50, l.p99
        );
        latencies.push((rate, l));
    }
    let bare_p99 = latencies[0].1.p99;
    let rows: Vec<report::Row> = running
        .iter()
        .zip(&latencies)
        .map(|(r, (rate, l))| {
            let rps = median(r.rps.clone());
            report::Row {
                name: r.config.name.clone(),
                what: r.config.what.clone(),
                rps,
                vs_bare: rps / bare_rps,
                vs_noop: rps / noop_rps,
                cpu_us_per_request: median(r.cpu_per_request.clone()),
                latency_rate: *rate,
                p50_us: l.p50,
                p99_us: l.p99,
                p999_us: l.p999,
                p99_delta_us: l.p99 - bare_p99,
                rss_mib: procfs::rss_bytes(r.envoy.pid()).unwrap_or(0) as f64 / (1024.0 * 1024.0),
            }
        })
        .collect();
    let table = report::markdown(&rows);
    println!("{table}");
    println!(
        "latency rate: {bare_rate} req/s (half of bare's {bare_rps:.0}), or half of a row's own saturation rate when that is lower; {} rounds of {:?}",
        args.rounds, args.duration
    );
    let out = root.join("docs/bench");
    std::fs::create_dir_all(&out)?;
    if args.baseline.is_some() {
        // An A/B run answers one question; the published table stays the full run's.
        std::fs::write(out.join("baseline-compare.md"), &table)?;
        eprintln!("wrote docs/bench/baseline-compare.md");
        return Ok(());
    }
    if args.only.is_some() {
        // A run of some configurations only does not replace the full run's table.
        std::fs::write(out.join("results-only.md"), &table)?;
        eprintln!("wrote docs/bench/results-only.md");
        return Ok(());
    }
    std::fs::write(out.join("results.md"), &table)?;
    std::fs::write(out.join("chart.svg"), report::svg(&rows))?;
    eprintln!("wrote docs/bench/results.md and docs/bench/chart.svg");
    Ok(())
}

/// Starts every configuration in its own Envoy, warms each up, then measures
/// throughput and CPU per request in interleaved rounds.
/// `native_dir` is where Envoy finds the native dynamic module.
fn measure(
    configs: Vec<configs::BenchConfig>,
    args: &Args,
    header: &str,
    native_dir: &std::path::Path,
) -> Result<Vec<Running>> {
    let mut running = Vec::new();
    for config in configs {
        let envoy = Envoy::start_with(
            &config.bootstrap,
            &Options::default().concurrency(1).log_level("warning").env(
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                &native_dir.to_string_lossy(),
            ),
        )
        .with_context(|| format!("starting Envoy for {}", config.name))?;
        pin(envoy.pid(), 0)?;
        let port = envoy.listener_port(INGRESS)?;
        eprintln!("started {} (pid {})", config.name, envoy.pid());
        running.push(Running {
            config,
            envoy,
            url: format!("http://127.0.0.1:{port}/bench"),
            addr: format!("127.0.0.1:{port}"),
            rps: Vec::new(),
            cpu_per_request: Vec::new(),
        });
    }
    for r in &running {
        load::wrk(&r.url, 16, Duration::from_secs(1), 1, header)
            .with_context(|| format!("warm-up of {}", r.config.name))?;
    }
    for round in 0..args.rounds {
        for r in running.iter_mut() {
            let before = procfs::cpu_seconds(r.envoy.pid())?;
            let t = load::wrk(&r.url, 16, args.duration, 1, header)?;
            let cpu = procfs::cpu_seconds(r.envoy.pid())? - before;
            r.rps.push(t.rps);
            r.cpu_per_request.push(cpu / t.requests.max(1) as f64 * 1e6);
            eprintln!("round {round}: {:<16} {:>9.0} req/s", r.config.name, t.rps);
        }
    }
    Ok(running)
}

/// Pins every thread of `pid` to `cpu`, so Envoy and the load generator do not share.
pub(crate) fn pin(pid: u32, cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()
        .context("running taskset")?;
    if !status.status.success() {
        bail!(
            "taskset failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::latency_rate;

    #[test]
    fn latency_runs_at_half_of_bare_unless_the_row_saturates_below_that() {
        assert_eq!(latency_rate(40_000.0, 30_000.0), 20_000);
        assert_eq!(latency_rate(40_000.0, 15_000.0), 7_500);
        assert_eq!(latency_rate(40_000.0, 0.0), 1);
    }
}
