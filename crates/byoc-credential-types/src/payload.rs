//! Credential payloads: what an organization stores per provider, as the JSON the API receives (camelCase
//! field names exactly as the contract's request bodies). Payloads are parsed, not validated: a value of
//! these types is well-formed. Secrets are [`SecretString`]s (their `Debug` prints no secret); the
//! encrypted-at-rest form is [`CredentialJson`], a zeroize-on-drop byte buffer.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use url::Url;
use zeroize::Zeroizing;

use crate::credential_type::CredentialType;
use crate::invalid_field::InvalidField;

/// The JSON bytes of a credential payload (plaintext before encryption / after decryption). Zeroized on
/// drop; `Debug` prints only the length.
pub struct CredentialJson(Zeroizing<Vec<u8>>);

impl CredentialJson {
    /// Wraps decrypted plaintext bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        CredentialJson(Zeroizing::new(bytes))
    }

    /// The JSON bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The zeroize-on-drop buffer itself.
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl fmt::Debug for CredentialJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialJson([REDACTED; {} bytes])", self.0.len())
    }
}

/// What every provider's credential payload offers the store and the API.
pub trait CredentialPayload: Sized + Send + Sync {
    /// The provider this payload is for.
    const KIND: CredentialType;

    /// Parses and validates stored or submitted JSON; the error names the offending field.
    fn from_json_bytes(bytes: &[u8]) -> Result<Self, InvalidField>;

    /// The payload as JSON bytes (camelCase fields) in a zeroize-on-drop buffer, ready to encrypt.
    fn to_json_bytes(&self) -> CredentialJson;

    /// A non-secret summary for listings, e.g. `AC…1234 / +1415…0123`. Of a secret it shows at most the last
    /// [`HINT_TAIL_CHARS`] characters, after a fixed label (see [`secret_hint`]).
    fn public_hint(&self) -> String;

    /// The provider's id of the account the credential belongs to, when it names one (Twilio's Account SID);
    /// never a secret. Stored beside the encrypted payload as metadata.
    fn provider_account_id(&self) -> Option<&str> {
        None
    }
}

/// The JSON object of a payload being parsed; values are taken out field by field so that errors can
/// name the field without ever quoting its value.
struct Fields(Map<String, Value>);

impl Fields {
    fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidField> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(InvalidField::new("payload", "must be a JSON object")),
            Err(error) => Err(InvalidField::new(
                "payload",
                format!("is not valid JSON ({})", json_error_kind(&error)),
            )),
        }
    }

    fn optional(&mut self, field: &'static str) -> Result<Option<Zeroizing<String>>, InvalidField> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                let text = Zeroizing::new(text);
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(Zeroizing::new(trimmed.to_owned())))
                }
            }
            Some(_) => Err(InvalidField::new(field, "must be a string")),
        }
    }

    fn required(&mut self, field: &'static str) -> Result<Zeroizing<String>, InvalidField> {
        self.optional(field)?
            .ok_or_else(|| InvalidField::new(field, "is required"))
    }

    fn required_secret(&mut self, field: &'static str) -> Result<SecretString, InvalidField> {
        let value = self.required(field)?;
        if value.chars().any(char::is_whitespace) {
            return Err(InvalidField::new(field, "must not contain whitespace"));
        }
        Ok(SecretString::from(value.as_str()))
    }
}

/// The error for a phone number that is not in E.164 form.
pub fn invalid_phone(field: &'static str) -> InvalidField {
    InvalidField::new(
        field,
        "must be a valid phone number in E.164 format, e.g. +14155550123",
    )
}

/// Names a serde_json error category without quoting the input.
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "i/o error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// Serializes a wire struct into a pre-sized zeroize-on-drop buffer.
fn to_json<T: Serialize>(wire: &T, size_hint: usize) -> CredentialJson {
    let mut buffer = Zeroizing::new(Vec::with_capacity(size_hint + 256));
    // Writing plain strings into a Vec cannot fail.
    if serde_json::to_writer(&mut *buffer, wire).is_err() {
        buffer.clear();
    }
    CredentialJson(buffer)
}

fn copy_secret(secret: &SecretString) -> SecretString {
    SecretString::from(secret.expose_secret())
}

/// How many of a secret's last characters its hint shows.
pub const HINT_TAIL_CHARS: usize = 4;
/// The fewest characters a secret must have after its public label for its hint to show its last
/// [`HINT_TAIL_CHARS`]; a shorter one shows none, so a hint never gives away more than a quarter of what is
/// secret.
pub const HINT_TAIL_MIN_SECRET_CHARS: usize = 16;

