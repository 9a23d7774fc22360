//! The one list of filter chains: which filters run where, and the config each gets.
//!
//! A mesh has up to three chains per place: each service's inbound chain (on its
//! sidecar's inbound listener), its outbound chain (the calls its app makes), and the
//! gateway's. The outbound chain also carries a fault filter the generator makes from
//! the route faults of the services it calls, and a cors filter made from their route
//! CORS policies (the gateway's chain gets its own routes'). Bootstraps, `wasmesh validate` (per
//! filter and per bundle) and the Kubernetes output all read [`all`] or its parts, so
//! a new chain or a new config rule is written here once.

use crate::model::{
    CorsPolicy, FailurePolicy, FilterName, FilterSpec, MatchSpec, Matcher, MeshFile, ServiceSpec,
};
use crate::names;
use serde_json::{json, Value};

/// Where a chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// `services[i]`'s inbound listener.
    Inbound(usize),
    /// The calls `services[i]`'s app makes.
    Outbound(usize),
    Gateway,
}

/// One filter of a chain and where the mesh file holds it.
#[derive(Debug, Clone)]
pub struct ChainFilter {
    /// The field of its config in the mesh file (`services[1].filters.inbound[0].config`),
    /// or, for the generated fault filter, the field that causes it (`services[1].calls`).
    pub path: String,
    pub spec: FilterSpec,
}

/// A chain in the mesh file's order of its filters.
#[derive(Debug, Clone)]
pub struct Chain {
    pub site: Site,
    /// The chain's field in the mesh file (`services[1].filters.outbound`).
    pub path: String,
    pub filters: Vec<ChainFilter>,
}

impl Chain {
    /// The filters' specs, in the mesh file's order.
    pub fn specs(&self) -> Vec<FilterSpec> {
        self.filters.iter().map(|f| f.spec.clone()).collect()
    }
}

/// Every chain of the mesh, empty ones included: each service's inbound then outbound
/// chain, in file order, then the gateway's.
pub fn all(mesh: &MeshFile) -> Vec<Chain> {
    let mut out = Vec::new();
    for i in 0..mesh.services.len() {
        out.push(inbound(mesh, i));
        out.push(outbound(mesh, i));
    }
    if mesh.gateway.is_some() {
        out.push(gateway(mesh));
    }
    out
}

/// A chain at `site` whose filters (none when `filters` is absent) are as the mesh
/// file writes them at `path`.
fn as_written(site: Site, path: String, filters: Option<&[FilterSpec]>) -> Chain {
    let filters = filters
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(k, f)| ChainFilter {
            path: format!("{path}[{k}].config"),
            spec: f.clone(),
        })
        .collect();
    Chain {
        site,
        path,
        filters,
    }
}

/// `services[i]`'s inbound chain.
pub fn inbound(mesh: &MeshFile, i: usize) -> Chain {
    let filters = mesh.services.get(i).map(|s| s.filters.inbound.as_slice());
    as_written(
        Site::Inbound(i),
        format!("services[{i}].filters.inbound"),
        filters,
    )
}

/// `services[i]`'s outbound chain as Envoy runs it: its own outbound filters, with the
/// route faults of every service it calls merged into the fault filter (appended to its
/// `rules`, or a new fault filter). Faults run at the caller, before its router, as
/// Istio injects them: on the callee's inbound side the caller's retries would retry
/// the injected aborts.
///
/// The callees' route `corsPolicy`s go the same way, into the cors filter: Envoy
/// applies a route's CORS policy where the route is chosen, at the caller.
pub fn outbound(mesh: &MeshFile, i: usize) -> Chain {
    let mut chain = outbound_as_written(mesh, i);
    if let Some(s) = mesh.services.get(i) {
        let rules: Vec<Value> = callees(mesh, s).into_iter().flat_map(fault_rules).collect();
        if !rules.is_empty() {
            merge_fault_rules(&mut chain.filters, rules, i);
        }
        let cors: Vec<Value> = callees(mesh, s)
            .into_iter()
            .flat_map(|c| {
                c.routes.iter().enumerate().filter_map(|(j, r)| {
                    let policy = r.cors_policy.as_ref()?;
                    Some(cors_rule(names::service_route_names(c, j, r), policy))
                })
            })
            .collect();
        merge_rules(
            &mut chain.filters,
            FilterName::Cors,
            cors,
            format!("services[{i}].calls"),
        );
    }
    chain
}

