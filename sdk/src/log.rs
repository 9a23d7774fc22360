//! Logging through the host, prefixed with the filter's name, formatted only when
//! Envoy's log level would print it.

use crate::host::{self, LogLevel};
use std::cell::Cell;
use std::fmt::Arguments;

thread_local! {
    // Wasm is single-threaded; a VM holds exactly one filter, so one prefix suffices.
    static PREFIX: Cell<&'static str> = const { Cell::new("wasmesh") };
}

/// Sets the name that prefixes every log line of this VM.
pub fn set_prefix(name: &'static str) {
    PREFIX.with(|p| p.set(name));
}

pub fn prefix() -> &'static str {
    PREFIX.with(Cell::get)
}

/// Whether `level` would be printed; asks the host, since Envoy's level can change
/// at runtime.
pub fn enabled(level: LogLevel) -> bool {
    host::log_level().map_or(true, |current| level >= current)
}

/// Formats and logs `args` at `level` if enabled.
pub fn emit(level: LogLevel, args: Arguments<'_>) {
    if enabled(level) {
        let _ = host::log(level, &format!("{}: {}", prefix(), args));
    }
}

#[macro_export]
macro_rules! trace { ($($arg:tt)*) => { $crate::log::emit($crate::host::LogLevel::Trace, format_args!($($arg)*)) } }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log::emit($crate::host::LogLevel::Debug, format_args!($($arg)*)) } }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log::emit($crate::host::LogLevel::Info, format_args!($($arg)*)) } }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log::emit($crate::host::LogLevel::Warn, format_args!($($arg)*)) } }
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log::emit($crate::host::LogLevel::Error, format_args!($($arg)*)) } }
