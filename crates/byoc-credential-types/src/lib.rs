//! The credential types byoc knows and what an organization stores for each: [`CredentialType`], the one list
//! of providers (the contract's `credential_type`), and the payloads ([`TwilioCredential`],
//! [`GoogleCalendarCredential`], [`StripeCredential`], [`HubSpotCredential`]) as the JSON the API receives and the
//! store encrypts. Parsed, not validated: a value of these types is well-formed; secrets are
//! [`secrecy::SecretString`]s whose `Debug` prints no secret, and the plaintext form [`CredentialJson`] is zeroed
//! on drop.
//!
//! This crate does no I/O and pulls nothing heavy (serde, secrecy, zeroize, url), so that both the store and the
//! provider clients build on it without depending on each other.

mod credential_type;
mod invalid_field;
mod payload;

pub use credential_type::{CredentialType, UnknownCredentialType};
pub use invalid_field::InvalidField;
pub use payload::{
    invalid_phone, secret_hint, CredentialJson, CredentialPayload, E164Phone,
    GoogleCalendarCredential, HubSpotCredential, ProviderCredential, StripeCredential, StripeMode,
    TwilioAccountSid, TwilioCredential, GOOGLE_EVENT_WRITE_SCOPES, GOOGLE_READ_ONLY_HINT_SUFFIX,
    HINT_TAIL_CHARS, HINT_TAIL_MIN_SECRET_CHARS, PRIMARY_CALENDAR,
};
