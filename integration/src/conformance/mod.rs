//! The conformance suite's machinery: one scenario description, run through the harness
//! (the compiled `wasmesh-probe` in `wasmesh-harness`) and through real Envoy 1.40, with
//! the same expected outcome asserted on both and their observations compared.
//!
//! * [`scenario`] — requests and expected outcomes in HTTP terms.
//! * [`HarnessDriver`] — runs the probe in the harness and plays Envoy's part around it:
//!   the echo upstream, the callout cluster, routing.
//! * [`EnvoyDriver`] — one Envoy per scenario, proxying to echo servers.
//! * [`run`] — drives both, checks each against the expectation, then compares them.

pub mod envoy_driver;
pub mod harness_driver;
pub mod normalise;
pub mod scenario;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

pub use envoy_driver::EnvoyDriver;
pub use harness_driver::HarnessDriver;
pub use scenario::{Expect, Match, Observed, Request, Scenario, Step, Upstream, AUTHORITY};

use crate::echo::Echo;

/// The filter name (and root id, vm id) of the probe in both drivers: its `plugin_name`.
pub const PLUGIN: &str = "probe";
/// The route every request takes unless a header sends it to [`V2_ROUTE`].
pub const DEFAULT_ROUTE: &str = "default";
/// Matches requests carrying `x-probe-route: changed` and goes to the `v2` echo.
pub const V2_ROUTE: &str = "v2_route";
/// Matches requests carrying `x-probe-set` (any value) and also goes to `v2`.
pub const SET_ROUTE: &str = "set_route";
/// Matches requests carrying `x-probe-added` (the `set-header` op adds it): goes to `v2`.
pub const ADDED_ROUTE: &str = "added_route";
/// The callout cluster the probe uses by default: an echo server named `callout`.
pub const CALLOUT_CLUSTER: &str = "probe_upstream";
/// A cluster whose only endpoint refuses connections.
pub const UNREACHABLE_CLUSTER: &str = "unreachable";
/// A cluster whose endpoint accepts connections and never answers: callouts time out.
pub const BLACKHOLE_CLUSTER: &str = "blackhole";
/// The body of the 503 Envoy's async client answers a callout with when it cannot connect.
pub const CONNECT_FAILURE_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";

/// How long [`Request::eventually`] steps and metric checks keep retrying on Envoy.
const EVENTUALLY: Duration = Duration::from_secs(5);

/// Something that can run a scenario's steps.
pub trait Driver {
    fn name(&self) -> &'static str;
    /// Sends one request and returns what the client received.
    fn send(&mut self, request: &Request) -> Result<Observed>;
    fn wait(&mut self, time: Duration);
    /// A metric's value (for histograms: the number of samples).
    fn metric(&self, name: &str) -> Result<Option<u64>>;
    /// Every message the filter logged so far.
    fn logs(&self) -> String;
    /// Whether events happen asynchronously (then checks retry for a while).
    fn asynchronous(&self) -> bool;
}

