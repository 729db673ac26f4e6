//! The vault's one integration-test binary: the vault over real SQLite files (and the same cases
//! over PostgreSQL when `CUSTODIA_TEST_DATABASE_URL` is set), with a moved clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod backends;
mod canary;
mod consent;
mod disclosures;
mod erasure;
mod media;
mod operation_logs;
mod records;
mod requests;
mod retention;
mod rotation;
