//! Shared test support.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod mint;