/// The hint of a secret: `label`, a fixed public marker of the secret's kind chosen from the caller's constants
/// (such as `sk_test_`; never cut from the secret), then `…`, then the secret's last [`HINT_TAIL_CHARS`]
/// characters when at least [`HINT_TAIL_MIN_SECRET_CHARS`] follow the label. Every hint of a secret is built
/// here, and shows nothing else of it.
pub fn secret_hint(label: &'static str, secret: &str) -> String {
    let hidden = secret.strip_prefix(label).unwrap_or(secret);
    let tail = if hidden.chars().count() >= HINT_TAIL_MIN_SECRET_CHARS {
        last_chars(hidden, HINT_TAIL_CHARS)
    } else {
        ""
    };
    format!("{label}…{tail}")
}

fn last_chars(text: &str, count: usize) -> &str {
    let start = text
        .char_indices()
        .rev()
        .nth(count.saturating_sub(1))
        .map_or(0, |(index, _)| index);
    &text[start..]
}

/// A Twilio Account SID: `AC` followed by 32 hexadecimal digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TwilioAccountSid(String);

impl TwilioAccountSid {
    /// Parses a SID; `field` names the request field in the error.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, InvalidField> {
        let text = text.trim();
        let well_formed = text.len() == 34
            && text.starts_with("AC")
            && text[2..].bytes().all(|byte| byte.is_ascii_hexdigit());
        if well_formed {
            Ok(TwilioAccountSid(text.to_owned()))
        } else {
            Err(InvalidField::new(
                field,
                "must be \"AC\" followed by 32 hexadecimal digits",
            ))
        }
    }

    /// The SID text (not a secret).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TwilioAccountSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TwilioAccountSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TwilioAccountSid({})", self.0)
    }
}

/// A phone number in E.164 form: `+`, a country code that does not start with 0, at most 15 digits. This is
/// its shape only, so that reading a stored payload needs no phone metadata; whether a number exists in its
/// country's numbering plan is checked when it first comes in ([`E164Phone::parse_dialable`], feature
/// `numbering-plan`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164Phone(String);

impl E164Phone {
    /// Parses a number in E.164 form; `field` names the request field in the error.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, InvalidField> {
        let text = text.trim();
        let digits = text.strip_prefix('+').ok_or_else(|| invalid_phone(field))?;
        let shaped = (2..=15).contains(&digits.len())
            && digits.bytes().all(|byte| byte.is_ascii_digit())
            && !digits.starts_with('0');
        if !shaped {
            return Err(invalid_phone(field));
        }
        Ok(E164Phone(text.to_owned()))
    }

    /// Parses a number that comes in from a person or a service: in E.164 form **and** existing in its
    /// country's numbering plan (libphonenumber's metadata; feature `numbering-plan`).
    #[cfg(feature = "numbering-plan")]
    pub fn parse_dialable(field: &'static str, text: &str) -> Result<Self, InvalidField> {
        let shaped = E164Phone::parse(field, text)?;
        let number = phonenumber::parse(None, shaped.as_str()).map_err(|_| invalid_phone(field))?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid_phone(field));
        }
        E164Phone::parse(
            field,
            &number.format().mode(phonenumber::Mode::E164).to_string(),
        )
    }

    /// The number as `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A masked form for listings: `+1415…0123`.
    pub fn masked(&self) -> String {
        let head: String = self.0.chars().take(5).collect();
        format!("{head}…{}", last_chars(&self.0, 4))
    }
}

impl fmt::Display for E164Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164Phone({})", self.0)
    }
}

/// A Twilio credential: `{accountSid, authToken, phoneNumber}`.
#[derive(Debug)]
pub struct TwilioCredential {
    /// The account the credential belongs to.
    pub account_sid: TwilioAccountSid,
    /// The account's auth token (basic-auth password, status-callback signing key).
    pub auth_token: SecretString,
    /// The Twilio number SMS are sent from.
    pub phone_number: E164Phone,
}

impl TwilioCredential {
    fn from_fields(mut fields: Fields) -> Result<Self, InvalidField> {
        let account_sid = TwilioAccountSid::parse("accountSid", &fields.required("accountSid")?)?;
        let auth_token = fields.required_secret("authToken")?;
        let phone_number = E164Phone::parse("phoneNumber", &fields.required("phoneNumber")?)?;
        Ok(TwilioCredential {
            account_sid,
            auth_token,
            phone_number,
        })
    }
}

