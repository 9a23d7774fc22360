//! The authz stage: authenticate, then authorize in Istio's order, then edit headers.
//!
//! One request goes through [`AuthzStage::evaluate`], which is re-run from the top
//! whenever the request resumes (after a JWKS fetch or the ext_authz answer). Re-running
//! is cheap (verified tokens are cached, the CUSTOM verdict is kept in the stream) and
//! keeps one straight path through the logic instead of a state machine:
//!
//! 1. headers larger than `maxRequestHeadersBytes`: 431; a path the SDK refuses: 400;
//! 2. credentials (JWT, API key, basic auth): a present but invalid one is 401; a JWT
//!    whose issuer's remote keys are not loaded pauses the request for the fetch;
//! 3. CUSTOM (ext_authz callout), then DENY, then ALLOW (if any ALLOW policy exists and
//!    none matches: deny); AUDIT and dry-run policies are evaluated and counted only;
//! 4. on allow: headers a client could forge (consumer, claim headers) are removed, then
//!    set from what was verified; the token is stripped unless forwarded.
//!
//! Per-VM state (remote keys, the token cache) is in `RefCell`s: a VM is one thread.

use crate::config::Config;
use crate::consumers::{ApiKeys, BasicAuth, CredentialError};
use crate::extauthz::{ExtAuthz, Verdict};
use crate::jwt::cache::{Entry, TokenCache};
use crate::jwt::jwk::{self, Jwk};
use crate::jwt::{self, Found, JwtError, JwtRule, KeySource, Location, RemoteJwks};
use crate::policy::{self, Action, Attributes, Identity, Needs, Policy};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmesh_sdk::config::{validate_list, ConfigError};
use wasmesh_sdk::metrics::Counter;
use wasmesh_sdk::net::client_ip;
use wasmesh_sdk::props::parse_address;
use wasmesh_sdk::{Callout, CalloutResult, Decision, LocalReply, PathOptions, Request, Stage};

const DEFAULT_CACHE: usize = 256;
const DEFAULT_MAX_HEADERS: usize = 64 * 1024;
const DEFAULT_MAX_TOKEN: usize = 8 * 1024;
/// How often a request waiting for another request's JWKS fetch looks again.
const JWKS_POLL: Duration = Duration::from_millis(20);

/// Remote keys of one jwtRule, per VM.
#[derive(Debug, Default)]
struct JwksState {
    keys: Option<Rc<Vec<Jwk>>>,
    fetched_ms: u64,
    failed_ms: Option<u64>,
    /// A fetch is under way until this time (a stream that is reset takes its callout
    /// with it, so the mark must expire on its own).
    in_flight_until_ms: Option<u64>,
}

/// Where a paused request waits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Pending {
    #[default]
    None,
    Jwks(usize),
    ExtAuthz(usize),
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct AuthzStream {
    pending: Pending,
    /// The CUSTOM verdict once given: headers for the upstream.
    custom_allowed: Option<Vec<(String, String)>>,
    /// Polls spent waiting for another request's JWKS fetch.
    waits: u32,
}

/// A header edit decided during authentication, applied only if the request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    Set(String, String),
    Remove(String),
}

#[derive(Debug, Default)]
struct Authn {
    identity: Identity,
    had_credential: bool,
    edits: Vec<Edit>,
}

pub struct AuthzStage {
    policies: Vec<Policy>,
    has_enforced_allow: bool,
    has_dry_run: bool,
    needs: Needs,
    jwt_rules: Vec<JwtRule>,
    api_keys: Option<ApiKeys>,
    basic: Option<BasicAuth>,
    providers: Vec<ExtAuthz>,
    xff_hops: u32,
    skew: i64,
    missing_status: u16,
    max_headers: usize,
    max_token: usize,
    realm: String,
    path_options: PathOptions,
    /// Headers only this filter may set: removed from every incoming request.
    protected_headers: Vec<String>,
    jwks: Vec<RefCell<JwksState>>,
    cache: RefCell<TokenCache>,
    clock: Box<dyn Fn() -> SystemTime>,
    decisions: Counter,
}

fn host_clock() -> SystemTime {
    wasmesh_sdk::host::now_or_epoch()
}

fn millis(t: SystemTime) -> u64 {
    wasmesh_sdk::host::unix_millis(t)
}

