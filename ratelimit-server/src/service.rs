//! `ShouldRateLimit`: each descriptor that matches a configured limit adds
//! `hits_addend` to its fixed-window counter; over the limit is OVER_LIMIT. A
//! descriptor with no limit is OK with no `current_limit`, as in envoyproxy/ratelimit.

use crate::config::{Limits, Matched};
use crate::proto::{self, DescriptorStatus, RateLimitRequest, RateLimitResponse};
use crate::rls::rate_limit_service_server::RateLimitService;
use crate::store::Store;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::{Request, Response, Status};

pub struct Service {
    /// Swapped whole on reload (SIGHUP), so a request sees one config.
    limits: Arc<RwLock<Arc<Limits>>>,
    store: Store,
}

impl Service {
    pub fn new(limits: Arc<RwLock<Arc<Limits>>>, store: Store) -> Self {
        Self { limits, store }
    }

    fn limits(&self) -> Arc<Limits> {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The answer for `req` at Unix time `now_s`.
    pub async fn decide(
        &self,
        req: &RateLimitRequest,
        now_s: u64,
    ) -> Result<RateLimitResponse, Status> {
        if req.domain.is_empty() {
            return Err(Status::invalid_argument(
                "rate limit domain must not be empty",
            ));
        }
        let limits = self.limits();
        let hits = u64::from(req.hits_addend.max(1));
        let mut overall = proto::OK;
        let mut statuses = Vec::with_capacity(req.descriptors.len());
        for d in &req.descriptors {
            let entries: Vec<(String, String)> = d
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            let Some(m) = limits.find(&req.domain, &entries) else {
                statuses.push(DescriptorStatus {
                    code: proto::OK,
                    ..Default::default()
                });
                continue;
            };
            let status = self.count(&req.domain, &entries, &m, hits, now_s).await?;
            if status.code == proto::OVER_LIMIT {
                overall = proto::OVER_LIMIT;
            }
            statuses.push(status);
        }
        Ok(RateLimitResponse {
            overall_code: overall,
            statuses,
        })
    }

    async fn count(
        &self,
        domain: &str,
        entries: &[(String, String)],
        m: &Matched,
        hits: u64,
        now_s: u64,
    ) -> Result<DescriptorStatus, Status> {
        let unit = m.unit.seconds();
        let window_start = now_s / unit * unit;
        let window_end = window_start + unit;
        let key = counter_key(domain, entries, m, window_start);
        let count = self
            .store
            .add(&key, hits, window_end, now_s)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let limit = u64::from(m.limit);
        Ok(DescriptorStatus {
            code: if count > limit {
                proto::OVER_LIMIT
            } else {
                proto::OK
            },
            current_limit: Some(proto::RateLimit {
                requests_per_unit: m.limit,
                unit: m.unit.wire(),
                name: String::new(),
            }),
            limit_remaining: u32::try_from(limit.saturating_sub(count)).unwrap_or(u32::MAX),
            duration_until_reset: Some(proto::Duration {
                seconds: i64::try_from(window_end - now_s).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        })
    }
}

/// The counter's name: domain, every entry, the limit (so a changed limit starts a
/// fresh count) and the window. Lengths prefix each part, so no value can forge
/// another combination.
fn counter_key(
    domain: &str,
    entries: &[(String, String)],
    m: &Matched,
    window_start: u64,
) -> String {
    let mut key = format!("wasmesh_rl:{}:{domain}", domain.len());
    for (k, v) in entries {
        key.push_str(&format!("|{}:{k}={}:{v}", k.len(), v.len()));
    }
    key.push_str(&format!(
        "|{}/{}s|{window_start}",
        m.limit,
        m.unit.seconds()
    ));
    key
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let answer = self.decide(request.get_ref(), unix_now()).await?;
        Ok(Response::new(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn service(yaml: &str) -> Service {
        let mut l = Limits::default();
        l.add("t.yaml", yaml).unwrap();
        Service::new(
            Arc::new(RwLock::new(Arc::new(l))),
            Store::Memory(MemoryStore::default()),
        )
    }

    fn request(entries: &[(&str, &str)]) -> RateLimitRequest {
        RateLimitRequest {
            domain: "mesh".into(),
            descriptors: vec![proto::RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|(k, v)| proto::Entry {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
            }],
            hits_addend: 1,
        }
    }

    const YAML: &str = "domain: mesh\ndescriptors:\n  - key: generic_key\n    value: api\n    descriptors:\n      - key: remote_address\n        rate_limit: {unit: minute, requests_per_unit: 2}\n";

    #[tokio::test]
    async fn a_window_allows_the_limit_then_refuses_then_resets() {
        let s = service(YAML);
        let r = request(&[("generic_key", "api"), ("remote_address", "10.0.0.1")]);
        let t = 120; // a window start
        let codes: Vec<(i32, u32)> = {
            let mut v = Vec::new();
            for i in 0..3 {
                let a = s.decide(&r, t + i).await.unwrap();
                v.push((a.overall_code, a.statuses[0].limit_remaining));
            }
            v
        };
        assert_eq!(
            codes,
            [(proto::OK, 1), (proto::OK, 0), (proto::OVER_LIMIT, 0)]
        );
        let a = s.decide(&r, t + 2).await.unwrap();
        let st = &a.statuses[0];
        assert_eq!(
            st.current_limit
                .as_ref()
                .map(|l| (l.requests_per_unit, l.unit)),
            Some((2, 2))
        );
        assert_eq!(
            st.duration_until_reset.as_ref().map(|d| d.seconds),
            Some(58)
        );
        // Another address has its own counter; the next window starts again.
        let other = request(&[("generic_key", "api"), ("remote_address", "10.0.0.2")]);
        assert_eq!(s.decide(&other, t).await.unwrap().overall_code, proto::OK);
        assert_eq!(s.decide(&r, t + 60).await.unwrap().overall_code, proto::OK);
    }

    #[tokio::test]
    async fn unknown_descriptors_are_ok_without_a_limit() {
        let s = service(YAML);
        let a = s
            .decide(&request(&[("generic_key", "other")]), 0)
            .await
            .unwrap();
        assert_eq!(a.overall_code, proto::OK);
        assert_eq!(a.statuses[0].current_limit, None);
        let empty = RateLimitRequest::default();
        assert!(s.decide(&empty, 0).await.is_err());
    }

    #[test]
    fn counter_keys_cannot_be_forged() {
        let m = Matched {
            limit: 1,
            unit: crate::config::Unit::Second,
        };
        let a = counter_key("d", &[("a|1:b".into(), "c".into())], &m, 0);
        let b = counter_key(
            "d",
            &[("a".into(), "".into()), ("b".into(), "c".into())],
            &m,
            0,
        );
        assert_ne!(a, b);
    }
}
