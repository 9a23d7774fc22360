//! Request dispatch for the four roles, plus the endpoints every role has.

use crate::catalog;
use crate::config::{Config, Role};
use crate::propagate::propagated;
use crate::reply::{self, Body};
use crate::upstream::{Failure, Upstream};
use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

/// Who answered; flattened into every JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub service: String,
    pub version: String,
    pub instance: String,
}

pub struct App {
    pub(crate) cfg: Config,
    pub(crate) upstream: Upstream,
    pub(crate) identity: Identity,
}

impl App {
    pub fn new(cfg: Config) -> App {
        App {
            upstream: Upstream::new(cfg.outbound.clone(), cfg.upstream_timeout),
            identity: Identity {
                service: cfg.service.clone(),
                version: cfg.version.clone(),
                instance: cfg.instance.clone(),
            },
            cfg,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub async fn handle(&self, req: &Parts) -> Response<Body> {
        if req.method != Method::GET && req.method != Method::HEAD {
            return self.error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
        }
        let path = req.uri.path();
        if matches!(path, "/health" | "/healthz" | "/healthz/ready") {
            return reply::json(StatusCode::OK, &self.with_identity(json!({"status": "ok"})));
        }
        match self.cfg.role {
            Role::Productpage => self.productpage(req).await,
            Role::Details => match id_after(path, "/details/") {
                Some(id) => self.ok(json!(catalog::details(id))),
                None => self.info_or_404(path),
            },
            Role::Ratings => match id_after(path, "/ratings/") {
                Some(id) => self.ok(ratings(id)),
                None => self.info_or_404(path),
            },
            Role::Reviews => match id_after(path, "/reviews/") {
                Some(id) => self.ok(self.reviews(id, &req.headers).await),
                None => self.info_or_404(path),
            },
        }
    }

    /// Reviews' body: v1 calls nothing; v2 and v3 ask ratings for the stars and, if
    /// ratings fails, still answer 200 with the reviews and "ratings unavailable".
    pub(crate) async fn reviews(&self, id: u32, incoming: &HeaderMap) -> Value {
        let mut body = json!({"id": id.to_string()});
        let Some(color) = self.cfg.stars.color() else {
            body["reviews"] = catalog::REVIEWS
                .iter()
                .map(|r| json!({"reviewer": r.reviewer, "text": r.text}))
                .collect();
            return body;
        };
        let ratings = self
            .upstream
            .get_json(
                &self.cfg.upstreams.ratings,
                &format!("/ratings/{id}"),
                &propagated(incoming, &self.cfg.extra_propagated),
            )
            .await;
        let stars = |reviewer: &str| match &ratings {
            Ok(r) => r["ratings"][reviewer]
                .as_u64()
                .map(|n| json!({"stars": n, "color": color}))
                .unwrap_or_else(|| json!({"error": "no rating"})),
            Err(_) => json!({"error": "Ratings service is currently unavailable"}),
        };
        body["reviews"] = catalog::REVIEWS
            .iter()
            .map(|r| json!({"reviewer": r.reviewer, "text": r.text, "rating": stars(r.reviewer)}))
            .collect();
        body["ratings"] = served_by_or_error(&ratings, "ratings unavailable");
        body
    }

    pub(crate) fn with_identity(&self, mut body: Value) -> Value {
        if let (Value::Object(map), Ok(Value::Object(id))) =
            (&mut body, serde_json::to_value(&self.identity))
        {
            for (k, v) in id {
                map.entry(k).or_insert(v);
            }
        }
        body
    }

    fn ok(&self, body: Value) -> Response<Body> {
        reply::json(StatusCode::OK, &self.with_identity(body))
    }

    pub(crate) fn error(&self, status: StatusCode, message: &str) -> Response<Body> {
        reply::json(status, &self.with_identity(json!({"error": message})))
    }

    fn info_or_404(&self, path: &str) -> Response<Body> {
        if path == "/" {
            return self.ok(json!({}));
        }
        self.error(StatusCode::NOT_FOUND, "no such path")
    }
}

fn ratings(id: u32) -> Value {
    let ratings: serde_json::Map<String, Value> = catalog::REVIEWS
        .iter()
        .map(|r| (r.reviewer.to_string(), json!(r.stars)))
        .collect();
    json!({"id": id, "ratings": ratings})
}

/// `/reviews/7` -> 7; any other shape is not ours.
pub(crate) fn id_after(path: &str, prefix: &str) -> Option<u32> {
    path.strip_prefix(prefix)?.parse().ok()
}

/// What a dependency contributed to an answer: who served it, or why it failed.
pub(crate) fn served_by_or_error(r: &Result<Value, Failure>, error: &str) -> Value {
    match r {
        Ok(v) => json!({
            "service": v["service"],
            "version": v["version"],
            "instance": v["instance"],
        }),
        Err(f) => failure_json(f, error),
    }
}

pub(crate) fn failure_json(f: &Failure, error: &str) -> Value {
    let mut v = json!({"error": error, "reason": f.reason});
    if let Some(s) = f.status {
        v["status"] = json!(s);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_from_exact_shapes() {
        assert_eq!(id_after("/reviews/0", "/reviews/"), Some(0));
        assert_eq!(id_after("/reviews/12", "/reviews/"), Some(12));
        assert_eq!(id_after("/reviews/", "/reviews/"), None);
        assert_eq!(id_after("/reviews/x", "/reviews/"), None);
        assert_eq!(id_after("/reviews/0/x", "/reviews/"), None);
        assert_eq!(id_after("/details/0", "/reviews/"), None);
    }

    #[test]
    fn failures_keep_status_when_there_was_one() {
        let f = Failure {
            status: Some(503),
            reason: "fault filter abort".into(),
        };
        let v = failure_json(&f, "ratings unavailable");
        assert_eq!(v["status"], 503);
        assert_eq!(v["error"], "ratings unavailable");
        let f = Failure {
            status: None,
            reason: "connect: refused".into(),
        };
        assert!(failure_json(&f, "x").get("status").is_none());
    }
}