/// `services[i]`'s outbound filters as the mesh file writes them, without the route
/// faults: for Istio, which injects those itself.
pub fn outbound_as_written(mesh: &MeshFile, i: usize) -> Chain {
    let filters = mesh.services.get(i).map(|s| s.filters.outbound.as_slice());
    as_written(
        Site::Outbound(i),
        format!("services[{i}].filters.outbound"),
        filters,
    )
}

/// The gateway's chain as Envoy runs it (empty without a gateway): its filters, and
/// its routes' `corsPolicy`s as the cors filter's rules.
pub fn gateway(mesh: &MeshFile) -> Chain {
    let mut chain = gateway_as_written(mesh);
    if let Some(g) = &mesh.gateway {
        let cors = g
            .routes
            .iter()
            .enumerate()
            .filter_map(|(j, r)| {
                let policy = r.cors_policy.as_ref()?;
                Some(cors_rule(names::gateway_route_names(&g.name, j, r), policy))
            })
            .collect();
        merge_rules(
            &mut chain.filters,
            FilterName::Cors,
            cors,
            "gateway.routes".into(),
        );
    }
    chain
}

/// The gateway's filters as the mesh file writes them, without the generated ones: for
/// Istio, which applies route CORS policies itself.
pub fn gateway_as_written(mesh: &MeshFile) -> Chain {
    let filters = mesh.gateway.as_ref().map(|g| g.filters.as_slice());
    as_written(Site::Gateway, "gateway.filters".into(), filters)
}

/// A route's CORS policy as a rule of the cors filter: it holds for the Envoy routes
/// the route became (matched by route name, so exactly when Envoy chose that route),
/// and its policy is Istio's, field for field.
fn cors_rule(route_names: Vec<String>, c: &CorsPolicy) -> Value {
    let origins: Vec<Value> = c
        .allow_origins
        .iter()
        .filter_map(|m| {
            Some(match m.single()? {
                Matcher::Exact(v) => json!({ "exact": v }),
                Matcher::Prefix(v) => json!({ "prefix": v }),
                Matcher::Regex(v) => json!({ "regex": v }),
            })
        })
        .collect();
    let mut policy = serde_json::Map::new();
    policy.insert("allowOrigins".into(), Value::Array(origins));
    for (key, list) in [
        ("allowMethods", &c.allow_methods),
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        if !list.is_empty() {
            policy.insert(key.into(), json!(list));
        }
    }
    if let Some(age) = c.max_age {
        policy.insert("maxAge".into(), json!(age.envoy()));
    }
    if let Some(credentials) = c.allow_credentials {
        policy.insert("allowCredentials".into(), json!(credentials));
    }
    if let Some(unmatched) = c.unmatched_preflights {
        policy.insert("unmatchedPreflights".into(), json!(unmatched.as_str()));
    }
    json!({ "match": { "route_names": route_names }, "corsPolicy": policy })
}

/// Where `s` stands in the mesh file's service list.
pub fn service_index(mesh: &MeshFile, s: &ServiceSpec) -> usize {
    mesh.services
        .iter()
        .position(|x| x.name == s.name)
        .unwrap_or(mesh.services.len())
}

/// The services `s`'s app may call: `calls` if given, else all.
pub fn callees<'m>(mesh: &'m MeshFile, s: &ServiceSpec) -> Vec<&'m ServiceSpec> {
    match &s.calls {
        Some(names) => mesh
            .services
            .iter()
            .filter(|c| names.contains(&c.name))
            .collect(),
        None => mesh.services.iter().collect(),
    }
}

/// The config Envoy gets for `f`. The telemetry filter's `workload` is filled in by the
/// generator unless the mesh file sets it; and in a mesh with a native tracer
/// (`mesh.tracing`) its own trace headers are off: Envoy's tracer starts its span before
/// any filter runs and writes its context into the upstream request after them all, so
/// a context the filter started would be a second trace (`wasmesh validate` refuses a
/// telemetry `tracing` left on in such a mesh).
pub fn generated_config(
    mesh: &MeshFile,
    f: &FilterSpec,
    workload: impl FnOnce() -> Value,
) -> Value {
    let mut config = f.config.clone();
    if f.name == FilterName::Telemetry {
        if let Some(obj) = config.as_object_mut() {
            obj.entry("workload").or_insert_with(workload);
            if mesh.mesh.tracing.is_some() {
                obj.entry("tracing")
                    .or_insert_with(|| json!({ "enabled": false }));
            }
        }
    }
    if f.name == FilterName::Ratelimit {
        crate::ratelimit::fill(mesh, &mut config);
    }
    config
}

