//! Integration tests of byoc-api: the real application on port 0 against SQLite and Postgres.

mod auth;
mod credentials;
mod dev_mode;
mod errors;
mod health;
mod helpers;
mod secrets;
