//! `byoc-api`: the byoc HTTP service as a library, so the `byoc-api` binary, the `byoc` CLI and the integration
//! tests build the same application from the same configuration.
//!
//! - [`config`]: the service's environment variables, parsed once into typed values (what it shares with the
//!   CLI comes from `byoc-runtime`, as do [`Services`], dev mode and telemetry).
//! - [`startup`]: the HTTP [`Application`].
//! - [`auth`]: bearer tokens (HS256 secret or JWKS) and token minting; [`caller`]: who calls, with which role.
//! - [`dto`]: request and response bodies of the credential endpoints.
//! - [`error`]: the one JSON error body every endpoint answers with.
//! - [`extract`]: the JSON body extractor (body limit, unknown fields, field-naming errors).
//! - [`routes`]: the endpoints; [`openapi`]: their OpenAPI document.
//! - [`settings`]: the settings page at `/dashboard/settings` (cookie sessions with CSRF protection).
//! - [`metrics`]: Prometheus metrics and the request-tracking middleware.
//! - [`outbound`] and [`usage`]: what the endpoints that use credentials share (provider clients, callback
//!   settings, per-organization rate limits and daily provider counters); [`write_behind`]: the records of
//!   provider calls, queued while the database is unavailable.

pub mod auth;
pub mod caller;
pub mod config;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod usage;
pub mod usecases;
pub mod write_behind;

pub use byoc_runtime::{Services, StartupError};
pub use startup::Application;

/// The largest request body the service accepts, in bytes (larger bodies answer 413).
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;
