//! Scenarios that run against more than one build of a filter (the Wasm module and the
//! native dynamic module, filters/native): the config and the checks live here once, so
//! both builds are held to exactly the same outcome.

/// The headers filter: request and response edits, seen by the upstream and the client.
pub mod headers {
    use crate::bootstrap::INGRESS;
    use crate::echo::Echo;
    use crate::envoy::Envoy;
    use crate::http;
    use anyhow::{ensure, Result};
    use serde_json::{json, Value};

    /// The filter config [`check_edits`] expects.
    pub fn edits_config() -> Value {
        json!({
            "request": {
                "set": [{"name": "x-wasmesh", "value": "hello"}],
                "add": [{"name": "x-trace-tag", "value": "%METHOD% %PATH%"}],
                "remove": ["x-internal-secret"],
            },
            "response": {
                "set": [{"name": "x-served-by", "value": "wasmesh"}],
                "remove": ["x-echo-name"],
            },
        })
    }

    /// Sends one request through `envoy` (proxying to an echo upstream, with the filter
    /// configured by [`edits_config`]) and checks every edit on both sides.
    pub fn check_edits(envoy: &Envoy) -> Result<()> {
        let url = format!("{}/items//a/../b", envoy.listener_url(INGRESS)?);
        let resp = http::get_with(
            &url,
            &[("x-internal-secret", "s3cr3t"), ("x-trace-tag", "first")],
        )?;
        ensure!(
            resp.status == 200,
            "status {}; {}",
            resp.status,
            envoy.log_tail(40)
        );
        let seen = Echo::parse(&resp.body)?;
        ensure!(
            seen.header("x-wasmesh") == Some("hello"),
            "x-wasmesh: {:?}",
            seen.header("x-wasmesh")
        );
        ensure!(
            seen.header_all("x-trace-tag") == ["first", "GET /items/b"],
            "x-trace-tag: {:?}",
            seen.header_all("x-trace-tag")
        );
        ensure!(
            seen.header("x-internal-secret").is_none(),
            "x-internal-secret reached the upstream"
        );
        ensure!(
            resp.header("x-served-by") == Some("wasmesh"),
            "x-served-by: {:?}",
            resp.header("x-served-by")
        );
        ensure!(
            resp.header("x-echo-name").is_none(),
            "x-echo-name reached the client"
        );
        Ok(())
    }
}
