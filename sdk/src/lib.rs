//! wasmesh-sdk: the guest-side library every wasmesh filter is written with.
//! Typed config, rule matching, panic-free host access and a stage pipeline on proxy-wasm.
