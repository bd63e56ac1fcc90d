//! The HTTP endpoints of the JSON API, registered by [`configure`].
//! Handlers parse the request, check the caller's role and call the credential service or a use case
//! ([`crate::usecases`]); they use the HTTP plumbing ([`crate::plumbing`]) and nothing here is used by it.

pub mod audit;
pub mod bookings;
pub mod calendar;
pub mod credentials;
pub mod google_oauth;
pub mod health;
pub mod leads;
pub mod sms;
pub mod twilio_webhook;

use actix_web::web;

/// Registers every endpoint.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(credentials::list_credentials)
        .service(credentials::add_twilio)
        .service(credentials::add_google_calendar)
        .service(credentials::add_stripe)
        .service(credentials::add_hubspot)
        .service(credentials::verify_credential)
        .service(credentials::delete_credential)
        .service(audit::list_audit)
        .service(audit::verify_audit)
        .service(audit::export_audit)
        .service(audit::signing_key)
        .service(sms::send_test_sms)
        .service(leads::create_lead)
        .service(calendar::availability)
        .service(bookings::book)
        .service(bookings::cancel)
        .service(google_oauth::google_start)
        .service(google_oauth::google_callback)
        .service(twilio_webhook::twilio_status)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics);
}
