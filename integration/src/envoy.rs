//! Running a real Envoy: start from a JSON bootstrap, wait until ready, stop on drop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::admin::{Admin, Stats};
use crate::paths::{self, TempDir};

/// How many log lines error messages and panic reports include.
const TAIL_LINES: usize = 60;
/// Poll interval inside the readiness loop (not a readiness check in itself).
const POLL: Duration = Duration::from_millis(25);

/// How to run Envoy. `Options::default()` is one worker, `info` logs, 30 s to get ready.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-l`: trace, debug, info, warning, error, critical, off.
    pub log_level: String,
    /// `--concurrency`: worker threads (one Wasm VM per worker per plugin).
    pub concurrency: u32,
    /// How long Envoy may take to answer `/ready` with "LIVE".
    pub ready_timeout: Duration,
    /// Appended to the command line, e.g. `--component-log-level wasm:debug`.
    pub extra_args: Vec<String>,
    /// Set in Envoy's environment, e.g. `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            log_level: "info".to_string(),
            concurrency: 1,
            ready_timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl Options {
    pub fn log_level(mut self, level: &str) -> Options {
        self.log_level = level.to_string();
        self
    }

    pub fn concurrency(mut self, workers: u32) -> Options {
        self.concurrency = workers;
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Options {
        self.ready_timeout = timeout;
        self
    }

    pub fn arg(mut self, arg: &str) -> Options {
        self.extra_args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running Envoy, killed (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: TempDir,
    admin: Admin,
    listeners: BTreeMap<String, u16>,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` and default [`Options`]; returns once `/ready` is
    /// "LIVE". If Envoy exits first (a bad config, a plugin refusing its
    /// configuration), the error carries the tail of Envoy's log.
    pub fn start(bootstrap: &serde_json::Value) -> Result<Envoy> {
        Envoy::start_with(bootstrap, &Options::default())
    }

    pub fn start_with(bootstrap: &serde_json::Value, options: &Options) -> Result<Envoy> {
        let bin = paths::envoy_bin()?;
        let dir = TempDir::new("envoy")?;
        let config = write_bootstrap(&dir, bootstrap)?;
        let admin_path = dir.join("admin.txt");

        let mut command = Command::new(&bin);
        command
            .arg("-c")
            .arg(&config)
            // Several Envoys at once (parallel tests) would collide on the hot-restart
            // shared memory region without this.
            .arg("--use-dynamic-base-id")
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .args(["-l", &options.log_level])
            .args(["--concurrency", &options.concurrency.to_string()])
            // Envoy buffers its log file and flushes every 10 s by default: far too late
            // for a test reading the log of a running Envoy.
            .args(["--file-flush-interval-msec", "20"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(&options.extra_args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            // Anything Envoy prints before its logger is set up lands here.
            .stdout(open_capture(&dir, "stdout.txt")?)
            .stderr(open_capture(&dir, "stderr.txt")?);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;

        // From here on, `Starting` kills the child if we bail out.
        let mut starting = Starting {
            child: Some(child),
            dir: Some(dir),
        };
        let admin = starting.wait_ready(&admin_path, options.ready_timeout)?;
        let listeners = admin.listener_ports().context("reading listener ports")?;
        let (child, dir) = starting.finish()?;
        Ok(Envoy {
            child,
            dir,
            admin,
            listeners,
        })
    }

    /// Runs `envoy --mode validate -c FILE`; returns Envoy's output when it says "OK".
    /// Validation reads the files the config names (the .wasm included) but opens no
    /// listeners.
    pub fn validate(bootstrap: &serde_json::Value) -> Result<String> {
        let dir = TempDir::new("validate")?;
        let config = write_bootstrap(&dir, bootstrap)?;
        Envoy::validate_file(&config)
    }

    /// `envoy --mode validate` on a config file (JSON or YAML): Envoy's output when it
    /// says OK, an error with that output otherwise.
    pub fn validate_file(config: &std::path::Path) -> Result<String> {
        wasmesh::envoy_validate_file(&paths::envoy_bin()?, config)
    }

    /// Validates `examples/NAME/envoy.yaml`, with its module path
    /// (`dist/filters/NAME.wasm`) pointed at `wasm`, since tests build modules fresh
    /// and `dist/` may not exist yet.
    pub fn validate_example(name: &str, wasm: &std::path::Path) -> Result<String> {
        let example = paths::workspace_root().join(format!("examples/{name}/envoy.yaml"));
        let yaml = std::fs::read_to_string(&example)
            .with_context(|| format!("reading {}", example.display()))?;
        let yaml = yaml.replace(
            &format!("dist/filters/{name}.wasm"),
            &wasm.to_string_lossy(),
        );
        let dir = TempDir::new(&format!("example-{name}"))?;
        let file = dir.join("envoy.yaml");
        std::fs::write(&file, yaml)?;
        Envoy::validate_file(&file)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The scratch directory holding `bootstrap.json`, `envoy.log`, `admin.txt`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bound port of listener `name` (bootstraps use port 0).
    pub fn listener_port(&self, name: &str) -> Result<u16> {
        self.listeners.get(name).copied().ok_or_else(|| {
            anyhow!(
                "Envoy has no listener {name:?}; it has {:?}",
                self.listeners.keys().collect::<Vec<_>>()
            )
        })
    }

    /// `http://127.0.0.1:PORT` for listener `name`.
    pub fn listener_url(&self, name: &str) -> Result<String> {
        Ok(format!("http://{}", self.listener_addr(name)?))
    }

    pub fn listener_addr(&self, name: &str) -> Result<SocketAddr> {
        Ok(SocketAddr::from((
            [127, 0, 0, 1],
            self.listener_port(name)?,
        )))
    }

    /// Everything Envoy has logged so far (plus anything it wrote to stderr).
    pub fn log(&self) -> String {
        read_logs(self.dir.path())
    }

    /// The last `lines` lines of [`Envoy::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Polls the log until it contains `needle` (log writes are asynchronous).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(log);
            }
            if Instant::now() >= deadline {
                bail!(
                    "Envoy's log lacks {needle:?} after {timeout:?}; tail:\n{}",
                    tail(&log, TAIL_LINES)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn stats(&self) -> Result<Stats> {
        self.admin.stats()
    }

    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.admin.stat(name)
    }

    pub fn wait_for_stat(&self, name: &str, min: u64, timeout: Duration) -> Result<u64> {
        self.admin.wait_for_stat(name, min, timeout)
    }

    pub fn prometheus(&self) -> Result<String> {
        self.admin.prometheus()
    }

    pub fn config_dump(&self) -> Result<serde_json::Value> {
        self.admin.config_dump()
    }

    pub fn clusters(&self) -> Result<String> {
        self.admin.clusters()
    }

    /// Stops Envoy now and returns how it exited.
    pub fn stop(mut self) -> Result<ExitStatus> {
        terminate(&mut self.child)
        // Drop then finds the child already reaped; killing it again is harmless.
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        // Stop first: Envoy flushes its log on exit, so the tail below is complete.
        if let Err(err) = terminate(&mut self.child) {
            eprintln!("stopping Envoy (pid {}): {err:#}", self.child.id());
        }
        if std::thread::panicking() {
            // The test failed while Envoy ran: its log is usually the explanation.
            self.dir.keep();
            eprintln!(
                "--- Envoy (pid {}) log tail, full log in {} ---\n{}\n--- end of Envoy log ---",
                self.child.id(),
                self.dir.path().display(),
                self.log_tail(TAIL_LINES)
            );
        }
    }
}

/// An Envoy that has been spawned but is not ready yet; kills it on early return.
struct Starting {
    child: Option<Child>,
    dir: Option<TempDir>,
}

impl Starting {
    fn wait_ready(&mut self, admin_path: &Path, timeout: Duration) -> Result<Admin> {
        let deadline = Instant::now() + timeout;
        let mut admin = None;
        loop {
            let child = self.child.as_mut().ok_or_else(|| anyhow!("no child"))?;
            if let Some(status) = child.try_wait().context("checking on Envoy")? {
                bail!(
                    "Envoy (pid {}) exited with {status} before becoming ready. Log tail:\n{}",
                    child.id(),
                    self.log_tail()
                );
            }
            // Envoy writes the admin address once the admin listener is bound.
            if admin.is_none() {
                admin = read_admin_address(admin_path).map(Admin::new);
            }
            if admin.as_ref().is_some_and(Admin::is_ready) {
                return admin.ok_or_else(|| anyhow!("unreachable"));
            }
            if Instant::now() >= deadline {
                bail!(
                    "Envoy (pid {}) not ready after {timeout:?} (admin: {:?}). Log tail:\n{}",
                    child.id(),
                    admin.map(|a| a.addr()),
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn log_tail(&self) -> String {
        self.dir
            .as_ref()
            .map(|d| tail(&read_logs(d.path()), TAIL_LINES))
            .unwrap_or_default()
    }

    fn finish(&mut self) -> Result<(Child, TempDir)> {
        match (self.child.take(), self.dir.take()) {
            (Some(child), Some(dir)) => Ok((child, dir)),
            _ => bail!("Envoy start-up state already consumed"),
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = terminate(child);
        }
    }
}

fn write_bootstrap(dir: &TempDir, bootstrap: &serde_json::Value) -> Result<PathBuf> {
    let path = dir.join("bootstrap.json");
    let text = serde_json::to_string_pretty(bootstrap).context("serialising bootstrap")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn open_capture(dir: &TempDir, name: &str) -> Result<std::fs::File> {
    let path = dir.join(name);
    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
}

/// `127.0.0.1:PORT` once Envoy has written it (the file may be briefly empty).
fn read_admin_address(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_logs(dir: &Path) -> String {
    let mut text = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    for extra in ["stderr.txt", "stdout.txt"] {
        let more = std::fs::read_to_string(dir.join(extra)).unwrap_or_default();
        if !more.trim().is_empty() {
            text.push_str(&format!("[{extra}]\n{more}"));
        }
    }
    text
}

/// The last `lines` lines, each cut to a readable width (Envoy's start-up banner has
/// lines many kilobytes long).
fn tail(text: &str, lines: usize) -> String {
    const WIDTH: usize = 400;
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| match line.char_indices().nth(WIDTH) {
            Some((cut, _)) => format!("{}...", &line[..cut]),
            None => (*line).to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// SIGTERM, up to 5 s for a clean exit, then SIGKILL; always reaps the child so the
/// PID is really gone afterwards.
fn terminate(child: &mut Child) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) only sends a signal; `pid` is our own child, not yet reaped
    // (try_wait above returned None), so the PID cannot have been recycled.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().context("SIGKILL")?;
    child.wait().context("reaping Envoy")
}