impl Clone for TwilioCredential {
    fn clone(&self) -> Self {
        TwilioCredential {
            account_sid: self.account_sid.clone(),
            auth_token: copy_secret(&self.auth_token),
            phone_number: self.phone_number.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TwilioWire<'a> {
    account_sid: &'a str,
    auth_token: &'a str,
    phone_number: &'a str,
}

impl CredentialPayload for TwilioCredential {
    const KIND: CredentialType = CredentialType::Twilio;

    fn from_json_bytes(bytes: &[u8]) -> Result<Self, InvalidField> {
        Self::from_fields(Fields::from_bytes(bytes)?)
    }

    fn to_json_bytes(&self) -> CredentialJson {
        let auth_token = self.auth_token.expose_secret();
        to_json(
            &TwilioWire {
                account_sid: self.account_sid.as_str(),
                auth_token,
                phone_number: self.phone_number.as_str(),
            },
            auth_token.len(),
        )
    }

    fn provider_account_id(&self) -> Option<&str> {
        Some(self.account_sid.as_str())
    }

    fn public_hint(&self) -> String {
        format!(
            "AC…{} / {}",
            last_chars(self.account_sid.as_str(), 4),
            self.phone_number.masked()
        )
    }
}

/// A Google Calendar credential: an OAuth client and a refresh token,
/// `{clientId, clientSecret, refreshToken, redirectUrl?, calendarId?}`.
#[derive(Debug)]
pub struct GoogleCalendarCredential {
    /// The OAuth client id (not a secret).
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: SecretString,
    /// The long-lived refresh token.
    pub refresh_token: SecretString,
    /// The redirect URL registered with the OAuth client, when the organization brings its own client.
    pub redirect_url: Option<Url>,
    /// The calendar to read; `primary` when absent.
    pub calendar_id: Option<String>,
    /// The OAuth scopes Google granted (space-separated, as Google reports them) when the credential was
    /// connected through "Connect Google Calendar"; `None` when unknown (added with a refresh token, or
    /// connected before scopes were recorded).
    pub granted_scope: Option<String>,
}

/// The calendar read when a credential names none.
pub const PRIMARY_CALENDAR: &str = "primary";

/// Scopes any one of which lets a Google access token create and delete events (Google's Calendar API
/// discovery document, `events.insert` and `events.delete`).
pub const GOOGLE_EVENT_WRITE_SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.events.owned",
];

/// What a Google Calendar credential's hint ends with when its granted scopes are known and allow no event
/// writes: availability works, booking needs a reconnect.
pub const GOOGLE_READ_ONLY_HINT_SUFFIX: &str = " / read-only";

impl GoogleCalendarCredential {
    /// Builds a credential from parts (e.g. after an OAuth code exchange), validating them.
    pub fn new(
        client_id: &str,
        client_secret: SecretString,
        refresh_token: SecretString,
        redirect_url: Option<Url>,
        calendar_id: Option<String>,
    ) -> Result<Self, InvalidField> {
        let client_id = client_id.trim();
        if client_id.is_empty() || client_id.chars().any(char::is_whitespace) {
            return Err(InvalidField::new(
                "clientId",
                "is required and must not contain whitespace",
            ));
        }
        for (field, secret) in [
            ("clientSecret", &client_secret),
            ("refreshToken", &refresh_token),
        ] {
            let text = secret.expose_secret();
            if text.is_empty() || text.chars().any(char::is_whitespace) {
                return Err(InvalidField::new(
                    field,
                    "is required and must not contain whitespace",
                ));
            }
        }
        if let Some(url) = &redirect_url {
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                return Err(InvalidField::new(
                    "redirectUrl",
                    "must be an absolute http(s) URL",
                ));
            }
        }
        let calendar_id = calendar_id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty());
        Ok(GoogleCalendarCredential {
            client_id: client_id.to_owned(),
            client_secret,
            refresh_token,
            redirect_url,
            calendar_id,
            granted_scope: None,
        })
    }

    /// The calendar to read (`primary` when none is configured).
    pub fn calendar_id(&self) -> &str {
        self.calendar_id.as_deref().unwrap_or(PRIMARY_CALENDAR)
    }

    /// The same credential, recording the scopes Google granted (blank counts as unknown).
    pub fn with_granted_scope(self, granted_scope: Option<String>) -> Self {
        GoogleCalendarCredential {
            granted_scope: granted_scope
                .map(|scope| scope.trim().to_owned())
                .filter(|scope| !scope.is_empty()),
            ..self
        }
    }

    /// Whether the granted scopes allow creating and deleting events: `Some(false)` for a credential known to
    /// be read-only (connected with `calendar.readonly`), `None` when the scopes are unknown.
    pub fn can_write_events(&self) -> Option<bool> {
        self.granted_scope.as_deref().map(|scope| {
            scope
                .split_whitespace()
                .any(|granted| GOOGLE_EVENT_WRITE_SCOPES.contains(&granted))
        })
    }

    /// The same credential with the refresh token Google rotated to.
    pub fn with_refresh_token(&self, refresh_token: SecretString) -> Self {
        GoogleCalendarCredential {
            refresh_token,
            ..self.clone()
        }
    }

    fn from_fields(mut fields: Fields) -> Result<Self, InvalidField> {
        let client_id = fields.required("clientId")?;
        let client_secret = fields.required_secret("clientSecret")?;
        let refresh_token = fields.required_secret("refreshToken")?;
        let redirect_url = fields
            .optional("redirectUrl")?
            .map(|text| {
                Url::parse(&text).map_err(|_| {
                    InvalidField::new("redirectUrl", "must be an absolute http(s) URL")
                })
            })
            .transpose()?;
        let calendar_id = fields.optional("calendarId")?.map(|id| id.to_string());
        let granted_scope = fields
            .optional("grantedScope")?
            .map(|scope| scope.to_string());
        Ok(Self::new(
            &client_id,
            client_secret,
            refresh_token,
            redirect_url,
            calendar_id,
        )?
        .with_granted_scope(granted_scope))
    }
}

