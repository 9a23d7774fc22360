//! A bounded, deterministic fuzzer for the compiled filters: it drives each filter's
//! `.wasm` (and the one-VM mesh module) through the harness with mutated configs and
//! hostile requests, and checks the property that matters in Envoy: **no input traps
//! the VM** (a trap fails the request with 503 and, FAIL_CLOSED, every later request
//! on that worker), and every request is answered or continues.
//!
//! No libFuzzer: an input is a seed for [`rng::Rng`], so the run is reproducible and
//! the corpus is a list of seeds plus the valid configs the mutations start from
//! (`fuzz/corpus/<target>/`). One seed is one *batch*: a config (as written, or
//! mutated) and [`BATCH`] requests on one host, so the cost of building a host is
//! shared. Callouts a request makes are answered as a hostile upstream would: HTTP
//! calls (JWKS, ext authz) with odd statuses, headers and bodies, failures and
//! timeouts; gRPC calls (the rate limit service) with well-formed replies of extreme
//! values, damaged or malformed messages, error statuses and timeouts. `scripts/fuzz.sh` runs the long budget; `cargo test -p wasmesh-testkit
//! --test fuzz` a short one. docs/reliability.md has the figures.

mod configs;
mod inputs;
pub mod rng;

use inputs::{GrpcReply, Reply, Request};
use rng::Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};
use wasmesh_harness::{build, Action, Host, Module, PropertyValue, Stream};

/// Requests per batch (per host built).
pub const BATCH: u64 = 32;

/// A module under fuzz: a filter's own, or the mesh module with all its stages.
pub struct Target {
    pub name: &'static str,
    package: &'static str,
    bundle: bool,
}

impl Target {
    /// Whether a request may legitimately wait longer than [`PATIENCE`]: the fault
    /// filter (alone or as the mesh module's stage) honours `x-envoy-fault-delay-request`
    /// of any length, as Envoy's does, and configured delays of up to an hour.
    pub fn may_delay(&self) -> bool {
        matches!(self.name, "fault" | "mesh")
    }
}

pub const TARGETS: [Target; 8] = [
    target("authz", "wasmesh-authz"),
    target("body", "wasmesh-body"),
    target("cors", "wasmesh-cors"),
    target("ratelimit", "wasmesh-ratelimit"),
    target("headers", "wasmesh-headers"),
    target("fault", "wasmesh-fault"),
    target("telemetry", "wasmesh-telemetry"),
    Target {
        name: "mesh",
        package: "wasmesh-mesh",
        bundle: true,
    },
];

const fn target(name: &'static str, package: &'static str) -> Target {
    Target {
        name,
        package,
        bundle: false,
    }
}

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    Continued,
    /// Still paused after [`PATIENCE`] of virtual time with nothing left to answer: a
    /// configured or header-requested delay longer than that, or a hang.
    Held,
}

/// Virtual time a paused request is given to finish (callouts answered meanwhile).
const PATIENCE: Duration = Duration::from_secs(65);

/// Something the fuzzer found: a trap, with the batch seed that replays it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub seed: u64,
    pub what: String,
}

/// What a run did, for the test's assertion and docs/reliability.md.
#[derive(Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub batches: u64,
    pub inputs: u64,
    pub configs_refused: u64,
    pub answered: u64,
    pub continued: u64,
    pub held: u64,
    /// The first few held requests (config and request), to tell a long delay from a hang.
    pub held_examples: Vec<String>,
    /// Host-call misuse Envoy would log, such as a second `send_local_response`.
    pub misuse: u64,
    /// HTTP callouts (JWKS, ext authz) and gRPC calls (the rate limit service) the
    /// requests made, each answered as [`answer_callouts`] picks.
    pub http_callouts: u64,
    pub grpc_calls: u64,
    pub traps: Vec<Finding>,
    pub elapsed: Duration,
    /// Of `elapsed`, the time spent building hosts (instantiating and configuring).
    pub building: Duration,
}

impl Report {
    pub fn summary(&self) -> String {
        let rate = self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "{}: {} inputs ({} configs, {} refused) in {:.1} s ({:.1} s building hosts; {rate:.0}/s): {} answered, {} continued, {} held, {} misuse, {} HTTP callouts, {} gRPC calls, {} traps",
            self.target,
            self.inputs,
            self.batches,
            self.configs_refused,
            self.elapsed.as_secs_f64(),
            self.building.as_secs_f64(),
            self.answered,
            self.continued,
            self.held,
            self.misuse,
            self.http_callouts,
            self.grpc_calls,
            self.traps.len()
        )
    }
}

/// `fuzz/corpus/<target>/` in the workspace.
pub fn corpus_dir(target: &Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target.name)
}

