//! Integration tests of byoc-credential-store on real databases (local PostgreSQL via
//! `BYOC_TEST_DATABASE_URL`, and SQLite temporary files).

mod audit_chain;
mod conformance;
mod database_boundary;
mod fixtures;
mod isolation;
mod notifications;
mod pool;
mod schema_dump;
mod service;