/// Tells a destination-side telemetry filter its chain's mTLS mode (`STRICT` on the
/// chain that requires client certificates, `DISABLE` on the plaintext one) unless
/// the mesh file sets one: a mode from config saves a host call per request.
pub fn with_chain_mtls(f: &FilterSpec, config: &mut Value, mode: &str) {
    if f.name != FilterName::Telemetry {
        return;
    }
    if let Some(obj) = config.as_object_mut() {
        let destination = obj.get("reporter").is_none_or(|r| r == "destination");
        if destination {
            obj.entry("mtls").or_insert_with(|| Value::from(mode));
        }
    }
}

/// A sidecar's identity in the telemetry filter's `workload` format.
pub fn workload_identity(trust_domain: &str, s: &ServiceSpec, version: &str) -> Value {
    json!({
        "name": names::workload(&s.name, version),
        "namespace": s.namespace,
        "app": s.name,
        "version": version,
        "principal": names::service_spiffe_id(trust_domain, s),
        "service": names::service_host(s),
        "serviceName": s.name,
        "cluster": "Kubernetes",
    })
}

/// The `workload` a chain's telemetry is checked with by `wasmesh validate`: the first
/// version of the chain's service, or a placeholder for the gateway.
pub fn check_workload(mesh: &MeshFile, site: Site) -> Value {
    let service = match site {
        Site::Inbound(i) | Site::Outbound(i) => mesh.services.get(i),
        Site::Gateway => None,
    };
    match service {
        Some(s) => {
            let version = s.versions.first().map_or("v1", |v| v.name.as_str());
            workload_identity(&mesh.mesh.trust_domain, s, version)
        }
        None => json!({ "name": "gateway" }),
    }
}

/// The service's route faults as rules for the fault filter on its callers' outbound
/// side, one per route match, named as the Envoy route (`SERVICE.ROUTE`, plus `.K` for
/// several matches: rule names must be unique). The rule format is the fault filter's:
/// `match` is the SDK's matcher config, with the service's names as `hosts` since one
/// outbound chain serves every callee. The SDK compares hosts without the port, so
/// `ratings:9080` (what the apps send) matches `ratings`.
fn fault_rules(s: &ServiceSpec) -> Vec<Value> {
    let mut rules = Vec::new();
    for (j, r) in s.routes.iter().enumerate() {
        let Some(f) = &r.fault else { continue };
        let name = r.name.clone().unwrap_or_else(|| j.to_string());
        let many = r.matches.len() > 1;
        for (k, m) in r.effective_matches().iter().enumerate() {
            let rule_name = if many {
                format!("{}.{name}.{k}", s.name)
            } else {
                format!("{}.{name}", s.name)
            };
            let mut matcher = sdk_match(m);
            matcher.insert("hosts".into(), json!(names::service_names(s)));
            let mut rule = serde_json::Map::new();
            rule.insert("name".into(), json!(rule_name));
            rule.insert("match".into(), Value::Object(matcher));
            if let Some(a) = &f.abort {
                rule.insert(
                    "abort".into(),
                    json!({ "http_status": a.http_status, "percentage": a.percentage }),
                );
            }
            if let Some(d) = &f.delay {
                rule.insert(
                    "delay".into(),
                    json!({ "fixed_delay": d.fixed_delay.envoy(), "percentage": d.percentage }),
                );
            }
            rules.push(Value::Object(rule));
        }
    }
    rules
}

/// A route match in the SDK's matcher config format (`path`, `methods`, `headers`).
fn sdk_match(m: &MatchSpec) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let one = |k: Matcher<'_>| match k {
        Matcher::Exact(v) => ("exact", v.to_string()),
        Matcher::Prefix(v) => ("prefix", v.to_string()),
        Matcher::Regex(v) => ("regex", v.to_string()),
    };
    if let Some((k, v)) = m.path.as_ref().and_then(|p| p.single()).map(one) {
        out.insert("path".into(), json!({ k: v }));
    }
    if let Some(Matcher::Exact(method)) = m.method.as_ref().and_then(|p| p.single()) {
        out.insert("methods".into(), json!([method]));
    }
    let headers: Vec<Value> = m
        .headers
        .iter()
        .filter_map(|(name, h)| {
            let (k, v) = one(h.single()?);
            Some(json!({ "name": name, k: v }))
        })
        .collect();
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Array(headers));
    }
    out
}

