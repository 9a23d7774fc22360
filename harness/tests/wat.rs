//! Edge cases with hand-written modules: unsupported imports, the malloc allocator, ABI
//! 0.2.0, `_start`, traps during configuration, bad export signatures.

use wasmesh_harness::{
    request, AbiVersion, Action, Allocator, HarnessError, Host, Level, LoadError, Module,
};

const ALLOC: &str =
    r#"(func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))"#;

#[test]
fn unsupported_imports_fail_the_load_naming_each() {
    let wat = format!(
        r#"(module
            (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
            (import "env" "foo" (func))
            (import "wasi_snapshot_preview1" "path_unlink_file" (func (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            {ALLOC}
            (func (export "proxy_abi_version_0_2_1")))"#
    );
    let err = Module::from_bytes(wat).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("unsupported import env.foo"), "{message}");
    assert!(
        message.contains("unsupported import wasi_snapshot_preview1.path_unlink_file"),
        "{message}"
    );
    assert!(!message.contains("proxy_log"), "{message}");
    assert!(matches!(err, LoadError::UnsupportedImports { imports, .. } if imports.len() == 2));
}

#[test]
fn malloc_is_used_when_it_is_the_only_allocator_and_abi_0_2_0_loads() {
    let wat = r#"(module
        (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
        (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
        (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (global $bump (mut i32) (i32.const 1024))
        (data (i32.const 16) ":path")
        (data (i32.const 32) "hello")
        (func (export "malloc") (param $n i32) (result i32)
          (local $p i32)
          (local.set $p (global.get $bump))
          (global.set $bump (i32.add (global.get $bump) (local.get $n)))
          (local.get $p))
        (func (export "proxy_abi_version_0_2_0"))
        (func (export "_initialize"))
        (func (export "proxy_on_context_create") (param i32 i32))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 64) (i32.const 68)))
          (drop (call $local (i32.const 418) (i32.const 0) (i32.const 0)
              (i32.load (i32.const 64)) (i32.load (i32.const 68))
              (i32.const 0) (i32.const 0) (i32.const -1)))
          (drop (call $log (i32.const 2) (i32.const 32) (i32.const 5)))
          (i32.const 1)))"#;
    let module = Module::from_bytes(wat).unwrap();
    assert_eq!(module.abi_version(), AbiVersion::V0_2_0);
    assert_eq!(module.allocator(), Allocator::Malloc);
    let host = Host::builder(&module).build().unwrap();
    assert!(host.configured());
    let mut s = host.stream();
    assert_eq!(
        s.request_headers(&request("GET", "/teapot", "a"), true),
        Action::Pause
    );
    let lr = s.local_response().unwrap();
    assert_eq!(
        (lr.status, lr.body.as_slice()),
        (418, b"/teapot".as_slice())
    );
    assert_eq!(host.logs_at(Level::Info)[0].message, "hello");
}

#[test]
fn modules_without_abi_allocator_or_memory_are_refused() {
    let no_abi = format!(r#"(module (memory (export "memory") 1) {ALLOC})"#);
    assert!(matches!(
        Module::from_bytes(no_abi),
        Err(LoadError::UnknownAbi { .. })
    ));
    let no_alloc =
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#;
    assert!(matches!(
        Module::from_bytes(no_alloc),
        Err(LoadError::NoAllocator { .. })
    ));
    let no_memory = format!(r#"(module {ALLOC} (func (export "proxy_abi_version_0_2_1")))"#);
    assert!(matches!(
        Module::from_bytes(no_memory),
        Err(LoadError::NoMemory { .. })
    ));
}

#[test]
fn start_ending_in_proc_exit_zero_is_a_successful_start() {
    let wat = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            {ALLOC}
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "_start") (call $exit (i32.const 0))))"#
    );
    let host = Host::builder(&Module::from_bytes(wat).unwrap())
        .build()
        .unwrap();
    assert!(host.configured());
    assert!(host.vm_failure(0).is_none());
}

#[test]
fn trap_in_on_configure_leaves_the_plugin_unconfigured_and_failed() {
    let wat = format!(
        r#"(module
            (memory (export "memory") 1)
            {ALLOC}
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_configure") (param i32 i32) (result i32) unreachable))"#
    );
    let host = Host::builder(&Module::from_bytes(wat).unwrap())
        .build()
        .unwrap();
    assert!(!host.configured());
    assert!(host
        .vm_failure(0)
        .unwrap()
        .contains("proxy_on_configure trapped"));
    let mut s = host.stream();
    s.request_headers(&request("GET", "/", "a"), true);
    assert_eq!(s.local_response().unwrap().status, 503);
}

#[test]
fn an_export_with_the_wrong_signature_is_reported() {
    let wat = format!(
        r#"(module
            (memory (export "memory") 1)
            {ALLOC}
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_request_headers") (param i32) (result i32) (i32.const 0)))"#
    );
    let err = Host::builder(&Module::from_bytes(wat).unwrap())
        .build()
        .err();
    assert!(matches!(
        err,
        Some(HarnessError::BadExport {
            name: "proxy_on_request_headers",
            ..
        })
    ));
}

