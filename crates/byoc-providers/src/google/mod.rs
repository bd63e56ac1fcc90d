//! Google Calendar: OAuth (consent URL, code exchange, refresh) with a per-credential access-token cache,
//! verification (refresh, then `calendarList.list`) and availability (`freebusy.query` turned into free
//! slots). Plain reqwest against the REST endpoints; `docs/providers.md` says why not google-calendar3.

mod booking;
mod errors;
pub mod oauth;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use moka::future::Cache;
use moka::Expiry;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::calendar::{
    self, Availability, AvailabilityRequest, BusyInterval, CalendarAvailability,
};
use crate::config::{BusinessHours, ProviderConfig};
use crate::error::{ProviderError, ProviderRefusal, RefusalReason};
use crate::http::{self, CallPolicy, Idempotency};
use crate::verifier::{Acceptance, VerificationDetails, Verifier};
use byoc_credential_types::CredentialType;
use byoc_credential_types::{CredentialPayload, GoogleCalendarCredential, PRIMARY_CALENDAR};
use errors::GoogleErrorItem;
use oauth::{Pkce, TokenGrant};

const PROVIDER: CredentialType = CredentialType::GoogleCalendar;

/// How many credentials' access tokens are cached at most.
const TOKEN_CACHE_CAPACITY: u64 = 10_000;

/// The cache key of a credential: SHA-256 of client id and refresh token, so neither appears in memory
/// dumps of the key set or in logs.
type TokenKey = [u8; 32];

fn token_key(client_id: &str, refresh_token: &SecretString) -> TokenKey {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(client_id.as_bytes());
    context.update(&[0]);
    context.update(refresh_token.expose_secret().as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// A cached access token and, when the refresh that produced it rotated the refresh token, the new one.
#[derive(Clone)]
struct CachedToken {
    access_token: Arc<SecretString>,
    rotated_refresh_token: Option<Arc<SecretString>>,
    time_to_live: Duration,
}

struct TokenExpiry;

impl Expiry<TokenKey, CachedToken> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &CachedToken,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.time_to_live)
    }

    fn expire_after_update(
        &self,
        _key: &TokenKey,
        value: &CachedToken,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.time_to_live)
    }
}

/// The tokens of a completed "Connect Google Calendar" flow.
#[derive(Debug)]
pub struct ConnectedTokens {
    /// The refresh token to store encrypted in the credential.
    pub refresh_token: SecretString,
    /// The scopes Google granted.
    pub scope: Option<String>,
}

/// A usable access token for a credential.
struct AccessToken {
    token: Arc<SecretString>,
    rotated_refresh_token: Option<Arc<SecretString>>,
}

impl AccessToken {
    fn updated_credential(
        &self,
        credential: &GoogleCalendarCredential,
    ) -> Option<GoogleCalendarCredential> {
        self.rotated_refresh_token
            .as_ref()
            .map(|token| credential.with_refresh_token(SecretString::from(token.expose_secret())))
    }
}

/// The Google Calendar client (OAuth, verification, availability) for any organization's credential.
#[derive(Clone)]
pub struct GoogleCalendarClient {
    http: reqwest::Client,
    auth_url: Url,
    token_url: Url,
    api_base: Url,
    calls: CallPolicy,
    business_hours: BusinessHours,
    refresh_margin: Duration,
    tokens: Cache<TokenKey, CachedToken>,
}

