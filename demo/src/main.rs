//! `wasmesh-demo`: serve the Bookinfo service the environment names, or, with
//! `--check URL` (or when invoked as `wasmesh-healthcheck`), run one health check.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wasmesh_demo::{check, server, App, Config};

const USAGE: &str = "usage:
  wasmesh-demo                 serve the service named by $SERVICE (see demo/README.md)
  wasmesh-demo --check URL     exit 0 if GET URL answers 2xx (container health checks)
  wasmesh-healthcheck URL      the same, when the binary is installed under that name";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if invoked_as == "wasmesh-healthcheck" {
        return run_check(args.get(1));
    }
    match args.get(1).map(String::as_str) {
        None => serve(),
        Some("--check") => run_check(args.get(2)),
        Some("--version" | "-V") => {
            println!("wasmesh-demo {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("wasmesh-demo: unexpected argument {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run_check(url: Option<&String>) -> ExitCode {
    let Some(url) = url else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
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
