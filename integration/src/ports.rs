//! Free TCP ports for tests that hand a port number to another process.
//!
//! Ports are picked below the kernel's ephemeral range. A port inside that range can be
//! taken, between our check and the child's bind, as the local end of any outgoing
//! connection on the machine: a CI run lost a sidecar's health listener that way while
//! thirteen processes were starting. Outside it only an explicit bind can take a port.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the search starts: above `wasmesh up`'s default base (20000) and its blocks, so
/// a developer's running mesh and the tests keep apart.
const LOWEST: u16 = 21000;

/// The next candidate of this process; tests in one binary run in parallel and must not
/// be handed the same range.
static CURSOR: AtomicU32 = AtomicU32::new(0);

/// The first of `len` consecutive ports that are free on every interface right now
/// (Docker publishes on all of them), below the ephemeral range.
pub fn free_range(len: u16) -> io::Result<u16> {
    let top = ephemeral_low().saturating_sub(len);
    let span = u32::from(top.saturating_sub(LOWEST)).max(1);
    // Each process starts at its own place, so concurrent test binaries spread out.
    let seed = (std::process::id() * 97) % span;
    let _ = CURSOR.compare_exchange(0, seed + 1, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span / u32::from(len.max(1)) {
        let offset = CURSOR.fetch_add(u32::from(len), Ordering::SeqCst) % span;
        let base = LOWEST + offset as u16;
        if (base..base + len).all(|p| TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            return Ok(base);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no {len} consecutive free ports between {LOWEST} and {top}"),
    ))
}

/// One free port, as [`free_range`] picks them.
pub fn free_port() -> io::Result<u16> {
    free_range(1)
}

/// The lowest port the kernel hands out for outgoing connections (Linux's default
/// when the setting cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_free_distinct_and_below_the_ephemeral_range() {
        let a = free_range(80).unwrap();
        let b = free_range(80).unwrap();
        assert!(a >= LOWEST && a + 80 <= ephemeral_low(), "{a}");
        assert!(b >= LOWEST && b + 80 <= ephemeral_low(), "{b}");
        assert!(a + 80 <= b || b + 80 <= a, "overlap: {a} and {b}");
        let held: Vec<_> = (a..a + 80)
            .map(|p| TcpListener::bind(("127.0.0.1", p)).unwrap())
            .collect();
        assert_eq!(held.len(), 80);
    }
}
