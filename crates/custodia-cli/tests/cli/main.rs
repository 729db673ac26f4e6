//! The `custodia` binary's one integration-test binary: runs the real executable and checks exit
//! codes and machine-readable output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod holds;
mod media;
mod policy;
mod requests;
mod sweep;
mod vault;
