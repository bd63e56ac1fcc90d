//! Dev mode's provider sandbox: when the service runs in dev mode and no provider URL or credential is
//! configured, the provider base URLs point at [`answers`], a scope of the service itself, so verify, test SMS,
//! Google connect, availability and booking work offline with no accounts. The real provider clients, their
//! parsing and their error mapping run unchanged. Only [`Application`](crate::Application)'s start-up builds
//! it, and only with a dev session.

pub mod answers;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use byoc_providers::ProviderConfig;
use secrecy::SecretString;
use url::Url;

use crate::usecases::outbound::GoogleOAuthClient;

/// The path under which the sandbox answers (never served outside the sandbox).
pub const SCOPE: &str = "/_sandbox";

/// The variables whose presence turns the sandbox off: the provider URLs and the provider credentials.
pub const TURNED_OFF_BY: [&str; 11] = [
    "TWILIO_API_BASE",
    "GOOGLE_OAUTH_AUTH_URL",
    "GOOGLE_OAUTH_TOKEN_URL",
    "GOOGLE_CALENDAR_API_BASE",
    "STRIPE_API_BASE",
    "HUBSPOT_API_BASE",
    "GOOGLE_OAUTH_CLIENT_ID",
    "GOOGLE_OAUTH_CLIENT_SECRET",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_PHONE_NUMBER",
];

/// The first of [`TURNED_OFF_BY`] that `get` finds set, if any.
pub fn turned_off_by(get: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    TURNED_OFF_BY
        .into_iter()
        .find(|variable| get(variable).is_some())
}

/// Where the service reaches the sandbox: `bound` itself, on loopback when it listens on every address.
fn internal_base(bound: SocketAddr) -> Result<Url, url::ParseError> {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Url::parse(&format!(
        "http://{}{SCOPE}/",
        SocketAddr::new(ip, bound.port())
    ))
}

/// The provider configuration and Google OAuth app that send every provider call to the sandbox: the
/// service's own calls go to `bound`, the browser's consent page is under `public_url`.
pub fn providers(
    configured: &ProviderConfig,
    bound: SocketAddr,
    public_url: &Url,
) -> Result<(ProviderConfig, GoogleOAuthClient), url::ParseError> {
    let internal = internal_base(bound)?;
    let mut providers = configured.clone();
    providers.twilio_api_base = internal.join("twilio/")?;
    providers.google_oauth_auth_url =
        public_url.join(&format!("{}/google/consent", SCOPE.trim_start_matches('/')))?;
    providers.google_oauth_token_url = internal.join("google/token")?;
    providers.google_calendar_api_base = internal.join("google/calendar/v3/")?;
    providers.stripe_api_base = internal.join("stripe/")?;
    providers.hubspot_api_base = internal.join("hubspot/")?;
    let client = GoogleOAuthClient {
        client_id: answers::SANDBOX_CLIENT_ID.to_owned(),
        client_secret: SecretString::from("sandbox-client-secret"),
    };
    Ok((providers, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_provider_url_or_credential_turns_it_off() {
        assert_eq!(turned_off_by(|_| None), None);
        assert_eq!(
            turned_off_by(|name| (name == "TWILIO_AUTH_TOKEN").then(String::new)),
            Some("TWILIO_AUTH_TOKEN")
        );
    }

    #[test]
    fn calls_go_to_loopback_and_consent_to_the_public_url() {
        let bound: SocketAddr = "0.0.0.0:8080".parse().expect("address");
        let public = Url::parse("http://localhost:8080/").expect("url");
        let (providers, client) =
            providers(&ProviderConfig::default(), bound, &public).expect("urls");
        assert_eq!(
            providers.twilio_api_base.as_str(),
            "http://127.0.0.1:8080/_sandbox/twilio/"
        );
        assert_eq!(
            providers.google_oauth_auth_url.as_str(),
            "http://localhost:8080/_sandbox/google/consent"
        );
        assert_eq!(client.client_id, answers::SANDBOX_CLIENT_ID);
    }
}
