//! The local mesh as the end-to-end suite sees it: one trait over the ways of running
//! it (process mode and docker compose mode), and the
//! scenarios as functions of `&mut dyn LocalMesh`, so every backend runs the same ones.
//!
//! Scenarios check outcomes from outside: through the gateway, Prometheus' HTTP API,
//! a sidecar's inbound port, or a request sent as an app would send it.

pub mod docker;
mod docker_call;
pub mod process;
pub mod scenarios;

use std::net::SocketAddr;

use anyhow::Result;

use crate::http::Response;

/// A running mesh: Bookinfo-shaped, from `integration/tests/meshes/bookinfo.yaml`.
pub trait LocalMesh {
    /// `http://HOST:PORT` of the ingress gateway.
    fn gateway_url(&self) -> String;
    /// `http://HOST:PORT` of Prometheus, when it runs.
    fn prometheus_url(&self) -> Option<String>;
    /// Stops one instance (`reviews-v1-0`): its app and its sidecar, as if its pod died.
    fn stop_instance(&mut self, instance: &str) -> Result<()>;
    /// Starts a stopped instance again and waits until it is ready.
    fn start_instance(&mut self, instance: &str) -> Result<()>;
    /// Where other sidecars reach `instance`'s sidecar (the mTLS inbound listener), as
    /// reachable from the test.
    fn inbound_addr(&self, instance: &str) -> SocketAddr;
    /// Sends a request as `instance`'s app would: to its sidecar's outbound listener,
    /// addressed to `authority` (`details:9080`), so the call leaves with `instance`'s
    /// identity. (Compose: from inside the app's network namespace.)
    fn call_from(
        &self,
        instance: &str,
        method: &str,
        authority: &str,
        path: &str,
    ) -> Result<Response>;
}
