//! Configuration, from environment variables only (the contract `wasmesh generate`
//! writes into the run plan and docker-compose.yml; see demo/README.md).

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Which Bookinfo service this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Productpage,
    Details,
    Reviews,
    Ratings,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role> {
        Ok(match s {
            "productpage" => Role::Productpage,
            "details" => Role::Details,
            "reviews" => Role::Reviews,
            "ratings" => Role::Ratings,
            other => bail!(
                "unknown demo role {other:?}: expected productpage, details, reviews or ratings"
            ),
        })
    }
}

/// The star colour reviews shows; `None` means reviews does not call ratings (v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stars {
    None,
    Black,
    Red,
}

impl Stars {
    pub fn parse(s: &str) -> Result<Stars> {
        Ok(match s {
            "none" => Stars::None,
            "black" => Stars::Black,
            "red" => Stars::Red,
            other => bail!("REVIEWS_STARS={other:?}: expected none, black or red"),
        })
    }

    /// Bookinfo's versions: v1 shows no stars, v2 black, v3 (and later) red.
    pub fn for_version(version: &str) -> Stars {
        match version {
            "v1" => Stars::None,
            "v2" => Stars::Black,
            _ => Stars::Red,
        }
    }

    pub fn color(self) -> Option<&'static str> {
        match self {
            Stars::None => None,
            Stars::Black => Some("black"),
            Stars::Red => Some("red"),
        }
    }
}

/// The `Host` (authority) each callee is addressed by; the sidecar's outbound
/// listener routes on it, as Istio's does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    pub details: String,
    pub reviews: String,
    pub ratings: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub role: Role,
    /// The service name as the mesh knows it (`SERVICE`).
    pub service: String,
    pub version: String,
    pub namespace: String,
    /// Which replica answered, for tests that kill one instance.
    pub instance: String,
    pub listen: SocketAddr,
    /// The local sidecar's outbound listener; every call goes there. Unset: call the
    /// upstream authority directly (no mesh).
    pub outbound: Option<String>,
    pub upstreams: Upstreams,
    pub upstream_timeout: Duration,
    pub stars: Stars,
    /// Headers forwarded on calls in addition to the trace and routing set.
    pub extra_propagated: Vec<String>,
    /// How long in-flight requests may finish after SIGTERM.
    pub drain_timeout: Duration,
}

const DEFAULT_PORT: u16 = 9080;

impl Config {
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// `get` returns a variable's value; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let service = var("SERVICE").context(
            "SERVICE is not set: name the Bookinfo service to play (productpage, details, reviews, ratings)",
        )?;
        let role = Role::parse(&var("DEMO_ROLE").unwrap_or_else(|| service.clone()))
            .context("SERVICE (or DEMO_ROLE) picks the behaviour")?;
        let version = var("VERSION").unwrap_or_else(|| "v1".into());
        let namespace = var("NAMESPACE").unwrap_or_else(|| "default".into());
        let instance = var("INSTANCE").unwrap_or_else(|| format!("{service}-{version}"));
        let port = match var("PORT") {
            Some(p) => p
                .parse::<u16>()
                .with_context(|| format!("PORT={p:?} is not a port number"))?,
            None => DEFAULT_PORT,
        };
        // Loopback by default: only the sidecar, in the same host or network namespace,
        // may reach the app, so mTLS STRICT cannot be bypassed by calling it directly.
        let bind = var("BIND_ADDRESS").unwrap_or_else(|| "127.0.0.1".into());
        let ip: IpAddr = bind
            .parse()
            .with_context(|| format!("BIND_ADDRESS={bind:?} is not an IP address"))?;
        let authority =
            |key: &str, name: &str| var(key).unwrap_or_else(|| format!("{name}:{DEFAULT_PORT}"));
        let stars = match var("REVIEWS_STARS") {
            Some(s) => Stars::parse(&s)?,
            None => Stars::for_version(&version),
        };
        Ok(Config {
            role,
            service,
            version,
            namespace,
            instance,
            listen: SocketAddr::new(ip, port),
            outbound: var("WASMESH_OUTBOUND"),
            upstreams: Upstreams {
                details: authority("DETAILS_AUTHORITY", "details"),
                reviews: authority("REVIEWS_AUTHORITY", "reviews"),
                ratings: authority("RATINGS_AUTHORITY", "ratings"),
            },
            upstream_timeout: millis(&var, "UPSTREAM_TIMEOUT_MS", 3000)?,
            stars,
            extra_propagated: var("PROPAGATE_HEADERS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            drain_timeout: millis(&var, "DRAIN_TIMEOUT_MS", 5000)?,
        })
    }
}

fn millis(var: &impl Fn(&str) -> Option<String>, key: &str, default: u64) -> Result<Duration> {
    match var(key) {
        Some(v) => v
            .parse::<u64>()
            .map(Duration::from_millis)
            .with_context(|| format!("{key}={v:?} is not a number of milliseconds")),
        None => Ok(Duration::from_millis(default)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_bookinfo() {
        let c = cfg(&[("SERVICE", "reviews"), ("VERSION", "v2")]).unwrap();
        assert_eq!(c.role, Role::Reviews);
        assert_eq!(c.listen, "127.0.0.1:9080".parse().unwrap());
        assert_eq!(c.stars, Stars::Black);
        assert_eq!(c.upstreams.ratings, "ratings:9080");
        assert_eq!(c.outbound, None);
        assert_eq!(c.instance, "reviews-v2");
        assert_eq!(c.namespace, "default");
    }

    #[test]
    fn generator_contract_is_read() {
        let c = cfg(&[
            ("SERVICE", "productpage"),
            ("VERSION", "v1"),
            ("NAMESPACE", "shop"),
            ("PORT", "20001"),
            ("SERVICE_PORT", "9080"),
            ("WASMESH_OUTBOUND", "127.0.0.1:15001"),
            ("PROPAGATE_HEADERS", "Authorization, x-tenant"),
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 20001);
        assert_eq!(c.outbound.as_deref(), Some("127.0.0.1:15001"));
        assert_eq!(c.namespace, "shop");
        assert_eq!(c.extra_propagated, ["authorization", "x-tenant"]);
    }

    #[test]
    fn versions_pick_star_colours_unless_overridden() {
        assert_eq!(Stars::for_version("v1"), Stars::None);
        assert_eq!(Stars::for_version("v3"), Stars::Red);
        let c = cfg(&[
            ("SERVICE", "reviews"),
            ("VERSION", "v9"),
            ("REVIEWS_STARS", "none"),
        ]);
        assert_eq!(c.unwrap().stars, Stars::None);
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let e = cfg(&[]).unwrap_err();
        assert!(format!("{e:#}").contains("SERVICE"));
        let e = cfg(&[("SERVICE", "cart")]).unwrap_err();
        assert!(format!("{e:#}").contains("cart"));
        let e = cfg(&[("SERVICE", "details"), ("PORT", "http")]).unwrap_err();
        assert!(format!("{e:#}").contains("PORT"));
        let e = cfg(&[("SERVICE", "details"), ("UPSTREAM_TIMEOUT_MS", "soon")]).unwrap_err();
        assert!(format!("{e:#}").contains("UPSTREAM_TIMEOUT_MS"));
        // A custom service name may play a Bookinfo role.
        let c = cfg(&[("SERVICE", "reviews-canary"), ("DEMO_ROLE", "reviews")]).unwrap();
        assert_eq!(c.role, Role::Reviews);
    }
}