impl std::fmt::Debug for GoogleCalendarClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleCalendarClient")
            .field("token_url", &self.token_url.as_str())
            .field("api_base", &self.api_base.as_str())
            .field("cached_tokens", &self.tokens.entry_count())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct CalendarList {
    #[serde(default)]
    items: Vec<CalendarListEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalendarListEntry {
    id: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    time_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalendarResource {
    #[serde(default)]
    time_zone: Option<String>,
}

/// An answer of the Calendar API, read.
struct CalendarAnswer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: String,
}

impl CalendarAnswer {
    /// Google's error, mapped (for a non-2xx answer).
    fn into_error(self) -> ProviderError {
        errors::map_error(self.status, self.retry_after, &self.body, &[])
    }
}

#[derive(Deserialize)]
struct FreeBusyResponse {
    #[serde(default)]
    calendars: std::collections::HashMap<String, FreeBusyCalendar>,
}

#[derive(Deserialize, Default)]
struct FreeBusyCalendar {
    #[serde(default)]
    busy: Vec<FreeBusyBlock>,
    #[serde(default)]
    errors: Vec<GoogleErrorItem>,
}

#[derive(Deserialize)]
struct FreeBusyBlock {
    start: DateTime<chrono::FixedOffset>,
    end: DateTime<chrono::FixedOffset>,
}

impl GoogleCalendarClient {
    /// A client for the configured Google endpoints, using `http` (see [`crate::build_http_client`]).
    pub fn new(config: &ProviderConfig, http: reqwest::Client) -> Self {
        GoogleCalendarClient {
            http,
            auth_url: config.google_oauth_auth_url.clone(),
            token_url: config.google_oauth_token_url.clone(),
            api_base: config.google_calendar_api_base.clone(),
            calls: CallPolicy::from_config(config),
            business_hours: config.business_hours,
            refresh_margin: config.token_refresh_margin,
            tokens: Cache::builder()
                .max_capacity(TOKEN_CACHE_CAPACITY)
                .expire_after(TokenExpiry)
                .build(),
        }
    }

    /// Google's consent URL for `client_id` (see [`oauth::consent_url`]).
    pub fn consent_url(
        &self,
        client_id: &str,
        redirect_url: &Url,
        state: &str,
        pkce: &Pkce,
    ) -> Url {
        oauth::consent_url(
            &self.auth_url,
            client_id,
            redirect_url,
            state,
            pkce.challenge(),
        )
    }

    async fn token_request(
        &self,
        form: &[(&str, &str)],
        secrets: &[&str],
    ) -> Result<TokenGrant, ProviderError> {
        let response = http::send_with_retry(PROVIDER, self.calls, Idempotency::Safe, || {
            self.http.post(self.token_url.clone()).form(form)
        })
        .await?;
        let status = response.status();
        let retry_after = http::retry_after(&response);
        let body =
            zeroize::Zeroizing::new(http::read_body(PROVIDER, Idempotency::Safe, response).await?);
        if status.is_success() {
            oauth::parse_grant(&body)
        } else {
            Err(errors::map_error(status, retry_after, &body, secrets))
        }
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens. Google must issue a refresh
    /// token; if it does not, the user is asked to reconnect (`no_refresh_token`).
    pub async fn exchange_code(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        code: &str,
        redirect_url: &Url,
        pkce_verifier: &SecretString,
    ) -> Result<ConnectedTokens, ProviderError> {
        let grant = self
            .token_request(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_url.as_str()),
                    ("client_id", client_id),
                    ("client_secret", client_secret.expose_secret()),
                    ("code_verifier", pkce_verifier.expose_secret()),
                ],
                &[client_secret.expose_secret(), code],
            )
            .await?;
        let refresh_token = grant.refresh_token.ok_or_else(|| {
            ProviderError::Refused(ProviderRefusal {
                provider: PROVIDER,
                reason: RefusalReason::ReconnectGoogleCalendar,
                code: "no_refresh_token".into(),
                message: "Google issued no refresh token; remove byoc's access in the Google account and connect again".into(),
                http_status: None,
                more_info: None,
            })
        })?;
        let key = token_key(client_id, &refresh_token);
        self.tokens
            .insert(key, self.cached(grant.access_token, None, grant.expires_in))
            .await;
        Ok(ConnectedTokens {
            refresh_token,
            scope: grant.scope,
        })
    }

    /// Refreshes the access token of `credential` at the token endpoint, bypassing the cache.
    pub async fn refresh(
        &self,
        credential: &GoogleCalendarCredential,
    ) -> Result<TokenGrant, ProviderError> {
        let client_secret = credential.client_secret.expose_secret();
        let refresh_token = credential.refresh_token.expose_secret();
        self.token_request(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", &credential.client_id),
                ("client_secret", client_secret),
            ],
            &[client_secret, refresh_token],
        )
        .await
    }

    fn cached(
        &self,
        access_token: SecretString,
        rotated_refresh_token: Option<SecretString>,
        expires_in: Duration,
    ) -> CachedToken {
        CachedToken {
            access_token: Arc::new(access_token),
            rotated_refresh_token: rotated_refresh_token.map(Arc::new),
            time_to_live: expires_in.saturating_sub(self.refresh_margin),
        }
    }

    /// A valid access token: from the cache until shortly before expiry, else refreshed, with concurrent
    /// callers for the same credential sharing one refresh.
    async fn access_token(
        &self,
        credential: &GoogleCalendarCredential,
    ) -> Result<AccessToken, ProviderError> {
        let key = token_key(&credential.client_id, &credential.refresh_token);
        let cached = self
            .tokens
            .try_get_with(key, async {
                let grant = self.refresh(credential).await?;
                Ok::<_, ProviderError>(self.cached(
                    grant.access_token,
                    grant.refresh_token,
                    grant.expires_in,
                ))
            })
            .await
            .map_err(|shared: Arc<ProviderError>| (*shared).clone())?;
        Ok(AccessToken {
            token: cached.access_token,
            rotated_refresh_token: cached.rotated_refresh_token,
        })
    }

    /// Drops the cached access token of `credential` (after deactivation or a 401).
    pub async fn forget_token(&self, credential: &GoogleCalendarCredential) {
        self.tokens
            .invalidate(&token_key(&credential.client_id, &credential.refresh_token))
            .await;
    }

    /// Calls the Calendar API with the credential's access token; a 401 drops the cached token and the
    /// call is made once more with a freshly refreshed one. Answers whatever Google answered then, read.
    async fn calendar_send(
        &self,
        credential: &GoogleCalendarCredential,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(CalendarAnswer, AccessToken), ProviderError> {
        let mut token = self.access_token(credential).await?;
        let mut refreshed_after_401 = false;
        loop {
            let bearer = Arc::clone(&token.token);
            let response = http::send_with_retry(PROVIDER, self.calls, Idempotency::Safe, || {
                build().bearer_auth(bearer.expose_secret())
            })
            .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed_after_401 {
                refreshed_after_401 = true;
                self.forget_token(credential).await;
                token = self.access_token(credential).await?;
                continue;
            }
            let retry_after = http::retry_after(&response);
            let body = http::read_body(PROVIDER, Idempotency::Safe, response).await?;
            return Ok((
                CalendarAnswer {
                    status,
                    retry_after,
                    body,
                },
                token,
            ));
        }
    }

    /// [`Self::calendar_send`] for a call that must succeed: its JSON answer, or Google's error mapped.
    async fn calendar_call<T: serde::de::DeserializeOwned>(
        &self,
        credential: &GoogleCalendarCredential,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(T, AccessToken), ProviderError> {
        let (answer, token) = self.calendar_send(credential, build).await?;
        if !answer.status.is_success() {
            return Err(answer.into_error());
        }
        Ok((http::parse_json(PROVIDER, &answer.body)?, token))
    }

    /// Verifies a Google credential: refreshes its access token (a revoked token fails with
    /// `ReconnectGoogleCalendar`) and lists its calendars; the configured calendar must be among them.
    /// Returns the details and, when Google rotated the refresh token, the updated credential.
    pub async fn verify_credential(
        &self,
        credential: &GoogleCalendarCredential,
    ) -> Result<(VerificationDetails, Option<GoogleCalendarCredential>), ProviderError> {
        self.forget_token(credential).await;
        let url = http::endpoint(&self.api_base, &["users", "me", "calendarList"]);
        let (list, token): (CalendarList, _) = self
            .calendar_call(credential, || {
                self.http
                    .get(url.clone())
                    .query(&[("minAccessRole", "freeBusyReader"), ("maxResults", "250")])
            })
            .await?;
        let wanted = credential.calendar_id();
        let entry = list
            .items
            .iter()
            .find(|entry| entry.id == wanted || (wanted == PRIMARY_CALENDAR && entry.primary));
        if entry.is_none() && wanted != PRIMARY_CALENDAR {
            return Err(ProviderError::Refused(ProviderRefusal {
                provider: PROVIDER,
                reason: RefusalReason::NotFound,
                code: "calendar_not_found".into(),
                message: format!("calendar {wanted} is not in this Google account's calendar list"),
                http_status: None,
                more_info: None,
            }));
        }
        let details = VerificationDetails::GoogleCalendar {
            calendar_id: wanted.to_owned(),
            time_zone: entry.and_then(|entry| entry.time_zone.clone()),
            calendars: list.items.len(),
        };
        Ok((details, token.updated_credential(credential)))
    }

    async fn calendar_time_zone(
        &self,
        credential: &GoogleCalendarCredential,
    ) -> Result<Tz, ProviderError> {
        let url = http::endpoint(&self.api_base, &["calendars", credential.calendar_id()]);
        let (calendar, _): (CalendarResource, _) = self
            .calendar_call(credential, || self.http.get(url.clone()))
            .await?;
        calendar
            .time_zone
            .as_deref()
            .and_then(|name| name.parse::<Tz>().ok())
            .ok_or_else(|| ProviderError::UnexpectedResponse {
                provider: PROVIDER,
                reason: "the calendar has no known IANA time zone; pass timeZone".into(),
            })
    }

    /// The busy blocks of the credential's calendar between `time_min` and `time_max` (free/busy), and the
    /// access token used.
    async fn busy_blocks(
        &self,
        credential: &GoogleCalendarCredential,
        time_min: DateTime<Utc>,
        time_max: DateTime<Utc>,
        time_zone: Tz,
    ) -> Result<(Vec<BusyInterval>, AccessToken), ProviderError> {
        let calendar_id = credential.calendar_id();
        let query = serde_json::json!({
            "timeMin": time_min.to_rfc3339(),
            "timeMax": time_max.to_rfc3339(),
            "timeZone": time_zone.name(),
            "items": [{"id": calendar_id}],
        });
        let url = http::endpoint(&self.api_base, &["freeBusy"]);
        let (answer, token): (FreeBusyResponse, _) = self
            .calendar_call(credential, || self.http.post(url.clone()).json(&query))
            .await?;
        let mut calendars = answer.calendars;
        let calendar = match calendars.remove(calendar_id) {
            Some(calendar) => calendar,
            None if calendars.len() == 1 => calendars.into_values().next().unwrap_or_default(),
            None => {
                return Err(ProviderError::UnexpectedResponse {
                    provider: PROVIDER,
                    reason: "the free/busy answer does not mention the calendar".into(),
                })
            }
        };
        if let Some(error) = calendar.errors.first() {
            let code = error
                .reason
                .clone()
                .unwrap_or_else(|| "freebusy_error".into());
            let reason = if code == "notFound" {
                RefusalReason::NotFound
            } else {
                RefusalReason::Other
            };
            return Err(ProviderError::Refused(ProviderRefusal {
                provider: PROVIDER,
                reason,
                message: error
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("free/busy failed for calendar {calendar_id}")),
                code,
                http_status: None,
                more_info: None,
            }));
        }
        let busy = calendar
            .busy
            .iter()
            .map(|block| BusyInterval {
                start: block.start.with_timezone(&Utc),
                end: block.end.with_timezone(&Utc),
            })
            .collect();
        Ok((busy, token))
    }

    /// Free slots of the requested duration in business hours on the requested date (see
    /// [`CalendarAvailability::free_slots`]).
    pub async fn availability(
        &self,
        credential: &GoogleCalendarCredential,
        request: &AvailabilityRequest,
    ) -> Result<Availability, ProviderError> {
        let time_zone = match request.time_zone() {
            Some(zone) => zone,
            None => self.calendar_time_zone(credential).await?,
        };
        let (open, close) =
            calendar::business_window(request.date(), time_zone, self.business_hours);
        let (busy, token) = self.busy_blocks(credential, open, close, time_zone).await?;
        let duration = TimeDelta::minutes(i64::from(request.duration_minutes()));
        Ok(Availability {
            slots: calendar::free_slots(
                request.date(),
                time_zone,
                self.business_hours,
                duration,
                &busy,
            ),
            time_zone,
            updated_credential: token.updated_credential(credential),
        })
    }
}

