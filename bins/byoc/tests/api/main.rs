//! Integration tests of the `byoc` CLI: the real binary against SQLite, Postgres and dev mode.

mod commands;
mod helpers;
mod keys;
