//! The authz security corpus: one policy set and the named attack (and control) cases
//! run against it, as data. The harness (`filters/authz/tests/security.rs`, the filter's
//! own module and the mesh module's stage) and real Envoy
//! (`integration/tests/security.rs`: authz.wasm, mesh.wasm and the native module) run
//! the very same cases and hold them to the very same expected outcome.
//!
//! Families: path normalisation against a DENY and an ALLOW policy; JWT attacks; and
//! `x-forwarded-for` spoofing beyond the one trusted hop. A request comes from a client
//! that controls every byte it sends; with one trusted hop, the last forwarded-for entry
//! is the one the trusted proxy appended (what it saw), and everything left of it is the
//! client's to forge.

use crate::mint;
use serde_json::{json, Value};

/// Which attack family a case belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Path,
    Jwt,
    Xff,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Path => "path",
            Family::Jwt => "jwt",
            Family::Xff => "xff",
        }
    }
}

/// What the filter must do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The request goes on to the upstream (Envoy: 200 from the echo upstream).
    Allowed,
    /// The filter answers with this status and the upstream never sees the request.
    Denied(u16),
}

impl Expect {
    pub fn describe(self) -> String {
        match self {
            Expect::Allowed => "allowed".to_string(),
            Expect::Denied(status) => format!("denied {status}"),
        }
    }
}

/// One request of the corpus.
#[derive(Debug, Clone)]
pub struct Case {
    pub family: Family,
    pub name: &'static str,
    /// An attack (counted in "attack cases denied") or a legitimate control request.
    pub attack: bool,
    /// The policy (or JWT rule) the case tries to get past.
    pub policy: &'static str,
    /// `:path` as the filter sees it. Envoy's HTTP/1 codec forwards the request
    /// target's path untouched (no `normalize_path` in the rig's listener).
    pub path: String,
    /// The request target on the wire, when it is not `path` (absolute form).
    pub wire_target: Option<String>,
    pub headers: Vec<(String, String)>,
    pub expect: Expect,
    /// The status Envoy itself answers with before the filter runs (its own header
    /// limit), when it does: the upstream never sees the request either way.
    pub envoy_answers: Option<u16>,
}

impl Case {
    /// The request target to write on the wire.
    pub fn target(&self) -> &str {
        self.wire_target.as_deref().unwrap_or(&self.path)
    }

    /// What real Envoy answers: its own status if it answers first, else the filter's.
    pub fn expect_in_envoy(&self) -> Expect {
        match self.envoy_answers {
            Some(status) => Expect::Denied(status),
            None => self.expect,
        }
    }
}

/// The authority every case is sent to.
pub const AUTHORITY: &str = "shop.example.com";
/// The clock skew the corpus config allows (the filter's default, Envoy's too).
pub const SKEW: i64 = 60;
/// How far beyond (or inside) the skew the time edge cases sit: wide enough that the
/// seconds between minting and the check never flip a case.
const EDGE: i64 = 30;

