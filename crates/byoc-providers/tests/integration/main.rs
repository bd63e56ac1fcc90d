//! Integration tests of byoc-providers: request shapes against Prism mocks of the providers' own OpenAPI
//! specs, error paths and retries against wiremock fakes.

mod google;
#[cfg(feature = "mock")]
mod mocks;
mod prism;
mod stripe_hubspot;
mod support;
mod twilio_errors;
mod twilio_prism;
