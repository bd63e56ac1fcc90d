//! Booking on Google Calendar: free/busy for exactly the interval, then `events.insert` under the id byoc
//! chose ([`EventId`]), marked as a booking (a private extended property); `events.delete` to cancel, of
//! marked events only, so a cancel never deletes an event someone added in Google Calendar.
//!
//! **Retries.** The event id is derived from the organization and the request's idempotency key, so a
//! retried booking (the caller's, or this client's own retry after a 429/503 or a lost answer) names the same
//! event: Google answers 409 `duplicate` to a second insert, and the event already there is read back and
//! answered when it is the same interval. A retry whose first attempt did create the event sees that event as
//! busy in free/busy; it too is read back before the slot is called taken.
//!
//! **What stays racy.** Free/busy and the insert are two calls, and Google has no conditional insert: two
//! different bookings of overlapping intervals (two idempotency keys) that both read free/busy before either
//! inserts can both be created. The window is the time between the free/busy answer and the insert (one
//! round trip to Google, typically well under a second); `byoc-api` narrows it further by booking one
//! interval at a time per organization and replica (see its booking route), so the double booking needs two
//! replicas, or an event added in Google Calendar itself, inside that window.

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::{errors, CalendarAnswer, GoogleCalendarClient, PROVIDER};
use crate::booking::{BookedEvent, BookingError, BookingRequest, CalendarBooking, EventId};
use crate::error::ProviderError;
use crate::http;
use byoc_credential_types::GoogleCalendarCredential;

/// The private extended property that marks an event as a booking byoc made; only those are cancelled.
const BOOKING_MARK: &str = "byocBooking";

/// The Calendar API's reasons for a token whose scopes do not allow the call.
const INSUFFICIENT_SCOPE_REASONS: [&str; 2] =
    ["insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"];

/// The part of an event resource byoc reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventResource {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    html_link: Option<String>,
    start: EventTime,
    end: EventTime,
    #[serde(default)]
    extended_properties: Option<ExtendedProperties>,
}

#[derive(Deserialize, Default)]
struct ExtendedProperties {
    #[serde(default)]
    private: std::collections::HashMap<String, String>,
}

