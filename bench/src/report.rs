//! The results table (Markdown) and chart (SVG, drawn here so the rig needs no
//! plotting library).

use std::fmt::Write;

pub struct Row {
    pub name: String,
    pub what: String,
    pub rps: f64,
    pub vs_bare: f64,
    pub vs_noop: f64,
    pub cpu_us_per_request: f64,
    /// The open-loop rate the latencies were measured at (req/s).
    pub latency_rate: u32,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p99_delta_us: f64,
    pub rss_mib: f64,
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| configuration | what | req/s | vs bare | vs noop-wasm | CPU µs/req | latency at req/s | p50 µs | p99 µs | p999 µs | p99 − bare p99 | RSS MiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2}x | {:.2}x | {:.1} | {} | {:.0} | {:.0} | {:.0} | {:+.0} | {:.1} |",
            r.name, r.what, r.rps, r.vs_bare, r.vs_noop, r.cpu_us_per_request, r.latency_rate, r.p50_us, r.p99_us, r.p999_us, r.p99_delta_us, r.rss_mib
        );
    }
    out
}

/// Two horizontal bar charts side by side: throughput vs bare, and p99 latency.
pub fn svg(rows: &[Row]) -> String {
    let bar_h = 22.0;
    let top = 40.0;
    let label_w = 130.0;
    let chart_w = 300.0;
    let gap = 60.0;
    let height = top + bar_h * rows.len() as f64 + 30.0;
    // Room for the longest p99 label to the right of the longest bar.
    let width = label_w + chart_w * 2.0 + gap + 150.0;
    let max_p99 = rows.iter().map(|r| r.p99_us).fold(1.0, f64::max);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{label_w}" y="20" font-weight="bold">throughput vs bare Envoy</text>"#
    );
    let x2 = label_w + chart_w + gap;
    let _ = write!(
        s,
        r#"<text x="{x2}" y="20" font-weight="bold">p99 latency at half of saturation (bare's, or the row's own if lower; µs)</text>"#
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + bar_h * i as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y + 15.0,
            r.name
        );
        let w1 = (r.vs_bare.min(1.2) / 1.2) * chart_w;
        let _ = write!(
            s,
            r##"<rect x="{label_w}" y="{y}" width="{w1:.1}" height="{}" fill="#4a7fb5"/>"##,
            bar_h - 4.0
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}">{:.2}x</text>"#,
            label_w + w1 + 4.0,
            y + 15.0,
            r.vs_bare
        );
        let w2 = r.p99_us / max_p99 * chart_w;
        let _ = write!(
            s,
            r##"<rect x="{x2}" y="{y}" width="{w2:.1}" height="{}" fill="#c0504d"/>"##,
            bar_h - 4.0
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}">{:.0}</text>"#,
            x2 + w2 + 4.0,
            y + 15.0,
            r.p99_us
        );
    }
    s.push_str("</svg>\n");
    s
}
