//! Credential storage for byoc: repository trait, Postgres and SQLite backends, and the credential service facade.
