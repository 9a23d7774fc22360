//! A client for Envoy's admin API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::http::{self, Response};

/// Envoy's admin endpoint (bound to 127.0.0.1 by the rig's bootstraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin {
    addr: SocketAddr,
}

/// A parsed `/stats` snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Counters and gauges by full name (Envoy's text format does not say which is which).
    pub values: BTreeMap<String, u64>,
    /// Text readouts (`name: "value"`), unquoted.
    pub text_readouts: BTreeMap<String, String>,
    /// Histogram lines kept raw (`name: P0(..) P25(..)` or `name: No recorded values`):
    /// their summary format is for people, and tests that need distributions should
    /// read `/stats/prometheus`.
    pub histograms: Vec<String>,
}

impl Stats {
    /// Parses the text that `GET /stats` returns.
    pub fn parse(text: &str) -> Stats {
        let mut stats = Stats::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // Names never contain ": " but may contain ':' (e.g. in cluster names), so
            // split at the last ": " only when the value side is a number or a quote.
            let Some((name, value)) = line.rsplit_once(": ") else {
                stats.histograms.push(line.to_string());
                continue;
            };
            if let Ok(n) = value.trim().parse::<u64>() {
                stats.values.insert(name.to_string(), n);
            } else if let Some(text) = value
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
            {
                stats
                    .text_readouts
                    .insert(name.to_string(), text.to_string());
            } else {
                stats.histograms.push(line.to_string());
            }
        }
        stats
    }

    /// The counter or gauge `name`, if Envoy reported it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).copied()
    }

    /// Counters and gauges whose name starts with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, u64)> {
        self.values
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), *v))
    }

    /// The sum of the stats named `prefix...suffix` (one per listener, say).
    pub fn sum(&self, prefix: &str, suffix: &str) -> u64 {
        self.with_prefix(prefix)
            .filter(|(name, _)| name.ends_with(suffix))
            .map(|(_, v)| v)
            .sum()
    }
}

impl Admin {
    pub fn new(addr: SocketAddr) -> Admin {
        Admin { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET path` (path starts with '/'); any status is returned as-is.
    pub fn get(&self, path: &str) -> Result<Response> {
        http::get(&format!("{}{path}", self.url()))
    }

    /// `POST path`: Envoy requires POST for mutating endpoints such as
    /// `/logging?wasm=debug`, `/reset_counters`, `/healthcheck/fail`.
    pub fn post(&self, path: &str) -> Result<Response> {
        let response = http::request("POST", &format!("{}{path}", self.url()), &[], b"")?;
        ok(response, path)
    }

    /// The body of `GET path`, failing on a non-200 status.
    pub fn get_text(&self, path: &str) -> Result<String> {
        Ok(ok(self.get(path)?, path)?.text())
    }

    /// `/ready` answered 200 "LIVE".
    pub fn is_ready(&self) -> bool {
        self.get("/ready")
            .is_ok_and(|r| r.status == 200 && r.text().trim() == "LIVE")
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats::parse(&self.get_text("/stats")?))
    }

    /// One counter or gauge; `None` when Envoy does not have it (yet).
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.stats()?.get(name))
    }

    /// Polls until counter/gauge `name` is at least `min`; returns its value.
    ///
    /// Some stats (e.g. `downstream_rq_2xx`) are recorded when Envoy finishes the
    /// stream, which can be just after the client has read the response.
    pub fn wait_for_stat(&self, name: &str, min: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.stat(name)?;
            if let Some(v) = value.filter(|v| *v >= min) {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!("stat {name} is {value:?} after {timeout:?}; wanted at least {min}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn prometheus(&self) -> Result<String> {
        self.get_text("/stats/prometheus")
    }

    pub fn config_dump(&self) -> Result<serde_json::Value> {
        let text = self.get_text("/config_dump")?;
        serde_json::from_str(&text).context("parsing /config_dump")
    }

    pub fn clusters(&self) -> Result<String> {
        self.get_text("/clusters")
    }

    /// Listener name -> bound port, from `/listeners?format=json`. With port 0 in the
    /// bootstrap this is the only reliable way to learn the port.
    pub fn listener_ports(&self) -> Result<BTreeMap<String, u16>> {
        let text = self.get_text("/listeners?format=json")?;
        parse_listener_ports(&text)
    }
}

fn ok(response: Response, path: &str) -> Result<Response> {
    if response.status != 200 {
        bail!(
            "admin {path} answered {}: {}",
            response.status,
            response.text()
        );
    }
    Ok(response)
}

/// `{"listener_statuses":[{"name":..,"local_address":{"socket_address":{"port_value":..}}}]}`
fn parse_listener_ports(text: &str) -> Result<BTreeMap<String, u16>> {
    let json: serde_json::Value =
        serde_json::from_str(text).context("parsing /listeners?format=json")?;
    let mut ports = BTreeMap::new();
    let statuses = json["listener_statuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for status in statuses {
        let name = status["name"]
            .as_str()
            .ok_or_else(|| anyhow!("listener without a name in {text}"))?;
        let port = status["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| anyhow!("listener {name} has no TCP port in {text}"))?;
        ports.insert(name.to_string(), port);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats_text() {
        let stats = Stats::parse(
            "cluster.outbound|80||a.b.svc:x.upstream_rq_total: 3\n\
             http.ingress.downstream_rq_total: 7\n\
             server.version_label: \"1.40.0\"\n\
             cluster.upstream.upstream_rq_time: P0(nan,1) P25(nan,2)\n\
             http.ingress.downstream_rq_time: No recorded values\n",
        );
        assert_eq!(stats.get("http.ingress.downstream_rq_total"), Some(7));
        assert_eq!(
            stats.get("cluster.outbound|80||a.b.svc:x.upstream_rq_total"),
            Some(3)
        );
        assert_eq!(stats.text_readouts["server.version_label"], "1.40.0");
        assert_eq!(stats.histograms.len(), 2);
        assert_eq!(stats.with_prefix("http.").count(), 1);
    }

    #[test]
    fn parses_listener_ports() {
        let ports = parse_listener_ports(
            r#"{"listener_statuses":[{"name":"ingress","local_address":
                {"socket_address":{"address":"127.0.0.1","port_value":41000}}}]}"#,
        )
        .unwrap();
        assert_eq!(ports["ingress"], 41000);
    }
}
