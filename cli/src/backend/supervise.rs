//! The supervisor of a process-mode mesh: `wasmesh up` leaves a detached
//! `wasmesh supervise --state-dir DIR` behind that starts again, with backoff, any app,
//! sidecar, gateway or Prometheus of the state file that exited, and logs each restart
//! to `STATE_DIR/logs/supervisor.log`.
//!
//! It keeps no state of its own beyond the backoff: each round it reads the state file
//! under the state directory's lock ([`state::locked`]), restarts what is dead and not
//! `stopped` (`wasmesh stop` sets that, `wasmesh start` clears it), counts the restart
//! in the process' `restarts`, and saves. It exits when the state file is gone (the
//! mesh is down) or names another supervisor; `down` stops it before anything else, so
//! it never restarts what `down` is stopping.

use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::launch::spawn;
use crate::state::{self, Running, State};

/// How often the state's processes are checked.
const ROUND: Duration = Duration::from_millis(250);
/// A process that ran at least this long before exiting is restarted at once; one
/// that exited sooner is a crash loop, and waits longer each time.
const STABLE: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
pub const LOG_FILE: &str = "supervisor.log";

/// Starts the supervisor of the mesh in `dir` (detached, like every process of the
/// mesh) and records it in the state file.
pub fn start(root: &Path, dir: &Path) -> Result<Running> {
    let exe = std::env::current_exe().context("finding the wasmesh binary")?;
    let abs_dir =
        std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut r = Running {
        name: "supervisor".into(),
        kind: "supervisor".into(),
        service: None,
        version: None,
        instance: "supervisor".into(),
        pid: 0,
        pgid: 0,
        start_ticks: None,
        argv: vec![
            exe.to_string_lossy().into_owned(),
            "supervise".into(),
            "--state-dir".into(),
            abs_dir.to_string_lossy().into_owned(),
        ],
        env: Default::default(),
        ports: Default::default(),
        health_url: None,
        log: dir.join("logs").join(LOG_FILE),
        restarts: 0,
        stopped: false,
    };
    spawn(root, &mut r)?;
    let recorded = state::locked(dir, || {
        let mut st = state::load(dir)?.context("the state file vanished during up")?;
        st.supervisor = Some(r.clone());
        state::save(dir, &st)
    });
    if let Err(e) = recorded {
        stop(Some(&r));
        return Err(e);
    }
    Ok(r)
}

/// Stops the supervisor `st` records, if it runs, before the mesh is stopped.
pub fn stop(supervisor: Option<&Running>) {
    if let Some(s) = supervisor {
        state::stop_groups(&[s], super::process::STOP_GRACE);
    }
}

/// When a process may be started again, and how often in a row it exited soon after
/// a start.
#[derive(Debug, Default)]
struct Backoff {
    quick_exits: u32,
    last_start: Option<Instant>,
    not_before: Option<Instant>,
}

impl Backoff {
    /// Whether a process seen dead at `now` is restarted now. An exit soon after the
    /// last start puts the restart off: 0.5 s, then 1, 2, 4... up to 30 s.
    fn may_restart(&mut self, now: Instant) -> bool {
        match self.not_before {
            Some(t) if now < t => return false,
            Some(_) => {
                self.not_before = None;
                return true;
            }
            None => {}
        }
        let quick = self
            .last_start
            .is_some_and(|t| now.duration_since(t) < STABLE);
        self.quick_exits = if quick { self.quick_exits + 1 } else { 0 };
        if self.quick_exits == 0 {
            return true;
        }
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (self.quick_exits - 1).min(8))
            .min(MAX_BACKOFF);
        self.not_before = Some(now + wait);
        false
    }
}

/// `wasmesh supervise`: the loop, until the mesh is down.
pub fn run(dir: &Path) -> Result<()> {
    let me = i32::try_from(std::process::id()).context("pid out of range")?;
    say(&format!("supervising the mesh in {}", dir.display()));
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
    let mut left_down: HashSet<String> = HashSet::new();
    loop {
        let go_on = state::locked(dir, || {
            let Some(mut st) = state::load(dir)? else {
                say("the state file is gone (mesh down): exiting");
                return Ok(false);
            };
            if st.supervisor.as_ref().is_some_and(|s| s.pid != me) {
                say("the state names another supervisor: exiting");
                return Ok(false);
            }
            if round(&mut st, &mut backoff, &mut left_down) {
                state::save(dir, &st)?;
            }
            Ok(true)
        })?;
        if !go_on {
            return Ok(());
        }
        std::thread::sleep(ROUND);
    }
}