/// Runs `scenario` through both drivers; any failure lists every mismatch found.
pub fn run(scenario: &Scenario) -> Result<()> {
    let harness = run_on(&mut HarnessDriver::new(scenario)?, scenario);
    let envoy = run_on(&mut EnvoyDriver::new(scenario)?, scenario);
    let mut problems = Vec::new();
    for (driver, result) in [("harness", &harness), ("envoy", &envoy)] {
        match result {
            Ok(run) => problems.extend(run.problems.iter().map(|p| format!("[{driver}] {p}"))),
            Err(err) => problems.push(format!("[{driver}] did not run: {err:#}")),
        }
    }
    if let (Ok(h), Ok(e)) = (&harness, &envoy) {
        problems.extend(normalise::compare(scenario, &h.observed, &e.observed));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut report = format!("scenario {:?}:\n  {}", scenario.name, problems.join("\n  "));
    for (driver, result) in [("harness", &harness), ("envoy", &envoy)] {
        if let Ok(run) = result {
            for (i, o) in run.observed.iter().enumerate() {
                report.push_str(&format!(
                    "\n  [{driver}] step {i}: {} {:?}\n      {}",
                    o.status,
                    o.headers,
                    o.text().chars().take(600).collect::<String>()
                ));
            }
            if !run.logs_tail.is_empty() {
                report.push_str(&format!("\n  [{driver}] log tail:\n{}", run.logs_tail));
            }
        }
    }
    bail!("{report}")
}

/// What one driver did: the responses, and the mismatches with the expectation.
pub struct Run {
    pub observed: Vec<Observed>,
    pub problems: Vec<String>,
    pub logs_tail: String,
}

/// Runs the steps on one driver and checks each response against its expectation.
pub fn run_on(driver: &mut dyn Driver, scenario: &Scenario) -> Result<Run> {
    let mut observed: Vec<Observed> = Vec::new();
    let mut problems = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        match step {
            Step::Wait(time) => driver.wait(*time),
            Step::Send(request, expect) => {
                let request = request.resolve(&observed);
                let deadline = Instant::now() + EVENTUALLY;
                let (response, found) = loop {
                    let response = driver.send(&request)?;
                    let found = check(expect, &response);
                    let retry = request.eventually && driver.asynchronous();
                    if found.is_empty() || !retry || Instant::now() >= deadline {
                        break (response, found);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                };
                problems.extend(found.into_iter().map(|p| format!("step {i}: {p}")));
                observed.push(response);
            }
        }
    }
    for (name, want) in &scenario.metrics {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let value = driver.metric(name)?.map(|v| v.to_string());
            let values: Vec<&str> = value.as_deref().into_iter().collect();
            match want.check(&values) {
                Ok(()) => break,
                Err(e) if !driver.asynchronous() || Instant::now() >= deadline => {
                    problems.push(format!("metric {name}: {e}"));
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    check_logs(driver, scenario, &mut problems);
    let logs_tail = if problems.is_empty() {
        String::new()
    } else {
        let logs = driver.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    Ok(Run {
        observed,
        problems,
        logs_tail,
    })
}

fn check_logs(driver: &dyn Driver, scenario: &Scenario, problems: &mut Vec<String>) {
    // Wanted lines first (with retries: Envoy writes its log asynchronously); once they
    // are there, anything unwanted would have been written too.
    let deadline = Instant::now() + EVENTUALLY;
    let wanted: Vec<&String> = scenario
        .logs
        .iter()
        .filter(|(_, present)| *present)
        .map(|(text, _)| text)
        .collect();
    let logs = loop {
        let logs = driver.logs();
        let all = wanted.iter().all(|w| logs.contains(w.as_str()));
        if all || !driver.asynchronous() || Instant::now() >= deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (text, present) in &scenario.logs {
        if logs.contains(text.as_str()) != *present {
            let verb = if *present { "lacks" } else { "has" };
            problems.push(format!("log {verb} {text:?}"));
        }
    }
}

/// Every way `observed` differs from `expect`.
pub fn check(expect: &Expect, observed: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    if observed.status != expect.status {
        problems.push(format!(
            "status {} (expected {}), body {:?}",
            observed.status,
            expect.status,
            observed.text().chars().take(200).collect::<String>()
        ));
    }
    for (name, want) in &expect.headers {
        if let Err(e) = want.check(&observed.header_all(name)) {
            problems.push(format!("response header {name}: {e}"));
        }
    }
    if let Some(want) = &expect.body {
        if let Err(e) = want.check(&[observed.text().as_str()]) {
            problems.push(format!("body: {e}"));
        }
    }
    let text = observed.text();
    for want in &expect.contains {
        if !text.contains(want.as_str()) {
            problems.push(format!("body lacks {want:?}"));
        }
    }
    if let Some(want) = &expect.upstream {
        match Echo::parse(&observed.body) {
            Err(_) => problems.push(format!(
                "expected the {} upstream to answer, got {:?}",
                want.name,
                observed.text().chars().take(200).collect::<String>()
            )),
            Ok(echo) => problems.extend(check_upstream(want, &echo)),
        }
    }
    problems
}

fn check_upstream(want: &Upstream, echo: &Echo) -> Vec<String> {
    let mut problems = Vec::new();
    if echo.name != want.name {
        problems.push(format!(
            "routed to {:?}, expected {:?}",
            echo.name, want.name
        ));
    }
    if let Some(path) = &want.path {
        if &echo.path != path {
            problems.push(format!("upstream path {:?}, expected {path:?}", echo.path));
        }
    }
    for (name, m) in &want.headers {
        if let Err(e) = m.check(&echo.header_all(name)) {
            problems.push(format!("upstream header {name}: {e}"));
        }
    }
    if let Some(m) = &want.body {
        if let Err(e) = m.check(&[echo.body.as_str()]) {
            problems.push(format!("upstream body: {e}"));
        }
    }
    problems
}
