//! Booking appointments on an organization's calendar: the [`CalendarBooking`] trait, its request and answer
//! types, and the event id a booking is created under.
//!
//! A booking's event id is chosen by byoc, not by Google: [`EventId::for_booking`] derives it from the
//! organization and the request's idempotency key, so a retried request names the same event and Google
//! refuses to create it twice (409 `duplicate`), whatever happened to the first attempt's answer.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use chrono_tz::Tz;

use byoc_credential_types::{E164Phone, GoogleCalendarCredential, InvalidField};

use crate::error::ProviderError;

/// Shortest appointment, in minutes.
pub const MIN_BOOKING_MINUTES: u32 = 5;
/// Longest appointment, in minutes.
pub const MAX_BOOKING_MINUTES: u32 = 480;
/// Longest summary and attendee name, in characters.
pub const MAX_BOOKING_TEXT_CHARS: usize = 200;

/// A validated appointment to book: an interval (absolute instants, so a booking across a daylight-saving
/// change lasts exactly its duration), what the event says, and optionally the time zone to show it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRequest {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    time_zone: Option<Tz>,
    summary: String,
    attendee_name: String,
    attendee_phone: Option<E164Phone>,
    attendee_email: Option<String>,
}

/// The parts of a booking request as they came in (already shaped: the start has an offset, the phone is
/// E.164).
#[derive(Debug, Clone)]
pub struct BookingParts {
    /// The start, with the offset the caller meant.
    pub start: DateTime<FixedOffset>,
    /// The length in minutes.
    pub duration_minutes: u32,
    /// The event's title.
    pub summary: String,
    /// Who the appointment is for.
    pub attendee_name: String,
    /// Their phone, if given.
    pub attendee_phone: Option<E164Phone>,
    /// Their e-mail, if given.
    pub attendee_email: Option<String>,
    /// An IANA time zone name, if given.
    pub time_zone: Option<String>,
}

impl BookingRequest {
    /// Validates `parts`; the error names the request field (`durationMinutes`, `summary`, `attendeeName`,
    /// `attendeeEmail`, `timeZone`) and never quotes its value.
    pub fn new(parts: BookingParts) -> Result<Self, InvalidField> {
        if !(MIN_BOOKING_MINUTES..=MAX_BOOKING_MINUTES).contains(&parts.duration_minutes) {
            return Err(InvalidField::new(
                "durationMinutes",
                format!("must be from {MIN_BOOKING_MINUTES} to {MAX_BOOKING_MINUTES} minutes"),
            ));
        }
        let summary = booking_text("summary", &parts.summary)?;
        let attendee_name = booking_text("attendeeName", &parts.attendee_name)?;
        let attendee_email = parts
            .attendee_email
            .map(|email| email_address(email.trim()))
            .transpose()?;
        let time_zone = parts
            .time_zone
            .map(|name| {
                Tz::from_str(name.trim()).map_err(|_| {
                    InvalidField::new(
                        "timeZone",
                        "must be an IANA time zone such as America/New_York",
                    )
                })
            })
            .transpose()?;
        let start = parts.start.with_timezone(&Utc);
        let end = start + TimeDelta::minutes(i64::from(parts.duration_minutes));
        Ok(BookingRequest {
            start,
            end,
            time_zone,
            summary,
            attendee_name,
            attendee_phone: parts.attendee_phone,
            attendee_email,
        })
    }

    /// When the appointment starts.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// When it ends (start plus the duration, as elapsed time).
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// The time zone asked for, if any (otherwise the calendar's).
    pub fn time_zone(&self) -> Option<Tz> {
        self.time_zone
    }

    /// The event's title.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The event's description: who the appointment is for and how to reach them.
    pub fn description(&self) -> String {
        let mut text = format!("Appointment for {}", self.attendee_name);
        if let Some(phone) = &self.attendee_phone {
            text.push_str(&format!("\nPhone: {phone}"));
        }
        if let Some(email) = &self.attendee_email {
            text.push_str(&format!("\nE-mail: {email}"));
        }
        text
    }

    /// Who the appointment is for.
    pub fn attendee_name(&self) -> &str {
        &self.attendee_name
    }

    /// Their e-mail, if given (added to the event as an attendee).
    pub fn attendee_email(&self) -> Option<&str> {
        self.attendee_email.as_deref()
    }
}

