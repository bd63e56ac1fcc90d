//! Integration tests of byoc-crypto's public API.

mod envelope;
mod fixtures;
mod key_check_value;
mod keyring_config;
mod rotation;
mod wycheproof;
