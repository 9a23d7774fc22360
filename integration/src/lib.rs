//! wasmesh-integration: the real-Envoy test rig.
//! Starts Envoy on free ports, talks to its admin API, and serves an echo upstream.