impl AuthzStage {
    /// Replaces the clock (native tests and benches; the filter reads the host's).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    fn now_ms(&self) -> u64 {
        millis((self.clock)())
    }

    fn now_secs(&self) -> i64 {
        (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// Verified tokens currently cached (for tests and the bench).
    pub fn cached_tokens(&self) -> usize {
        self.cache.borrow().len()
    }

    fn count(&self, decision: &str, policy: &str) {
        self.decisions.inc(&[decision, policy]);
    }

    fn challenge(&self, error: Option<&str>) -> Vec<String> {
        let realm = &self.realm;
        let mut out = Vec::new();
        if !self.jwt_rules.is_empty() {
            out.push(match error {
                Some(e) => format!("Bearer realm=\"{realm}\", error=\"{e}\""),
                None => format!("Bearer realm=\"{realm}\""),
            });
        }
        if self.basic.is_some() {
            out.push(format!("Basic realm=\"{realm}\""));
        }
        if self.api_keys.is_some() && out.is_empty() {
            out.push(format!("ApiKey realm=\"{realm}\""));
        }
        out
    }

    fn unauthorized(&self, body: &str, details: &str, error: Option<&str>) -> Decision {
        self.count("unauthenticated", "");
        let mut reply = LocalReply::new(401, body)
            .header("content-type", "text/plain")
            .details(details);
        for c in self.challenge(error) {
            reply = reply.header("www-authenticate", &c);
        }
        Decision::Reply(reply)
    }

    fn invalid_jwt(&self, e: JwtError) -> Decision {
        wasmesh_sdk::info!("rejected a JWT: {e}");
        self.unauthorized(
            "Jwt verification fails",
            &format!("jwt_authn_access_denied{{{e}}}"),
            Some("invalid_token"),
        )
    }

    fn invalid_credential(&self, kind: &str, e: CredentialError) -> Decision {
        let why = match e {
            CredentialError::Invalid => "invalid",
            CredentialError::Ambiguous => "ambiguous",
        };
        wasmesh_sdk::info!("rejected {kind} credentials: {why}");
        self.unauthorized("Unauthorized", &format!("{kind}_{why}"), None)
    }

    fn deny(&self, policy: &str, action: &str, req: &Request<'_>, path: &str) -> Decision {
        wasmesh_sdk::info!(
            "denied {} {}: policy `{policy}` ({action})",
            req.method(),
            path
        );
        self.count("denied", policy);
        Decision::Reply(
            LocalReply::new(403, "RBAC: access denied")
                .header("content-type", "text/plain")
                .details(&format!("rbac_access_denied_matched_policy[{policy}]")),
        )
    }

    /// The whole pipeline; see the module docs.
    fn evaluate(&self, req: &mut Request<'_>, st: &mut AuthzStream) -> Decision {
        let size: usize = req.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > self.max_headers {
            self.count("bad_request", "");
            return Decision::Reply(
                LocalReply::new(431, "request headers too large")
                    .header("content-type", "text/plain")
                    .details("wasmesh_headers_too_large"),
            );
        }
        let path = match req.path() {
            Ok(p) => p.to_string(),
            Err(e) => {
                self.count("bad_request", "");
                return Decision::Reply(LocalReply::bad_request(&e.to_string()));
            }
        };
        let authn = match self.authenticate(req, st) {
            Ok(a) => a,
            Err(d) => return d,
        };
        let outcome = self.authorize(req, st, &path, &authn);
        match outcome {
            Ok(()) => {}
            Err(d) => return d,
        }
        for h in &self.protected_headers {
            req.headers.remove(h);
        }
        for edit in &authn.edits {
            match edit {
                Edit::Set(k, v) => req.headers.set(k, v),
                Edit::Remove(k) => req.headers.remove(k),
            }
        }
        for (k, v) in st.custom_allowed.iter().flatten() {
            req.headers.set(k, v);
        }
        Decision::Continue
    }

    /// CUSTOM, DENY, ALLOW; AUDIT and dry-run counted. `Ok` means allowed.
    fn authorize(
        &self,
        req: &Request<'_>,
        st: &mut AuthzStream,
        path: &str,
        authn: &Authn,
    ) -> Result<(), Decision> {
        let principal_full = if self.needs.principal {
            req.props.peer_principal()
        } else {
            None
        };
        let principal = principal_full
            .as_deref()
            .map(|p| p.strip_prefix("spiffe://").unwrap_or(p));
        let peer = if self.needs.source_ip || self.needs.remote_ip {
            req.props.source_ip()
        } else {
            None
        };
        let remote_ip = if self.needs.remote_ip {
            client_ip(req.headers.get_all("x-forwarded-for"), self.xff_hops, peer)
        } else {
            None
        };
        let sni = if self.needs.sni {
            req.props.string(&["connection", "requested_server_name"])
        } else {
            None
        };
        let destination_ip = if self.needs.destination_ip {
            req.props
                .string(&["destination", "address"])
                .and_then(|a| parse_address(&a))
                .map(|a| a.ip())
        } else {
            None
        };
        let host = req.host();
        let attrs = Attributes {
            principal,
            namespace: principal.and_then(policy::spiffe_namespace),
            source_ip: peer,
            remote_ip,
            destination_ip,
            destination_port: if self.needs.destination_port {
                req.props.destination_port()
            } else {
                None
            },
            host: &host,
            method: req.method(),
            path,
            sni: sni.as_deref(),
            headers: &req.headers,
            identity: &authn.identity,
        };
        let first = |action: Action, dry_run: bool| {
            self.policies
                .iter()
                .find(|p| p.action == action && p.dry_run == dry_run && p.matches(&attrs))
        };

        if st.custom_allowed.is_none() {
            if let Some(p) = first(Action::Custom, false) {
                let idx = self
                    .providers
                    .iter()
                    .position(|e| Some(&e.name) == p.provider.as_ref());
                if let Some(idx) = idx {
                    st.pending = Pending::ExtAuthz(idx);
                    return Err(Decision::Callout(self.providers[idx].check(req)));
                }
            }
        }
        for p in self
            .policies
            .iter()
            .filter(|p| p.action == Action::Audit && p.matches(&attrs))
        {
            wasmesh_sdk::info!("audit {} {}: policy `{}`", req.method(), path, p.name);
            self.count("audited", &p.name);
        }
        if self.has_dry_run {
            let shadow = match first(Action::Deny, true) {
                Some(p) => Some(("dry_run_denied", p.name.as_str())),
                None if self
                    .policies
                    .iter()
                    .any(|p| p.dry_run && p.action == Action::Allow) =>
                {
                    match first(Action::Allow, true) {
                        Some(p) => Some(("dry_run_allowed", p.name.as_str())),
                        None => Some(("dry_run_denied", "none")),
                    }
                }
                None => None,
            };
            if let Some((decision, name)) = shadow {
                if decision == "dry_run_denied" {
                    wasmesh_sdk::info!(
                        "dry-run: {} {} would be denied by policy `{name}`",
                        req.method(),
                        path
                    );
                }
                self.count(decision, name);
            }
        }

        let anonymous_challenge = |policy: &str, action: &str| {
            let authn_configured =
                !self.jwt_rules.is_empty() || self.api_keys.is_some() || self.basic.is_some();
            if self.missing_status == 401 && authn_configured && !authn.had_credential {
                wasmesh_sdk::info!(
                    "denied {} {} without credentials: policy `{policy}` ({action})",
                    req.method(),
                    path
                );
                let body = if self.jwt_rules.is_empty() {
                    "Unauthorized"
                } else {
                    "Jwt is missing"
                };
                return self.unauthorized(
                    body,
                    &format!("rbac_access_denied_matched_policy[{policy}]"),
                    None,
                );
            }
            self.deny(policy, action, req, path)
        };
        if let Some(p) = first(Action::Deny, false) {
            return Err(anonymous_challenge(&p.name, "DENY"));
        }
        if self.has_enforced_allow {
            match first(Action::Allow, false) {
                Some(p) => self.count("allowed", &p.name),
                None => return Err(anonymous_challenge("none", "no ALLOW policy matched")),
            }
        } else {
            self.count("allowed", "");
        }
        Ok(())
    }

    fn authenticate(&self, req: &Request<'_>, st: &mut AuthzStream) -> Result<Authn, Decision> {
        let mut authn = Authn::default();
        // Tokens, and for each the rules whose locations it was found at.
        let mut found: Vec<(Found, Vec<usize>)> = Vec::new();
        for (i, rule) in self.jwt_rules.iter().enumerate() {
            for loc in &rule.locations {
                let token = jwt::extract(req, loc).map_err(|e| self.invalid_jwt(e))?;
                let Some(token) = token else { continue };
                match found.iter_mut().find(|(f, _)| f.token == token) {
                    Some((_, rules)) => rules.push(i),
                    None => found.push((
                        Found {
                            token,
                            location: loc.clone(),
                        },
                        vec![i],
                    )),
                }
            }
        }
        if found.len() > 1 {
            return Err(self.invalid_jwt(JwtError::Multiple));
        }
        if let Some((f, rules)) = found.pop() {
            authn.had_credential = true;
            let entry = self.verify(&f.token, &rules, st)?;
            let rule = &self.jwt_rules[entry.rule];
            for (header, claim) in &rule.output_claim_to_headers {
                if let Some(v) = jwt::claim_header_value(&entry.claims, claim) {
                    authn.edits.push(Edit::Set(header.clone(), v));
                }
            }
            if let Some(h) = &rule.output_payload_to_header {
                if let Some(payload) = f.token.split('.').nth(1) {
                    authn.edits.push(Edit::Set(h.clone(), payload.to_string()));
                }
            }
            if let (false, Location::Header { name, .. }) =
                (rule.forward_original_token, &f.location)
            {
                authn.edits.push(Edit::Remove(name.clone()));
            }
            authn.identity.request_principal = Some(entry.principal.clone());
            authn.identity.claims = Some(entry.claims.clone());
        }
        let mut consumer_from =
            |kind: &str,
             header: &str,
             r: Result<Option<crate::consumers::Accepted>, CredentialError>| {
                match r {
                    Err(e) => Err(self.invalid_credential(kind, e)),
                    Ok(None) => Ok(()),
                    Ok(Some(a)) => {
                        if authn
                            .identity
                            .consumer
                            .as_ref()
                            .is_some_and(|c| c != &a.consumer)
                        {
                            return Err(self.invalid_credential(kind, CredentialError::Ambiguous));
                        }
                        authn.had_credential = true;
                        authn
                            .edits
                            .push(Edit::Set(header.to_string(), a.consumer.clone()));
                        if let Some(h) = a.strip_header {
                            authn.edits.push(Edit::Remove(h));
                        }
                        authn.identity.consumer = Some(a.consumer);
                        Ok(())
                    }
                }
            };
        if let Some(k) = &self.api_keys {
            consumer_from("api_key", &k.consumer_header, k.authenticate(req))?;
        }
        if let Some(b) = &self.basic {
            consumer_from("basic_auth", &b.consumer_header, b.authenticate(req))?;
        }
        Ok(authn)
    }

    /// A verified token's cache entry, or the decision that answers or pauses the request.
    fn verify(
        &self,
        token: &str,
        rules: &[usize],
        st: &mut AuthzStream,
    ) -> Result<Entry, Decision> {
        let now = self.now_secs();
        let cached = self.cache.borrow_mut().get(token, now, self.skew);
        if let Some(e) = cached {
            // A hit is only as good as the keys that verified it: once they are due for a
            // refresh, the token goes the long way (which fetches them).
            if rules.contains(&e.rule) && self.keys_current(e.rule) {
                return Ok(e);
            }
        }
        let parsed = jwt::parse(token, self.max_token).map_err(|e| self.invalid_jwt(e))?;
        let iss = jwt::issuer(&parsed.claims).unwrap_or("");
        let Some(&idx) = rules.iter().find(|&&i| self.jwt_rules[i].issuer == iss) else {
            return Err(self.invalid_jwt(JwtError::UnknownIssuer));
        };
        let rule = &self.jwt_rules[idx];
        let keys = match &rule.keys {
            KeySource::Inline(keys) => keys.clone(),
            KeySource::Remote(remote) => self.remote_keys(idx, remote, st)?,
        };
        jwt::check_signature(&parsed, &keys).map_err(|e| self.invalid_jwt(e))?;
        let exp = jwt::check_claims(rule, &parsed.claims, now, self.skew)
            .map_err(|e| self.invalid_jwt(e))?;
        let entry = Entry {
            rule: idx,
            principal: jwt::principal(&parsed.claims),
            claims: Rc::new(parsed.claims),
            exp,
        };
        self.cache.borrow_mut().insert(token, entry.clone());
        Ok(entry)
    }

    /// Whether the rule's keys are usable without a fetch.
    fn keys_current(&self, idx: usize) -> bool {
        let Some(KeySource::Remote(remote)) = self.jwt_rules.get(idx).map(|r| &r.keys) else {
            return true;
        };
        let Some(state) = self.jwks.get(idx) else {
            return false;
        };
        let s = state.borrow();
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        s.keys.is_some()
            && (now < s.fetched_ms.saturating_add(ms(remote.refresh))
                || s.in_flight_until_ms.is_some_and(|t| now < t)
                || s.failed_ms
                    .is_some_and(|t| now < t.saturating_add(ms(remote.retry))))
    }

    /// The rule's keys if usable now; otherwise the request fetches them, waits for
    /// another request's fetch, or is answered `jwksUnavailableStatus`.
    fn remote_keys(
        &self,
        idx: usize,
        remote: &RemoteJwks,
        st: &mut AuthzStream,
    ) -> Result<Rc<Vec<Jwk>>, Decision> {
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let Some(state) = self.jwks.get(idx) else {
            return Err(self.invalid_jwt(JwtError::KeysUnavailable));
        };
        let mut s = state.borrow_mut();
        let in_flight = s.in_flight_until_ms.is_some_and(|t| now < t);
        let recently_failed = s
            .failed_ms
            .is_some_and(|t| now < t.saturating_add(ms(remote.retry)));
        if let Some(keys) = &s.keys {
            let fresh = now < s.fetched_ms.saturating_add(ms(remote.refresh));
            // Stale keys still serve while a refresh is under way or has just failed.
            if fresh || in_flight || recently_failed {
                return Ok(keys.clone());
            }
        } else if recently_failed {
            drop(s);
            return Err(self.keys_unavailable(remote));
        } else if in_flight {
            st.waits += 1;
            if JWKS_POLL.saturating_mul(st.waits) > remote.timeout {
                drop(s);
                return Err(self.keys_unavailable(remote));
            }
            return Err(Decision::Delay(JWKS_POLL));
        }
        s.in_flight_until_ms = Some(now.saturating_add(ms(remote.timeout)));
        st.pending = Pending::Jwks(idx);
        Err(Decision::Callout(Callout {
            cluster: remote.cluster.clone(),
            headers: vec![
                (":method".into(), "GET".into()),
                (":path".into(), remote.path.clone()),
                (":authority".into(), remote.authority.clone()),
                ("accept".into(), "application/json".into()),
            ],
            body: None,
            timeout: remote.timeout,
        }))
    }

    fn keys_unavailable(&self, remote: &RemoteJwks) -> Decision {
        if remote.unavailable_status == 401 {
            return self.unauthorized(
                "Jwks remote fetch is failed",
                "jwks_unavailable",
                Some("invalid_token"),
            );
        }
        self.count("unavailable", "");
        Decision::Reply(
            LocalReply::new(remote.unavailable_status, "Jwks remote fetch is failed")
                .header("content-type", "text/plain")
                .details("jwks_unavailable"),
        )
    }

    fn jwks_fetched(&self, idx: usize, result: &CalloutResult) {
        let now = self.now_ms();
        let Some(state) = self.jwks.get(idx) else {
            return;
        };
        let issuer = &self.jwt_rules[idx].issuer;
        let mut s = state.borrow_mut();
        s.in_flight_until_ms = None;
        let parsed = match result {
            CalloutResult::Response {
                status: 200, body, ..
            } => jwk::parse_jwks(body, false),
            CalloutResult::Response { status, .. } => Err(format!("status {status}")),
            CalloutResult::Failed => Err("the callout failed".to_string()),
        };
        match parsed {
            Ok((keys, skipped)) => {
                for why in skipped {
                    wasmesh_sdk::warn!("JWKS of `{issuer}`: skipped {why}");
                }
                s.keys = Some(Rc::new(keys));
                s.fetched_ms = now;
                s.failed_ms = None;
                // Tokens verified with keys that may have been withdrawn must be checked again.
                self.cache.borrow_mut().clear();
            }
            Err(e) => {
                wasmesh_sdk::warn!("JWKS fetch for `{issuer}` failed: {e}");
                s.failed_ms = Some(now);
            }
        }
    }
}

impl Stage for AuthzStage {
    const NAME: &'static str = "wasmesh-authz";
    type Config = Config;
    type Stream = AuthzStream;

    /// Authorization is decided on the request; responses pass untouched.
    fn wants_response(&self) -> bool {
        false
    }

    fn build(c: Config) -> Result<Self, ConfigError> {
        let providers = validate_list("extensionProviders", &c.extension_providers, |p| {
            let http = p.envoy_ext_authz_http.as_ref().ok_or_else(|| {
                ConfigError::at(
                    "envoyExtAuthzHttp",
                    "only envoyExtAuthzHttp providers are supported",
                )
            })?;
            ExtAuthz::compile(&p.name, http).map_err(|e| e.within("envoyExtAuthzHttp"))
        })?;
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        let policies = validate_list("policies", &c.policies, |p| policy::compile(p, &names))?;
        let mut customs = policies.iter().filter_map(|p| p.provider.as_deref());
        if let Some(first) = customs.next() {
            if customs.any(|p| p != first) {
                // Istio allows one provider per workload: two would need two verdicts.
                return Err(ConfigError::at(
                    "policies",
                    "CUSTOM policies must all name the same provider",
                ));
            }
        }
        let needs = c
            .policies
            .iter()
            .fold(Needs::default(), |n, p| n.union(Needs::of(p)));
        let jwt_rules = validate_list("jwtRules", &c.jwt_rules, JwtRule::compile)?;
        let api_keys = c
            .api_keys
            .as_ref()
            .map(|a| ApiKeys::compile(a).map_err(|e| e.within("apiKeys")))
            .transpose()?;
        let basic = c
            .basic_auth
            .as_ref()
            .map(|b| BasicAuth::compile(b).map_err(|e| e.within("basicAuth")))
            .transpose()?;
        let missing_status = c.missing_credential_status.unwrap_or(401);
        if missing_status != 401 && missing_status != 403 {
            return Err(ConfigError::at(
                "missingCredentialStatus",
                "must be 401 or 403",
            ));
        }
        let mut protected_headers: Vec<String> = Vec::new();
        for r in &jwt_rules {
            protected_headers.extend(r.output_claim_to_headers.iter().map(|(h, _)| h.clone()));
            protected_headers.extend(r.output_payload_to_header.iter().cloned());
        }
        protected_headers.extend(api_keys.iter().map(|a| a.consumer_header.clone()));
        protected_headers.extend(basic.iter().map(|b| b.consumer_header.clone()));
        protected_headers.sort();
        protected_headers.dedup();
        let jwks = jwt_rules
            .iter()
            .map(|_| RefCell::new(JwksState::default()))
            .collect();
        Ok(Self {
            has_enforced_allow: policies
                .iter()
                .any(|p| p.action == Action::Allow && !p.dry_run),
            has_dry_run: policies.iter().any(|p| p.dry_run),
            policies,
            needs,
            jwt_rules,
            api_keys,
            basic,
            providers,
            xff_hops: c.xff_num_trusted_hops,
            skew: i64::try_from(c.clock_skew_seconds.unwrap_or(60)).unwrap_or(i64::MAX),
            missing_status,
            max_headers: c.max_request_headers_bytes.unwrap_or(DEFAULT_MAX_HEADERS),
            max_token: c.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN),
            realm: c.realm.unwrap_or_else(|| "wasmesh".into()),
            path_options: c.path_normalization,
            protected_headers,
            jwks,
            cache: RefCell::new(TokenCache::new(c.token_cache_size.unwrap_or(DEFAULT_CACHE))),
            clock: Box::new(host_clock),
            decisions: Counter::new("wasmesh_authz_decisions_total", &["decision", "policy"]),
        })
    }

    fn path_options(&self) -> PathOptions {
        self.path_options
    }

    fn on_request(&self, req: &mut Request<'_>, st: &mut AuthzStream) -> Decision {
        self.evaluate(req, st)
    }

    fn on_request_resumed(&self, req: &mut Request<'_>, st: &mut AuthzStream) -> Decision {
        self.evaluate(req, st)
    }

    fn on_callout_response(
        &self,
        req: &mut Request<'_>,
        st: &mut AuthzStream,
        result: CalloutResult,
    ) -> Decision {
        match std::mem::take(&mut st.pending) {
            Pending::Jwks(idx) => {
                self.jwks_fetched(idx, &result);
                self.evaluate(req, st)
            }
            Pending::ExtAuthz(idx) => {
                let Some(provider) = self.providers.get(idx) else {
                    return Decision::Continue;
                };
                match provider.interpret(&result) {
                    Verdict::Allow(headers) => {
                        st.custom_allowed = Some(headers);
                        self.evaluate(req, st)
                    }
                    Verdict::Deny(reply) => {
                        wasmesh_sdk::info!(
                            "denied {} {}: CUSTOM provider `{}` answered {}",
                            req.method(),
                            req.path().unwrap_or(""),
                            provider.name,
                            reply.status
                        );
                        self.count("custom_denied", &provider.name);
                        Decision::Reply(reply)
                    }
                }
            }
            // A response nobody waits for: decide from scratch rather than let it through.
            Pending::None => self.evaluate(req, st),
        }
    }
}

#[cfg(test)]
mod tests;
