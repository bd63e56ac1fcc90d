//! Request and response bodies of the credential-management endpoints, exactly as the contract names them:
//! request bodies camelCase, rows with the table's snake_case column names. Requests are parsed into the
//! providers' validated payload types; a bad value answers 422 naming the field. No response type has a field
//! that could hold a secret.

use std::str::FromStr;

use byoc_credential_store::{
    Actor, AuditAction, AuditChainReport, AuditChainStatus, AuditEvent, AuditFilter, CredentialId,
    CredentialMetadata, DisplayName, InvalidValue, VerificationStatus,
};
use byoc_credential_types::{
    E164Phone, GoogleCalendarCredential, HubSpotCredential, InvalidField, StripeCredential,
    TwilioAccountSid, TwilioCredential,
};
use byoc_providers::{BookedEvent, BookingParts, BookingRequest};
use chrono::{DateTime, FixedOffset, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::plumbing::error::ApiError;

impl From<InvalidField> for ApiError {
    fn from(error: InvalidField) -> ApiError {
        ApiError::invalid_field(error.field, error.reason)
    }
}

impl From<InvalidValue> for ApiError {
    fn from(error: InvalidValue) -> ApiError {
        ApiError::invalid_field(error.field, error.reason)
    }
}

/// Parses the `displayName` field. The text as sent must be what the OpenAPI document's pattern states (with
/// `maxLength` 255): no control, bidirectional-formatting or zero-width character anywhere (so a tab is refused
/// even at the ends) and at least one visible character; surrounding spaces are then dropped.
fn display_name(text: &str) -> Result<DisplayName, ApiError> {
    DisplayName::parse(text)?;
    Ok(DisplayName::parse(text.trim())?)
}

/// Parses the `redirectUrl` field as the OpenAPI document's pattern states: empty (none), or `http(s)://` and a
/// host name whose labels start with a letter, an optional port of up to four digits and an optional path of
/// printable ASCII.
fn redirect_url(text: &str) -> Result<Option<Url>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        ApiError::invalid_field(
            "redirectUrl",
            "must be an absolute http(s) URL with a host name",
        )
    };
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(invalid)?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let label_ok = |label: &str| {
        label.starts_with(|c: char| c.is_ascii_alphabetic())
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    };
    let port_ok = port.is_none_or(|port| {
        (1..=4).contains(&port.len()) && port.bytes().all(|byte| byte.is_ascii_digit())
    });
    let path_ok = path.bytes().all(|byte| (b'!'..=b'~').contains(&byte));
    if !(host.split('.').all(label_ok) && port_ok && path_ok) {
        return Err(invalid());
    }
    Url::parse(text).map(Some).map_err(|_| invalid())
}

/// `POST /api/organization/credentials/twilio`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddTwilioRequest {
    /// `AC` followed by 32 hex digits.
    #[schema(
        example = "AC0123456789abcdef0123456789abcdef",
        pattern = "^AC[0-9a-fA-F]{32}$"
    )]
    pub account_sid: String,
    /// The account's auth token (stored encrypted; never returned).
    #[schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\s]+$")]
    pub auth_token: SecretString,
    /// The sending number in E.164 form.
    #[schema(example = "+14155550123", pattern = "^\\+[1-9][0-9]{6,14}$")]
    pub phone_number: String,
    /// A name for people, unique per credential type in the organization.
    #[schema(
        example = "Front desk Twilio",
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u1680\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*$"
    )]
    pub display_name: String,
}

impl AddTwilioRequest {
    /// Validates the request into the Twilio payload and its display name.
    pub fn into_parts(self) -> Result<(TwilioCredential, DisplayName), ApiError> {
        let account_sid = TwilioAccountSid::parse("accountSid", self.account_sid.trim())?;
        let auth_token = require_secret("authToken", self.auth_token)?;
        let phone_number = E164Phone::parse_dialable("phoneNumber", self.phone_number.trim())?;
        let display_name = display_name(&self.display_name)?;
        Ok((
            TwilioCredential {
                account_sid,
                auth_token,
                phone_number,
            },
            display_name,
        ))
    }
}

