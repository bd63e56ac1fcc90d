//! Integration tests of byoc-api: the real application on port 0 against SQLite and Postgres.

mod audit;
mod audit_digests;
mod auth;
mod bookings;
mod calendar;
mod credentials;
mod dev_mode;
mod errors;
mod events;
mod health;
mod helpers;
mod leads;
mod oauth;
mod outage;
#[path = "../../../../crates/byoc-providers/tests/integration/prism.rs"]
mod prism;
mod provider_faults;
mod reverify;
mod secrets;
mod settings;
mod shared_limits;
mod sms;
mod stripe_hubspot;
mod webhook;