/// The corpus: the configs mutations start from (`*.json`) and the batch seeds kept
/// because they once found something (`seeds.txt`, one decimal seed a line, `#` comments).
pub struct Corpus {
    configs: Vec<String>,
    pub seeds: Vec<u64>,
}

impl Corpus {
    pub fn load(target: &Target) -> Corpus {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let configs: Vec<String> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| configs::expand(&std::fs::read_to_string(p).unwrap()))
            .collect();
        assert!(!configs.is_empty(), "no configs in {}", dir.display());
        let seeds = std::fs::read_to_string(dir.join("seeds.txt"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(|l| l.parse().unwrap_or_else(|e| panic!("seeds.txt: {l}: {e}")))
            .collect();
        Corpus { configs, seeds }
    }
}

/// Loads (building it if needed) the target's module.
pub fn module(target: &Target) -> Module {
    let path = if target.bundle {
        build::wasm_bundle(target.package)
    } else {
        build::wasm_module(target.package)
    };
    Module::load(path).expect("the module loads")
}

/// Runs the corpus's seeds, then batches from `run_seed` until `inputs` requests have
/// gone through (a refused config runs none, so it does not count). Stops early after
/// ten traps (they are usually one bug).
pub fn run(target: &'static Target, corpus: &Corpus, run_seed: u64, inputs: u64) -> Report {
    let module = module(target);
    let mut report = Report {
        target: target.name,
        ..Report::default()
    };
    // After the module's compilation, which is not the inputs' cost.
    let started = Instant::now();
    for &seed in &corpus.seeds {
        run_batch(&module, corpus, seed, &mut report);
    }
    let mut i = 0;
    while report.inputs < inputs && report.traps.len() < 10 {
        run_batch(&module, corpus, rng::input_seed(run_seed, i), &mut report);
        i += 1;
    }
    report.elapsed = started.elapsed();
    report
}

/// Every host's wall clock starts here, and the tokens are minted for it: with the real
/// clock, time-dependent outcomes (token expiry, rate-limit windows) made a seed's run
/// differ from one day to the next. 2026-06-01T00:00:00Z.
pub(crate) const EPOCH_S: i64 = 1_780_272_000;

/// One batch: a host with a config from `seed`, then [`BATCH`] requests.
pub fn run_batch(module: &Module, corpus: &Corpus, seed: u64, report: &mut Report) {
    let mut rng = Rng::new(seed);
    let base = rng.pick_ref(&corpus.configs).clone();
    let config = configs::mutate(&mut rng, &base);
    report.batches += 1;
    let start = UNIX_EPOCH + Duration::from_secs(EPOCH_S as u64);
    let building = Instant::now();
    let host = match Host::builder(module)
        .plugin_config(config.clone())
        .start_time(start)
        .property(
            &["source", "address"],
            PropertyValue::string("10.0.0.9:40000"),
        )
        .property(&["destination", "port"], PropertyValue::int(8080))
        .property(&["xds", "route_name"], "fuzz-route")
        .build()
    {
        Ok(host) => host,
        Err(e) => {
            return report.traps.push(Finding {
                seed,
                what: format!("host build: {e}"),
            })
        }
    };
    report.building += building.elapsed();
    if let Some(trap) = host.vm_failure(0) {
        return report.traps.push(Finding {
            seed,
            what: format!("trap in on_configure: {trap}; config {}", preview(&config)),
        });
    }
    if !host.configured() {
        // Refused: Envoy would not run the filter with it (or not start).
        report.configs_refused += 1;
        return;
    }
    for i in 0..BATCH {
        let request = inputs::request(&mut rng);
        report.inputs += 1;
        match drive(&host, &mut rng, &request) {
            Ok((outcome, misuse)) => {
                report.misuse += misuse;
                match outcome {
                    Outcome::Answered => report.answered += 1,
                    Outcome::Continued => report.continued += 1,
                    Outcome::Held => {
                        report.held += 1;
                        if report.held_examples.len() < 3 {
                            report.held_examples.push(format!(
                                "seed {seed}: config {}; request {}",
                                preview(&config),
                                describe(&request)
                            ));
                        }
                    }
                }
            }
            Err(trap) => {
                return report.traps.push(Finding {
                    seed,
                    what: format!(
                        "request {i}: {trap}; config {}; request {}",
                        preview(&config),
                        describe(&request)
                    ),
                })
            }
        }
    }
    report.http_callouts += host.http_calls().len() as u64;
    report.grpc_calls += host.grpc_calls().len() as u64;
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.chars().take(600).collect()
}

fn describe(r: &Request) -> String {
    let headers: Vec<String> = r
        .headers
        .iter()
        .take(24)
        .map(|(k, v)| format!("{k}: {}", preview(&v[..v.len().min(120)])))
        .collect();
    format!(
        "{} headers [{}], body {:?} bytes, trailers {:?}",
        r.headers.len(),
        headers.join(" | "),
        r.body.as_ref().map(Vec::len),
        r.trailers.as_ref().map(Vec::len)
    )
}

/// The trap that failed the stream or its VM, if any.
fn trapped(host: &Host, s: &Stream<'_>) -> Result<(), String> {
    if let Some(f) = s.failure().filter(|f| !f.is_empty()) {
        return Err(format!("stream failed: {f}"));
    }
    match host.vm_failure(0) {
        Some(f) => Err(format!("VM failed: {f}")),
        None => Ok(()),
    }
}

/// One request through the host: the client's side, callouts answered as `rng` says,
/// time let pass for delays; then the response if the request went on.
fn drive(host: &Host, rng: &mut Rng, r: &Request) -> Result<(Outcome, u64), String> {
    let mut s = host.stream();
    let more = r.body.is_some() || r.trailers.is_some();
    let mut last = s.request_headers(&r.headers, !more);
    if let Some(body) = &r.body {
        // In two chunks: a stage that counts or holds a body sees it arrive in parts.
        let (first, rest) = body.split_at(body.len() / 2);
        if !first.is_empty() {
            last = s.request_body(first, false);
        }
        if s.local_response().is_none() {
            last = s.request_body(rest, r.trailers.is_none());
        }
    }
    if let Some(trailers) = &r.trailers {
        last = s.request_trailers(trailers);
    }
    trapped(host, &s)?;
    let settled = |s: &Stream<'_>| {
        s.local_response().is_some() || last == Action::Continue || s.request_resumed() > 0
    };
    let mut waited = Duration::ZERO;
    while !settled(&s) && waited < PATIENCE {
        answer_callouts(host, rng)?;
        if settled(&s) {
            break;
        }
        let step = if waited < Duration::from_secs(2) {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        host.advance(step);
        waited += step;
        trapped(host, &s)?;
    }
    trapped(host, &s)?;
    let outcome = if s.local_response().is_some() {
        Outcome::Answered
    } else if settled(&s) {
        s.response_headers(&r.response, r.response_body.is_none());
        if let Some(body) = &r.response_body {
            let (first, rest) = body.split_at(body.len() / 2);
            if !first.is_empty() {
                s.response_body(first, false);
            }
            if s.local_response().is_none() && !s.response_closed() {
                s.response_body(rest, true);
            }
        }
        trapped(host, &s)?;
        Outcome::Continued
    } else {
        Outcome::Held
    };
    let misuse = s.errors().len() as u64;
    s.finish();
    trapped(host, &s)?;
    host.advance(Duration::from_millis(rng.below(50) as u64));
    Ok((outcome, misuse))
}

fn answer_callouts(host: &Host, rng: &mut Rng) -> Result<(), String> {
    for call in host.pending_http_calls() {
        let result = match inputs::reply(rng) {
            Reply::Respond(headers, body) => host.respond_http_call(call.token, &headers, body),
            Reply::Fail => host.fail_http_call(call.token),
            Reply::TimeOut => {
                pass_deadline(host, call.timeout);
                Ok(())
            }
        };
        // A call already answered (by a timeout above) is not the filter's fault.
        drop(result);
        if let Some(f) = host.vm_failure(0) {
            return Err(format!("VM failed answering a callout: {f}"));
        }
    }
    for call in host.pending_grpc_calls() {
        let reply = inputs::grpc_reply(rng);
        let what = match &reply {
            GrpcReply::Respond(m) => format!("a {}-byte reply", m.len()),
            GrpcReply::Fail(status) => format!("status {status}"),
            GrpcReply::TimeOut => "a timeout".to_string(),
        };
        let result = match reply {
            GrpcReply::Respond(message) => host.respond_grpc_call(call.token, &message),
            GrpcReply::Fail(status) => host.fail_grpc_call(call.token, status),
            GrpcReply::TimeOut => {
                // The harness fails the call at its deadline (DEADLINE_EXCEEDED).
                pass_deadline(host, call.timeout);
                Ok(())
            }
        };
        // A call already ended (its deadline passed meanwhile) is not the filter's fault.
        drop(result);
        if let Some(f) = host.vm_failure(0) {
            return Err(format!(
                "VM failed answering a gRPC call to {}/{} with {what}: {f}",
                call.service, call.method
            ));
        }
    }
    Ok(())
}

/// Lets virtual time pass a callout's deadline (1 s when it has none), so the harness
/// times it out as Envoy would.
fn pass_deadline(host: &Host, timeout: Option<Duration>) {
    host.advance(timeout.unwrap_or(Duration::from_secs(1)) + Duration::from_millis(1));
}