/// `POST /api/organization/credentials/google_calendar`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddGoogleCalendarRequest {
    /// The OAuth client id.
    #[schema(
        example = "1234-abc.apps.googleusercontent.com",
        min_length = 1,
        pattern = "^[^\\s]+$"
    )]
    pub client_id: String,
    /// The OAuth client secret (stored encrypted; never returned).
    #[schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\s]+$")]
    pub client_secret: SecretString,
    /// A refresh token issued to that client (stored encrypted; never returned).
    #[schema(value_type = String, format = Password, min_length = 1, pattern = "^[^\\s]+$")]
    pub refresh_token: SecretString,
    /// The redirect URL registered with the client.
    #[serde(default)]
    #[schema(
        nullable = false,
        pattern = "^(https?://[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,4})?(/[!-~]*)?)?$",
        example = "https://app.example.com/api/auth/google/callback"
    )]
    pub redirect_url: Option<String>,
    /// The calendar to read (default `primary`).
    #[serde(default)]
    #[schema(nullable = false)]
    pub calendar_id: Option<String>,
    /// A name for people, unique per credential type in the organization.
    #[schema(
        example = "Clinic calendar",
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u1680\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*$"
    )]
    pub display_name: String,
}

impl AddGoogleCalendarRequest {
    /// Validates the request into the Google Calendar payload and its display name.
    pub fn into_parts(self) -> Result<(GoogleCalendarCredential, DisplayName), ApiError> {
        let redirect_url = match self.redirect_url.as_deref() {
            Some(text) => redirect_url(text)?,
            None => None,
        };
        let calendar_id = self
            .calendar_id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty());
        let credential = GoogleCalendarCredential::new(
            &self.client_id,
            self.client_secret,
            self.refresh_token,
            redirect_url,
            calendar_id,
        )?;
        Ok((credential, display_name(&self.display_name)?))
    }
}

/// `POST /api/organization/credentials/stripe`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddStripeRequest {
    /// A secret key (`sk_live_…`, `sk_test_…`) or a restricted key (`rk_live_…`, `rk_test_…`); stored encrypted,
    /// never returned.
    #[schema(
        value_type = String,
        format = Password,
        example = "sk_test_51Habcdefghijkl1234",
        pattern = "^[sr]k_(test|live)_[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{9,}$"
    )]
    pub secret_key: SecretString,
    /// A name for people, unique per credential type in the organization.
    #[schema(
        example = "Clinic payments",
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u1680\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*$"
    )]
    pub display_name: String,
}

impl AddStripeRequest {
    /// Validates the request into the Stripe payload and its display name.
    pub fn into_parts(self) -> Result<(StripeCredential, DisplayName), ApiError> {
        let secret_key = require_secret("secretKey", self.secret_key)?;
        let credential = StripeCredential::new(secret_key)?;
        Ok((credential, display_name(&self.display_name)?))
    }
}

/// The prefix of a HubSpot private-app access token.
const HUBSPOT_PRIVATE_APP_PREFIX: &str = "pat-";

/// `POST /api/organization/credentials/hubspot`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddHubSpotRequest {
    /// A private-app access token (`pat-…`); stored encrypted, never returned.
    #[schema(
        value_type = String,
        format = Password,
        example = "pat-na1-11111111-2222-3333-4444-555555555555",
        pattern = "^pat-[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{4,}$"
    )]
    pub access_token: SecretString,
    /// A name for people, unique per credential type in the organization.
    #[schema(
        example = "Clinic CRM",
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u1680\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*$"
    )]
    pub display_name: String,
}

