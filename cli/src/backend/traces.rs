//! The trace store (`wasmesh traces`) for a process-mode mesh whose tracer posts Zipkin
//! spans to this machine: `up` starts it where the mesh file's `tracing.address`
//! points, so the spans Envoy sends have somewhere to go and a page to be seen on.

use anyhow::{Context, Result};
use std::path::Path;

use crate::model::{MeshFile, TracingProvider};
use crate::state::Running;

/// The port of a `provider: zipkin` tracing address on this machine
/// (`127.0.0.1:PORT` or `localhost:PORT`): where `up` runs the trace store. Any other
/// address is a collector of the user's own.
pub(super) fn local_zipkin_port(mesh: &MeshFile) -> Option<u16> {
    let t = mesh.mesh.tracing.as_ref()?;
    if t.provider != TracingProvider::Zipkin {
        return None;
    }
    let (host, port) = t.address.rsplit_once(':')?;
    matches!(host, "127.0.0.1" | "localhost")
        .then(|| port.parse().ok())
        .flatten()
        .filter(|p| *p != 0)
}

/// The port to start the store on: a local Zipkin address with no listener. One that
/// already listens is a collector the user runs (or a store left running): the
/// sidecars report to it and `up` says so instead of refusing the port.
pub(super) fn port_to_start(mesh: &MeshFile) -> Option<u16> {
    let port = local_zipkin_port(mesh)?;
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return Some(port);
    }
    println!("tracing: 127.0.0.1:{port} already listens; the sidecars report there and no trace store is started");
    None
}

/// The trace store as a process of the mesh: this very binary, `traces --listen`.
pub(super) fn process(port: u16, logs: &Path) -> Result<Running> {
    let exe = std::env::current_exe().context("finding the wasmesh binary")?;
    Ok(process_of(&exe, port, logs))
}

fn process_of(exe: &Path, port: u16, logs: &Path) -> Running {
    let argv = vec![
        exe.to_string_lossy().into_owned(),
        "traces".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    Running::tool("traces", argv, Default::default(), port, "/health", logs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mesh(tracing: &str) -> MeshFile {
        let text = format!(
            "mesh:\n  name: t\n  tracing: {tracing}\nservices:\n  - name: a\n    port: 9080\n"
        );
        crate::model::parse(Path::new("t.yaml"), &text).unwrap()
    }

    #[test]
    fn only_a_local_zipkin_address_gets_a_store() {
        let port = |t: &str| local_zipkin_port(&mesh(t));
        assert_eq!(
            port("{ provider: zipkin, address: \"127.0.0.1:9411\" }"),
            Some(9411)
        );
        assert_eq!(
            port("{ provider: zipkin, address: \"localhost:9500\" }"),
            Some(9500)
        );
        assert_eq!(
            port("{ provider: zipkin, address: \"zipkin.example:9411\" }"),
            None
        );
        assert_eq!(
            port("{ provider: opentelemetry, address: \"127.0.0.1:4317\" }"),
            None
        );
        assert_eq!(local_zipkin_port(&mesh("null")), None);
    }

    #[test]
    fn a_port_that_already_listens_is_left_to_its_collector() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let m = mesh(&format!(
            "{{ provider: zipkin, address: \"127.0.0.1:{port}\" }}"
        ));
        assert_eq!(port_to_start(&m), None);
        drop(taken);
        assert_eq!(port_to_start(&m), Some(port));
    }

    #[test]
    fn it_runs_this_binary_with_a_health_url() {
        let p = process_of(Path::new("/bin/wasmesh"), 9411, Path::new("/l"));
        assert_eq!(
            p.argv,
            ["/bin/wasmesh", "traces", "--listen", "127.0.0.1:9411"]
        );
        assert_eq!(
            p.health_url.as_deref(),
            Some("http://127.0.0.1:9411/health")
        );
        assert_eq!(p.log, Path::new("/l/traces.log"));
    }
}
