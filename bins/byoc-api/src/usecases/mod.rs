//! What the routes and the settings page do beyond a single store call: the steps that involve a provider, and
//! the limits and records around provider calls. Use cases take the services they need as arguments and import
//! only the HTTP plumbing ([`crate::plumbing`]), never a route, the page or start-up.
//!
//! - [`alerts`]: sending the hot-lead SMS (test SMS and leads) and its status-callback URL.
//! - [`verification`]: verifying a stored credential with its provider.
//! - [`refused_use`]: a provider refused a stored credential in use: mark it failed.
//! - [`calendar_use`]: reading the Google Calendar credential and what follows a call with it;
//!   [`booking`]: booking and cancelling appointments on it.
//! - [`oauth_state`]: signing and checking Google connect states.
//! - [`outbound`]: the provider clients and settings the using endpoints share.
//! - [`usage`]: per-organization rate limits and provider-call counters; [`write_behind`]: the records of
//!   provider calls, queued while the database is unavailable.
//! - [`reverify`]: verifying every active credential again once per interval, and the credentials gauge.
//! - [`credential_events`]: delivering the outbox of credential events (and audit digests) to the SaaS, signed
//!   per [`standard_webhooks`].
//! - [`audit_digests`]: signing each organization's audit chain head once per interval and filing the digests.
//! - [`rate_limits`]: who keeps the rate limits' buckets, this process or ([`shared_limits`]) Redis for every
//!   replica.

pub mod alerts;
pub mod audit_digests;
pub mod booking;
pub mod calendar_use;
pub mod credential_events;
pub mod oauth_state;
pub mod outbound;
pub mod rate_limits;
pub mod refused_use;
pub mod reverify;
pub mod shared_limits;
pub mod standard_webhooks;
pub mod usage;
pub mod verification;
pub mod write_behind;