impl AddHubSpotRequest {
    /// Validates the request into the HubSpot payload and its display name. A token that is not a private-app
    /// token (`pat-…`) is refused: HubSpot's legacy API keys no longer work.
    pub fn into_parts(self) -> Result<(HubSpotCredential, DisplayName), ApiError> {
        let access_token = require_secret("accessToken", self.access_token)?;
        let private_app = access_token
            .expose_secret()
            .strip_prefix(HUBSPOT_PRIVATE_APP_PREFIX)
            .is_some_and(|rest| rest.chars().count() >= 4);
        if !private_app {
            return Err(ApiError::invalid_field(
                "accessToken",
                "must be a HubSpot private-app access token (pat-…)",
            ));
        }
        let credential = HubSpotCredential::new(access_token)?;
        Ok((credential, display_name(&self.display_name)?))
    }
}

fn require_secret(field: &'static str, secret: SecretString) -> Result<SecretString, ApiError> {
    let text = secret.expose_secret();
    if text.trim().is_empty() {
        return Err(ApiError::invalid_field(field, "is required"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_field(
            field,
            "must not contain whitespace",
        ));
    }
    Ok(secret)
}

/// A credential's verification state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatusDto {
    /// Not verified yet (or changed since).
    Pending,
    /// The provider accepted it.
    Verified,
    /// The provider refused it.
    Failed,
}

impl From<VerificationStatus> for VerificationStatusDto {
    fn from(status: VerificationStatus) -> VerificationStatusDto {
        match status {
            VerificationStatus::Pending => VerificationStatusDto::Pending,
            VerificationStatus::Verified => VerificationStatusDto::Verified,
            VerificationStatus::Failed => VerificationStatusDto::Failed,
        }
    }
}

/// One credential's metadata, as listed and as answered after a change. Never a secret.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CredentialRow {
    /// The credential id.
    pub id: Uuid,
    /// `twilio`, `google_calendar`, `stripe` or `hubspot`.
    #[schema(example = "twilio")]
    pub credential_type: String,
    /// The name for people.
    pub display_name: String,
    /// False once deactivated.
    pub is_active: bool,
    /// `pending`, `verified` or `failed`.
    pub verification_status: VerificationStatusDto,
    /// When it was last verified.
    pub last_verified_at: Option<DateTime<Utc>>,
    /// The provider's reason for the last failed verification.
    pub verification_error: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// The user who added it.
    pub created_by: Option<Uuid>,
    /// The master-key version its data key is wrapped under.
    pub encryption_key_version: u32,
    /// A masked, non-secret summary such as `AC…1234 / +1415…0123`.
    pub public_hint: Option<String>,
}

impl From<CredentialMetadata> for CredentialRow {
    fn from(metadata: CredentialMetadata) -> CredentialRow {
        CredentialRow {
            id: metadata.id.as_uuid(),
            credential_type: metadata.credential_type.as_str().to_owned(),
            display_name: metadata.display_name,
            is_active: metadata.is_active,
            verification_status: metadata.verification_status.into(),
            last_verified_at: metadata.last_verified_at,
            verification_error: metadata.verification_error,
            created_at: metadata.created_at,
            created_by: metadata.created_by.map(|user| user.as_uuid()),
            encryption_key_version: metadata.encryption_key_version.get(),
            public_hint: metadata.public_hint,
        }
    }
}

/// The answer of `POST /api/organization/credentials/{id}/verify`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// Whether the provider accepted the credential.
    pub verified: bool,
    /// The new status.
    pub verification_status: VerificationStatusDto,
    /// The provider's reason when it refused.
    pub verification_error: Option<String>,
}

/// The answer of `DELETE /api/organization/credentials/{id}`.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct DeleteResponse {
    /// Always true.
    pub success: bool,
}

/// The query of `DELETE /api/organization/credentials/{id}`.
#[derive(Clone, Copy, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// `true`: hard delete (owner only); otherwise deactivate.
    #[serde(default)]
    pub purge: bool,
}

/// Largest page of the audit log.
pub const AUDIT_PAGE_MAX: u32 = 500;
/// Page size when `limit` is absent.
pub const AUDIT_PAGE_DEFAULT: u32 = 50;

