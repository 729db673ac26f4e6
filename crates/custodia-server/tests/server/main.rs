//! The server's one integration-test binary: the real server on port 0 over a fresh database
//! (SQLite, and PostgreSQL too when `CUSTODIA_TEST_DATABASE_URL` is set), driven over HTTP with
//! a moved clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod app;
mod auth;
mod bad_input;
mod consents;
mod gate;
mod holds;
mod http;
mod logs;
mod media;
mod operation_logs;
mod outbox;
mod policy;
mod records;
mod requests;
mod sweeper;
mod system;
