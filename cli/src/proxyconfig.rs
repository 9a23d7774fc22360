//! `wasmesh proxy-config`: what one running Envoy of the mesh holds, read from its
//! admin `/config_dump`, as tables per kind, like `istioctl proxy-config`.
//!
//! The tables are built from the dump's JSON alone (a recorded dump renders the same),
//! so they show what Envoy took, not what the generator meant to give it.

use anyhow::{anyhow, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

use crate::localhttp;
use crate::state::{Running, State};

/// The sections of a config dump `proxy-config` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Listeners,
    Routes,
    Clusters,
    Secrets,
    All,
}

impl Kind {
    /// The `@type` suffix of the dump section(s) of this kind.
    fn sections(self) -> &'static [&'static str] {
        match self {
            Kind::Listeners => &["ListenersConfigDump"],
            Kind::Routes => &["RoutesConfigDump"],
            Kind::Clusters => &["ClustersConfigDump", "EndpointsConfigDump"],
            Kind::Secrets => &["SecretsConfigDump"],
            Kind::All => &[],
        }
    }
}

/// The Envoy of the mesh named `instance`: a sidecar by its instance (`reviews-v2-0`)
/// or process name, or the gateway by its name.
pub fn find<'s>(st: &'s State, instance: &str) -> Result<&'s Running> {
    let envoys = || {
        st.processes
            .iter()
            .filter(|p| p.kind == "sidecar" || p.kind == "gateway")
    };
    envoys()
        .find(|p| p.instance == instance || p.name == instance)
        .ok_or_else(|| {
            let names: Vec<&str> = envoys().map(|p| p.instance.as_str()).collect();
            anyhow!(
                "no Envoy {instance:?} in mesh {}; its Envoys: {}",
                st.mesh,
                names.join(", ")
            )
        })
}

/// The running Envoy's `/config_dump`, with endpoints (`include_eds`).
pub fn fetch(p: &Running) -> Result<Value> {
    let admin = p
        .ports
        .get("admin")
        .ok_or_else(|| anyhow!("{} has no admin port", p.name))?;
    let url = format!("http://127.0.0.1:{admin}/config_dump?include_eds");
    let r = localhttp::get(&url, Duration::from_secs(5))?;
    if r.status != 200 {
        return Err(anyhow!("{url}: HTTP {}", r.status));
    }
    Ok(serde_json::from_slice(&r.body)?)
}

/// The dump's sections of `kind` (all of them for [`Kind::All`]), as Envoy gave them.
pub fn raw(dump: &Value, kind: Kind) -> Value {
    if kind == Kind::All {
        return dump.clone();
    }
    let configs = section_list(dump)
        .filter(|c| kind.sections().iter().any(|s| type_is(c, s)))
        .cloned()
        .collect();
    serde_json::json!({ "configs": Value::Array(configs) })
}

fn section_list(dump: &Value) -> impl Iterator<Item = &Value> {
    dump["configs"].as_array().into_iter().flatten()
}

fn type_is(section: &Value, name: &str) -> bool {
    section["@type"]
        .as_str()
        .is_some_and(|t| t.rsplit('.').next() == Some(name))
}

/// The entries of a section's static and dynamic lists, statics first.
fn entries<'s>(s: &'s Value, statics: &str, dynamics: &str) -> impl Iterator<Item = &'s Value> {
    let list = |k: &str| s[k].as_array().into_iter().flatten();
    list(statics).chain(list(dynamics))
}

fn section<'d>(dump: &'d Value, name: &str) -> &'d Value {
    section_list(dump)
        .find(|c| type_is(c, name))
        .unwrap_or(&Value::Null)
}

/// The tables of `kind` for `dump`.
pub fn render(dump: &Value, kind: Kind) -> String {
    match kind {
        Kind::Listeners => listeners(dump),
        Kind::Routes => routes(dump),
        Kind::Clusters => clusters(dump),
        Kind::Secrets => secrets(dump),
        Kind::All => [listeners(dump), routes(dump), clusters(dump), secrets(dump)].join("\n"),
    }
}

/// Left-aligned columns as wide as their widest cell, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn address(a: &Value) -> String {
    let s = &a["socket_address"];
    match s["port_value"].as_u64() {
        Some(port) => format!("{}:{port}", str_of(&s["address"])),
        None => a
            .get("pipe")
            .map_or("-".into(), |p| str_of(&p["path"]).to_string()),
    }
}

