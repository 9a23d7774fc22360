//! wasmesh-headers: request and response header transforms.