/// The query of `GET /api/organization/audit`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only entries with an id below this one (the last `id` of the previous page).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Only entries with this action (`created`, `read`, `verified`, …).
    #[param(pattern = "^[a-z][a-z0-9_.:]{0,63}$")]
    pub action: Option<String>,
    /// Only entries about this credential.
    #[param(format = Uuid)]
    pub credential_id: Option<String>,
    /// Only entries by this actor: `user:<uuid>` or `service:<name>`.
    #[param(
        pattern = "^(user:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|service:[a-z][a-z0-9_.-]{0,63})$"
    )]
    pub actor: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Only entries before this time (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

impl AuditQuery {
    /// The validated page size.
    pub fn page_size(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(AUDIT_PAGE_DEFAULT),
            Some(limit) if (1..=AUDIT_PAGE_MAX).contains(&limit) => Ok(limit),
            Some(_) => Err(ApiError::invalid_field(
                "limit",
                format!("must be from 1 to {AUDIT_PAGE_MAX}"),
            )),
        }
    }

    /// The validated cursor.
    pub fn cursor(&self) -> Result<Option<i64>, ApiError> {
        match self.before {
            Some(before) if before < 1 => Err(ApiError::invalid_field(
                "before",
                "must be a positive audit entry id",
            )),
            before => Ok(before),
        }
    }

    /// The validated filters.
    pub fn filter(&self) -> Result<AuditFilter, ApiError> {
        AuditFilterText {
            action: self.action.as_deref(),
            credential_id: self.credential_id.as_deref(),
            actor: self.actor.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
        }
        .parse()
    }
}

/// The query of `GET /api/organization/audit/export`: the list's filters, no paging.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditExportQuery {
    /// Only entries with this action (`created`, `read`, `verified`, …).
    #[param(pattern = "^[a-z][a-z0-9_.:]{0,63}$")]
    pub action: Option<String>,
    /// Only entries about this credential.
    #[param(format = Uuid)]
    pub credential_id: Option<String>,
    /// Only entries by this actor: `user:<uuid>` or `service:<name>`.
    #[param(
        pattern = "^(user:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|service:[a-z][a-z0-9_.-]{0,63})$"
    )]
    pub actor: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Only entries before this time (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

impl AuditExportQuery {
    /// The validated filters.
    pub fn filter(&self) -> Result<AuditFilter, ApiError> {
        AuditFilterText {
            action: self.action.as_deref(),
            credential_id: self.credential_id.as_deref(),
            actor: self.actor.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
        }
        .parse()
    }
}

/// The audit filters as the query string gives them.
struct AuditFilterText<'a> {
    action: Option<&'a str>,
    credential_id: Option<&'a str>,
    actor: Option<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
}

impl AuditFilterText<'_> {
    fn parse(&self) -> Result<AuditFilter, ApiError> {
        let time = |field: &'static str, text: Option<&str>| {
            text.map(|text| {
                DateTime::parse_from_rfc3339(text)
                    .map(|time| time.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::invalid_field(field, "must be an RFC 3339 date and time")
                    })
            })
            .transpose()
        };
        Ok(AuditFilter {
            action: self.action.map(AuditAction::parse).transpose()?,
            credential_id: self
                .credential_id
                .map(|text| {
                    Uuid::parse_str(text)
                        .map(CredentialId::from_uuid)
                        .map_err(|_| ApiError::invalid_field("credentialId", "must be a UUID"))
                })
                .transpose()?,
            actor: self
                .actor
                .map(|text| {
                    Actor::from_str(text).map_err(|_| {
                        ApiError::invalid_field("actor", "must be user:<uuid> or service:<name>")
                    })
                })
                .transpose()?,
            from: time("from", self.from)?,
            to: time("to", self.to)?,
        })
    }
}

