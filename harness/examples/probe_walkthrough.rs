//! A walk-through of the harness on the probe filter: configure two workers, run a request
//! that makes a callout, answer it, move the clock, and read metrics and logs.
//! Run: `cargo run -p wasmesh-harness --example probe_walkthrough`.

use std::time::Duration;
use wasmesh_harness::{build, request, response, Action, HarnessError, Host, Level, Module};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = build::try_wasm_module("wasmesh-probe")?;
    let module = Module::load(path)?;
    let host = Host::builder(&module)
        .workers(2)
        .plugin_config("tick_ms=1000")
        .cluster("auth")
        .build()?;
    println!(
        "configured on {} workers: {}",
        host.workers(),
        host.configured()
    );

    // A request that calls out to the `auth` cluster and waits for the answer.
    let mut s = host.stream_on(1)?;
    let mut headers = request("POST", "/login", "example.com");
    headers.push(("x-probe-op".into(), "callout".into()));
    headers.push(("x-probe-cluster".into(), "auth".into()));
    let action = s.request_headers(&headers, true);
    println!("request headers -> {action:?}");
    let call = host
        .pending_http_calls()
        .into_iter()
        .next()
        .ok_or(HarnessError::NoPendingCall(0))?;
    println!(
        "callout #{} to {} {:?}",
        call.token,
        call.cluster,
        call.headers.get(":path")
    );
    host.respond_http_call(call.token, &[(":status", "200")], "welcome")?;
    println!("request resumed {} time(s)", s.request_resumed());
    if s.response_headers(&response(200), true) == Action::Continue {
        for (k, v) in s.response_header_map().iter() {
            println!("  response {k}: {v}");
        }
    }
    s.finish();

    // Ticks fire on both workers as the manual clock moves.
    host.advance(Duration::from_secs(3));
    println!("ticks after 3s: {:?}", host.shared_data_str("probe.ticks"));
    println!(
        "probe_ticks_total = {:?}",
        host.metric("probe_ticks_total").map(|m| m.value)
    );
    for log in host.logs_at(Level::Info) {
        println!("  [worker {}] {}", log.worker, log.message);
    }
    Ok(())
}
