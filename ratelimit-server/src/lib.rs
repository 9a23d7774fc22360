//! wasmesh-ratelimit-server: an Envoy rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService`) with fixed windows in memory or Redis.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod health;
pub mod proto;
pub mod service;
pub mod store;

/// The tonic service and client tonic-build generated (see build.rs).
pub mod rls {
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    include!(concat!(
        env!("OUT_DIR"),
        "/envoy.service.ratelimit.v3.RateLimitService.rs"
    ));
}

use config::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use store::{MemoryStore, RedisStore, Store};

/// How to run the service.
pub struct Options {
    pub listen: SocketAddr,
    pub config: Vec<PathBuf>,
    pub redis: Option<String>,
    /// Where to answer plain HTTP readiness checks ([`health`]), if anywhere.
    pub health: Option<SocketAddr>,
}

/// Serves until the process is stopped. SIGHUP reloads the config files; a config
/// that does not load is logged and the old one kept.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let limits = Arc::new(RwLock::new(Arc::new(Limits::load(&opts.config)?)));
    let store = match &opts.redis {
        Some(url) => {
            let r = RedisStore::new(url)?;
            r.ping().await?;
            Store::Redis(r)
        }
        None => Store::Memory(MemoryStore::default()),
    };
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    reload_on_hangup(limits.clone(), opts.config.clone())?;
    if let Some(h) = opts.health {
        health::spawn(tokio::net::TcpListener::bind(h).await?);
    }
    let svc = service::Service::new(limits, store);
    eprintln!(
        "wasmesh-ratelimit-server: listening on {addr} ({})",
        if opts.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    );
    tonic::transport::Server::builder()
        .add_service(rls::rate_limit_service_server::RateLimitServiceServer::new(
            svc,
        ))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await?;
    Ok(())
}

fn reload_on_hangup(limits: Arc<RwLock<Arc<Limits>>>, paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match Limits::load(&paths) {
                Ok(new) => {
                    *limits.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
                    eprintln!("wasmesh-ratelimit-server: config reloaded");
                }
                Err(e) => {
                    eprintln!("wasmesh-ratelimit-server: reload refused, old config kept: {e}")
                }
            }
        }
    });
    Ok(())
}
