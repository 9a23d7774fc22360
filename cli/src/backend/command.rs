//! Running a tool to completion (`docker`, `scripts/compose.sh`) with its output in
//! the error when it fails. The integration rig's docker mode runs its commands
//! through these too.

use anyhow::{bail, Context, Result};
use std::process::{Command, Output, Stdio};

/// stdout and stderr of a finished command, for messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs to completion; stdout, or an error with all output unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}):\n{}", out.status, output_text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `docker ARGS`, as [`run`] runs it.
pub fn docker(args: &[&str]) -> Result<String> {
    run(Command::new("docker").args(args))
}
