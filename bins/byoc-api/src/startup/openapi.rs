//! The OpenAPI 3 document of every endpoint, generated from the handlers and DTOs (utoipa), served at
//! `/openapi.json`.

use actix_web::{get, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::plumbing::error::{ErrorBody, ErrorDetail};

/// The service's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "byoc", description = "Bring your own credentials: per-organization provider credentials, encrypted, verified and audited."),
    paths(
        crate::routes::credentials::list_credentials,
        crate::routes::credentials::add_twilio,
        crate::routes::credentials::add_google_calendar,
        crate::routes::credentials::add_stripe,
        crate::routes::credentials::add_hubspot,
        crate::routes::credentials::verify_credential,
        crate::routes::credentials::delete_credential,
        crate::routes::audit::list_audit,
        crate::routes::audit::verify_audit,
        crate::routes::audit::export_audit,
        crate::routes::audit::signing_key,
        crate::routes::sms::send_test_sms,
        crate::routes::leads::create_lead,
        crate::routes::calendar::availability,
        crate::routes::bookings::book,
        crate::routes::bookings::cancel,
        crate::routes::google_oauth::google_start,
        crate::routes::google_oauth::google_callback,
        crate::routes::twilio_webhook::twilio_status,
        crate::routes::health::healthz,
        crate::routes::health::readyz,
        crate::routes::health::metrics,
        crate::settings::settings_page,
        crate::settings::login_link::create_login_link,
        crate::settings::login_link::open_login_link,
        openapi_json,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        crate::plumbing::dto::CredentialRow,
        crate::plumbing::dto::VerificationStatusDto,
        crate::plumbing::dto::AuditEntryDto,
        crate::plumbing::dto::AuditVerifyResponse,
        crate::plumbing::dto::SigningKeyResponse,
        crate::plumbing::dto::AddTwilioRequest,
        crate::plumbing::dto::AddGoogleCalendarRequest,
        crate::plumbing::dto::AddStripeRequest,
        crate::plumbing::dto::AddHubSpotRequest,
        crate::plumbing::dto::VerifyResponse,
        crate::plumbing::dto::DeleteResponse,
        crate::plumbing::dto::SmsTestRequest,
        crate::plumbing::dto::SmsResult,
        crate::plumbing::dto::LeadRequest,
        crate::plumbing::dto::LeadResponse,
        crate::plumbing::dto::TimeSlot,
        crate::plumbing::dto::AvailabilityResponse,
        crate::plumbing::dto::BookingBody,
        crate::plumbing::dto::BookingResponse,
        crate::routes::twilio_webhook::StatusRecorded,
        crate::settings::login_link::LoginLinkResponse,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "credentials", description = "Credential management"),
        (name = "audit", description = "The organization's audit log, its export, its hash chain check and the digests' signing key"),
        (name = "usage", description = "Using the organization's credentials: test SMS, leads, availability, bookings, Twilio status webhook"),
        (name = "google", description = "Connect Google Calendar (OAuth with PKCE)"),
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "settings", description = "The settings page (HTML) for a clinic's owners, admins and members"),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes: `bearer` (a Supabase-style JWT) and `metrics_token` (`BYOC_METRICS_TOKEN`, which
/// unlocks the per-organization series of `/metrics`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
