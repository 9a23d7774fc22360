//! Load generation: wrk for throughput at saturation, and an open-loop generator of
//! our own for latency at a fixed rate.
//!
//! wrk is closed-loop: a slow response delays the next request, so its latencies hide
//! queueing (coordinated omission). The open-loop generator schedules every request at
//! a fixed time and measures from that scheduled time, so a stall shows up in the
//! latency of every request that should have been sent during it.

use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Saturation throughput from wrk: requests per second and total requests.
pub struct Throughput {
    pub rps: f64,
    pub requests: u64,
}

/// Runs `wrk -t1 -c{connections} -d{secs}s` pinned to `cpu`, returning its throughput.
pub fn wrk(
    url: &str,
    connections: u32,
    duration: Duration,
    cpu: usize,
    header: &str,
) -> Result<Throughput> {
    let out = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .arg("-H")
        .arg(header)
        .arg(url)
        .output()
        .context("running wrk (install Debian's wrk: scripts/setup.sh does)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    if text.contains("Non-2xx") {
        bail!("wrk saw non-2xx answers, the configuration is broken:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no Requests/sec in wrk output")?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .context("no request count in wrk output")?;
    Ok(Throughput { rps, requests })
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// Sends `rate` requests per second for `duration` over `connections` keep-alive
/// connections, open loop, and reports latency measured from each request's
/// scheduled send time. `header` is sent with every request.
pub fn open_loop(
    addr: &str,
    rate: u32,
    duration: Duration,
    connections: usize,
    header: &str,
) -> Result<Latency> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_open_loop(addr, rate, duration, connections, header))
}

async fn run_open_loop(
    addr: &str,
    rate: u32,
    duration: Duration,
    connections: usize,
    header: &str,
) -> Result<Latency> {
    let request = format!("GET /bench HTTP/1.1\r\nhost: bench\r\n{header}\r\n\r\n").into_bytes();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Duration>();
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        tokio::spawn(connection(stream, request.clone(), rx, done_tx.clone()));
        senders.push(tx);
    }
    drop(done_tx);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let total = (duration.as_secs_f64() * f64::from(rate)) as usize;
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        // The scheduled time, not the send time, is what latency is measured from.
        let _ = senders[i % connections].send(due);
    }
    drop(senders);
    let mut samples = Vec::with_capacity(total);
    while let Some(d) = done_rx.recv().await {
        samples.push(d.as_secs_f64() * 1e6);
    }
    if samples.len() < total * 99 / 100 {
        bail!("only {} of {total} requests completed", samples.len());
    }
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok(Latency {
        p50: pick(0.50),
        p99: pick(0.99),
        p999: pick(0.999),
    })
}

/// One keep-alive connection: sends each scheduled request, reads the response.
async fn connection(
    mut stream: TcpStream,
    request: Vec<u8>,
    mut due: mpsc::UnboundedReceiver<Instant>,
    done: mpsc::UnboundedSender<Duration>,
) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(scheduled) = due.recv().await {
        if stream.write_all(&request).await.is_err()
            || read_response(&mut stream, &mut buf).await.is_err()
        {
            return;
        }
        let _ = done.send(scheduled.elapsed());
    }
}

/// Reads one HTTP/1.1 response with a content-length body.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