/// The listener itself: active, or still warming.
fn listener_of(entry: &Value) -> &Value {
    let active = &entry["active_state"]["listener"];
    if active.is_null() {
        &entry["warming_state"]["listener"]
    } else {
        active
    }
}

fn listeners(dump: &Value) -> String {
    let s = section(dump, "ListenersConfigDump");
    let mut rows = Vec::new();
    let statics = s["static_listeners"].as_array().into_iter().flatten();
    let dynamics = s["dynamic_listeners"].as_array().into_iter().flatten();
    for l in statics
        .map(|e| &e["listener"])
        .chain(dynamics.map(listener_of))
    {
        let chains: Vec<String> = l["filter_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .map(chain_summary)
            .collect();
        rows.push(vec![
            str_of(&l["name"]).to_string(),
            address(&l["address"]),
            chains.join("; "),
        ]);
    }
    format!(
        "LISTENERS\n{}",
        table(&["NAME", "ADDRESS:PORT", "FILTER CHAINS"], &rows)
    )
}

/// `name (tls): http -> RDS route | filters` for one filter chain.
fn chain_summary(fc: &Value) -> String {
    let name = fc["name"].as_str().unwrap_or("(unnamed)");
    let tls = if fc.get("transport_socket").is_some() {
        " (tls)"
    } else {
        ""
    };
    let filters: Vec<String> = fc["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let n = str_of(&f["name"]);
            let tc = &f["typed_config"];
            if n == "envoy.filters.network.http_connection_manager" {
                let route = match tc["rds"]["route_config_name"].as_str() {
                    Some(r) => format!("route {r}"),
                    None => format!("inline route {}", str_of(&tc["route_config"]["name"])),
                };
                let http: Vec<&str> = tc["http_filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| short_filter(str_of(&h["name"])))
                    .collect();
                format!("http -> {route} [{}]", http.join(", "))
            } else if n == "envoy.filters.network.tcp_proxy" {
                format!("tcp -> {}", str_of(&tc["cluster"]))
            } else {
                n.to_string()
            }
        })
        .collect();
    format!("{name}{tls}: {}", filters.join(" | "))
}

/// An HTTP filter's name without the listener and chain our generator prefixes it
/// with (`virtualInbound.inbound-mtls.wasmesh.authz` -> `wasmesh.authz`).
fn short_filter(name: &str) -> &str {
    for marker in ["wasmesh.", "envoy."] {
        if let Some(i) = name.find(marker) {
            return &name[i..];
        }
    }
    name
}

fn routes(dump: &Value) -> String {
    let s = section(dump, "RoutesConfigDump");
    let mut rows = Vec::new();
    let configs = entries(s, "static_route_configs", "dynamic_route_configs");
    for rc in configs.map(|e| &e["route_config"]) {
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            let domains = domains_summary(&vh["domains"]);
            for r in vh["routes"].as_array().into_iter().flatten() {
                rows.push(vec![
                    str_of(&rc["name"]).to_string(),
                    str_of(&vh["name"]).to_string(),
                    domains.clone(),
                    match_summary(&r["match"]),
                    action_summary(r),
                ]);
            }
        }
    }
    format!(
        "ROUTES\n{}",
        table(
            &["ROUTE CONFIG", "VIRTUAL HOST", "DOMAINS", "MATCH", "TO"],
            &rows
        )
    )
}

