//! Integration tests of byoc-api: the real application on port 0 against SQLite and Postgres.

mod auth;
mod health;
mod helpers;
