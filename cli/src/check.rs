//! Semantic checks of a parsed mesh file: what refers to what, weights, ports, names.
//!
//! Every problem is reported (not just the first), each with its field path, so one run
//! of `wasmesh validate` lists everything to fix. Generators may then assume a checked
//! model: every destination names a known service and version.

use crate::chains::{self, Chain};
use crate::model::{
    Destination, FilterName, GatewayTlsMode, MatchSpec, MeshError, MeshFile, RouteSpec,
    ServiceSpec, StringMatch,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Sidecar ports an app sharing the sidecar's network namespace must not take.
pub const RESERVED_PORTS: [u16; 5] = [15000, 15001, 15006, 15021, 15090];

/// Checks `mesh`; an empty result means it is consistent.
pub fn check(file: &Path, mesh: &MeshFile) -> Vec<MeshError> {
    let mut c = Checker {
        file,
        errors: Vec::new(),
        native_tracer: mesh.mesh.tracing.is_some(),
        rate_limit_service: mesh.mesh.rate_limit_service.is_some(),
    };
    c.mesh(mesh);
    c.errors
}

struct Checker<'a> {
    file: &'a Path,
    errors: Vec<MeshError>,
    /// `mesh.tracing` is set: Envoy's tracer owns the trace headers.
    native_tracer: bool,
    /// `mesh.rateLimitService` is set: global ratelimit rules have a service to ask.
    rate_limit_service: bool,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(MeshError {
            file: self.file.to_path_buf(),
            path: path.into(),
            line: None,
            message: message.into(),
        });
    }

    fn mesh(&mut self, mesh: &MeshFile) {
        self.name("mesh.name", &mesh.mesh.name);
        if mesh.mesh.trust_domain.is_empty() || mesh.mesh.trust_domain.contains('/') {
            self.err(
                "mesh.trustDomain",
                "must be a non-empty domain name without '/'",
            );
        }
        if let Some(t) = &mesh.mesh.tracing {
            if !(0.0..=100.0).contains(&t.sampling) {
                self.err("mesh.tracing.sampling", "must be a percentage, 0 to 100");
            }
            self.host_port("mesh.tracing.address", &t.address);
        }
        if let Some(rls) = &mesh.mesh.rate_limit_service {
            for (at, message) in crate::ratelimit::problems(rls) {
                self.err(at, message);
            }
        }

        let services: BTreeMap<&str, &ServiceSpec> =
            mesh.services.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut seen = BTreeSet::new();
        for (i, s) in mesh.services.iter().enumerate() {
            let at = format!("services[{i}]");
            if !seen.insert(s.name.as_str()) {
                self.err(
                    format!("{at}.name"),
                    format!("service {:?} is defined twice", s.name),
                );
            }
            self.service(&at, s, &services);
            for chain in [
                chains::inbound(mesh, i),
                chains::outbound_as_written(mesh, i),
            ] {
                self.filters(&chain);
            }
        }
        if let Some(g) = &mesh.gateway {
            self.name("gateway.name", &g.name);
            if services.contains_key(g.name.as_str()) {
                self.err(
                    "gateway.name",
                    format!("{:?} is also a service name", g.name),
                );
            }
            if g.routes.is_empty() {
                self.err("gateway.routes", "a gateway needs at least one route");
            }
            if let Some(tls) = &g.tls {
                if tls.cert_file.is_some() != tls.key_file.is_some() {
                    self.err(
                        "gateway.tls",
                        "give both certFile and keyFile, or neither (a certificate is then issued by the mesh CA)",
                    );
                }
                if tls.ca_certificates.is_some() && tls.mode != GatewayTlsMode::Mutual {
                    self.err(
                        "gateway.tls.caCertificates",
                        "client certificates are checked with mode: MUTUAL only",
                    );
                }
            }
            for (j, r) in g.routes.iter().enumerate() {
                self.route(&format!("gateway.routes[{j}]"), r, None, &services);
            }
            self.filters(&chains::gateway_as_written(mesh));
        }
        let mut hosts = BTreeSet::new();
        for (i, e) in mesh.egress.iter().enumerate() {
            let at = format!("egress[{i}]");
            if e.host.is_empty() || e.host.contains(['/', ':', ' ']) {
                self.err(
                    format!("{at}.host"),
                    "must be a host name (no scheme, port or path)",
                );
            }
            if services.contains_key(e.host.as_str()) {
                self.err(
                    format!("{at}.host"),
                    format!("{:?} is also a service name", e.host),
                );
            }
            if !hosts.insert((e.host.as_str(), e.port)) {
                self.err(
                    format!("{at}.host"),
                    format!("{}:{} is listed twice", e.host, e.port),
                );
            }
            if e.port == 0 {
                self.err(format!("{at}.port"), "must be 1 to 65535");
            }
            let verify_settings = e.ca_certificates.is_some() || e.insecure_skip_verify;
            if verify_settings && !e.tls {
                self.err(
                    format!("{at}.tls"),
                    "caCertificates and insecureSkipVerify apply to TLS origination: set tls: true",
                );
            }
            if e.ca_certificates.is_some() && e.insecure_skip_verify {
                self.err(
                    format!("{at}.insecureSkipVerify"),
                    "give caCertificates or insecureSkipVerify, not both",
                );
            }
            if e.ca_certificates.as_deref().is_some_and(str::is_empty) {
                self.err(format!("{at}.caCertificates"), "must be a file path");
            }
        }
    }

    fn service(&mut self, at: &str, s: &ServiceSpec, services: &BTreeMap<&str, &ServiceSpec>) {
        self.name(&format!("{at}.name"), &s.name);
        self.name(&format!("{at}.namespace"), &s.namespace);
        self.name(&format!("{at}.serviceAccount"), s.service_account());
        if s.port == 0 {
            self.err(format!("{at}.port"), "must be 1 to 65535");
        }
        let app_port = s.app_port();
        if app_port == 0 || RESERVED_PORTS.contains(&app_port) {
            self.err(
                format!("{at}.appPort"),
                format!(
                    "port {app_port} clashes with the sidecar's ports {RESERVED_PORTS:?} (the app shares the sidecar's network)"
                ),
            );
        }
        if s.versions.is_empty() {
            self.err(
                format!("{at}.versions"),
                "a service needs at least one version",
            );
        }
        let mut seen = BTreeSet::new();
        for (j, v) in s.versions.iter().enumerate() {
            self.name(&format!("{at}.versions[{j}].name"), &v.name);
            if !seen.insert(v.name.as_str()) {
                self.err(
                    format!("{at}.versions[{j}].name"),
                    format!("version {:?} is defined twice", v.name),
                );
            }
            if v.replicas == 0 {
                self.err(format!("{at}.versions[{j}].replicas"), "must be at least 1");
            }
        }
        for (j, callee) in s.calls.iter().flatten().enumerate() {
            if !services.contains_key(callee.as_str()) {
                let known: Vec<&str> = services.keys().copied().collect();
                self.err(
                    format!("{at}.calls[{j}]"),
                    format!(
                        "unknown service {callee:?} (services: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        if s.app.command.is_empty() {
            self.err(format!("{at}.app.command"), "must name a program");
        }
        if let Some(od) = &s.traffic_policy.outlier_detection {
            if od.max_ejection_percent > 100 {
                self.err(
                    format!("{at}.trafficPolicy.outlierDetection.maxEjectionPercent"),
                    "must be a percentage, 0 to 100",
                );
            }
        }
        for (j, r) in s.routes.iter().enumerate() {
            self.route(&format!("{at}.routes[{j}]"), r, Some(s), services);
        }
    }

    fn route(
        &mut self,
        at: &str,
        r: &RouteSpec,
        owner: Option<&ServiceSpec>,
        services: &BTreeMap<&str, &ServiceSpec>,
    ) {
        for (k, m) in r.matches.iter().enumerate() {
            self.match_spec(&format!("{at}.match[{k}]"), m);
        }
        if let Some(x) = &r.direct_response {
            if !(200..=599).contains(&x.status) {
                self.err(
                    format!("{at}.directResponse.status"),
                    format!("{}: 200 to 599", x.status),
                );
            }
            if r.redirect.is_some() || !r.route.is_empty() {
                self.err(
                    format!("{at}.directResponse"),
                    "answers the request itself: no `route` or `redirect` beside it",
                );
            }
        }
        match (&r.redirect, r.route.is_empty()) {
            (None, true) if r.direct_response.is_none() => self.err(
                format!("{at}.route"),
                "a route needs at least one destination (or a redirect or direct response)",
            ),
            (Some(_), false) => self.err(
                format!("{at}.redirect"),
                "a redirect answers the request itself: no `route` beside it",
            ),
            (Some(x), true) if ![301, 302, 303, 307, 308].contains(&x.redirect_code) => self.err(
                format!("{at}.redirect.redirectCode"),
                format!("{}: 301, 302, 303, 307 or 308", x.redirect_code),
            ),
            _ => {}
        }
        if let Some(c) = &r.cors_policy {
            for (k, o) in c.allow_origins.iter().enumerate() {
                self.string_match(&format!("{at}.corsPolicy.allowOrigins[{k}]"), o);
            }
        }
        let regex_match = r
            .matches
            .iter()
            .any(|m| m.path.as_ref().is_some_and(|p| p.regex.is_some()));
        if regex_match && r.rewrite.as_ref().is_some_and(|w| w.uri.is_some()) {
            self.err(
                format!("{at}.rewrite.uri"),
                "replaces the matched path prefix: not with a regex path match",
            );
        }
        for (k, d) in r.route.iter().enumerate() {
            self.destination(&format!("{at}.route[{k}]"), d, owner, services);
        }
        match r.route.as_slice() {
            [] => {}
            [single] => {
                if let Some(w) = single.weight {
                    if w != 100 {
                        self.err(
                            format!("{at}.route[0].weight"),
                            format!("a single destination takes all traffic: weight {w} should be 100 or omitted"),
                        );
                    }
                }
            }
            many => {
                let missing: Vec<usize> = many
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.weight.is_none())
                    .map(|(k, _)| k)
                    .collect();
                if let Some(k) = missing.first() {
                    self.err(
                        format!("{at}.route[{k}].weight"),
                        "with several destinations every one needs a weight",
                    );
                } else {
                    let total: u64 = many.iter().map(|d| u64::from(d.weight.unwrap_or(0))).sum();
                    if total != 100 {
                        let parts: Vec<String> = many
                            .iter()
                            .map(|d| d.weight.unwrap_or(0).to_string())
                            .collect();
                        self.err(
                            format!("{at}.route"),
                            format!(
                                "weights add up to {total} ({}), they must add up to 100",
                                parts.join(" + ")
                            ),
                        );
                    }
                }
            }
        }
        if let Some(retries) = &r.retries {
            if let Some(on) = &retries.retry_on {
                if on.split(',').any(|p| p.trim().is_empty()) {
                    self.err(
                        format!("{at}.retries.retryOn"),
                        "a comma-separated list of conditions, like \"5xx,connect-failure\"",
                    );
                }
            }
        }
        if let Some(m) = &r.mirror {
            self.percentage(&format!("{at}.mirror.percentage"), m.percentage);
            let d = Destination {
                service: m.service.clone(),
                version: m.version.clone(),
                weight: None,
            };
            self.destination(&format!("{at}.mirror"), &d, owner, services);
        }
        if let Some(f) = &r.fault {
            if owner.is_none() {
                self.err(
                    format!("{at}.fault"),
                    "faults are injected by the sidecars calling a service: put this route under the service's routes",
                );
            }
            if f.abort.is_none() && f.delay.is_none() {
                self.err(format!("{at}.fault"), "give an abort, a delay, or both");
            }
            if let Some(a) = &f.abort {
                self.percentage(&format!("{at}.fault.abort.percentage"), a.percentage);
                if !(200..=599).contains(&a.http_status) {
                    self.err(
                        format!("{at}.fault.abort.httpStatus"),
                        format!("{} is not an HTTP status (200 to 599)", a.http_status),
                    );
                }
            }
            if let Some(d) = &f.delay {
                self.percentage(&format!("{at}.fault.delay.percentage"), d.percentage);
            }
        }
    }

    fn destination(
        &mut self,
        at: &str,
        d: &Destination,
        owner: Option<&ServiceSpec>,
        services: &BTreeMap<&str, &ServiceSpec>,
    ) {
        let target = match (&d.service, owner) {
            (Some(name), _) => match services.get(name.as_str()) {
                Some(s) => Some(*s),
                None => {
                    let known: Vec<&str> = services.keys().copied().collect();
                    self.err(
                        format!("{at}.service"),
                        format!("unknown service {name:?} (services: {})", known.join(", ")),
                    );
                    None
                }
            },
            (None, Some(owner)) => Some(owner),
            (None, None) => {
                self.err(format!("{at}.service"), "name the service to route to");
                None
            }
        };
        if let (Some(s), Some(v)) = (target, &d.version) {
            if s.version(v).is_none() {
                let known: Vec<&str> = s.versions.iter().map(|v| v.name.as_str()).collect();
                self.err(
                    format!("{at}.version"),
                    format!(
                        "service {:?} has no version {v:?} (versions: {})",
                        s.name,
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn match_spec(&mut self, at: &str, m: &MatchSpec) {
        if let Some(p) = &m.path {
            self.string_match(&format!("{at}.path"), p);
        }
        for (name, h) in &m.headers {
            if name.is_empty() || name.chars().any(|c| c.is_ascii_uppercase()) {
                self.err(
                    format!("{at}.headers.{name}"),
                    "header names must be non-empty and lower-case",
                );
            }
            self.string_match(&format!("{at}.headers.{name}"), h);
        }
        if let Some(method) = &m.method {
            self.string_match(&format!("{at}.method"), method);
        }
    }

    fn string_match(&mut self, at: &str, m: &StringMatch) {
        match m.single() {
            None => self.err(at, "give exactly one of exact, prefix or regex"),
            Some(crate::model::Matcher::Regex(r)) => {
                if let Err(e) = regex::Regex::new(r) {
                    self.err(format!("{at}.regex"), format!("invalid regex: {e}"));
                }
            }
            Some(_) => {}
        }
    }

    /// A chain as written: each filter once, configs that are mappings, no second
    /// tracer.
    fn filters(&mut self, chain: &Chain) {
        let at = &chain.path;
        let mut seen = BTreeSet::new();
        for (k, f) in chain.filters.iter().map(|f| &f.spec).enumerate() {
            if !seen.insert(f.name) {
                self.err(
                    format!("{at}[{k}].name"),
                    format!(
                        "filter {} is listed twice in this chain; merge the configs",
                        f.name
                    ),
                );
            }
            if !f.config.is_object() {
                self.err(
                    format!("{at}[{k}].config"),
                    "must be a mapping (the filter's JSON config)",
                );
            }
            if crate::ratelimit::asks_service(f)
                && !self.rate_limit_service
                && f.config.get("rate_limit_service").is_none()
            {
                self.err(
                    format!("{at}[{k}].config.rules"),
                    "a `global: true` rule asks a rate limit service: add \
                     mesh.rateLimitService (or the filter's own `rate_limit_service`)",
                );
            }
            let tracing = &f.config["tracing"];
            if self.native_tracer
                && f.name == FilterName::Telemetry
                && !tracing.is_null()
                && tracing["enabled"] != false
            {
                self.err(
                    format!("{at}[{k}].config.tracing"),
                    "mesh.tracing's tracer writes the trace headers, and a context this \
                     filter started would be a second trace: set `enabled: false`, or \
                     leave `tracing` out and the generator turns it off",
                );
            }
        }
    }

    fn percentage(&mut self, at: &str, p: f64) {
        if !(0.0..=100.0).contains(&p) {
            self.err(at, format!("{p} is not a percentage (0 to 100)"));
        }
    }

    fn host_port(&mut self, at: &str, address: &str) {
        let ok = address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            self.err(at, format!("{address:?} is not host:port"));
        }
    }

    /// Names end up in DNS names, cluster names and file names: keep them DNS labels.
    fn name(&mut self, at: &str, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            self.err(
                at,
                format!(
                    "{name:?} is not a DNS label (lower-case letters, digits and '-', at most 63)"
                ),
            );
        }
    }
}
