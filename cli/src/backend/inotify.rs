//! The inotify budget: Envoy watches each xDS and SDS file with an inotify instance of
//! its own, and Linux limits a user's instances (`fs.inotify.max_user_instances`, 128
//! by default). Past it an Envoy aborts at start-up on an assertion, so `up` counts
//! what the mesh needs first and refuses with the fix instead.

use anyhow::{bail, Result};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const LIMIT_FILE: &str = "/proc/sys/fs/inotify/max_user_instances";

/// The file subscriptions (`path_config_source`) in the generated `files`: one inotify
/// instance each in the Envoy that reads them.
pub fn needed(files: &[crate::OutputFile]) -> usize {
    files
        .iter()
        .map(|(_, bytes)| {
            String::from_utf8_lossy(bytes)
                .matches("\"path_config_source\"")
                .count()
        })
        .sum()
}

/// Refuses when starting Envoys needing `needed` more instances would pass the limit.
pub fn check_budget(needed: usize) -> Result<()> {
    let Some(limit) = std::fs::read_to_string(LIMIT_FILE)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        return Ok(()); // Not Linux's procfs: nothing to count against.
    };
    let used = in_use();
    if used + needed > limit {
        bail!(
            "the mesh's Envoys watch {needed} config files, each with an inotify instance, and \
             {used} of this user's {limit} are in use (fs.inotify.max_user_instances). Raise \
             the limit: sudo sysctl -w fs.inotify.max_user_instances=1024 (scripts/setup.sh \
             does this when it runs as root)"
        );
    }
    Ok(())
}

/// inotify instances open in this user's processes now.
fn in_use() -> usize {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|p| {
            p.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|p| p.metadata().map(|m| m.uid()).ok() == uid)
        .map(|p| inotify_fds(&p.path().join("fd")))
        .sum()
}

fn inotify_fds(fd_dir: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:inotify")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_file_subscription() {
        let files = vec![
            ("a.json".into(), br#"{"lds_config":{"path_config_source":{}},"cds_config":{"path_config_source":{}}}"#.to_vec()),
            ("b.json".into(), br#"{"rds":{"config_source":{"path_config_source":{}}}}"#.to_vec()),
        ];
        assert_eq!(needed(&files), 3);
    }

    #[test]
    fn an_inotify_instance_is_counted() {
        let own = || inotify_fds(Path::new("/proc/self/fd"));
        let before = own();
        // SAFETY: plain syscalls on a descriptor this test owns.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        let after = own();
        unsafe { libc::close(fd) };
        assert_eq!(after, before + 1);
    }
}
