//! wasmesh-harness: the Proxy-Wasm ABI 0.2.1 host on wasmtime.
//! Runs real compiled filters in `cargo test`, without Envoy.
