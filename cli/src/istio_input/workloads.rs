//! Kubernetes Services, Deployments and ServiceAccounts: the mesh's services, their
//! port and protocol, versions (the `version` pod label), replicas, service account,
//! image and environment.

use super::documents::Doc;
use super::refusal::Findings;
use crate::model::{AppSpec, Protocol, ServiceSpec, VersionSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A Kubernetes object, with the fields wasmesh reads in `S`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object<S> {
    #[allow(dead_code)] // Read by `documents`; here so it is not reported.
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    /// The name and namespace are read by `documents`; labels and annotations of the
    /// objects themselves do not shape the mesh (the pod template's labels do).
    #[allow(dead_code)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceBody {
    #[serde(default)]
    selector: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<ServicePort>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    #[serde(default)]
    name: Option<String>,
    port: u16,
    #[serde(default)]
    target_port: Option<Value>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    app_protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentBody {
    #[serde(default)]
    replicas: Option<u32>,
    /// Kubernetes requires it; the pod labels decide which Service selects the pods.
    #[allow(dead_code)]
    #[serde(default)]
    selector: Option<Value>,
    template: PodTemplate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodTemplate {
    #[serde(default)]
    metadata: PodMeta,
    spec: PodBody,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMeta {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodBody {
    #[serde(default)]
    service_account_name: Option<String>,
    containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    #[allow(dead_code)] // Any name: one container per pod.
    name: String,
    #[serde(default)]
    image: Option<String>,
    /// How the cluster pulls the image: nothing to do with the mesh.
    #[allow(dead_code)]
    #[serde(default)]
    image_pull_policy: Option<String>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    #[serde(default)]
    env: Vec<EnvVar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
    #[allow(dead_code)]
    #[serde(default)]
    name: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EnvVar {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct Nothing {}

/// One Deployment, read.
struct Workload<'d> {
    doc: &'d Doc,
    labels: BTreeMap<String, String>,
    replicas: u32,
    service_account: Option<String>,
    image: Option<String>,
    app_port: Option<u16>,
    env: BTreeMap<String, String>,
    used: bool,
}

/// The services of the mesh, in the order their Service objects come.
pub fn services(docs: &[&Doc], f: &mut Findings) -> Vec<(ServiceSpec, BTreeMap<String, String>)> {
    let mut workloads = Vec::new();
    for d in docs.iter().filter(|d| d.kind == "Deployment") {
        if let Some(w) = workload(d, f) {
            workloads.push(w);
        }
    }
    for d in docs.iter().filter(|d| d.kind == "ServiceAccount") {
        // Only its name matters (Deployments name it); extra fields are reported.
        let _ = f.typed::<Object<Nothing>>(d);
    }
    let mut out: Vec<(ServiceSpec, BTreeMap<String, String>)> = Vec::new();
    for d in docs.iter().filter(|d| d.kind == "Service") {
        let Some(obj) = f.typed::<Object<ServiceBody>>(d) else {
            continue;
        };
        if out
            .iter()
            .any(|(s, _)| s.name == d.name && s.namespace == d.namespace)
        {
            f.error(d, "", "a second Service of this name and namespace");
            continue;
        }
        let selector = obj.spec.selector.clone();
        if let Some(s) = service(d, obj, &mut workloads, f) {
            out.push((s, selector));
        }
    }
    for w in workloads.iter().filter(|w| !w.used) {
        f.unsupported(
            w.doc,
            "spec.template.metadata.labels",
            "no Service selects these pods: the mesh model has workloads only behind a Service",
        );
    }
    out
}

fn workload<'d>(d: &'d Doc, f: &mut Findings) -> Option<Workload<'d>> {
    let obj = f.typed::<Object<DeploymentBody>>(d)?;
    let pod = obj.spec.template;
    let mut containers = pod.spec.containers.into_iter();
    let c = containers.next();
    if containers.next().is_some() {
        f.unsupported(
            d,
            "spec.template.spec.containers[1]",
            "one app container per pod: the mesh runs one app beside each sidecar",
        );
    }
    let Some(c) = c else {
        f.error(d, "spec.template.spec.containers", "no container");
        return None;
    };
    if c.ports.len() > 1 {
        f.unsupported(
            d,
            "spec.template.spec.containers[0].ports[1]",
            "the app listens on one port",
        );
    }
    Some(Workload {
        doc: d,
        labels: pod.metadata.labels,
        replicas: obj.spec.replicas.unwrap_or(1),
        service_account: pod.spec.service_account_name,
        image: c.image,
        app_port: c.ports.first().map(|p| p.container_port),
        env: c.env.into_iter().map(|e| (e.name, e.value)).collect(),
        used: false,
    })
}

fn service(
    d: &Doc,
    obj: Object<ServiceBody>,
    workloads: &mut [Workload<'_>],
    f: &mut Findings,
) -> Option<ServiceSpec> {
    let spec = obj.spec;
    if let Some(t) = spec.kind.as_deref().filter(|t| *t != "ClusterIP") {
        f.unsupported(
            d,
            "spec.type",
            format!(
                "{t}: services are reached inside the mesh (ClusterIP); the gateway is the way in"
            ),
        );
    }
    if spec.selector.is_empty() {
        f.error(
            d,
            "spec.selector",
            "a Service without a selector has no workloads in the mesh",
        );
        return None;
    }
    let mut ports = spec.ports.into_iter();
    let Some(port) = ports.next() else {
        f.error(d, "spec.ports", "a Service needs a port");
        return None;
    };
    if ports.next().is_some() {
        f.unsupported(
            d,
            "spec.ports[1]",
            "a service has one port in the mesh model",
        );
    }
    if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
        f.unsupported(d, "spec.ports[0].protocol", "HTTP services run over TCP");
    }
    let protocol = protocol(d, &port, f);
    let app_port = match &port.target_port {
        None => None,
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(other) => {
            f.unsupported(
                d,
                "spec.ports[0].targetPort",
                format!("{other}: a named target port; give the number"),
            );
            None
        }
    };
    let selected: Vec<usize> = workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.doc.namespace == d.namespace
                && spec
                    .selector
                    .iter()
                    .all(|(k, v)| w.labels.get(k) == Some(v))
        })
        .map(|(i, _)| i)
        .collect();
    if selected.is_empty() {
        f.error(
            d,
            "spec.selector",
            "no Deployment's pods carry these labels",
        );
        return None;
    }
    // VERSION is the mesh's to set, per version: drop it where it says the label.
    for &i in &selected {
        let w = &mut workloads[i];
        if w.env
            .get("VERSION")
            .is_some_and(|v| w.labels.get("version") == Some(v))
        {
            w.env.remove("VERSION");
        }
    }
    let first = &workloads[selected[0]];
    let image = first
        .image
        .clone()
        .unwrap_or_else(|| AppSpec::default().image);
    let account = first.service_account.clone();
    let env = first.env.clone();
    let mut versions: Vec<VersionSpec> = Vec::new();
    let mut app_ports = Vec::new();
    for &i in &selected {
        let w = &mut workloads[i];
        w.used = true;
        let Some(version) = w.labels.get("version").cloned() else {
            f.error(
                w.doc,
                "spec.template.metadata.labels.version",
                format!(
                    "missing: the pods of Service {} need a `version` label (the subset name)",
                    d.name
                ),
            );
            continue;
        };
        if versions.iter().any(|v| v.name == version) {
            f.error(
                w.doc,
                "spec.template.metadata.labels.version",
                format!("a second Deployment of {} {version}", d.name),
            );
            continue;
        }
        if w.service_account != account {
            f.unsupported(
                w.doc,
                "spec.template.spec.serviceAccountName",
                "every version of a service runs as one service account in the mesh model",
            );
        }
        if w.env != env {
            f.unsupported(
                w.doc,
                "spec.template.spec.containers[0].env",
                "every version of a service has the same environment in the mesh model",
            );
        }
        app_ports.extend(w.app_port);
        let mut labels = w.labels.clone();
        labels.remove("app");
        labels.remove("version");
        let own_image = w.image.clone().filter(|i| *i != image);
        versions.push(VersionSpec {
            name: version,
            replicas: w.replicas,
            labels,
            image: own_image,
        });
    }
    let app_port = app_port
        .or_else(|| app_ports.first().copied())
        .filter(|p| *p != port.port);
    let mut s = ServiceSpec {
        name: d.name.clone(),
        namespace: d.namespace.clone(),
        port: port.port,
        protocol,
        app_port,
        service_account: account.filter(|a| *a != d.name),
        versions,
        app: AppSpec {
            image,
            ..AppSpec::default()
        },
        calls: None,
        traffic_policy: Default::default(),
        routes: Vec::new(),
        filters: Default::default(),
    };
    s.app.env = app_env(d, &s, env, f);
    Some(s)
}

/// Istio's protocol selection: `appProtocol`, else the port name's prefix
/// (`http-9080`, `grpc`).
fn protocol(d: &Doc, port: &ServicePort, f: &mut Findings) -> Protocol {
    let (field, text) = match (&port.app_protocol, &port.name) {
        (Some(p), _) => ("spec.ports[0].appProtocol", p.as_str()),
        (None, Some(n)) => ("spec.ports[0].name", n.split('-').next().unwrap_or(n)),
        (None, None) => return Protocol::Http,
    };
    match text.to_ascii_lowercase().as_str() {
        "http" => Protocol::Http,
        "http2" => Protocol::Http2,
        "grpc" => Protocol::Grpc,
        other => {
            f.unsupported(
                d,
                field,
                format!("protocol {other:?}: wasmesh meshes HTTP, HTTP/2 and gRPC"),
            );
            Protocol::Http
        }
    }
}

/// The app's environment without what the mesh sets itself (runplan::app_env).
fn app_env(
    d: &Doc,
    s: &ServiceSpec,
    mut env: BTreeMap<String, String>,
    f: &mut Findings,
) -> BTreeMap<String, String> {
    let generated = [
        ("SERVICE", s.name.clone()),
        ("NAMESPACE", s.namespace.clone()),
        ("PORT", s.app_port().to_string()),
        ("SERVICE_PORT", s.port.to_string()),
    ];
    for (key, value) in generated {
        match env.remove(key) {
            Some(v) if v != value => f.unsupported(
                d,
                &format!("(Deployment env) {key}"),
                format!("{key}={v}: the mesh sets {key}={value} itself"),
            ),
            _ => {}
        }
    }
    env.remove("WASMESH_OUTBOUND");
    env
}