/// One check of every process; whether the state changed.
fn round(
    st: &mut State,
    backoff: &mut HashMap<String, Backoff>,
    left_down: &mut HashSet<String>,
) -> bool {
    let root: PathBuf = st.root.clone();
    let now = Instant::now();
    let mut changed = false;
    for p in &mut st.processes {
        if p.is_alive() {
            continue;
        }
        if p.stopped {
            if left_down.insert(p.name.clone()) {
                say(&format!(
                    "leaving {} down: stopped by `wasmesh stop`",
                    p.name
                ));
            }
            continue;
        }
        left_down.remove(&p.name);
        let b = backoff.entry(p.name.clone()).or_default();
        let was_up = b.last_start.map(|t| now.duration_since(t));
        let waiting = b.not_before.is_some();
        if !b.may_restart(now) {
            if !waiting {
                say(&format!(
                    "{} exited within {} s of its last start ({} time(s) in a row): waiting before the next restart",
                    p.name,
                    STABLE.as_secs(),
                    b.quick_exits
                ));
            }
            continue;
        }
        let old = p.pid;
        b.last_start = Some(now);
        match spawn(&root, p) {
            Ok(()) => {
                p.restarts += 1;
                changed = true;
                say(&format!(
                    "restarted {}: pid {old} had exited{}; now pid {} (restart {})",
                    p.name,
                    was_up.map_or(String::new(), |d| format!(
                        " {:.1} s after its last restart",
                        d.as_secs_f64()
                    )),
                    p.pid,
                    p.restarts
                ));
            }
            Err(e) => say(&format!("restarting {} failed: {e:#}", p.name)),
        }
    }
    changed
}

/// `wasmesh status`'s lines on the supervisor: whether it runs, and what it restarted.
pub fn summary(st: &State) -> String {
    let Some(s) = &st.supervisor else {
        return "\nsupervisor: none (`wasmesh start NAME` restarts a dead process)\n".into();
    };
    let running = if s.is_alive() {
        format!("running (pid {})", s.pid)
    } else {
        "NOT running: exited processes stay down".into()
    };
    let restarted: Vec<String> = st
        .processes
        .iter()
        .filter(|p| p.restarts > 0)
        .map(|p| format!("{} ({})", p.name, p.restarts))
        .collect();
    let restarted = if restarted.is_empty() {
        "none".to_string()
    } else {
        restarted.join(", ")
    };
    format!("\nsupervisor: {running}; restarts: {restarted}\n")
}

/// One line of the supervisor's log (its stdout is `STATE_DIR/logs/supervisor.log`).
fn say(line: &str) {
    println!("{} {line}", time::OffsetDateTime::now_utc());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_waits_longer_each_time_and_a_stable_process_restarts_at_once() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.may_restart(t0), "the first exit restarts at once");
        b.last_start = Some(t0);
        // Exited 1 s after that restart: a quick exit, so it waits 0.5 s.
        let t1 = t0 + Duration::from_secs(1);
        assert!(!b.may_restart(t1));
        assert!(!b.may_restart(t1 + FIRST_BACKOFF / 2), "still waiting");
        let t2 = t1 + FIRST_BACKOFF;
        assert!(b.may_restart(t2), "waited long enough");
        b.last_start = Some(t2);
        // Quick again: twice the wait.
        let t3 = t2 + Duration::from_millis(100);
        assert!(!b.may_restart(t3));
        assert_eq!(b.quick_exits, 2);
        assert_eq!(b.not_before, Some(t3 + FIRST_BACKOFF * 2));
        assert!(b.may_restart(t3 + FIRST_BACKOFF * 2));
        // Up for longer than STABLE before exiting: restarts at once, count reset.
        b.last_start = Some(t3 + FIRST_BACKOFF * 2);
        let t4 = t3 + STABLE * 2;
        assert!(b.may_restart(t4));
        assert_eq!(b.quick_exits, 0);
    }
}
