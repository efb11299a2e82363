//! The integration tests' package: it owns the top-level `tests/`, which use the `reflexio`
//! facade exactly as a user's crate would.
//!
//! Its documentation is the README, so that every Rust block of the README compiles and runs as
//! a doc test under `cargo test --workspace`.
#![doc = include_str!("../../README.md")]
// The README is prose for people first: product names need no backticks there.
#![allow(clippy::doc_markdown)]
