//! Runs scenarios through a real Envoy 1.40 (one per scenario, one worker so there is one
//! VM, as in a one-worker harness) with the probe in the chain, proxying to echo servers:
//! `echo` on the default route, `v2` on the header-matched routes, `callout` as the probe's
//! callout cluster, and a cluster nobody listens on.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use wasmesh_harness::build;

use super::scenario::{Observed, Request, Scenario, AUTHORITY};
use super::{
    Driver, ADDED_ROUTE, BLACKHOLE_CLUSTER, CALLOUT_CLUSTER, DEFAULT_ROUTE, PLUGIN, SET_ROUTE,
    UNREACHABLE_CLUSTER, V2_ROUTE,
};
use crate::bootstrap::{self, http_listener, static_cluster, wasm_filters, WasmFilter, INGRESS};
use crate::echo::EchoServer;
use crate::envoy::Envoy;
use crate::http;

pub struct EnvoyDriver {
    // Declared first so Envoy stops before its upstreams.
    envoy: Envoy,
    url: String,
    _upstreams: Vec<EchoServer>,
    /// Accepts connections (the kernel's backlog does) and never answers.
    _blackhole: std::net::TcpListener,
}

impl EnvoyDriver {
    pub fn new(scenario: &Scenario) -> Result<EnvoyDriver> {
        let wasm = build::try_wasm_module("wasmesh-probe").map_err(|e| anyhow!("{e}"))?;
        let echo = EchoServer::start_named("echo")?;
        let v2 = EchoServer::start_named("v2")?;
        let callout = EchoServer::start_named("callout")?;
        let mut filter =
            WasmFilter::new(PLUGIN, wasm).config(Value::String(scenario.plugin_config.clone()));
        if let Some(policy) = scenario.failure_policy {
            filter = filter.failure_policy(policy);
        }
        let blackhole = std::net::TcpListener::bind("127.0.0.1:0")?;
        let ports = Ports {
            echo: echo.port(),
            v2: v2.port(),
            callout: callout.port(),
            closed: closed_port()?,
            blackhole: blackhole.local_addr()?.port(),
        };
        let config = bootstrap_for(&filter, &ports);
        let envoy = Envoy::start(&config).context("starting Envoy")?;
        let url = envoy.listener_url(INGRESS)?;
        Ok(EnvoyDriver {
            envoy,
            url,
            _upstreams: vec![echo, v2, callout],
            _blackhole: blackhole,
        })
    }

    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

struct Ports {
    echo: u16,
    v2: u16,
    callout: u16,
    closed: u16,
    blackhole: u16,
}

fn bootstrap_for(filter: &WasmFilter, ports: &Ports) -> Value {
    let routes = vec![
        json!({
            "name": V2_ROUTE,
            "match": { "prefix": "/", "headers": [
                { "name": "x-probe-route", "string_match": { "exact": "changed" } },
            ] },
            "route": { "cluster": "v2" },
        }),
        json!({
            "name": SET_ROUTE,
            "match": { "prefix": "/", "headers": [
                { "name": "x-probe-set", "present_match": true },
            ] },
            "route": { "cluster": "v2" },
        }),
        json!({
            "name": ADDED_ROUTE,
            "match": { "prefix": "/", "headers": [
                { "name": "x-probe-added", "present_match": true },
            ] },
            "route": { "cluster": "v2" },
        }),
        json!({ "name": DEFAULT_ROUTE, "match": { "prefix": "/" }, "route": { "cluster": bootstrap::UPSTREAM } }),
    ];
    let mut listener = http_listener(INGRESS, wasm_filters(std::slice::from_ref(filter)), routes);
    // HTTP/1 request trailers reach filters only when the connection manager enables them.
    if let Some(hcm) = listener.pointer_mut("/filter_chains/0/filters/0/typed_config") {
        hcm["http_protocol_options"] = json!({ "enable_trailers": true });
    }
    json!({
        "admin": bootstrap::admin(),
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                static_cluster(bootstrap::UPSTREAM, ports.echo),
                static_cluster("v2", ports.v2),
                static_cluster(CALLOUT_CLUSTER, ports.callout),
                static_cluster(UNREACHABLE_CLUSTER, ports.closed),
                static_cluster(BLACKHOLE_CLUSTER, ports.blackhole),
            ],
        },
    })
}

/// A chunked request with trailers, written by hand (the client helper sends none).
fn chunked_request(request: &Request, trailers: &[(String, String)]) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: {AUTHORITY}\r\n",
        request.method, request.path
    );
    for (n, v) in &request.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    for chunk in request.body.iter().filter(|c| !c.is_empty()) {
        bytes.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        bytes.extend(chunk);
        bytes.extend(b"\r\n");
    }
    bytes.extend(b"0\r\n");
    for (n, v) in trailers {
        bytes.extend(format!("{n}: {v}\r\n").into_bytes());
    }
    bytes.extend(b"\r\n");
    bytes
}

impl Driver for EnvoyDriver {
    fn name(&self) -> &'static str {
        "envoy"
    }

    fn send(&mut self, request: &Request) -> Result<Observed> {
        let response = match &request.trailers {
            Some(trailers) => http::raw_request(
                self.envoy.listener_addr(INGRESS)?,
                &chunked_request(request, trailers),
            )?,
            None => {
                let mut headers: Vec<(&str, &str)> = vec![("host", AUTHORITY)];
                headers.extend(
                    request
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str())),
                );
                let body = request.body.concat();
                http::request(
                    &request.method,
                    &format!("{}{}", self.url, request.path),
                    &headers,
                    &body,
                )?
            }
        };
        Ok(Observed {
            status: response.status,
            headers: response
                .headers
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect(),
            body: response.body,
        })
    }

    fn wait(&mut self, time: Duration) {
        std::thread::sleep(time);
    }

    /// Counters and gauges from `/stats` (`wasmcustom.` prefix); a histogram's sample count
    /// from `/stats/prometheus` (`NAME_count`, prefix stripped).
    fn metric(&self, name: &str) -> Result<Option<u64>> {
        if let Some(v) = self.envoy.stat(&format!("wasmcustom.{name}"))? {
            return Ok(Some(v));
        }
        let prometheus = self.envoy.prometheus()?;
        let count = format!("{name}_count");
        Ok(prometheus.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == count).then(|| value.parse().ok())?
        }))
    }

    fn logs(&self) -> String {
        self.envoy.log()
    }

    fn asynchronous(&self) -> bool {
        true
    }
}
