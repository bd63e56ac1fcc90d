//! `byoc-api`: the byoc HTTP service as a library, so the `byoc-api` binary and the integration tests build the
//! same application from the same configuration (what it shares with the `byoc` CLI is in `byoc-runtime`).
//!
//! The modules are layers; each imports only from the layers listed before it:
//!
//! 1. [`plumbing`]: HTTP plumbing (errors and their one mapping, extractors, bearer tokens and the caller,
//!    cookie sessions, request and response bodies, metrics).
//! 2. [`usecases`]: what the endpoints do beyond one store call (sending an alert, verifying a credential,
//!    marking a refused credential failed, the OAuth state, usage limits and counters, the write-behind queue).
//! 3. [`startup::state`]: the state every handler receives.
//! 4. [`routes`] (the JSON API and its OpenAPI document) and [`settings`] (the settings page), which do not
//!    import each other.
//! 5. [`startup`]: the configuration and the HTTP [`Application`] that registers the routes and the page.
//!
//! `tests/layers.rs` checks these imports.

pub mod plumbing;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod usecases;

pub use byoc_runtime::{Services, StartupError};
pub use startup::Application;

/// The largest request body the service accepts, in bytes (larger bodies answer 413).
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;