/// One audit log entry, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    /// The entry id (use it as `before` for the next page).
    pub id: i64,
    /// Its position in the organization's hash chain, from 1 (what an audit digest's `headSeq` names).
    #[schema(minimum = 1)]
    pub seq: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `user:<uuid>` or `service:<name>`.
    pub actor: String,
    /// What happened, e.g. `created`, `read`, `verified`, `purged`.
    pub action: String,
    /// The credential concerned, if any.
    pub credential_id: Option<Uuid>,
    /// Its type, if any.
    pub credential_type: Option<String>,
    /// Non-secret details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEvent> for AuditEntryDto {
    fn from(event: AuditEvent) -> AuditEntryDto {
        AuditEntryDto {
            id: event.id.0,
            seq: event.seq,
            at: event.at,
            actor: event.actor.to_string(),
            action: event.action.as_str().to_owned(),
            credential_id: event.credential_id.map(|id| id.as_uuid()),
            credential_type: event.credential_type.map(|kind| kind.as_str().to_owned()),
            detail: event.detail,
        }
    }
}

/// The answer of `GET /api/organization/audit/verify`: whether the organization's audit hash chain holds, and
/// its head.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerifyResponse {
    /// Whether every link and the chain head check out.
    pub intact: bool,
    /// How many events checked out (all of them when intact; those before the break otherwise).
    #[schema(minimum = 0)]
    pub events: u64,
    /// The first sequence number at which the chain does not hold; absent when intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub first_broken_seq: Option<i64>,
    /// What is wrong there (a sentence); absent when intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The sequence number of the newest event as the chain head stores it; null for an empty chain.
    #[schema(required = true, minimum = 1)]
    pub head_seq: Option<i64>,
    /// The newest event's chain hash (SHA-256) as the chain head stores it, 64 lowercase hex digits; null for an
    /// empty chain.
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    pub head_hash: Option<String>,
}

impl From<AuditChainReport> for AuditVerifyResponse {
    fn from(report: AuditChainReport) -> AuditVerifyResponse {
        let (intact, events, first_broken_seq, problem) = match report.status {
            AuditChainStatus::Intact { events } => (true, events, None, None),
            AuditChainStatus::Broken {
                events_checked,
                first_broken_seq,
                problem,
            } => (false, events_checked, Some(first_broken_seq), Some(problem)),
        };
        AuditVerifyResponse {
            intact,
            events,
            first_broken_seq,
            problem,
            head_seq: report.head.map(|head| head.seq),
            head_hash: report.head.map(|head| head.hash_hex()),
        }
    }
}

/// The answer of `GET /api/audit/signing-key`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyResponse {
    /// `Ed25519`.
    #[schema(example = "Ed25519")]
    pub algorithm: &'static str,
    /// The public key, 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub public_key: String,
}

// The bodies of the endpoints that use credentials (SMS, leads, availability, Google connect), as the
// contract names them; their handlers register them in the OpenAPI document with their paths.

/// `POST /api/sms/test`: where to send the hot-lead alert text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmsTestRequest {
    /// The recipient in E.164 form.
    #[schema(example = "+14155550199", pattern = "^\\+[1-9][0-9]{6,14}$")]
    pub to: String,
}

/// A message handed to Twilio.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SmsResult {
    /// Twilio's message SID.
    #[schema(example = "SM0123456789abcdef0123456789abcdef")]
    pub sid: String,
    /// Twilio's status (`queued`, `sent`, …).
    #[schema(example = "queued")]
    pub status: String,
}

/// `POST /api/leads`: a scored lead.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeadRequest {
    /// The lead's name (used in the alert text).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The lead score, 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    pub score: u8,
    /// Who gets the hot-lead alert, in E.164 form.
    #[schema(example = "+14155550199", pattern = "^\\+[1-9][0-9]{6,14}$")]
    pub notify_phone: String,
}

/// The answer of `POST /api/leads`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LeadResponse {
    /// Whether the score reached the organization's hot threshold.
    pub hot: bool,
    /// The alert sent for a hot lead; null otherwise.
    pub sms: Option<SmsResult>,
}

/// The query of `GET /api/calendar/availability`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    /// The day, `YYYY-MM-DD`.
    #[param(
        value_type = String,
        format = Date,
        pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}$",
        example = "2026-12-01"
    )]
    pub date: chrono::NaiveDate,
    /// The slot length in minutes.
    #[param(minimum = 5, maximum = 1440, example = 30)]
    pub duration: u32,
    /// An IANA time zone (default: the calendar's).
    #[param(example = "America/New_York")]
    pub time_zone: Option<String>,
}

