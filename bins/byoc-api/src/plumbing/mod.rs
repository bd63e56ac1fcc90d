//! HTTP plumbing every endpoint and the settings page share, and that knows nothing of any one endpoint.
//!
//! - [`error`]: the one JSON error body, and the one mapping from a library error to an HTTP answer.
//! - [`extract`]: the JSON body extractor (body limit, unknown fields, field-naming errors).
//! - [`auth`]: bearer tokens (HS256 secret or JWKS); [`caller`]: who calls, with which role;
//!   [`session`]: the settings page's cookie sessions and CSRF tokens.
//! - [`dto`]: request and response bodies.
//! - [`metrics`]: Prometheus metrics and the request-tracking middleware.
//! - [`routing`]: 405 with `Allow` for a known path asked with another method.

pub mod auth;
pub mod caller;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod routing;
pub mod session;
