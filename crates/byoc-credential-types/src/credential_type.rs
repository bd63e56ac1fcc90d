//! The one list of providers byoc knows, with the contract's snake_case names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A provider whose credentials an organization can bring; its name is the contract's `credential_type` (the
/// column, the API's JSON, the audit trail). Every layer uses this one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CredentialType {
    /// Twilio (SMS).
    #[serde(rename = "twilio")]
    Twilio,
    /// Google Calendar (OAuth refresh token, free/busy).
    #[serde(rename = "google_calendar")]
    GoogleCalendar,
    /// Stripe (verification only).
    #[serde(rename = "stripe")]
    Stripe,
    /// HubSpot (verification only).
    #[serde(rename = "hubspot")]
    HubSpot,
}

impl CredentialType {
    /// Every provider, in a stable order.
    pub const ALL: [CredentialType; 4] = [
        CredentialType::Twilio,
        CredentialType::GoogleCalendar,
        CredentialType::Stripe,
        CredentialType::HubSpot,
    ];

    /// The contract's snake_case name (`twilio`, `google_calendar`, `stripe`, `hubspot`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialType::Twilio => "twilio",
            CredentialType::GoogleCalendar => "google_calendar",
            CredentialType::Stripe => "stripe",
            CredentialType::HubSpot => "hubspot",
        }
    }

    /// A human name for messages ("Twilio", "Google Calendar", ...).
    pub const fn display_name(self) -> &'static str {
        match self {
            CredentialType::Twilio => "Twilio",
            CredentialType::GoogleCalendar => "Google Calendar",
            CredentialType::Stripe => "Stripe",
            CredentialType::HubSpot => "HubSpot",
        }
    }
}

impl fmt::Display for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// The name given is not one of the contract's credential types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be twilio, google_calendar, stripe or hubspot")]
pub struct UnknownCredentialType;

impl FromStr for CredentialType {
    type Err = UnknownCredentialType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        CredentialType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or(UnknownCredentialType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for kind in CredentialType::ALL {
            assert_eq!(kind.as_str().parse::<CredentialType>(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(
                serde_json::from_str::<CredentialType>(&json).expect("parses"),
                kind
            );
        }
        assert_eq!(
            "hub_spot".parse::<CredentialType>(),
            Err(UnknownCredentialType)
        );
    }
}