/// One free slot.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TimeSlot {
    /// Start (RFC 3339).
    pub start: DateTime<Utc>,
    /// End (RFC 3339).
    pub end: DateTime<Utc>,
}

/// The answer of `GET /api/calendar/availability`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AvailabilityResponse {
    /// Free slots, in order.
    pub slots: Vec<TimeSlot>,
}

/// `POST /api/calendar/bookings`: the appointment to book.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BookingBody {
    /// When it starts: RFC 3339 with an offset (`Z` or `±hh:mm`).
    #[schema(value_type = String, format = DateTime, example = "2026-12-01T10:00:00-05:00")]
    pub start: String,
    /// Its length in whole minutes, 5 to 480 (elapsed time, also across a daylight-saving change).
    #[schema(value_type = u32, minimum = 5, maximum = 480, example = 30)]
    pub duration_minutes: serde_json::Number,
    /// The event's title: no control character, at least one that is not a space.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "Check-up"
    )]
    pub summary: String,
    /// Who the appointment is for (in the event's description).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "Ada Lovelace"
    )]
    pub attendee_name: String,
    /// Their phone in E.164 form (in the event's description).
    #[serde(default)]
    #[schema(
        nullable = false,
        example = "+14155550199",
        pattern = "^\\+[1-9][0-9]{6,14}$"
    )]
    pub attendee_phone: Option<String>,
    /// Their e-mail (added to the event as an attendee; Google sends no invitation).
    #[serde(default)]
    #[schema(nullable = false, format = Email, max_length = 254, example = "ada@example.com")]
    pub attendee_email: Option<String>,
    /// An IANA time zone the event is shown in (default: the calendar's).
    #[serde(default)]
    #[schema(nullable = false, example = "America/New_York")]
    pub time_zone: Option<String>,
}

impl BookingBody {
    /// Validates the body into a booking request; the error names the field.
    pub fn into_request(self) -> Result<BookingRequest, ApiError> {
        let start = DateTime::parse_from_rfc3339(self.start.trim()).map_err(|_| {
            ApiError::invalid_field(
                "start",
                "must be an RFC 3339 date and time with an offset, e.g. 2026-12-01T10:00:00-05:00",
            )
        })?;
        let attendee_phone = self
            .attendee_phone
            .map(|phone| E164Phone::parse_dialable("attendeePhone", phone.trim()))
            .transpose()?;
        let duration_minutes = whole_number(&self.duration_minutes)
            .and_then(|minutes| u32::try_from(minutes).ok())
            .ok_or_else(|| {
                ApiError::invalid_field("durationMinutes", "must be a whole number of minutes")
            })?;
        Ok(BookingRequest::new(BookingParts {
            start,
            duration_minutes,
            summary: self.summary,
            attendee_name: self.attendee_name,
            attendee_phone,
            attendee_email: self.attendee_email,
            time_zone: self.time_zone,
        })?)
    }
}

/// A JSON number that is a whole number (`30` or `30.0`, as JSON Schema's `integer` allows), when it is one.
fn whole_number(number: &serde_json::Number) -> Option<u64> {
    number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|value| value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(value))
            .map(|value| value as u64)
    })
}

/// The answer of `POST /api/calendar/bookings` (the same for every retry with one `Idempotency-Key`).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingResponse {
    /// The event's id on the organization's calendar (cancel with it).
    #[schema(example = "k2l8c0v3b1m4n5o6p7q8r9s0t1u2v3a4b5c6d7e8f9g0h1i2j3k4")]
    pub event_id: String,
    /// The event in Google Calendar, when Google gave a link.
    pub html_link: Option<String>,
    /// Start, RFC 3339 with the offset in force in the booking's time zone.
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    /// End, RFC 3339 with the offset in force in the booking's time zone.
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<FixedOffset>,
}