impl Clone for GoogleCalendarCredential {
    fn clone(&self) -> Self {
        GoogleCalendarCredential {
            client_id: self.client_id.clone(),
            client_secret: copy_secret(&self.client_secret),
            refresh_token: copy_secret(&self.refresh_token),
            redirect_url: self.redirect_url.clone(),
            calendar_id: self.calendar_id.clone(),
            granted_scope: self.granted_scope.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoogleWire<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    refresh_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calendar_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    granted_scope: Option<&'a str>,
}

impl CredentialPayload for GoogleCalendarCredential {
    const KIND: CredentialType = CredentialType::GoogleCalendar;

    fn from_json_bytes(bytes: &[u8]) -> Result<Self, InvalidField> {
        Self::from_fields(Fields::from_bytes(bytes)?)
    }

    fn to_json_bytes(&self) -> CredentialJson {
        let client_secret = self.client_secret.expose_secret();
        let refresh_token = self.refresh_token.expose_secret();
        to_json(
            &GoogleWire {
                client_id: &self.client_id,
                client_secret,
                refresh_token,
                redirect_url: self.redirect_url.as_ref().map(Url::as_str),
                calendar_id: self.calendar_id.as_deref(),
                granted_scope: self.granted_scope.as_deref(),
            },
            self.client_id.len() + client_secret.len() + refresh_token.len(),
        )
    }

    fn public_hint(&self) -> String {
        let client = self
            .client_id
            .split('.')
            .next()
            .map_or("", |project| last_chars(project, 6));
        let read_only = if self.can_write_events() == Some(false) {
            GOOGLE_READ_ONLY_HINT_SUFFIX
        } else {
            ""
        };
        format!(
            "client …{client} / calendar {}{read_only}",
            self.calendar_id()
        )
    }
}

/// Whether a Stripe key acts on test or live data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeMode {
    /// `sk_test_` / `rk_test_` keys.
    Test,
    /// `sk_live_` / `rk_live_` keys.
    Live,
}

/// A Stripe credential: a secret (`sk_…`) or restricted (`rk_…`) key, `{secretKey}`.
#[derive(Debug)]
pub struct StripeCredential {
    /// The API key.
    pub secret_key: SecretString,
    mode: StripeMode,
}

impl StripeCredential {
    /// Validates a key's shape (`sk_test_`, `sk_live_`, `rk_test_` or `rk_live_` and more).
    pub fn new(secret_key: SecretString) -> Result<Self, InvalidField> {
        let text = secret_key.expose_secret();
        let mode = stripe_key_prefix(text)
            .filter(|(prefix, _)| text.len() > prefix.len() + 8)
            .map(|(_, mode)| mode);
        match mode {
            Some(mode) if !text.chars().any(char::is_whitespace) => {
                Ok(StripeCredential { secret_key, mode })
            }
            _ => Err(InvalidField::new(
                "secretKey",
                "must be a Stripe secret (sk_test_/sk_live_) or restricted (rk_test_/rk_live_) key",
            )),
        }
    }

