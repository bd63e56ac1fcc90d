//! What both byoc binaries (`byoc-api` and the `byoc` CLI) share, without the HTTP server: the configuration
//! they both read ([`config`]), opening the store and the credential service ([`services`]: as the service or
//! as the operator), dev mode's files and demo organization ([`dev`]), minting bearer tokens ([`tokens`]) and
//! the tracing set-up ([`telemetry`]), how both answer a command line ([`command_line`]), master keys held by a
//! key management service ([`kms`]) and the keyring both start with, environment and KMS-held versions together
//! ([`master_keys`]).

pub mod audit_digest;
pub mod command_line;
pub mod config;
pub mod dev;
pub mod kms;
pub mod master_keys;
pub mod services;
pub mod telemetry;
pub mod tokens;

pub use services::{open_operator_store, DevSession, Services, StartupError};
