//! The macros that turn a stage into a Proxy-Wasm module. They live outside the Wasm
//! shell (`shell.rs`, built for wasm32 only) because every filter crate invokes
//! `export_stage!` on every target; natively it expands to nothing.

/// Registers `S` as this module's filter. Use once, at the crate root:
/// `wasmesh_sdk::export_stage!(MyStage);`
///
/// The entry points exist only in wasm builds, and not when the crate is linked into
/// a bundle (the one-VM mesh module, built with `--cfg wasmesh_bundle`), where the
/// bundle's own [`export_bundle!`](crate::export_bundle) provides them: two crates
/// exporting `_initialize` cannot be linked into one module.
#[macro_export]
macro_rules! export_stage {
    ($stage:ty) => {
        #[cfg(all(target_arch = "wasm32", not(wasmesh_bundle)))]
        $crate::export_bundle!($stage);
    };
}

/// Registers `S` as the module's filter unconditionally: for a bundle crate whose
/// dependencies are built with `--cfg wasmesh_bundle`.
#[macro_export]
macro_rules! export_bundle {
    ($stage:ty) => {
        $crate::proxy_wasm::main! {{
            $crate::proxy_wasm::set_root_context(|_| -> Box<dyn $crate::proxy_wasm::traits::RootContext> {
                Box::new($crate::shell::Root::<$stage>::new())
            });
        }}
    };
}
