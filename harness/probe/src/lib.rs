//! wasmesh-probe: a filter that performs host calls chosen by the request.
//! The conformance suite drives it through the harness and through Envoy.
