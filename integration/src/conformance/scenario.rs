//! What a conformance scenario is: requests to send to the probe filter, and the outcome a
//! client can observe, in HTTP terms only, so one description runs against any driver.

use std::time::Duration;

use crate::bootstrap::FailurePolicy;

/// The `:authority` every scenario request carries (the client sends it as `host`).
pub const AUTHORITY: &str = "conformance.test";

/// One scenario: a plugin configuration, steps in order, and what must hold afterwards.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// The probe's plugin configuration (`key=value` lines).
    pub plugin_config: String,
    /// `None`: Envoy's default, FAIL_CLOSED.
    pub failure_policy: Option<FailurePolicy>,
    pub steps: Vec<Step>,
    /// Metric values after the last step, by the name the filter defined.
    pub metrics: Vec<(String, Match)>,
    /// Log lines (messages the filter logged) that must, or must not, appear.
    pub logs: Vec<(String, bool)>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Send(Box<Request>, Box<Expect>),
    /// Let time pass: Envoy sleeps, the harness advances its manual clock.
    Wait(Duration),
}

impl Scenario {
    pub fn new(name: &str) -> Scenario {
        Scenario {
            name: name.to_string(),
            plugin_config: String::new(),
            failure_policy: None,
            steps: Vec::new(),
            metrics: Vec::new(),
            logs: Vec::new(),
        }
    }

    pub fn config(mut self, config: &str) -> Scenario {
        self.plugin_config = config.to_string();
        self
    }

    pub fn failure_policy(mut self, policy: FailurePolicy) -> Scenario {
        self.failure_policy = Some(policy);
        self
    }

    pub fn send(mut self, request: Request, expect: Expect) -> Scenario {
        self.steps
            .push(Step::Send(Box::new(request), Box::new(expect)));
        self
    }

    pub fn wait(mut self, time: Duration) -> Scenario {
        self.steps.push(Step::Wait(time));
        self
    }

    pub fn metric(mut self, name: &str, value: Match) -> Scenario {
        self.metrics.push((name.to_string(), value));
        self
    }

    /// The filter logged a message containing `text`.
    pub fn logged(mut self, text: &str) -> Scenario {
        self.logs.push((text.to_string(), true));
        self
    }

    /// No log message contains `text`.
    pub fn not_logged(mut self, text: &str) -> Scenario {
        self.logs.push((text.to_string(), false));
        self
    }
}

/// A client request. Header values may be `$prev:NAME`: the value of response header NAME
/// in the latest earlier response that had it (e.g. a CAS handed back by the filter).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Body chunks (the harness delivers them one callback each; Envoy's codec may merge).
    pub body: Vec<Vec<u8>>,
    /// Request trailers: the client sends a chunked body followed by these.
    pub trailers: Option<Vec<(String, String)>>,
    /// Envoy delivers some events (queue notifications) asynchronously: retry this request
    /// until its expectation holds, for up to a few seconds.
    pub eventually: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: None,
            eventually: false,
        }
    }

    /// `GET path` with `x-probe-op: op` (empty op: no probe header).
    pub fn get(path: &str, op: &str) -> Request {
        Request::new("GET", path).op(op)
    }

    pub fn op(self, op: &str) -> Request {
        if op.is_empty() {
            self
        } else {
            self.header("x-probe-op", op)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn chunk(mut self, chunk: &str) -> Request {
        self.body.push(chunk.as_bytes().to_vec());
        self
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Request {
        self.trailers
            .get_or_insert_with(Vec::new)
            .push((name.to_string(), value.to_string()));
        self
    }

    pub fn eventually(mut self) -> Request {
        self.eventually = true;
        self
    }

    pub fn body_len(&self) -> usize {
        self.body.iter().map(Vec::len).sum()
    }

    /// The request with `$prev:NAME` values resolved against earlier responses.
    pub fn resolve(&self, previous: &[Observed]) -> Request {
        let mut out = self.clone();
        for (_, value) in &mut out.headers {
            if let Some(name) = value.strip_prefix("$prev:") {
                *value = previous
                    .iter()
                    .rev()
                    .find_map(|p| p.header(name))
                    .unwrap_or_default()
                    .to_string();
            }
        }
        out
    }
}

/// A check on one observed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Eq(String),
    /// Every value of a repeated header, in order.
    All(Vec<String>),
    Absent,
    Present,
    Prefix(String),
    Contains(String),
    /// A decimal number at least this large.
    AtLeast(u64),
}

impl Match {
    pub fn eq(value: impl ToString) -> Match {
        Match::Eq(value.to_string())
    }

    /// Checks the values seen (all values of a header; one value for a body or metric).
    pub fn check(&self, values: &[&str]) -> Result<(), String> {
        let first = values.first().copied();
        let ok = match self {
            Match::Eq(want) => first == Some(want.as_str()),
            Match::All(want) => {
                values.len() == want.len() && values.iter().zip(want).all(|(a, b)| a == b)
            }
            Match::Absent => values.is_empty(),
            Match::Present => !values.is_empty(),
            Match::Prefix(p) => first.is_some_and(|v| v.starts_with(p.as_str())),
            Match::Contains(p) => first.is_some_and(|v| v.contains(p.as_str())),
            Match::AtLeast(n) => first
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|v| v >= *n),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("expected {self:?}, saw {values:?}"))
        }
    }
}

/// What the client must observe for one request.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub status: u16,
    /// Response headers the client sees.
    pub headers: Vec<(String, Match)>,
    pub body: Option<Match>,
    /// Texts the body must contain.
    pub contains: Vec<String>,
    /// The request as the upstream (the echo server) received it.
    pub upstream: Option<Upstream>,
    /// Response headers (or `body`) whose values legitimately differ between the harness
    /// and Envoy (CAS numbers, tick counts, addresses): checked against their matchers
    /// only, left out of the comparison of the two.
    pub varies: Vec<String>,
}

impl Expect {
    pub fn status(status: u16) -> Expect {
        Expect {
            status,
            ..Expect::default()
        }
    }

    pub fn header(mut self, name: &str, value: Match) -> Expect {
        self.headers.push((name.to_string(), value));
        self
    }

    pub fn body(mut self, body: Match) -> Expect {
        self.body = Some(body);
        self
    }

    pub fn contains(mut self, text: &str) -> Expect {
        self.contains.push(text.to_string());
        self
    }

    /// See [`Expect::varies`]: `name` is a response header, or `body`.
    pub fn varies(mut self, name: &str) -> Expect {
        self.varies.push(name.to_string());
        self
    }

    /// The response came from the echo upstream `name` (checked through `x-echo-name`).
    pub fn upstream(mut self, upstream: Upstream) -> Expect {
        self.upstream = Some(upstream);
        self
    }
}

/// The request as the echo upstream saw it.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    /// Which echo answered: `echo` (default route), `v2` (the header-matched route).
    pub name: String,
    pub path: Option<String>,
    pub headers: Vec<(String, Match)>,
    pub body: Option<Match>,
}

impl Upstream {
    pub fn named(name: &str) -> Upstream {
        Upstream {
            name: name.to_string(),
            ..Upstream::default()
        }
    }

    pub fn path(mut self, path: &str) -> Upstream {
        self.path = Some(path.to_string());
        self
    }

    pub fn header(mut self, name: &str, value: Match) -> Upstream {
        self.headers.push((name.to_string(), value));
        self
    }

    pub fn body(mut self, body: Match) -> Upstream {
        self.body = Some(body);
        self
    }
}

/// A response as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    /// Names lower-cased, wire order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Observed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