#[async_trait]
impl Verifier for GoogleCalendarClient {
    fn kind(&self) -> CredentialType {
        PROVIDER
    }

    async fn verify(&self, payload: &[u8]) -> Result<Acceptance, ProviderError> {
        let credential = GoogleCalendarCredential::from_json_bytes(payload)?;
        let (details, updated) = self.verify_credential(&credential).await?;
        Ok(Acceptance {
            details,
            updated_payload: updated.map(|credential| credential.to_json_bytes()),
        })
    }
}

#[async_trait]
impl CalendarAvailability for GoogleCalendarClient {
    async fn free_slots(
        &self,
        credential: &GoogleCalendarCredential,
        request: &AvailabilityRequest,
    ) -> Result<Availability, ProviderError> {
        self.availability(credential, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys_depend_on_client_and_refresh_token() {
        let a = token_key("client", &SecretString::from("refresh-1"));
        assert_eq!(a, token_key("client", &SecretString::from("refresh-1")));
        assert_ne!(a, token_key("client", &SecretString::from("refresh-2")));
        assert_ne!(a, token_key("client2", &SecretString::from("refresh-1")));
        assert_ne!(
            token_key("ab", &SecretString::from("c")),
            token_key("a", &SecretString::from("bc"))
        );
    }
}
