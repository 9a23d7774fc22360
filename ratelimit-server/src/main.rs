//! `wasmesh-ratelimit-server --config mesh.yaml [--redis redis://HOST:PORT] [--listen ADDR] [--health ADDR]`

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// An Envoy rate limit service (envoy.service.ratelimit.v3) for wasmesh's global limits.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// A domain's descriptors and limits (envoyproxy/ratelimit YAML); repeat for more domains.
    #[arg(long, required = true)]
    config: Vec<PathBuf>,
    /// Share counters through this Redis (redis://HOST:PORT) instead of memory.
    #[arg(long)]
    redis: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Also answer plain HTTP readiness checks (200 on any request) here, once ready.
    #[arg(long)]
    health: Option<SocketAddr>,
}

#[tokio::main]
async fn main() {
    let args: Args = wasmesh_cli_args::parse();
    let opts = wasmesh_ratelimit_server::Options {
        listen: args.listen,
        config: args.config,
        redis: args.redis,
        health: args.health,
    };
    if let Err(e) = wasmesh_ratelimit_server::run(opts).await {
        eprintln!("wasmesh-ratelimit-server: {e:#}");
        std::process::exit(1);
    }
}