impl From<BookedEvent> for BookingResponse {
    fn from(event: BookedEvent) -> BookingResponse {
        BookingResponse {
            event_id: event.event_id,
            html_link: event.html_link,
            start: event.start,
            end: event.end,
        }
    }
}

/// The query Google sends to `GET /api/auth/google/callback`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GoogleCallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The signed, single-use state issued by `/api/auth/google/start` (Google always sends it back).
    #[param(required = true)]
    pub state: Option<String>,
    /// Google's error, when the user declined.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn twilio(sid: &str, token: &str, phone: &str, name: &str) -> AddTwilioRequest {
        AddTwilioRequest {
            account_sid: sid.to_owned(),
            auth_token: SecretString::from(token),
            phone_number: phone.to_owned(),
            display_name: name.to_owned(),
        }
    }

    fn field_error(result: Result<(TwilioCredential, DisplayName), ApiError>) -> String {
        match result {
            Ok(_) => panic!("expected a validation error"),
            Err(error) => {
                assert_eq!(error.code(), "invalid_field");
                error.to_string()
            }
        }
    }

    #[test]
    fn valid_twilio_request_parses() {
        let (credential, name) = twilio(SID, "tok3n", "+14155550123", " Main ")
            .into_parts()
            .expect("valid");
        assert_eq!(credential.account_sid.as_str(), SID);
        assert_eq!(credential.phone_number.as_str(), "+14155550123");
        assert_eq!(name.as_str(), "Main");
    }

    #[test]
    fn invalid_twilio_fields_are_named_without_the_secret() {
        assert!(
            field_error(twilio("AC123", "t", "+14155550123", "n").into_parts())
                .contains("accountSid")
        );
        assert!(field_error(twilio(SID, "t", "0123", "n").into_parts()).contains("phoneNumber"));
        assert!(
            field_error(twilio(SID, " ", "+14155550123", "n").into_parts()).contains("authToken")
        );
        let message = field_error(twilio(SID, "sec ret", "+14155550123", "n").into_parts());
        assert!(
            message.contains("authToken") && !message.contains("sec ret"),
            "{message}"
        );
        assert!(
            field_error(twilio(SID, "t", "+14155550123", "  ").into_parts())
                .contains("displayName")
        );
        let long = "x".repeat(256);
        assert!(
            field_error(twilio(SID, "t", "+14155550123", &long).into_parts())
                .contains("displayName")
        );
    }

    #[test]
    fn google_request_validates_redirect_url() {
        let request = |redirect: Option<&str>| AddGoogleCalendarRequest {
            client_id: "client.apps.googleusercontent.com".to_owned(),
            client_secret: SecretString::from("client-secret"),
            refresh_token: SecretString::from("1//refresh"),
            redirect_url: redirect.map(str::to_owned),
            calendar_id: None,
            display_name: "Calendar".to_owned(),
        };
        let (credential, _) = request(Some("https://app.example.com/cb"))
            .into_parts()
            .expect("valid");
        assert_eq!(credential.calendar_id(), "primary");
        let error = request(Some("not a url"))
            .into_parts()
            .expect_err("invalid redirect");
        assert!(error.to_string().contains("redirectUrl"));
    }

    #[test]
    fn audit_query_bounds() {
        assert_eq!(
            AuditQuery::default().page_size().ok(),
            Some(AUDIT_PAGE_DEFAULT)
        );
        assert!(AuditQuery {
            limit: Some(0),
            ..AuditQuery::default()
        }
        .page_size()
        .is_err());
        assert_eq!(
            AuditQuery {
                limit: Some(500),
                ..AuditQuery::default()
            }
            .page_size()
            .ok(),
            Some(500)
        );
        assert!(AuditQuery {
            limit: Some(501),
            ..AuditQuery::default()
        }
        .page_size()
        .is_err());
        assert!(AuditQuery {
            before: Some(0),
            ..AuditQuery::default()
        }
        .cursor()
        .is_err());
        assert_eq!(
            AuditQuery {
                before: Some(9),
                ..AuditQuery::default()
            }
            .cursor()
            .ok(),
            Some(Some(9))
        );
    }
}