#[test]
fn bad_guest_pointers_are_invalid_memory_access_not_a_crash() {
    let wat = format!(
        r#"(module
            (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            {ALLOC}
            (global $status (mut i32) (i32.const -1))
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
              ;; InvalidMemoryAccess is 6: report it through the return value.
              (i32.eq (call $log (i32.const 2) (i32.const 65530) (i32.const 100)) (i32.const 6))))"#
    );
    let host = Host::builder(&Module::from_bytes(wat).unwrap())
        .build()
        .unwrap();
    assert!(host.configured());
    assert!(host.logs().is_empty());
}

#[test]
fn every_abi_0_2_1_host_function_is_provided_with_its_signature() {
    // (name, params); every proxy_* function returns an i32 status.
    let env: &[(&str, &str)] = &[
        ("proxy_log", "i32 i32 i32"),
        ("proxy_get_log_level", "i32"),
        ("proxy_set_effective_context", "i32"),
        ("proxy_done", ""),
        ("proxy_get_current_time_nanoseconds", "i32"),
        ("proxy_set_tick_period_milliseconds", "i32"),
        ("proxy_get_buffer_bytes", "i32 i32 i32 i32 i32"),
        ("proxy_get_buffer_status", "i32 i32 i32"),
        ("proxy_set_buffer_bytes", "i32 i32 i32 i32 i32"),
        ("proxy_get_header_map_size", "i32 i32"),
        ("proxy_get_header_map_pairs", "i32 i32 i32"),
        ("proxy_set_header_map_pairs", "i32 i32 i32"),
        ("proxy_get_header_map_value", "i32 i32 i32 i32 i32"),
        ("proxy_add_header_map_value", "i32 i32 i32 i32 i32"),
        ("proxy_replace_header_map_value", "i32 i32 i32 i32 i32"),
        ("proxy_remove_header_map_value", "i32 i32 i32"),
        ("proxy_continue_stream", "i32"),
        ("proxy_close_stream", "i32"),
        ("proxy_continue_request", ""),
        ("proxy_continue_response", ""),
        ("proxy_clear_route_cache", ""),
        (
            "proxy_send_local_response",
            "i32 i32 i32 i32 i32 i32 i32 i32",
        ),
        ("proxy_http_call", "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32"),
        (
            "proxy_grpc_call",
            "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32",
        ),
        ("proxy_grpc_stream", "i32 i32 i32 i32 i32 i32 i32 i32 i32"),
        ("proxy_grpc_send", "i32 i32 i32 i32"),
        ("proxy_grpc_cancel", "i32"),
        ("proxy_grpc_close", "i32"),
        ("proxy_get_status", "i32 i32 i32"),
        ("proxy_get_shared_data", "i32 i32 i32 i32 i32"),
        ("proxy_set_shared_data", "i32 i32 i32 i32 i32"),
        ("proxy_register_shared_queue", "i32 i32 i32"),
        ("proxy_resolve_shared_queue", "i32 i32 i32 i32 i32"),
        ("proxy_enqueue_shared_queue", "i32 i32 i32"),
        ("proxy_dequeue_shared_queue", "i32 i32 i32"),
        ("proxy_define_metric", "i32 i32 i32 i32"),
        ("proxy_increment_metric", "i32 i64"),
        ("proxy_record_metric", "i32 i64"),
        ("proxy_get_metric", "i32 i32"),
        ("proxy_get_property", "i32 i32 i32 i32"),
        ("proxy_set_property", "i32 i32 i32 i32"),
        ("proxy_call_foreign_function", "i32 i32 i32 i32 i32 i32"),
    ];
    let mut imports = String::new();
    for (name, params) in env {
        imports.push_str(&format!(
            r#"(import "env" "{name}" (func (param {params}) (result i32)))"#
        ));
    }
    let wasi: &[(&str, &str, &str)] = &[
        ("fd_write", "i32 i32 i32 i32", "(result i32)"),
        ("fd_read", "i32 i32 i32 i32", "(result i32)"),
        ("fd_close", "i32", "(result i32)"),
        ("fd_seek", "i32 i64 i32 i32", "(result i32)"),
        ("fd_fdstat_get", "i32 i32", "(result i32)"),
        ("fd_prestat_get", "i32 i32", "(result i32)"),
        ("environ_get", "i32 i32", "(result i32)"),
        ("environ_sizes_get", "i32 i32", "(result i32)"),
        ("args_get", "i32 i32", "(result i32)"),
        ("args_sizes_get", "i32 i32", "(result i32)"),
        ("clock_time_get", "i32 i64 i32", "(result i32)"),
        ("random_get", "i32 i32", "(result i32)"),
        ("sched_yield", "", "(result i32)"),
        ("proc_exit", "i32", ""),
    ];
    for (name, params, result) in wasi {
        imports.push_str(&format!(
            r#"(import "wasi_snapshot_preview1" "{name}" (func (param {params}) {result}))"#
        ));
    }
    let wat = format!(
        r#"(module {imports} (memory (export "memory") 1) {ALLOC}
            (func (export "proxy_abi_version_0_2_1")))"#
    );
    let module = Module::from_bytes(wat).unwrap();
    assert_eq!(module.imports().len(), env.len() + wasi.len());
    assert!(Host::builder(&module).build().unwrap().configured());
}
