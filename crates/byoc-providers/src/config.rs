//! Configuration of the provider clients: base URLs (the contract's environment variables), timeouts, the
//! retry policy, business hours and the access-token refresh margin. The binaries read the environment; this
//! crate only takes the struct (or a lookup function, see [`ProviderConfig::from_lookup`]).

use std::time::Duration;

use chrono::NaiveTime;
use url::Url;

/// Base URLs and tuning of every provider client.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `TWILIO_API_BASE`, default `https://api.twilio.com`.
    pub twilio_api_base: Url,
    /// `GOOGLE_OAUTH_AUTH_URL`, default `https://accounts.google.com/o/oauth2/v2/auth`.
    pub google_oauth_auth_url: Url,
    /// `GOOGLE_OAUTH_TOKEN_URL`, default `https://oauth2.googleapis.com/token`.
    pub google_oauth_token_url: Url,
    /// `GOOGLE_CALENDAR_API_BASE`, default `https://www.googleapis.com/calendar/v3/`.
    pub google_calendar_api_base: Url,
    /// `STRIPE_API_BASE`, default `https://api.stripe.com`.
    pub stripe_api_base: Url,
    /// `HUBSPOT_API_BASE`, default `https://api.hubapi.com`.
    pub hubspot_api_base: Url,
    /// `BYOC_PUBLIC_URL`: the service's external base URL; the Twilio status callback and the Google OAuth
    /// redirect are built from it. Without it SMS are sent without a status callback.
    pub public_url: Option<Url>,
    /// Timeouts applied to every HTTP call.
    pub timeouts: HttpTimeouts,
    /// When and how often requests that cannot double-act are retried.
    pub retry: RetryPolicy,
    /// The opening hours inside which free calendar slots are offered.
    pub business_hours: BusinessHours,
    /// A cached Google access token is refreshed this long before it expires.
    pub token_refresh_margin: Duration,
}

/// Timeouts of every HTTP call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Time allowed to open the TCP (and TLS) connection.
    pub connect: Duration,
    /// Time allowed for the whole request, from connecting to the last byte of the answer.
    pub request: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(15),
        }
    }
}

/// Bounded exponential backoff for the retriable cases (connection failures before anything was sent,
/// HTTP 429 and 503); see `docs/providers.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 disables retries).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// Longest wait between attempts; a `Retry-After` longer than this is not waited for (the error is
    /// returned with the provider's `Retry-After` instead).
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after `attempt` failed (1-based), without `Retry-After`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Daily opening hours in the calendar's (or the requested) time zone; default 09:00–17:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessHours {
    opens: NaiveTime,
    closes: NaiveTime,
}

/// Opening hours whose close is not after their open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("business hours must close after they open")]
pub struct InvalidBusinessHours;

impl BusinessHours {
    /// Hours from `opens` to `closes` (local wall-clock times of the same day).
    pub fn new(opens: NaiveTime, closes: NaiveTime) -> Result<Self, InvalidBusinessHours> {
        if opens < closes {
            Ok(BusinessHours { opens, closes })
        } else {
            Err(InvalidBusinessHours)
        }
    }

    /// Local opening time.
    pub fn opens(&self) -> NaiveTime {
        self.opens
    }

    /// Local closing time.
    pub fn closes(&self) -> NaiveTime {
        self.closes
    }
}

impl Default for BusinessHours {
    fn default() -> Self {
        BusinessHours {
            opens: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or(NaiveTime::MIN),
            closes: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

/// A configuration variable holds a value that cannot be used; names the variable, never echoes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} is not a valid absolute http(s) URL")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
}

fn default_url(text: &str) -> Url {
    Url::parse(text).unwrap_or_else(|_| unreachable!("built-in default URL {text} parses"))
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            twilio_api_base: default_url("https://api.twilio.com"),
            google_oauth_auth_url: default_url("https://accounts.google.com/o/oauth2/v2/auth"),
            google_oauth_token_url: default_url("https://oauth2.googleapis.com/token"),
            google_calendar_api_base: default_url("https://www.googleapis.com/calendar/v3/"),
            stripe_api_base: default_url("https://api.stripe.com"),
            hubspot_api_base: default_url("https://api.hubapi.com"),
            public_url: None,
            timeouts: HttpTimeouts::default(),
            retry: RetryPolicy::default(),
            business_hours: BusinessHours::default(),
            token_refresh_margin: Duration::from_secs(60),
        }
    }
}

