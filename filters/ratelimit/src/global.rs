//! Global rules: the request's descriptors go to an Envoy rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) in one unary gRPC
//! call, and its answer becomes the verdict. The service holds the counters, so one
//! limit holds across every Envoy that asks it.
//!
//! A rule is one descriptor: `("generic_key", rule name)` first, so a service config
//! tells the rules apart as it does Envoy's `generic_key` action, then one entry per
//! key part (see [`crate::key::KeyPart::descriptor_key`]).

use crate::config::{RateLimitService, Rule};
use crate::key::KeyContext;
use crate::rls::{Code, DescriptorStatus, RateLimitRequest, RateLimitResponse};
use wasmesh_sdk::{GrpcCall, GrpcResult, Request};

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// The descriptor a global rule sends for this request.
pub fn descriptor(rule: &Rule, req: &Request<'_>, ctx: &KeyContext<'_>) -> Vec<(String, String)> {
    let mut entries = Vec::with_capacity(rule.key.parts.len() + 1);
    entries.push(("generic_key".to_string(), rule.name.clone()));
    let values = rule.key.values(req, ctx);
    for (part, value) in rule.key.parts.iter().zip(values) {
        entries.push((part.descriptor_key(), value));
    }
    entries
}

pub fn call(service: &RateLimitService, descriptors: Vec<Vec<(String, String)>>) -> GrpcCall {
    let request = RateLimitRequest {
        domain: service.domain.clone(),
        descriptors,
        hits_addend: 1,
    };
    GrpcCall {
        cluster: service.cluster.clone(),
        service: SERVICE.into(),
        method: METHOD.into(),
        message: request.encode(),
        timeout: service.timeout,
    }
}

/// What the service said, per descriptor (so per rule, in the order sent).
#[derive(Debug)]
pub enum Answer {
    /// OK overall, or over the limit only in rules that are in shadow mode. Carries
    /// each rule's status (absent when the service sent fewer than asked).
    Allowed(Vec<Option<DescriptorStatus>>),
    /// Over the limit: the index (in the order sent) of the first enforcing rule over
    /// its limit, with its status.
    OverLimit(usize, Option<DescriptorStatus>),
    /// The call failed, timed out, or its answer could not be read or said UNKNOWN.
    Failed(String),
}

/// Reads the service's answer for rules whose shadow flags are `shadow`, in order.
pub fn interpret(result: GrpcResult, shadow: &[bool]) -> Answer {
    let message = match result {
        GrpcResult::Message(m) => m,
        GrpcResult::Failed(status) => return Answer::Failed(format!("gRPC status {status}")),
    };
    let resp = match RateLimitResponse::decode(&message) {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("unreadable response: {}", e.0)),
    };
    let mut statuses: Vec<Option<DescriptorStatus>> = resp.statuses.into_iter().map(Some).collect();
    statuses.resize(shadow.len(), None);
    match resp.overall_code {
        Code::Ok => Answer::Allowed(statuses),
        Code::Unknown => Answer::Failed("the service answered UNKNOWN".into()),
        Code::OverLimit => {
            let over = |s: &Option<DescriptorStatus>| {
                s.as_ref().is_some_and(|s| s.code == Code::OverLimit)
            };
            // The first enforcing rule the service marked; if it marked none (a
            // service that sends no statuses), the first enforcing rule.
            let enforcing = |i: &usize| !shadow.get(*i).copied().unwrap_or(true);
            let marked = (0..shadow.len())
                .filter(enforcing)
                .find(|&i| over(&statuses[i]));
            let any_marked = statuses.iter().any(over);
            let pick = if any_marked {
                marked
            } else {
                (0..shadow.len()).find(enforcing)
            };
            match pick {
                Some(i) => Answer::OverLimit(i, statuses[i].take()),
                None => Answer::Allowed(statuses),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, limit: u32, remaining: u32) -> DescriptorStatus {
        DescriptorStatus {
            code,
            limit: Some(limit),
            unit: 1,
            limit_remaining: remaining,
            reset_s: Some(1),
        }
    }

    fn reply(overall: Code, statuses: Vec<DescriptorStatus>) -> GrpcResult {
        GrpcResult::Message(
            RateLimitResponse {
                overall_code: overall,
                statuses,
            }
            .encode(),
        )
    }

    #[test]
    fn ok_allows_with_statuses() {
        let a = interpret(reply(Code::Ok, vec![status(Code::Ok, 5, 4)]), &[false]);
        assert!(matches!(a, Answer::Allowed(s) if s[0].as_ref().unwrap().limit_remaining == 4));
    }

    #[test]
    fn over_limit_names_the_first_enforcing_rule_marked() {
        let r = reply(
            Code::OverLimit,
            vec![
                status(Code::OverLimit, 1, 0),
                status(Code::Ok, 9, 3),
                status(Code::OverLimit, 2, 0),
            ],
        );
        // Rule 0 is in shadow mode: rule 2 refuses.
        assert!(
            matches!(interpret(r, &[true, false, false]), Answer::OverLimit(2, Some(s)) if s.limit == Some(2))
        );
    }

    #[test]
    fn over_limit_in_shadow_rules_only_allows() {
        let r = reply(Code::OverLimit, vec![status(Code::OverLimit, 1, 0)]);
        assert!(matches!(interpret(r, &[true]), Answer::Allowed(_)));
    }

    #[test]
    fn over_limit_without_statuses_refuses_by_the_first_enforcing_rule() {
        let r = reply(Code::OverLimit, vec![]);
        assert!(matches!(
            interpret(r, &[true, false]),
            Answer::OverLimit(1, None)
        ));
    }

    #[test]
    fn failures_unknown_and_garbage_are_failures() {
        assert!(matches!(
            interpret(GrpcResult::Failed(14), &[false]),
            Answer::Failed(_)
        ));
        assert!(matches!(
            interpret(reply(Code::Unknown, vec![]), &[false]),
            Answer::Failed(_)
        ));
        let garbage = GrpcResult::Message(vec![0x12, 0xff]);
        assert!(matches!(interpret(garbage, &[false]), Answer::Failed(_)));
    }
}
