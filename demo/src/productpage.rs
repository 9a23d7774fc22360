//! Productpage: calls details and reviews (concurrently, as Bookinfo does) and
//! renders what it got. A failed dependency degrades the page instead of failing it:
//! the fault-injection scenario checks exactly that.

use crate::app::{failure_json, id_after, App};
use crate::catalog::{self, PRODUCT_ID};
use crate::page;
use crate::propagate::{end_user, propagated};
use crate::reply::{self, Body};
use crate::upstream::Failure;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// What productpage gathered for one request.
pub struct Gathered {
    pub user: Option<String>,
    pub details: Result<Value, Failure>,
    pub reviews: Result<Value, Failure>,
}

impl Gathered {
    /// The dependencies that failed, outermost first: `details`, `reviews`, and
    /// `ratings` when reviews answered but could not reach ratings.
    pub fn degraded(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.details.is_err() {
            out.push("details");
        }
        match &self.reviews {
            Err(_) => out.push("reviews"),
            Ok(r) if r["ratings"].get("error").is_some() => out.push("ratings"),
            Ok(_) => {}
        }
        out
    }
}

impl App {
    pub(crate) async fn productpage(&self, req: &Parts) -> Response<Body> {
        let path = req.uri.path();
        match path {
            "/" => reply::html(StatusCode::OK, page::index(&self.identity)),
            "/productpage" => {
                let g = self.gather(&req.headers, req.uri.query()).await;
                if wants_json(req) {
                    reply::json(StatusCode::OK, &self.page_json(&g))
                } else {
                    reply::html(StatusCode::OK, page::productpage(&self.identity, &g))
                }
            }
            "/api/v1/products" => reply::json(
                StatusCode::OK,
                &json!([{"id": PRODUCT_ID, "title": catalog::TITLE,
                         "descriptionHtml": catalog::SUMMARY}]),
            ),
            _ => self.products_api(req).await,
        }
    }

    /// `/api/v1/products/{id}` (details) and `/api/v1/products/{id}/reviews`: the
    /// dependency's answer as is, or 503 with the failure.
    async fn products_api(&self, req: &Parts) -> Response<Body> {
        let path = req.uri.path();
        let (id_path, which) = match path.strip_suffix("/reviews") {
            Some(p) => (p, "reviews"),
            None => (path, "details"),
        };
        let Some(id) = id_after(id_path, "/api/v1/products/") else {
            return self.error(StatusCode::NOT_FOUND, "no such path");
        };
        let headers = self.call_headers(&req.headers, req.uri.query());
        let (authority, upstream_path) = match which {
            "reviews" => (&self.cfg.upstreams.reviews, format!("/reviews/{id}")),
            _ => (&self.cfg.upstreams.details, format!("/details/{id}")),
        };
        match self
            .upstream
            .get_json(authority, &upstream_path, &headers)
            .await
        {
            Ok(v) => reply::json(StatusCode::OK, &v),
            Err(f) => reply::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &self.with_identity(failure_json(&f, &format!("{which} unavailable"))),
            ),
        }
    }

    pub(crate) async fn gather(&self, incoming: &HeaderMap, query: Option<&str>) -> Gathered {
        let headers = self.call_headers(incoming, query);
        let details_path = format!("/details/{PRODUCT_ID}");
        let reviews_path = format!("/reviews/{PRODUCT_ID}");
        let (details, reviews) = tokio::join!(
            self.upstream
                .get_json(&self.cfg.upstreams.details, &details_path, &headers),
            self.upstream
                .get_json(&self.cfg.upstreams.reviews, &reviews_path, &headers),
        );
        Gathered {
            user: end_user(incoming, query),
            details,
            reviews,
        }
    }

    /// Propagated headers, plus `end-user` derived from `?u=` or the `user` cookie so
    /// reviews' header route sees the signed-in user.
    fn call_headers(&self, incoming: &HeaderMap, query: Option<&str>) -> HeaderMap {
        let mut headers = propagated(incoming, &self.cfg.extra_propagated);
        if !headers.contains_key("end-user") {
            if let Some(v) = end_user(incoming, query).and_then(|u| HeaderValue::from_str(&u).ok())
            {
                headers.insert("end-user", v);
            }
        }
        headers
    }

    pub(crate) fn page_json(&self, g: &Gathered) -> Value {
        self.with_identity(json!({
            "product": {"id": PRODUCT_ID, "title": catalog::TITLE},
            "user": g.user,
            "details": match &g.details {
                Ok(v) => v.clone(),
                Err(f) => failure_json(f, "details unavailable"),
            },
            "reviews": match &g.reviews {
                Ok(v) => v.clone(),
                Err(f) => failure_json(f, "reviews unavailable"),
            },
            "degraded": g.degraded(),
        }))
    }
}

/// JSON when asked for with `?format=json` or an `Accept` that prefers it over HTML.
fn wants_json(req: &Parts) -> bool {
    let query_says = req
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
    let accept = req
        .headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    query_says || (accept.contains("application/json") && !accept.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gathered(details: bool, reviews: Option<Value>) -> Gathered {
        let fail = || Failure {
            status: Some(503),
            reason: "x".into(),
        };
        Gathered {
            user: None,
            details: if details { Ok(json!({})) } else { Err(fail()) },
            reviews: reviews.ok_or_else(fail),
        }
    }

    #[test]
    fn degraded_names_each_failed_dependency() {
        assert!(gathered(true, Some(json!({"reviews": []})))
            .degraded()
            .is_empty());
        assert_eq!(gathered(false, None).degraded(), ["details", "reviews"]);
        let no_ratings = json!({"ratings": {"error": "ratings unavailable"}});
        assert_eq!(gathered(true, Some(no_ratings)).degraded(), ["ratings"]);
        let ratings_ok = json!({"ratings": {"service": "ratings"}});
        assert!(gathered(true, Some(ratings_ok)).degraded().is_empty());
    }

    #[test]
    fn json_is_chosen_by_query_or_accept() {
        let parts = |uri: &str, accept: Option<&str>| {
            let mut b = hyper::Request::builder().uri(uri);
            if let Some(a) = accept {
                b = b.header(ACCEPT, a);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(wants_json(&parts("/productpage?format=json", None)));
        assert!(wants_json(&parts("/productpage", Some("application/json"))));
        assert!(!wants_json(&parts("/productpage", None)));
        assert!(!wants_json(&parts(
            "/productpage",
            Some("text/html,application/xhtml+xml,application/json;q=0.9")
        )));
    }
}