/// The policies every case runs against. One trusted hop; a JWT rule with inline keys;
/// DENY on an admin console inside the public area and on a blocked client range;
/// ALLOW for the public area, `/api/*` with a verified token, and `/office/*` from the
/// office range.
pub fn config() -> Value {
    json!({
        "xffNumTrustedHops": 1,
        // A policy denial is 403 with or without a credential (Istio's answer), so a
        // case's status says which check refused it: 401 is always a bad credential.
        "missingCredentialStatus": 403,
        "jwtRules": [{"issuer": mint::ISSUER, "audiences": [mint::AUDIENCE], "jwks": mint::public_jwks().to_string()}],
        "policies": [
            {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/public/admin", "/public/admin/*"]}}]}]},
            {"name": "deny-blocked-clients", "action": "DENY", "rules": [{"from": [{"source": {"remoteIpBlocks": ["6.6.6.0/24"]}}]}]},
            {"name": "allow-app", "action": "ALLOW", "rules": [
                {"to": [{"operation": {"paths": ["/public/*"]}}]},
                {"from": [{"source": {"requestPrincipals": ["*"]}}], "to": [{"operation": {"paths": ["/api/*"]}}]},
                {"from": [{"source": {"remoteIpBlocks": ["10.1.0.0/16"]}}], "to": [{"operation": {"paths": ["/office/*"]}}]}]}
        ]
    })
}

fn case(family: Family, name: &'static str, policy: &'static str, path: &str) -> Case {
    Case {
        family,
        name,
        attack: true,
        policy,
        path: path.to_string(),
        wire_target: None,
        headers: Vec::new(),
        expect: Expect::Denied(403),
        envoy_answers: None,
    }
}

impl Case {
    fn expect(mut self, expect: Expect) -> Case {
        self.expect = expect;
        self
    }

    fn control(mut self) -> Case {
        self.attack = false;
        self.expect = Expect::Allowed;
        self
    }

    /// Not an attack, and denied all the same (the direct request, no credential).
    fn baseline(mut self) -> Case {
        self.attack = false;
        self
    }

    fn header(mut self, name: &str, value: &str) -> Case {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

const DENY_ADMIN: &str = "deny-admin (DENY /public/admin, /public/admin/*)";
const ALLOW_APP: &str = "allow-app (ALLOW /public/*)";

/// Path tricks at the DENY on `/public/admin` (whose area the ALLOW list allows, so only
/// the DENY stands between them and the console) and at the ALLOW list (escaping
/// `/public/` to `/internal/secrets`, which nothing allows).
pub fn path_cases() -> Vec<Case> {
    let deny = |name, path: &str| case(Family::Path, name, DENY_ADMIN, path);
    let escape = |name, path: &str| case(Family::Path, name, ALLOW_APP, path);
    let refused = Expect::Denied(400);
    vec![
        deny("plain (baseline)", "/public/admin").baseline(),
        deny("repeated slash", "/public//admin"),
        deny("dot segment", "/public/./admin"),
        deny("dot-dot segment", "/public/x/../admin"),
        deny("trailing slash", "/public/admin/"),
        deny("trailing dot", "/public/admin/."),
        deny("encoded dot-dot", "/public/x/%2e%2e/admin"),
        deny("encoded dot-dot, mixed case", "/public/x/%2E%2e/admin"),
        deny("half-encoded dot-dot", "/public/x/.%2e/admin"),
        deny("encoded letter", "/public/%61dmin"),
        deny(
            "encoded letters, upper-case hex",
            "/public/%41%44MIN/../%61dmin",
        ),
        deny("double-encoded letter", "/public/%2561dmin").expect(refused),
        deny("double-encoded dot-dot", "/public/x/%252e%252e/admin").expect(refused),
        deny("backslashes", "/public/x\\..\\admin"),
        deny("encoded backslash", "/public/x/..%5Cadmin").expect(refused),
        deny("encoded slash", "/public/x%2F..%2Fadmin").expect(refused),
        deny("encoded slash, lower-case", "/public/x%2f..%2fadmin").expect(refused),
        deny("path parameter", "/public/admin;jsessionid=1"),
        deny("path parameter on a parent", "/public/admin;x=1/users"),
        deny("parameter on dot-dot", "/public/x/..;/admin").expect(refused),
        deny("overlong UTF-8 dot-dot", "/public/x/%C0%AE%C0%AE/admin").expect(refused),
        deny("overlong UTF-8 slash", "/public/x%C0%AF..%C0%AFadmin").expect(refused),
        deny(
            "3-byte overlong UTF-8 dot-dot",
            "/public/x/%E0%80%AE%E0%80%AE/admin",
        )
        .expect(refused),
        deny("query looks like a path", "/public/admin?/public/x"),
        deny("encoded NUL", "/public/admin%00").expect(refused),
        deny("encoded newline", "/public/admin%0a").expect(refused),
        Case {
            wire_target: Some(format!("http://{AUTHORITY}/public/admin")),
            ..deny("absolute-form request target", "/public/admin")
        },
        // Istio's paths are case-sensitive: a DENY on `/public/admin` does not cover
        // `/public/ADMIN`, and the ALLOW list lets it through. Documented; an upstream
        // that ignores case needs an ALLOW list that names what it serves.
        deny("upper case (case-sensitive, as Istio)", "/public/ADMIN").expect(Expect::Allowed),
        escape(
            "dot-dot out of the allowed area",
            "/public/../internal/secrets",
        ),
        escape("encoded dot-dot out", "/public/%2e%2e/internal/secrets"),
        escape("dot-dot above the root", "/public/../../internal/secrets"),
        escape("backslash dot-dot out", "/public\\..\\internal\\secrets"),
        escape("encoded slash out", "/public/..%2Finternal/secrets").expect(refused),
        escape("parameter on dot-dot out", "/public/..;/internal/secrets").expect(refused),
        escape(
            "parameter as a whole segment",
            "/public/;x/../../internal/secrets",
        )
        .expect(refused),
        escape(
            "double-encoded dot-dot out",
            "/public/%252e%252e/internal/secrets",
        )
        .expect(refused),
        escape(
            "overlong UTF-8 dot-dot out",
            "/public/%C0%AE%C0%AE/internal/secrets",
        )
        .expect(refused),
        escape("upper-case allowed prefix", "/PUBLIC/../internal/secrets"),
        escape("allowed path in the query", "/internal/secrets?/public/x"),
        escape("mixed encoding", "/public/.%2E/%69nternal/secrets"),
        case(Family::Path, "public page", ALLOW_APP, "/public/index.html").control(),
        case(
            Family::Path,
            "repeated slash inside",
            ALLOW_APP,
            "/public//a/b",
        )
        .control(),
        case(Family::Path, "encoded tilde", ALLOW_APP, "/public/%7Euser").control(),
        case(
            Family::Path,
            "parameter on a page",
            ALLOW_APP,
            "/public/a;v=2",
        )
        .control(),
        case(Family::Path, "encoded space", ALLOW_APP, "/public/a%20b").control(),
        case(Family::Path, "UTF-8 escape", ALLOW_APP, "/public/caf%C3%A9").control(),
        case(
            Family::Path,
            "ADMIN elsewhere",
            ALLOW_APP,
            "/public/x/admin",
        )
        .control(),
    ]
}

const JWT_RULE: &str = "allow-app (ALLOW /api/* with a verified JWT)";

/// JWT attacks at `/api/*`, which only a verified token opens, minted at `now`.
pub fn jwt_cases(now: i64) -> Vec<Case> {
    let bearer = |token: &str| format!("Bearer {token}");
    let jwt = |name, token: &str| {
        case(Family::Jwt, name, JWT_RULE, "/api/items")
            .header("authorization", &bearer(token))
            .expect(Expect::Denied(401))
    };
    let good = mint::claims_at(now);
    let payload = mint::b64(good.to_string().as_bytes());
    let none = |alg: &str| mint::b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        edit(&mut claims);
        mint::token_with("RS256", &claims)
    };
    let mut admin = good.clone();
    admin["sub"] = json!("admin");
    let valid = mint::token("RS256", now);
    let mut expired = good.clone();
    expired["exp"] = json!(now - 3600);
    let expired_token = mint::token_with("RS256", &expired);
    let attack = mint::attack_tokens(now);
    let corpus = |name: &str| {
        attack
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no attack token {name:?}"))
    };

    let mut cases = vec![
        jwt(
            "alg none, empty signature",
            &format!("{}.{payload}.", none("none")),
        ),
        jwt(
            "alg none, with a signature",
            &format!("{}.{payload}.{}", none("none"), mint::b64(b"sig")),
        ),
        jwt(
            "alg None",
            &format!("{}.{payload}.{}", none("None"), mint::b64(b"sig")),
        ),
        jwt(
            "alg NONE",
            &format!("{}.{payload}.{}", none("NONE"), mint::b64(b"sig")),
        ),
        jwt(
            "alg nOnE",
            &format!("{}.{payload}.{}", none("nOnE"), mint::b64(b"sig")),
        ),
        jwt(
            "alg none, trusted kid",
            &mint::sign_raw(&json!({"alg": "none", "kid": "rsa-1"}), &good, None),
        ),
        jwt(
            "HS256 keyed with the RSA public key (DER), trusted kid",
            &corpus("HS256 signed with the RSA public key (DER)"),
        ),
        jwt(
            "HS256 keyed with the RSA public key (DER), no kid",
            &corpus("HS256 signed with the RSA public key, no kid"),
        ),
        jwt(
            "HS256 keyed with the RSA public key (PEM)",
            &mint::sign_raw(
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &good,
                Some(mint::rsa_public_pem().as_bytes()),
            ),
        ),
        jwt("kid not in the JWKS", &corpus("unknown kid")),
        jwt(
            "untrusted key under a trusted kid",
            &corpus("untrusted key, trusted kid"),
        ),
        jwt("expired an hour ago", &expired_token),
        jwt(
            "expired beyond the skew",
            &with(&|c| c["exp"] = json!(now - SKEW - EDGE)),
        ),
        jwt(
            "nbf beyond the skew",
            &with(&|c| c["nbf"] = json!(now + SKEW + EDGE)),
        ),
        jwt(
            "iat beyond the skew",
            &with(&|c| c["iat"] = json!(now + SKEW + EDGE)),
        ),
        jwt(
            "payload edited (sub), signature kept",
            &mint::tamper(&valid, &admin),
        ),
        jwt(
            "expired payload given a new exp, signature kept",
            &mint::tamper(&expired_token, &good),
        ),
        jwt(
            "ES256 payload edited, signature kept",
            &corpus("tampered ES256 payload"),
        ),
        jwt("wrong audience", &corpus("wrong aud")),
        jwt("wrong issuer", &corpus("wrong iss")),
        jwt("no exp", &corpus("no exp")),
        jwt(
            "header names alg twice (none, RS256)",
            &corpus("header names alg twice"),
        ),
        jwt("crit header", &corpus("crit header")),
        jwt("signature truncated", &corpus("signature truncated")),
        jwt(
            "token of 16 KiB (over the 8 KiB limit)",
            &format!("{valid}{}", "A".repeat(16 * 1024)),
        ),
        // Envoy's own 60 KiB header limit answers first; through the harness the
        // filter's 64 KiB limit on all headers does.
        Case {
            envoy_answers: Some(431),
            ..jwt(
                "token of 64 KiB",
                &format!("{valid}{}", "A".repeat(64 * 1024)),
            )
            .expect(Expect::Denied(431))
        },
        // Two credentials: which would the upstream read? Refused, not guessed.
        jwt("duplicate authorization: valid then forged", &valid)
            .header("authorization", &bearer(&mint::tamper(&valid, &admin))),
        jwt("duplicate authorization: valid twice", &valid)
            .header("authorization", &bearer(&valid)),
        jwt("authorization and an access_token parameter", &valid).with_path(&format!(
            "/api/items?access_token={}",
            mint::tamper(&valid, &admin)
        )),
        case(Family::Jwt, "no credential", JWT_RULE, "/api/items").baseline(),
    ];
    for (name, token) in [
        ("valid RS256", valid.clone()),
        ("valid ES256", mint::token("ES256", now)),
        ("valid EdDSA", mint::token("EdDSA", now)),
        (
            "expired, inside the skew",
            with(&|c| c["exp"] = json!(now - SKEW + EDGE)),
        ),
        (
            "nbf inside the skew",
            with(&|c| c["nbf"] = json!(now + SKEW - EDGE)),
        ),
        (
            "iat inside the skew",
            with(&|c| c["iat"] = json!(now + SKEW - EDGE)),
        ),
    ] {
        cases.push(jwt(name, &token).control());
    }
    cases
}

impl Case {
    fn with_path(mut self, path: &str) -> Case {
        self.path = path.to_string();
        self
    }
}

const OFFICE: &str = "allow-app (ALLOW /office/* from 10.1.0.0/16), 1 trusted hop";
const BLOCKED: &str = "deny-blocked-clients (DENY from 6.6.6.0/24), 1 trusted hop";

/// Forwarded-for spoofing: the client prepends addresses; the trusted proxy's entry
/// (the last) is what counts.
pub fn xff_cases() -> Vec<Case> {
    let office = |name, xff: &[&str]| {
        xff.iter()
            .fold(case(Family::Xff, name, OFFICE, "/office/plan"), |c, v| {
                c.header("x-forwarded-for", v)
            })
    };
    let blocked = |name, xff: &[&str]| {
        xff.iter()
            .fold(case(Family::Xff, name, BLOCKED, "/public/x"), |c, v| {
                c.header("x-forwarded-for", v)
            })
    };
    vec![
        office(
            "office address forged before the real one",
            &["10.1.2.3, 8.8.8.8"],
        ),
        office("office address forged, no space", &["10.1.2.3,8.8.8.8"]),
        office(
            "office addresses forged twice",
            &["10.1.2.3, 10.1.2.4, 8.8.8.8"],
        ),
        office(
            "office address forged in its own header",
            &["10.1.2.3", "8.8.8.8"],
        ),
        office(
            "office address forged as IPv4-mapped IPv6",
            &["::ffff:10.1.2.3, 8.8.8.8"],
        ),
        office("no forwarded-for: the TCP peer decides", &[]).baseline(),
        office(
            "office address behind the trusted proxy",
            &["8.8.8.8, 10.1.2.3"],
        )
        .control(),
        office("office address, only entry", &["10.1.2.3"]).control(),
        blocked(
            "blocked client prepends a clean address",
            &["1.1.1.1, 6.6.6.6"],
        ),
        blocked(
            "blocked client prepends several",
            &["1.1.1.1, 2.2.2.2, 6.6.6.6"],
        ),
        blocked("blocked client prepends junk", &["garbage, 6.6.6.6"]),
        blocked("blocked client splits the header", &["1.1.1.1", "6.6.6.6"]),
        blocked(
            "clean client behind the trusted proxy",
            &["6.6.6.6, 1.1.1.1"],
        )
        .control(),
    ]
}

/// Every case of every family.
pub fn cases(now: i64) -> Vec<Case> {
    let mut all = path_cases();
    all.extend(jwt_cases(now));
    all.extend(xff_cases());
    all
}