/// The first domain and how many more: a service's virtual host lists eight spellings.
fn domains_summary(d: &Value) -> String {
    let all: Vec<&str> = d.as_array().into_iter().flatten().map(str_of).collect();
    match all.as_slice() {
        [] => "-".into(),
        [one] => (*one).to_string(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

fn match_summary(m: &Value) -> String {
    let mut parts = Vec::new();
    for (key, label) in [("prefix", "prefix"), ("path", "path")] {
        if let Some(v) = m[key].as_str() {
            parts.push(format!("{label} {v}"));
        }
    }
    if let Some(v) = m["safe_regex"]["regex"].as_str() {
        parts.push(format!("regex {v}"));
    }
    if let Some(v) = m["path_separated_prefix"].as_str() {
        parts.push(format!("prefix {v}"));
    }
    for h in m["headers"].as_array().into_iter().flatten() {
        let sm = &h["string_match"];
        let how = ["exact", "prefix", "suffix", "contains"]
            .iter()
            .find_map(|k| sm[*k].as_str().map(|v| format!("{k} {v}")))
            .or_else(|| sm["safe_regex"]["regex"].as_str().map(|v| format!("~ {v}")))
            .unwrap_or_else(|| "present".into());
        parts.push(format!("header {} {how}", str_of(&h["name"])));
    }
    if parts.is_empty() {
        "*".into()
    } else {
        parts.join(", ")
    }
}

fn action_summary(r: &Value) -> String {
    let route = &r["route"];
    if let Some(c) = route["cluster"].as_str() {
        return c.to_string();
    }
    if let Some(ws) = route["weighted_clusters"]["clusters"].as_array() {
        return ws
            .iter()
            .map(|w| format!("{} {}%", str_of(&w["name"]), w["weight"]))
            .collect::<Vec<_>>()
            .join(", ");
    }
    if let Some(h) = route["cluster_header"].as_str() {
        return format!("cluster from header {h}");
    }
    let d = &r["direct_response"];
    if !d.is_null() {
        return format!("direct response {}", d["status"]);
    }
    let redirect = &r["redirect"];
    if !redirect.is_null() {
        return "redirect".into();
    }
    "-".into()
}

fn clusters(dump: &Value) -> String {
    let s = section(dump, "ClustersConfigDump");
    let eds = section(dump, "EndpointsConfigDump");
    let mut rows = Vec::new();
    for c in entries(s, "static_clusters", "dynamic_active_clusters").map(|e| &e["cluster"]) {
        let name = str_of(&c["name"]);
        let kind = c["type"]
            .as_str()
            .or_else(|| c["cluster_type"]["name"].as_str())
            .unwrap_or("EDS");
        let lb = c["lb_policy"].as_str().unwrap_or("ROUND_ROBIN");
        rows.push(vec![
            name.to_string(),
            kind.to_string(),
            endpoints_of(c, eds, name),
            lb.to_string(),
            tls_summary(&c["transport_socket"]),
        ]);
    }
    format!(
        "CLUSTERS\n{}",
        table(&["NAME", "TYPE", "ENDPOINTS", "LB", "TLS"], &rows)
    )
}

/// The cluster's endpoints with their health as Envoy sees it (from the EDS section
/// `include_eds` adds), or its own load assignment's.
fn endpoints_of(cluster: &Value, eds: &Value, name: &str) -> String {
    let from_eds = entries(eds, "static_endpoint_configs", "dynamic_endpoint_configs")
        .map(|e| &e["endpoint_config"])
        .find(|e| e["cluster_name"].as_str() == Some(name));
    let assignment = from_eds.unwrap_or(&cluster["load_assignment"]);
    let eps: Vec<String> = assignment["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["lb_endpoints"].as_array().into_iter().flatten())
        .map(|e| {
            let addr = address(&e["endpoint"]["address"]);
            match e["health_status"].as_str() {
                Some(h) if h != "HEALTHY" => format!("{addr} ({h})"),
                _ => addr,
            }
        })
        .collect();
    if eps.is_empty() {
        "-".into()
    } else {
        eps.join(", ")
    }
}

/// `mTLS SAN spiffe://...` for an upstream TLS context, `-` for plain text.
fn tls_summary(ts: &Value) -> String {
    let tc = &ts["typed_config"];
    if tc.is_null() {
        return "-".into();
    }
    let common = &tc["common_tls_context"];
    let client_cert = !common["tls_certificate_sds_secret_configs"].is_null()
        || !common["tls_certificates"].is_null();
    let sans: Vec<&str> = common["combined_validation_context"]["default_validation_context"]
        ["match_typed_subject_alt_names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["matcher"]["exact"].as_str())
        .collect();
    let mut s = if client_cert { "mTLS" } else { "TLS" }.to_string();
    if let Some(sni) = tc["sni"].as_str() {
        let _ = write!(s, " sni {sni}");
    }
    if !sans.is_empty() {
        let _ = write!(s, " san {}", sans.join(","));
    }
    s
}

fn secrets(dump: &Value) -> String {
    let s = section(dump, "SecretsConfigDump");
    let mut rows = Vec::new();
    for entry in entries(s, "static_secrets", "dynamic_active_secrets") {
        let secret = &entry["secret"];
        let (kind, pem) = if !secret["tls_certificate"].is_null() {
            (
                "certificate",
                str_of(&secret["tls_certificate"]["certificate_chain"]["inline_string"]),
            )
        } else if !secret["validation_context"].is_null() {
            (
                "trusted CA",
                str_of(&secret["validation_context"]["trusted_ca"]["inline_string"]),
            )
        } else {
            ("other", "")
        };
        let cert = crate::certinfo::first(pem);
        rows.push(vec![
            str_of(&entry["name"]).to_string(),
            kind.to_string(),
            cert.as_ref().map_or("-".into(), |c| c.subject.clone()),
            cert.as_ref().map_or("-".into(), |c| c.san.clone()),
            cert.as_ref().map_or("-".into(), |c| c.not_after.clone()),
        ]);
    }
    format!(
        "SECRETS\n{}",
        table(&["NAME", "TYPE", "SUBJECT", "SAN", "EXPIRES"], &rows)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// productpage's sidecar in Bookinfo as `wasmesh up` ran it, recorded from its
    /// admin `/config_dump?include_eds`.
    fn dump() -> Value {
        serde_json::from_str(include_str!(
            "../tests/fixtures/config_dump_productpage.json"
        ))
        .unwrap()
    }

    fn row<'t>(table: &'t str, starts: &str) -> &'t str {
        table
            .lines()
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no row {starts:?} in\n{table}"))
    }

    #[test]
    fn listeners_name_address_and_chains() {
        let t = render(&dump(), Kind::Listeners);
        let inbound = row(&t, "virtualInbound");
        assert!(inbound.contains("127.0.0.1:31016"), "{inbound}");
        assert!(
            inbound.contains(
                "inbound-mtls (tls): http -> route inbound|9080|| [wasmesh.authz, wasmesh.telemetry, envoy.filters.http.router]"
            ),
            "{inbound}"
        );
        let outbound = row(&t, "virtualOutbound");
        assert!(
            outbound.contains("outbound: http -> route outbound"),
            "{outbound}"
        );
        assert!(!outbound.contains("(tls)"), "{outbound}");
        assert!(row(&t, "prometheus").contains("inline route prometheus"));
    }

    #[test]
    fn routes_show_matches_and_weights() {
        let t = render(&dump(), Kind::Routes);
        let header = t
            .lines()
            .find(|l| l.contains("header end-user exact jason"))
            .unwrap();
        assert!(header.starts_with("outbound"), "{header}");
        assert!(header.contains("reviews.default.svc.cluster.local:9080"));
        assert!(header.contains("reviews:9080 +7"), "{header}");
        assert!(header.ends_with("outbound|9080|v2|reviews.default.svc.cluster.local"));
        let canary = t
            .lines()
            .find(|l| l.contains("v1|reviews.default.svc.cluster.local 80%"))
            .unwrap();
        assert!(
            canary.ends_with("outbound|9080|v3|reviews.default.svc.cluster.local 20%"),
            "{canary}"
        );
        assert!(row(&t, "health").contains("path /healthz/ready"));
    }

    #[test]
    fn clusters_show_endpoints_lb_and_mtls() {
        let t = render(&dump(), Kind::Clusters);
        let v2 = row(&t, "outbound|9080|v2|reviews.default.svc.cluster.local");
        assert!(v2.contains("STATIC"), "{v2}");
        assert!(v2.contains("127.0.0.1:31046"), "{v2}");
        assert!(v2.contains("LEAST_REQUEST"), "{v2}");
        assert!(
            v2.contains("mTLS sni outbound_.9080_.v2_.reviews.default.svc.cluster.local san spiffe://cluster.local/ns/default/sa/reviews"),
            "{v2}"
        );
        let inbound = row(&t, "inbound|9080||");
        assert!(inbound.contains("127.0.0.1:31015"), "{inbound}");
        assert!(inbound.ends_with(" -"), "plain text to the app: {inbound}");
    }

    #[test]
    fn secrets_show_subject_and_expiry() {
        let t = render(&dump(), Kind::Secrets);
        let cert = row(&t, "default");
        assert!(cert.contains("certificate"), "{cert}");
        assert!(
            cert.contains("spiffe://cluster.local/ns/default/sa/productpage"),
            "{cert}"
        );
        assert!(cert.contains("2027-01-06"), "{cert}");
        let ca = row(&t, "ROOTCA");
        assert!(ca.contains("trusted CA"), "{ca}");
        assert!(ca.contains("CN=wasmesh bookinfo mesh CA"), "{ca}");
    }

    #[test]
    fn raw_keeps_only_the_kinds_sections() {
        let r = raw(&dump(), Kind::Clusters);
        let types: Vec<&str> = r["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["@type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
            ]
        );
        assert_eq!(raw(&dump(), Kind::All), dump());
    }

    #[test]
    fn all_has_every_table() {
        let t = render(&dump(), Kind::All);
        for h in ["LISTENERS", "ROUTES", "CLUSTERS", "SECRETS"] {
            assert!(t.lines().any(|l| l == h), "{h} missing");
        }
    }
}
