//! Integration tests of the `byoc` CLI: the real binary against SQLite, Postgres and dev mode.

mod audit;
mod commands;
mod helpers;
mod keys;