    /// Test or live, from the key prefix.
    pub fn mode(&self) -> StripeMode {
        self.mode
    }
}

/// The prefixes of Stripe's secret and restricted keys and the mode each names: public markers of a key's
/// kind, so its hint may show them.
const STRIPE_KEY_PREFIXES: [(&str, StripeMode); 4] = [
    ("sk_test_", StripeMode::Test),
    ("rk_test_", StripeMode::Test),
    ("sk_live_", StripeMode::Live),
    ("rk_live_", StripeMode::Live),
];

/// The known prefix `key` starts with, and its mode.
fn stripe_key_prefix(key: &str) -> Option<(&'static str, StripeMode)> {
    STRIPE_KEY_PREFIXES
        .into_iter()
        .find(|(prefix, _)| key.starts_with(prefix))
}

impl Clone for StripeCredential {
    fn clone(&self) -> Self {
        StripeCredential {
            secret_key: copy_secret(&self.secret_key),
            mode: self.mode,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StripeWire<'a> {
    secret_key: &'a str,
}

impl CredentialPayload for StripeCredential {
    const KIND: CredentialType = CredentialType::Stripe;

    fn from_json_bytes(bytes: &[u8]) -> Result<Self, InvalidField> {
        let mut fields = Fields::from_bytes(bytes)?;
        Self::new(fields.required_secret("secretKey")?)
    }

    fn to_json_bytes(&self) -> CredentialJson {
        let secret_key = self.secret_key.expose_secret();
        to_json(&StripeWire { secret_key }, secret_key.len())
    }

    fn public_hint(&self) -> String {
        let key = self.secret_key.expose_secret();
        let label = stripe_key_prefix(key).map_or("", |(prefix, _)| prefix);
        secret_hint(label, key)
    }
}

/// The prefix of HubSpot's private-app access tokens (a public marker of the token's kind).
const HUBSPOT_PRIVATE_APP_PREFIX: &str = "pat-";

/// A HubSpot credential: a private-app access token, `{accessToken}`.
#[derive(Debug)]
pub struct HubSpotCredential {
    /// The private-app token (`pat-…`).
    pub access_token: SecretString,
}

impl HubSpotCredential {
    /// Validates a token's shape (non-empty, no whitespace).
    pub fn new(access_token: SecretString) -> Result<Self, InvalidField> {
        let text = access_token.expose_secret();
        if text.len() < 8 || text.chars().any(char::is_whitespace) {
            return Err(InvalidField::new(
                "accessToken",
                "must be a HubSpot private-app access token",
            ));
        }
        Ok(HubSpotCredential { access_token })
    }
}

impl Clone for HubSpotCredential {
    fn clone(&self) -> Self {
        HubSpotCredential {
            access_token: copy_secret(&self.access_token),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HubSpotWire<'a> {
    access_token: &'a str,
}

impl CredentialPayload for HubSpotCredential {
    const KIND: CredentialType = CredentialType::HubSpot;

    fn from_json_bytes(bytes: &[u8]) -> Result<Self, InvalidField> {
        let mut fields = Fields::from_bytes(bytes)?;
        Self::new(fields.required_secret("accessToken")?)
    }

    fn to_json_bytes(&self) -> CredentialJson {
        let access_token = self.access_token.expose_secret();
        to_json(&HubSpotWire { access_token }, access_token.len())
    }

    fn public_hint(&self) -> String {
        let token = self.access_token.expose_secret();
        let label = if token.starts_with(HUBSPOT_PRIVATE_APP_PREFIX) {
            HUBSPOT_PRIVATE_APP_PREFIX
        } else {
            ""
        };
        secret_hint(label, token)
    }
}

macro_rules! deserialize_via_fields {
    ($($payload:ty),*) => {$(
        /// Deserializes from the contract's camelCase JSON object, validating every field; unknown fields
        /// (such as the request's `displayName`) are ignored, and errors never quote a value.
        impl<'de> Deserialize<'de> for $payload {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let map = Map::<String, Value>::deserialize(deserializer)?;
                <$payload>::from_map(map).map_err(D::Error::custom)
            }
        }
    )*};
}

impl TwilioCredential {
    fn from_map(map: Map<String, Value>) -> Result<Self, InvalidField> {
        Self::from_fields(Fields(map))
    }
}

impl GoogleCalendarCredential {
    fn from_map(map: Map<String, Value>) -> Result<Self, InvalidField> {
        Self::from_fields(Fields(map))
    }
}

impl StripeCredential {
    fn from_map(map: Map<String, Value>) -> Result<Self, InvalidField> {
        Self::new(Fields(map).required_secret("secretKey")?)
    }
}

impl HubSpotCredential {
    fn from_map(map: Map<String, Value>) -> Result<Self, InvalidField> {
        Self::new(Fields(map).required_secret("accessToken")?)
    }
}

deserialize_via_fields!(
    TwilioCredential,
    GoogleCalendarCredential,
    StripeCredential,
    HubSpotCredential
);

/// Any provider's credential, for code that handles them by kind (the store facade, the registry).
#[derive(Debug, Clone)]
pub enum ProviderCredential {
    /// A Twilio credential.
    Twilio(TwilioCredential),
    /// A Google Calendar credential.
    GoogleCalendar(GoogleCalendarCredential),
    /// A Stripe credential.
    Stripe(StripeCredential),
    /// A HubSpot credential.
    HubSpot(HubSpotCredential),
}

impl ProviderCredential {
    /// Parses and validates the JSON payload of a credential of `kind`.
    pub fn from_json_bytes(kind: CredentialType, bytes: &[u8]) -> Result<Self, InvalidField> {
        Ok(match kind {
            CredentialType::Twilio => Self::Twilio(TwilioCredential::from_json_bytes(bytes)?),
            CredentialType::GoogleCalendar => {
                Self::GoogleCalendar(GoogleCalendarCredential::from_json_bytes(bytes)?)
            }
            CredentialType::Stripe => Self::Stripe(StripeCredential::from_json_bytes(bytes)?),
            CredentialType::HubSpot => Self::HubSpot(HubSpotCredential::from_json_bytes(bytes)?),
        })
    }

    /// The provider kind.
    pub fn kind(&self) -> CredentialType {
        match self {
            Self::Twilio(_) => CredentialType::Twilio,
            Self::GoogleCalendar(_) => CredentialType::GoogleCalendar,
            Self::Stripe(_) => CredentialType::Stripe,
            Self::HubSpot(_) => CredentialType::HubSpot,
        }
    }

    /// The payload as JSON bytes in a zeroize-on-drop buffer.
    pub fn to_json_bytes(&self) -> CredentialJson {
        match self {
            Self::Twilio(credential) => credential.to_json_bytes(),
            Self::GoogleCalendar(credential) => credential.to_json_bytes(),
            Self::Stripe(credential) => credential.to_json_bytes(),
            Self::HubSpot(credential) => credential.to_json_bytes(),
        }
    }

    /// The non-secret summary for listings.
    pub fn public_hint(&self) -> String {
        match self {
            Self::Twilio(credential) => credential.public_hint(),
            Self::GoogleCalendar(credential) => credential.public_hint(),
            Self::Stripe(credential) => credential.public_hint(),
            Self::HubSpot(credential) => credential.public_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const AUTH_TOKEN: &str = "f00dfacef00dfacef00dfacef00dface";

    fn twilio_json(phone: &str) -> Vec<u8> {
        serde_json::json!({"accountSid": SID, "authToken": AUTH_TOKEN, "phoneNumber": phone})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn twilio_payload_round_trips_and_hides_the_token() {
        let credential =
            TwilioCredential::from_json_bytes(&twilio_json("+14155550123")).expect("valid");
        assert_eq!(credential.account_sid.as_str(), SID);
        assert_eq!(credential.phone_number.as_str(), "+14155550123");
        assert_eq!(credential.public_hint(), "AC…cdef / +1415…0123");
        let debug = format!("{credential:?}");
        assert!(!debug.contains(AUTH_TOKEN), "{debug}");
        let bytes = credential.to_json_bytes();
        assert!(!format!("{bytes:?}").contains(AUTH_TOKEN));
        let again = TwilioCredential::from_json_bytes(bytes.as_bytes()).expect("round trip");
        assert_eq!(again.auth_token.expose_secret(), AUTH_TOKEN);
        let value: Value = serde_json::from_slice(bytes.as_bytes()).expect("json");
        assert_eq!(value["accountSid"], SID);
        assert_eq!(value["phoneNumber"], "+14155550123");
    }

    #[test]
    fn twilio_payload_errors_name_the_field_and_never_the_value() {
        let bad_sid = serde_json::json!({"accountSid": "AC123", "authToken": AUTH_TOKEN, "phoneNumber": "+14155550123"});
        let error = TwilioCredential::from_json_bytes(bad_sid.to_string().as_bytes())
            .expect_err("short sid");
        assert_eq!(error.field, "accountSid");

        let error =
            TwilioCredential::from_json_bytes(&twilio_json("4155550123")).expect_err("not E.164");
        assert_eq!(error.field, "phoneNumber");

        let missing = serde_json::json!({"accountSid": SID, "phoneNumber": "+14155550123"});
        let error = TwilioCredential::from_json_bytes(missing.to_string().as_bytes())
            .expect_err("no token");
        assert_eq!(error.to_string(), "authToken: is required");

        let wrong_type = serde_json::json!({"accountSid": SID, "authToken": 12345678, "phoneNumber": "+14155550123"});
        let error = TwilioCredential::from_json_bytes(wrong_type.to_string().as_bytes())
            .expect_err("number token");
        assert_eq!(error.to_string(), "authToken: must be a string");

        let error =
            TwilioCredential::from_json_bytes(b"{\"authToken\": \"abc").expect_err("truncated");
        assert_eq!(error.field, "payload");
        assert!(!error.to_string().contains("abc"));
    }

    #[test]
    fn serde_deserialize_ignores_the_display_name_and_validates() {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Request {
            #[serde(flatten)]
            credential: TwilioCredential,
            display_name: String,
        }
        let body = serde_json::json!({"accountSid": SID, "authToken": AUTH_TOKEN, "phoneNumber": "+14155550123", "displayName": "Main line"});
        let request: Request = serde_json::from_value(body).expect("valid request");
        assert_eq!(request.display_name, "Main line");
        assert_eq!(request.credential.account_sid.as_str(), SID);

        let bad = serde_json::json!({"accountSid": SID, "authToken": AUTH_TOKEN, "phoneNumber": "+1", "displayName": "x"});
        let error = serde_json::from_value::<Request>(bad)
            .err()
            .expect("invalid phone");
        assert!(error.to_string().starts_with("phoneNumber:"), "{error}");
    }

    #[cfg(feature = "numbering-plan")]
    #[test]
    fn a_dialable_number_has_the_shape_and_exists_in_its_plan() {
        assert!(E164Phone::parse_dialable("to", "+14155550123").is_ok());
        assert!(E164Phone::parse_dialable("to", "+447911123456").is_ok());
        for bad in ["+19999999999", "+1", "14155550123", "+0123456789"] {
            let error = E164Phone::parse_dialable("to", bad).expect_err(bad);
            assert_eq!(error.field, "to");
        }
    }

    #[test]
    fn e164_requires_plus_and_digits_in_shape() {
        assert!(E164Phone::parse("to", "+14155550123").is_ok());
        assert!(E164Phone::parse("to", "+447911123456").is_ok());
        for bad in [
            "14155550123",
            "+1 415 555 0123",
            "+0123456789",
            "+1",
            "+1415555012345678",
            "",
            "+۱۲۳۴۵۶۷۸",
        ] {
            let error = E164Phone::parse("to", bad).expect_err(bad);
            assert_eq!(error.field, "to");
        }
    }

    #[test]
    fn google_payload_defaults_to_primary_and_keeps_optional_fields() {
        let json = serde_json::json!({
            "clientId": "1234-abcdef.apps.googleusercontent.com",
            "clientSecret": "GOCSPX-topsecret",
            "refreshToken": "1//refresh-secret",
            "calendarId": ""
        });
        let credential =
            GoogleCalendarCredential::from_json_bytes(json.to_string().as_bytes()).expect("valid");
        assert_eq!(credential.calendar_id(), PRIMARY_CALENDAR);
        assert_eq!(
            credential.public_hint(),
            "client …abcdef / calendar primary"
        );
        let debug = format!("{credential:?}");
        assert!(!debug.contains("topsecret") && !debug.contains("refresh-secret"));

        let rotated = credential.with_refresh_token(SecretString::from("1//rotated"));
        let stored = rotated.to_json_bytes();
        let value: Value = serde_json::from_slice(stored.as_bytes()).expect("json");
        assert_eq!(value["refreshToken"], "1//rotated");
        assert_eq!(value["clientSecret"], "GOCSPX-topsecret");
        assert!(value.get("calendarId").is_none());

        let bad_url = serde_json::json!({"clientId": "id", "clientSecret": "s", "refreshToken": "r", "redirectUrl": "ftp://x"});
        let error = GoogleCalendarCredential::from_json_bytes(bad_url.to_string().as_bytes())
            .expect_err("ftp");
        assert_eq!(error.field, "redirectUrl");
    }

    #[test]
    fn granted_scopes_say_whether_events_may_be_written_and_round_trip() {
        let base = GoogleCalendarCredential::new(
            "1234-abcdef.apps.googleusercontent.com",
            SecretString::from("GOCSPX-secret"),
            SecretString::from("1//refresh"),
            None,
            None,
        )
        .expect("valid");
        assert_eq!(base.can_write_events(), None, "unknown scopes");
        let read_only = base.clone().with_granted_scope(Some(
            "https://www.googleapis.com/auth/calendar.readonly".into(),
        ));
        assert_eq!(read_only.can_write_events(), Some(false));
        assert_eq!(
            read_only.public_hint(),
            "client …abcdef / calendar primary / read-only"
        );
        let booking = base.with_granted_scope(Some(
            "https://www.googleapis.com/auth/calendar.freebusy https://www.googleapis.com/auth/calendar.events"
                .into(),
        ));
        assert_eq!(booking.can_write_events(), Some(true));
        assert_eq!(booking.public_hint(), "client …abcdef / calendar primary");
        let stored =
            GoogleCalendarCredential::from_json_bytes(read_only.to_json_bytes().as_bytes())
                .expect("round trip");
        assert_eq!(stored.can_write_events(), Some(false));
    }

    #[test]
    fn stripe_mode_comes_from_the_key_prefix() {
        let test = StripeCredential::new(SecretString::from("sk_test_51Habcdefghijkl1234"))
            .expect("valid");
        assert_eq!(test.mode(), StripeMode::Test);
        assert_eq!(test.public_hint(), "sk_test_…1234");
        let live = StripeCredential::new(SecretString::from("rk_live_51Habcdefghijkl9876"))
            .expect("valid");
        assert_eq!(live.mode(), StripeMode::Live);
        let error = StripeCredential::new(SecretString::from("pk_test_51Habcdefghijkl"))
            .expect_err("publishable");
        assert_eq!(error.field, "secretKey");
        assert!(!error.to_string().contains("51Habcdefghijkl"));
    }

    #[test]
    fn hubspot_hint_keeps_only_the_kind_and_last_chars() {
        let credential = HubSpotCredential::new(SecretString::from(
            "pat-na1-11111111-2222-3333-4444-555555555555",
        ))
        .expect("valid");
        assert_eq!(credential.public_hint(), "pat-…5555");
        let one_dash =
            HubSpotCredential::new(SecretString::from("pat-XXXXYYYYZZZZ")).expect("valid");
        assert_eq!(
            one_dash.public_hint(),
            "pat-…",
            "a short token shows none of its characters"
        );
        let parsed = ProviderCredential::from_json_bytes(
            CredentialType::HubSpot,
            credential.to_json_bytes().as_bytes(),
        )
        .expect("round trip");
        assert_eq!(parsed.kind(), CredentialType::HubSpot);
        assert!(HubSpotCredential::new(SecretString::from("short")).is_err());
    }

    /// The labels a hint may show before `…`: fixed public markers of a secret's kind, never cut from it.
    const PUBLIC_LABELS: [&str; 6] = ["", "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pat-"];

    /// Checks the hint of `secret`: a public label, `…`, and at most the last four characters of the secret
    /// (none for a secret under 16 characters).
    fn check_secret_hint(
        hint: &str,
        secret: &str,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let (label, tail) = hint.split_once('…').ok_or_else(|| {
            proptest::test_runner::TestCaseError::fail(format!("no ellipsis in {hint}"))
        })?;
        proptest::prop_assert!(PUBLIC_LABELS.contains(&label), "label {label:?}");
        proptest::prop_assert!(tail.chars().count() <= HINT_TAIL_CHARS, "{hint}");
        proptest::prop_assert!(secret.ends_with(tail), "{hint}");
        let hidden = secret.strip_prefix(label).unwrap_or(secret);
        if hidden.chars().count() < HINT_TAIL_MIN_SECRET_CHARS {
            proptest::prop_assert!(tail.is_empty(), "a short secret shows nothing: {hint}");
        }
        Ok(())
    }

    proptest::proptest! {
        /// Secrets are drawn from letters (G–Z) that no non-secret part of a hint uses (SIDs and client ids are
        /// hex or lowercase, phone numbers digits), so any character of theirs in a hint would be a leak.
        #[test]
        fn hints_never_show_more_than_the_last_four_characters_of_a_secret(
            auth_token in "[G-Z]{1,60}",
            sid_hex in "[0-9a-f]{32}",
            client_project in "[0-9a-z]{1,20}",
            client_secret in "[G-Z]{1,60}",
            refresh_token in "[G-Z]{1,60}",
            stripe_prefix in 0usize..4,
            stripe_rest in "[A-Za-z0-9]{9,60}",
            hubspot_token in "(pat-)?[A-Za-z0-9-]{4,60}",
        ) {
            let twilio = TwilioCredential {
                account_sid: TwilioAccountSid::parse("accountSid", &format!("AC{sid_hex}"))
                    .expect("valid SID"),
                auth_token: SecretString::from(auth_token.clone()),
                phone_number: E164Phone::parse("phoneNumber", "+14155550123").expect("valid"),
            };
            let hint = twilio.public_hint();
            proptest::prop_assert!(!hint.chars().any(|c| auth_token.contains(c)), "{hint}");

            let google = GoogleCalendarCredential::new(
                &format!("{client_project}.apps.googleusercontent.com"),
                SecretString::from(client_secret.clone()),
                SecretString::from(refresh_token.clone()),
                None,
                None,
            )
            .expect("valid");
            let hint = google.public_hint();
            proptest::prop_assert!(
                !hint.chars().any(|c| client_secret.contains(c) || refresh_token.contains(c)),
                "{hint}"
            );

            let stripe_key = format!("{}{stripe_rest}", STRIPE_KEY_PREFIXES[stripe_prefix].0);
            let stripe = StripeCredential::new(SecretString::from(stripe_key.clone())).expect("valid");
            check_secret_hint(&stripe.public_hint(), &stripe_key)?;

            if let Ok(hubspot) = HubSpotCredential::new(SecretString::from(hubspot_token.clone())) {
                check_secret_hint(&hubspot.public_hint(), &hubspot_token)?;
            }
        }
    }
}
