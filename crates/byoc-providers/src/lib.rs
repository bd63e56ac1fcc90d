//! Provider clients for byoc: verification of the credentials organizations bring (Twilio, Google Calendar,
//! Stripe, HubSpot; the payload types are `byoc-credential-types`'s) against their providers, sending SMS with
//! an organization's Twilio account, and Google Calendar free/busy and booking over OAuth.
//!
//! This crate knows neither the store nor the API: it defines the provider-facing types and traits
//! ([`Verifier`], [`SmsSender`], [`CalendarAvailability`], [`CalendarBooking`]) that upper layers call with decrypted credentials. Every client
//! takes its base URL from [`ProviderConfig`] and its secrets as [`secrecy::SecretString`]s; no error,
//! log line or `Debug` output contains a secret. Enable the `mock` feature for mockall mocks of the
//! traits (`MockVerifier`, `MockSmsSender`, `MockCalendarAvailability`, `MockCalendarBooking`).

pub mod booking;
pub mod calendar;
pub mod clients;
pub mod config;
pub mod error;
pub mod google;
pub mod http;
pub mod hubspot;
pub mod sms;
pub mod stripe;
pub mod twilio;
pub mod verifier;

#[cfg(feature = "mock")]
pub use booking::MockCalendarBooking;
pub use booking::{
    BookedEvent, BookingError, BookingParts, BookingRequest, CalendarBooking, EventId,
};
#[cfg(feature = "mock")]
pub use calendar::MockCalendarAvailability;
pub use calendar::{Availability, AvailabilityRequest, CalendarAvailability, TimeSlot};
pub use clients::ProviderClients;
pub use config::{BusinessHours, ConfigError, HttpTimeouts, ProviderConfig, RetryPolicy};
pub use error::{ProviderError, ProviderRefusal, RefusalReason};
pub use google::oauth::{Pkce, TokenGrant, CONNECT_SCOPES};
pub use google::{ConnectedTokens, GoogleCalendarClient};
pub use http::{build_http_client, HttpClientError};
pub use hubspot::HubSpotClient;
#[cfg(feature = "mock")]
pub use sms::MockSmsSender;
pub use sms::{OutboundSms, SentSms, SmsSender};
pub use stripe::StripeClient;
pub use twilio::callback::StatusCallback;
pub use twilio::signature::{compute_signature, validate_signature, SignatureError};
pub use twilio::TwilioClient;
#[cfg(feature = "mock")]
pub use verifier::MockVerifier;
pub use verifier::{Acceptance, VerificationDetails, Verifier, VerifierRegistry};