impl EventResource {
    /// Whether byoc booked this event (it carries the private booking mark).
    fn is_booking(&self) -> bool {
        self.extended_properties
            .as_ref()
            .is_some_and(|properties| properties.private.contains_key(BOOKING_MARK))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTime {
    #[serde(default)]
    date_time: Option<DateTime<FixedOffset>>,
}

/// Whether Google refused because the token's scopes do not allow writing events.
fn lacks_event_scope(answer: &CalendarAnswer) -> bool {
    answer.status == StatusCode::FORBIDDEN
        && errors::reasons(&answer.body)
            .iter()
            .any(|reason| INSUFFICIENT_SCOPE_REASONS.contains(&reason.as_str()))
}

impl GoogleCalendarClient {
    /// The event resource `events.insert` is sent for `request`: the chosen id, summary, description, the
    /// interval in `time_zone`, the attendee's e-mail when given, and a private mark that says byoc booked it.
    pub fn event_resource(
        request: &BookingRequest,
        event_id: &EventId,
        time_zone: Tz,
    ) -> serde_json::Value {
        let zone = time_zone.name();
        let mut event = serde_json::json!({
            "id": event_id.as_str(),
            "summary": request.summary(),
            "description": request.description(),
            "start": {"dateTime": request.start().with_timezone(&time_zone).to_rfc3339(), "timeZone": zone},
            "end": {"dateTime": request.end().with_timezone(&time_zone).to_rfc3339(), "timeZone": zone},
            "extendedProperties": {"private": {BOOKING_MARK: "1"}},
        });
        if let Some(email) = request.attendee_email() {
            event["attendees"] =
                serde_json::json!([{"email": email, "displayName": request.attendee_name()}]);
        }
        event
    }

    /// The address of the event `event_id` on the credential's calendar.
    fn event_url(&self, credential: &GoogleCalendarCredential, event_id: &EventId) -> Url {
        http::endpoint(
            &self.api_base,
            &[
                "calendars",
                credential.calendar_id(),
                "events",
                event_id.as_str(),
            ],
        )
    }

    /// The event `event_id` of the credential's calendar, when it has one (cancelled ones included).
    async fn existing_event(
        &self,
        credential: &GoogleCalendarCredential,
        event_id: &EventId,
    ) -> Result<Option<EventResource>, BookingError> {
        let url = self.event_url(credential, event_id);
        let (answer, _) = self
            .calendar_send(credential, || self.http.get(url.clone()))
            .await?;
        match answer.status {
            status if status.is_success() => Ok(Some(http::parse_json(PROVIDER, &answer.body)?)),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
            _ => Err(answer.into_error().into()),
        }
    }

    /// The answer for a retried booking: the event created under its id, when it is the same interval and
    /// still booked.
    fn same_booking(
        event: EventResource,
        request: &BookingRequest,
        time_zone: Tz,
    ) -> Result<BookedEvent, BookingError> {
        if event.status.as_deref() == Some("cancelled") {
            return Err(BookingError::KeyReused("a booking that was cancelled"));
        }
        let start = event.start.date_time.map(|at| at.with_timezone(&Utc));
        let end = event.end.date_time.map(|at| at.with_timezone(&Utc));
        if start != Some(request.start()) || end != Some(request.end()) {
            return Err(BookingError::KeyReused("another interval"));
        }
        Ok(booked(event, request, time_zone, None))
    }
}

/// The booked event as answered: the interval shown with the offsets of `time_zone`.
fn booked(
    event: EventResource,
    request: &BookingRequest,
    time_zone: Tz,
    updated_credential: Option<GoogleCalendarCredential>,
) -> BookedEvent {
    BookedEvent {
        event_id: event.id,
        html_link: event.html_link,
        start: request.start().with_timezone(&time_zone).fixed_offset(),
        end: request.end().with_timezone(&time_zone).fixed_offset(),
        updated_credential,
    }
}

#[async_trait]
impl CalendarBooking for GoogleCalendarClient {
    async fn book(
        &self,
        credential: &GoogleCalendarCredential,
        request: &BookingRequest,
        event_id: &EventId,
    ) -> Result<BookedEvent, BookingError> {
        if credential.can_write_events() == Some(false) {
            return Err(BookingError::NeedsEventWrite);
        }
        let time_zone = match request.time_zone() {
            Some(zone) => zone,
            None => self.calendar_time_zone(credential).await?,
        };
        let (busy, token) = self
            .busy_blocks(credential, request.start(), request.end(), time_zone)
            .await?;
        let overlaps = busy
            .iter()
            .any(|block| block.start < request.end() && block.end > request.start());
        if overlaps {
            return match self.existing_event(credential, event_id).await? {
                Some(event) => Self::same_booking(event, request, time_zone),
                None => Err(BookingError::SlotTaken),
            };
        }
        let event = Self::event_resource(request, event_id, time_zone);
        let url = http::endpoint(
            &self.api_base,
            &["calendars", credential.calendar_id(), "events"],
        );
        let (answer, _) = self
            .calendar_send(credential, || {
                self.http
                    .post(url.clone())
                    .query(&[("sendUpdates", "none")])
                    .json(&event)
            })
            .await?;
        if answer.status.is_success() {
            let created: EventResource = http::parse_json(PROVIDER, &answer.body)?;
            return Ok(booked(
                created,
                request,
                time_zone,
                token.updated_credential(credential),
            ));
        }
        if answer.status == StatusCode::CONFLICT {
            return match self.existing_event(credential, event_id).await? {
                Some(event) => Self::same_booking(event, request, time_zone),
                None => Err(ProviderError::UnexpectedResponse {
                    provider: PROVIDER,
                    reason: "Google reported the event id taken but has no such event".into(),
                }
                .into()),
            };
        }
        if lacks_event_scope(&answer) {
            return Err(BookingError::NeedsEventWrite);
        }
        Err(answer.into_error().into())
    }

    async fn cancel(
        &self,
        credential: &GoogleCalendarCredential,
        event_id: &EventId,
    ) -> Result<(), BookingError> {
        if credential.can_write_events() == Some(false) {
            return Err(BookingError::NeedsEventWrite);
        }
        match self.existing_event(credential, event_id).await? {
            Some(event) if event.status.as_deref() == Some("cancelled") => return Ok(()),
            Some(event) if event.is_booking() => {}
            _ => return Err(BookingError::NotFound),
        }
        let url = self.event_url(credential, event_id);
        let (answer, _) = self
            .calendar_send(credential, || {
                self.http
                    .delete(url.clone())
                    .query(&[("sendUpdates", "none")])
            })
            .await?;
        match answer.status {
            status if status.is_success() => Ok(()),
            StatusCode::GONE => Ok(()),
            StatusCode::NOT_FOUND => Err(BookingError::NotFound),
            _ if lacks_event_scope(&answer) => Err(BookingError::NeedsEventWrite),
            _ => Err(answer.into_error().into()),
        }
    }
}
