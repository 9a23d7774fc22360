//! Binds every symbol at load (`-z now`), so an Envoy that lacks a callback this
//! module calls refuses it at `dlopen` with `undefined symbol: <callback>`, instead of
//! the first request killing Envoy with `symbol lookup error`. Rust's Linux default
//! already does this; saying it here keeps the guarantee from resting on a default.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