/// Adds route-fault rules to the chain's fault filter, creating one if needed (a
/// generated filter, reported at `services[i].calls`).
fn merge_fault_rules(filters: &mut Vec<ChainFilter>, rules: Vec<Value>, i: usize) {
    merge_rules(
        filters,
        FilterName::Fault,
        rules,
        format!("services[{i}].calls"),
    );
}

/// Appends `rules` to the `rules` of the chain's `name` filter (after the ones the mesh
/// file writes), creating the filter if there is none (a generated filter, reported at
/// `cause`, failing open: a route feature should not fail the requests it does not
/// touch). No rules: the chain is left as it is.
fn merge_rules(filters: &mut Vec<ChainFilter>, name: FilterName, rules: Vec<Value>, cause: String) {
    if rules.is_empty() {
        return;
    }
    if let Some(f) = filters.iter_mut().find(|f| f.spec.name == name) {
        if let Some(obj) = f.spec.config.as_object_mut() {
            let entry = obj.entry("rules").or_insert_with(|| Value::Array(vec![]));
            if let Some(list) = entry.as_array_mut() {
                list.extend(rules);
            }
        }
        return;
    }
    filters.push(ChainFilter {
        path: cause,
        spec: FilterSpec {
            name,
            config: json!({ "rules": rules }),
            failure_policy: FailurePolicy::FailOpen,
            module: None,
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MESH: &str = r#"
mesh: { name: m }
services:
  - name: web
    port: 8080
    routes:
      - name: api
        match: [{ path: { prefix: /api } }, { path: { prefix: /v2 } }]
        corsPolicy:
          allowOrigins: [{ exact: "https://shop.example" }, { prefix: "https://app." }]
          allowMethods: [GET]
          maxAge: 90s
          allowCredentials: true
          unmatchedPreflights: IGNORE
      - name: plain
        match: [{ path: { prefix: /plain } }]
  - name: client
    port: 8081
    calls: [web]
    filters:
      outbound: [{ name: cors, config: { rules: [{ match: { hosts: [other] }, corsPolicy: {} }] } }]
gateway:
  routes:
    - route: [{ service: web }]
      corsPolicy: { allowOrigins: [{ regex: "https://.*" }] }
"#;

    fn mesh() -> MeshFile {
        crate::model::parse(Path::new("mesh.yaml"), MESH).unwrap()
    }

    fn cors_config(chain: &Chain) -> Option<Value> {
        chain
            .filters
            .iter()
            .find(|f| f.spec.name == FilterName::Cors)
            .map(|f| f.spec.config.clone())
    }

    #[test]
    fn a_route_cors_policy_becomes_a_rule_on_its_callers_outbound_chain() {
        let mesh = mesh();
        // web calls every service (web itself included): a generated cors filter.
        let web = outbound(&mesh, 0);
        let generated = web
            .filters
            .iter()
            .find(|f| f.spec.name == FilterName::Cors)
            .unwrap();
        assert_eq!(generated.path, "services[0].calls");
        assert_eq!(generated.spec.failure_policy, FailurePolicy::FailOpen);
        assert_eq!(
            generated.spec.config,
            json!({"rules": [{
                "match": {"route_names": ["web.api.0", "web.api.1"]},
                "corsPolicy": {
                    "allowOrigins": [{"exact": "https://shop.example"}, {"prefix": "https://app."}],
                    "allowMethods": ["GET"],
                    "maxAge": "90s",
                    "allowCredentials": true,
                    "unmatchedPreflights": "IGNORE",
                },
            }]})
        );
        // client's own cors filter keeps its rules first and gets web's appended.
        let client = cors_config(&outbound(&mesh, 1)).unwrap();
        let rules = client["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["match"], json!({"hosts": ["other"]}));
        assert_eq!(
            rules[1]["match"]["route_names"],
            json!(["web.api.0", "web.api.1"])
        );
        // Inbound chains and Istio's view of the outbound chain get none.
        assert!(cors_config(&inbound(&mesh, 0)).is_none());
        assert_eq!(cors_config(&outbound_as_written(&mesh, 0)), None);
    }

    #[test]
    fn a_gateway_route_cors_policy_goes_on_the_gateway_chain_only() {
        let mesh = mesh();
        let config = cors_config(&gateway(&mesh)).unwrap();
        assert_eq!(
            config["rules"][0],
            json!({"match": {"route_names": ["ingressgateway.0"]},
                   "corsPolicy": {"allowOrigins": [{"regex": "https://.*"}]}})
        );
        assert!(cors_config(&gateway_as_written(&mesh)).is_none());
    }
}
