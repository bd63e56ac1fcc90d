//! The provider kinds byoc knows, with the contract's snake_case names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A provider whose credentials an organization can bring; the name is the contract's `credential_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProviderKind {
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

impl ProviderKind {
    /// Every kind, in a stable order.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Twilio,
        ProviderKind::GoogleCalendar,
        ProviderKind::Stripe,
        ProviderKind::HubSpot,
    ];

    /// The contract's snake_case name (`twilio`, `google_calendar`, `stripe`, `hubspot`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Twilio => "twilio",
            ProviderKind::GoogleCalendar => "google_calendar",
            ProviderKind::Stripe => "stripe",
            ProviderKind::HubSpot => "hubspot",
        }
    }

    /// A human name for messages ("Twilio", "Google Calendar", ...).
    pub const fn display_name(self) -> &'static str {
        match self {
            ProviderKind::Twilio => "Twilio",
            ProviderKind::GoogleCalendar => "Google Calendar",
            ProviderKind::Stripe => "Stripe",
            ProviderKind::HubSpot => "HubSpot",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// The name given is not one of the contract's provider kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown credential type (expected one of twilio, google_calendar, stripe, hubspot)")]
pub struct UnknownProviderKind;

impl FromStr for ProviderKind {
    type Err = UnknownProviderKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or(UnknownProviderKind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(
                serde_json::from_str::<ProviderKind>(&json).expect("parses"),
                kind
            );
        }
        assert_eq!("hub_spot".parse::<ProviderKind>(), Err(UnknownProviderKind));
    }
}
