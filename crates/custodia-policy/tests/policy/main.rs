//! The policy crate's one integration-test binary: lint rules, rendering, diff, the example
//! policies and the never-panic property tests, one module each.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod diff;
mod fuzz;
mod lint;
mod render;
mod support;
