//! `wasmesh-demo`: serve the Bookinfo service the environment names, or, with
//! `--check URL` (or when invoked as `wasmesh-healthcheck`), run one health check.

use clap::Parser;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wasmesh_demo::{check, server, App, Config};

/// Serve the Bookinfo service named by $SERVICE (see demo/README.md). Installed as
/// `wasmesh-healthcheck`, it runs one health check instead: `wasmesh-healthcheck URL`.
#[derive(Parser)]
#[command(name = "wasmesh-demo", version)]
struct Demo {
    /// Exit 0 if GET URL answers 2xx, instead of serving (container health checks).
    #[arg(long, value_name = "URL")]
    check: Option<String>,
}

/// Exit 0 if GET URL answers 2xx (wasmesh-demo installed under this name, for
/// container health checks).
#[derive(Parser)]
#[command(name = "wasmesh-healthcheck")]
struct Healthcheck {
    url: String,
}

fn main() -> ExitCode {
    let invoked_as = std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n.to_owned()));
    if invoked_as.is_some_and(|n| n == "wasmesh-healthcheck") {
        let args: Healthcheck = wasmesh_cli_args::parse();
        return run_check(&args.url);
    }
    let args: Demo = wasmesh_cli_args::parse();
    match args.check {
        Some(url) => run_check(&url),
        None => serve(),
    }
}

fn run_check(url: &str) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasmesh-healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(check::check(url, Duration::from_secs(2))) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmesh-healthcheck: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> ExitCode {
    match try_serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmesh-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_serve() -> anyhow::Result<()> {
    let cfg = Config::from_env()?;
    // Two workers: a demo service is I/O bound, and the mesh runs a dozen of them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("bind {}: {e}", cfg.listen))?;
        eprintln!(
            "wasmesh-demo: {} {} ({}) listening on {}, calling through {}",
            cfg.service,
            cfg.version,
            cfg.instance,
            cfg.listen,
            cfg.outbound.as_deref().unwrap_or("(direct, no sidecar)")
        );
        let drain = cfg.drain_timeout;
        let shutdown = shutdown_signal()?;
        server::serve(listener, Arc::new(App::new(cfg)), shutdown, drain).await;
        eprintln!("wasmesh-demo: stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM (docker stop, `wasmesh down`) or SIGINT (Ctrl-C).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