impl ProviderConfig {
    /// Defaults overridden by the contract's variables as returned by `lookup` (pass
    /// `|name| std::env::var(name).ok()`): `TWILIO_API_BASE`, `GOOGLE_OAUTH_AUTH_URL`,
    /// `GOOGLE_OAUTH_TOKEN_URL`, `GOOGLE_CALENDAR_API_BASE`, `STRIPE_API_BASE`, `HUBSPOT_API_BASE`,
    /// `BYOC_PUBLIC_URL`. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read = |variable: &'static str| -> Result<Option<Url>, ConfigError> {
            match lookup(variable).filter(|value| !value.trim().is_empty()) {
                None => Ok(None),
                Some(value) => Url::parse(value.trim())
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                    .map(Some)
                    .ok_or(ConfigError { variable }),
            }
        };
        let mut config = ProviderConfig::default();
        let overrides: [(&'static str, &mut Url); 6] = [
            ("TWILIO_API_BASE", &mut config.twilio_api_base),
            ("GOOGLE_OAUTH_AUTH_URL", &mut config.google_oauth_auth_url),
            ("GOOGLE_OAUTH_TOKEN_URL", &mut config.google_oauth_token_url),
            (
                "GOOGLE_CALENDAR_API_BASE",
                &mut config.google_calendar_api_base,
            ),
            ("STRIPE_API_BASE", &mut config.stripe_api_base),
            ("HUBSPOT_API_BASE", &mut config.hubspot_api_base),
        ];
        for (variable, slot) in overrides {
            if let Some(url) = read(variable)? {
                *slot = url;
            }
        }
        config.public_url = read("BYOC_PUBLIC_URL")?;
        Ok(config)
    }

    /// `{BYOC_PUBLIC_URL}/api/webhooks/twilio/status`, when the public URL is configured.
    pub fn twilio_status_callback_url(&self) -> Option<Url> {
        self.public_url
            .as_ref()
            .map(|base| crate::http::endpoint(base, &["api", "webhooks", "twilio", "status"]))
    }

    /// `{BYOC_PUBLIC_URL}/api/auth/google/callback`, when the public URL is configured.
    pub fn google_redirect_url(&self) -> Option<Url> {
        self.public_url
            .as_ref()
            .map(|base| crate::http::endpoint(base, &["api", "auth", "google", "callback"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_overrides_defaults_and_names_a_bad_variable() {
        let config = ProviderConfig::from_lookup(|name| match name {
            "TWILIO_API_BASE" => Some("http://127.0.0.1:4010".into()),
            "BYOC_PUBLIC_URL" => Some("https://byoc.example.com/".into()),
            "STRIPE_API_BASE" => Some(String::new()),
            _ => None,
        })
        .expect("valid configuration");
        assert_eq!(config.twilio_api_base.as_str(), "http://127.0.0.1:4010/");
        assert_eq!(config.stripe_api_base.as_str(), "https://api.stripe.com/");
        assert_eq!(
            config
                .twilio_status_callback_url()
                .expect("public url set")
                .as_str(),
            "https://byoc.example.com/api/webhooks/twilio/status"
        );
        assert_eq!(
            config
                .google_redirect_url()
                .expect("public url set")
                .as_str(),
            "https://byoc.example.com/api/auth/google/callback"
        );

        let error = ProviderConfig::from_lookup(|name| {
            (name == "GOOGLE_OAUTH_TOKEN_URL").then(|| "not a url".to_owned())
        })
        .expect_err("bad URL");
        assert_eq!(
            error.to_string(),
            "GOOGLE_OAUTH_TOKEN_URL is not a valid absolute http(s) URL"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(300));
        assert_eq!(policy.backoff(40), Duration::from_millis(300));
    }

    #[test]
    fn business_hours_must_close_after_opening() {
        let nine = NaiveTime::from_hms_opt(9, 0, 0).expect("valid time");
        assert_eq!(BusinessHours::new(nine, nine), Err(InvalidBusinessHours));
        assert_eq!(BusinessHours::default().opens(), nine);
    }
}
