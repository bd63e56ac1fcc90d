//! Booking and cancelling appointments on the organization's Google Calendar: read its verified credential
//! (audited as `calendar:booking`), let the provider client check free/busy and insert (or delete) the event,
//! then record the call and handle a refused credential or a rotated refresh token as availability does.
//!
//! **Idempotency.** The event id is derived from the organization and the caller's `Idempotency-Key`
//! ([`EventId::for_booking`]), so a retried request books one event and answers the same body; no table is
//! needed.
//!
//! **Concurrency.** Free/busy and insert are two calls to Google, which has no conditional insert. On one
//! replica, bookings of one organization run one at a time ([`BookingLocks`]), so of two concurrent requests
//! for the same free slot the second sees the first's event in free/busy and answers 409 `slot_taken`. What
//! stays racy: two replicas (or an event added in Google Calendar itself) booking overlapping intervals inside
//! the window between one request's free/busy answer and its insert, one round trip to Google. Both events are
//! then created; the window is at most the Google client's request timeout and typically well under a second.

use byoc_credential_store::{CredentialService, CredentialType, OrgId, Tenant};
use byoc_providers::{BookedEvent, BookingError, BookingRequest, CalendarBooking, EventId};
use tokio::sync::{Mutex, MutexGuard};

use crate::plumbing::error::ApiError;
use crate::usecases::calendar_use::{after_refusal, google_credential, store_rotated};
use crate::usecases::outbound::{purpose, Outbound};

/// How many locks organizations' bookings are spread over (organizations sharing one wait for each other,
/// never for long: one booking's calls to Google).
const BOOKING_LOCK_STRIPES: usize = 64;

/// Per-organization booking locks of this replica (striped by organization id).
pub struct BookingLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for BookingLocks {
    fn default() -> Self {
        BookingLocks {
            stripes: (0..BOOKING_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl BookingLocks {
    /// Waits until no other booking of `org_id`'s stripe runs on this replica.
    async fn lock(&self, org_id: OrgId) -> MutexGuard<'_, ()> {
        let bytes = org_id.as_uuid().as_u128();
        let stripe = (bytes % BOOKING_LOCK_STRIPES as u128) as usize;
        self.stripes[stripe].lock().await
    }
}

/// The audited purpose of every booking read.
const BOOKING_PURPOSE: &str = "calendar:booking";

/// Books `request` on the organization's calendar under the event id of `idempotency_key`.
pub async fn book(
    service: &CredentialService,
    outbound: &Outbound,
    tenant: &Tenant,
    request: &BookingRequest,
    idempotency_key: &str,
) -> Result<BookedEvent, ApiError> {
    let use_purpose = purpose(BOOKING_PURPOSE)?;
    let credential = google_credential(service, outbound, tenant, &use_purpose).await?;
    let event_id = EventId::for_booking(tenant.org_id.as_uuid().as_bytes(), idempotency_key);
    let result = {
        let _one_at_a_time = outbound.booking_locks.lock(tenant.org_id).await;
        outbound
            .providers
            .google
            .book(&credential.payload, request, &event_id)
            .await
    };
    record(outbound, tenant, &result).await;
    match result {
        Ok(event) => {
            store_rotated(
                service,
                tenant,
                credential.credential_id,
                event.updated_credential.as_ref(),
                &use_purpose,
            )
            .await;
            Ok(event)
        }
        Err(BookingError::Provider(error)) => {
            after_refusal(service, outbound, tenant, &credential, &error).await;
            Err(BookingError::Provider(error).into())
        }
        Err(other) => Err(other.into()),
    }
}

/// Cancels the booking `event_id` on the organization's calendar.
pub async fn cancel(
    service: &CredentialService,
    outbound: &Outbound,
    tenant: &Tenant,
    event_id: &EventId,
) -> Result<(), ApiError> {
    let use_purpose = purpose(BOOKING_PURPOSE)?;
    let credential = google_credential(service, outbound, tenant, &use_purpose).await?;
    let result = outbound
        .providers
        .google
        .cancel(&credential.payload, event_id)
        .await;
    record(outbound, tenant, &result).await;
    match result {
        Ok(()) => Ok(()),
        Err(BookingError::Provider(error)) => {
            after_refusal(service, outbound, tenant, &credential, &error).await;
            Err(BookingError::Provider(error).into())
        }
        Err(other) => Err(other.into()),
    }
}

/// Counts the call: Google answered unless the provider failed or refused.
async fn record<T>(outbound: &Outbound, tenant: &Tenant, result: &Result<T, BookingError>) {
    let answered = !matches!(result, Err(BookingError::Provider(_)));
    outbound
        .usage
        .record(tenant, CredentialType::GoogleCalendar, answered)
        .await;
}