/// A summary or name: 1 to [`MAX_BOOKING_TEXT_CHARS`] characters after trimming, no control character.
fn booking_text(field: &'static str, text: &str) -> Result<String, InvalidField> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_BOOKING_TEXT_CHARS {
        return Err(InvalidField::new(
            field,
            format!("must be 1 to {MAX_BOOKING_TEXT_CHARS} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text.to_owned())
}

/// An e-mail address's shape: one `@` between a non-empty local part and a dotted domain, no whitespace or
/// control character, at most 254 characters.
fn email_address(text: &str) -> Result<String, InvalidField> {
    let invalid = || InvalidField::new("attendeeEmail", "must be an e-mail address");
    let (local, domain) = text.split_once('@').ok_or_else(invalid)?;
    let shaped = text.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ','));
    if shaped {
        Ok(text.to_owned())
    } else {
        Err(invalid())
    }
}

/// The id of a booking's calendar event: base32hex (`0-9a-v`), which Google accepts for a client-chosen
/// event id (5 to 1024 characters).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

/// Google's alphabet for event ids (base32hex, lowercase).
const BASE32HEX: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

impl EventId {
    /// The event id of the booking an organization (`organization`, its id's bytes) asks for with
    /// `idempotency_key`: SHA-256 of both, base32hex-encoded (52 characters). The same organization and key
    /// always give the same id; another organization's same key gives another.
    pub fn for_booking(organization: &[u8], idempotency_key: &str) -> EventId {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"byoc-booking\0");
        context.update(organization);
        context.update(&[0]);
        context.update(idempotency_key.as_bytes());
        EventId(base32hex(context.finish().as_ref()))
    }

    /// Parses an event id from a path: 5 to 1024 characters of `0-9a-v`; anything else is no booking's id.
    pub fn parse(text: &str) -> Option<EventId> {
        let shaped = (5..=1024).contains(&text.len())
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'v').contains(&byte));
        shaped.then(|| EventId(text.to_owned()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

/// RFC 4648 base32hex without padding, lowercase.
fn base32hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            text.push(char::from(BASE32HEX[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        text.push(char::from(
            BASE32HEX[((buffer << (5 - bits)) & 31) as usize],
        ));
    }
    text
}

/// A booked appointment, as the calendar holds it.
#[derive(Debug, Clone)]
pub struct BookedEvent {
    /// The event id (the one derived from the idempotency key).
    pub event_id: String,
    /// A link to the event in Google Calendar, when Google gave one.
    pub html_link: Option<String>,
    /// Start, with the offset in force in the booking's time zone.
    pub start: DateTime<FixedOffset>,
    /// End, with the offset in force in the booking's time zone.
    pub end: DateTime<FixedOffset>,
    /// When Google rotated the refresh token while booking, the credential with the new token, for the caller
    /// to store. `None` means keep the stored credential.
    pub updated_credential: Option<GoogleCalendarCredential>,
}

/// Why a booking or a cancellation was not done.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// Something on the calendar overlaps the interval (free/busy), and it is not this request's own event.
    #[error("the slot is taken: the calendar is busy during part of it")]
    SlotTaken,
    /// The idempotency key already booked another interval, or its booking was cancelled.
    #[error("this Idempotency-Key was used for {0}; use a new key for a new booking")]
    KeyReused(&'static str),
    /// The credential's scopes allow reading free/busy but not writing events.
    #[error("the Google Calendar connection may only read availability; reconnect Google Calendar and allow it to manage events to book appointments")]
    NeedsEventWrite,
    /// The calendar has no such event.
    #[error("the calendar has no such booking")]
    NotFound,
    /// Google refused, rate limited, or could not be asked.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// Books and cancels appointments on a calendar.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CalendarBooking: Send + Sync {
    /// Creates the event `event_id` for `request` when free/busy shows the interval free; answers the event
    /// already created under `event_id` for the same interval (a retry).
    async fn book(
        &self,
        credential: &GoogleCalendarCredential,
        request: &BookingRequest,
        event_id: &EventId,
    ) -> Result<BookedEvent, BookingError>;

    /// Deletes the booking `event_id` (one already cancelled counts as done; an event byoc did not book is
    /// [`BookingError::NotFound`]).
    async fn cancel(
        &self,
        credential: &GoogleCalendarCredential,
        event_id: &EventId,
    ) -> Result<(), BookingError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> BookingParts {
        BookingParts {
            start: DateTime::parse_from_rfc3339("2026-11-01T01:30:00-04:00").expect("valid"),
            duration_minutes: 60,
            summary: "Check-up".into(),
            attendee_name: "Ada Lovelace".into(),
            attendee_phone: None,
            attendee_email: Some("ada@example.com".into()),
            time_zone: Some("America/New_York".into()),
        }
    }

    #[test]
    fn the_interval_is_elapsed_time_across_a_clock_change() {
        let request = BookingRequest::new(parts()).expect("valid");
        assert_eq!(request.start().to_rfc3339(), "2026-11-01T05:30:00+00:00");
        assert_eq!(request.end().to_rfc3339(), "2026-11-01T06:30:00+00:00");
    }

    #[test]
    fn fields_are_checked_and_named() {
        for (change, field) in [
            (
                (|parts: &mut BookingParts| parts.duration_minutes = 4) as fn(&mut BookingParts),
                "durationMinutes",
            ),
            (|parts| parts.duration_minutes = 481, "durationMinutes"),
            (|parts| parts.summary = "  ".into(), "summary"),
            (
                |parts| parts.attendee_name = "a\u{7}b".into(),
                "attendeeName",
            ),
            (
                |parts| parts.attendee_email = Some("not-an-address".into()),
                "attendeeEmail",
            ),
            (
                |parts| parts.attendee_email = Some("a@b".into()),
                "attendeeEmail",
            ),
            (
                |parts| parts.time_zone = Some("Mars/Olympus".into()),
                "timeZone",
            ),
        ] {
            let mut bad = parts();
            change(&mut bad);
            assert_eq!(BookingRequest::new(bad).expect_err(field).field, field);
        }
    }

    #[test]
    fn event_ids_are_base32hex_and_depend_on_organization_and_key() {
        let id = EventId::for_booking(b"org-a", "key-1");
        assert_eq!(id.as_str().len(), 52);
        assert!(EventId::parse(id.as_str()).is_some());
        assert_eq!(id, EventId::for_booking(b"org-a", "key-1"));
        assert_ne!(id, EventId::for_booking(b"org-b", "key-1"));
        assert_ne!(id, EventId::for_booking(b"org-a", "key-2"));
        assert_eq!(base32hex(b"f"), "co");
        assert_eq!(base32hex(b"foobar"), "cpnmuoj1e8");
        for bad in ["abcd", "ABCDEF", "abcdw", "abc-def", ""] {
            assert!(EventId::parse(bad).is_none(), "{bad}");
        }
    }
}
