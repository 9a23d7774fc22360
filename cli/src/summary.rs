//! What `wasmesh up` prints once the mesh is ready: the instances and their ports,
//! then commands to try, derived from the mesh file (its gateway routes, header
//! matches, rate limit) so they work for any mesh, not only Bookinfo.

use std::fmt::Write;

use crate::model::MeshFile;
use crate::state::State;

/// The summary as text. `exe` is how the user runs `wasmesh`; `flags` are the
/// `--state-dir` flags `status` and `down` need.
pub fn render(st: &State, mesh: Option<&MeshFile>, exe: &str, flags: &str) -> String {
    let mut out = String::new();
    if let Some(d) = &st.docker {
        let _ = writeln!(
            out,
            "\n  compose project {} ({} containers), {}",
            d.project,
            d.services.len(),
            d.compose_file.display()
        );
    } else {
        let _ = writeln!(
            out,
            "\n  SERVICE          INSTANCE                 APP    INBOUND  ADMIN  PID"
        );
    }
    for p in &st.processes {
        let port = |role: &str| p.ports.get(role).map_or("-".to_string(), u16::to_string);
        match p.kind.as_str() {
            "sidecar" => {
                let app = st
                    .processes
                    .iter()
                    .find(|a| a.kind == "app" && a.instance == p.instance);
                let _ = writeln!(
                    out,
                    "  {:<16} {:<24} {:<6} {:<8} {:<6} {}",
                    p.service.as_deref().unwrap_or("-"),
                    p.instance,
                    app.and_then(|a| a.ports.get("app"))
                        .map_or("-".into(), u16::to_string),
                    port("inbound"),
                    port("admin"),
                    p.pid
                );
            }
            "gateway" => {
                let _ = writeln!(
                    out,
                    "  {:<16} {:<24} {:<6} {:<8} {:<6} {}",
                    "(gateway)",
                    p.name,
                    port("http"),
                    "-",
                    port("admin"),
                    p.pid
                );
            }
            _ => {}
        }
    }
    let _ = writeln!(out);
    if let Some(url) = &st.gateway_url {
        let _ = writeln!(out, "  gateway     {url}");
    }
    match &st.prometheus_url {
        Some(url) => {
            let _ = writeln!(out, "  prometheus  {url}");
        }
        None => {
            let _ = writeln!(
                out,
                "  prometheus  not installed (Debian: apt-get install prometheus)"
            );
        }
    }
    if let Some(g) = st.processes.iter().find(|p| p.kind == "grafana") {
        if let Some(port) = g.ports.get("http") {
            let _ = writeln!(out, "  grafana     http://127.0.0.1:{port}/ (dashboards: wasmesh Mesh, wasmesh Service)");
        }
    }
    if let Some(t) = st.processes.iter().find(|p| p.kind == "traces") {
        if let Some(port) = t.ports.get("http") {
            let _ = writeln!(
                out,
                "  traces      http://127.0.0.1:{port}/ (Zipkin API: /api/v2/traces)"
            );
        }
    }
    match &st.docker {
        Some(d) => {
            let _ = writeln!(
                out,
                "  logs        scripts/compose.sh -p {} -f {} logs SERVICE",
                d.project,
                d.compose_file.display()
            );
        }
        None => {
            let _ = writeln!(out, "  logs        {}/logs/", st_dir(flags));
        }
    }
    let _ = writeln!(out, "\n  Try:");
    let Some(gw) = &st.gateway_url else {
        if st.docker.is_none() {
            let _ = writeln!(out, "    {exe} status{flags}");
        }
        let _ = writeln!(out, "    {exe} down{flags}");
        return out;
    };
    let page = mesh.map_or("/".to_string(), first_gateway_path);
    let demo = mesh.is_some_and(|m| m.services.iter().any(|s| s.name == "productpage"));
    let _ = writeln!(out, "    curl -s {gw}{page}");
    if demo {
        let _ = writeln!(
            out,
            "    curl -s '{gw}{page}?format=json'                      # who answered; what degraded"
        );
    }
    if let Some((name, value)) = mesh.and_then(header_match) {
        let _ = writeln!(
            out,
            "    curl -s -H '{name}: {value}' '{gw}{page}{}'   # a header route",
            if demo { "?format=json" } else { "" }
        );
    }
    if mesh.is_some_and(has_gateway_ratelimit) {
        let _ = writeln!(
            out,
            "    for i in $(seq 150); do curl -s -o /dev/null -w '%{{http_code}}\\n' {gw}{page}; done | sort | uniq -c   # rate limit: 429s"
        );
    }
    if let Some(url) = &st.prometheus_url {
        let _ = writeln!(
            out,
            "    curl -s '{url}/api/v1/query?query=sum(istio_requests_total)by(destination_service_name,response_code)'"
        );
    }
    // `status` reads the sidecars' admin ports, which compose does not publish.
    if st.docker.is_none() {
        let _ = writeln!(
            out,
            "    {exe} status{flags}          # requests/s, errors, p50/p99 per instance"
        );
    }
    let _ = writeln!(out, "    {exe} down{flags}            # stop everything");
    out
}

fn st_dir(flags: &str) -> String {
    flags
        .strip_prefix(" --state-dir ")
        .unwrap_or(crate::state::DEFAULT_STATE_DIR)
        .to_string()
}

/// The first path the gateway routes (`/productpage` rather than `/` when both exist:
/// a bare `/` often serves an index, not the application).
fn first_gateway_path(m: &MeshFile) -> String {
    let paths: Vec<String> = m
        .gateway
        .iter()
        .flat_map(|g| &g.routes)
        .flat_map(|r| &r.matches)
        .filter_map(|mm| mm.path.as_ref())
        .filter_map(|p| p.exact.clone().or_else(|| p.prefix.clone()))
        .collect();
    paths
        .iter()
        .find(|p| p.as_str() != "/")
        .or(paths.first())
        .cloned()
        .unwrap_or_else(|| "/".to_string())
}

/// A header with an exact value that some service route matches on (Bookinfo's
/// `end-user: jason`).
fn header_match(m: &MeshFile) -> Option<(String, String)> {
    m.services
        .iter()
        .flat_map(|s| &s.routes)
        .flat_map(|r| &r.matches)
        .flat_map(|mm| &mm.headers)
        .find_map(|(name, v)| v.exact.clone().map(|e| (name.clone(), e)))
}

fn has_gateway_ratelimit(m: &MeshFile) -> bool {
    m.gateway.as_ref().is_some_and(|g| {
        g.filters
            .iter()
            .any(|f| f.name == crate::model::FilterName::Ratelimit)
    })
}
