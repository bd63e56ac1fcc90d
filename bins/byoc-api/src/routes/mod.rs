//! The HTTP endpoints, registered by [`configure`].

pub mod audit;
pub mod credentials;
pub mod health;

use actix_web::web;

/// Registers every endpoint.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(credentials::list_credentials)
        .service(credentials::add_twilio)
        .service(credentials::add_google_calendar)
        .service(credentials::verify_credential)
        .service(credentials::delete_credential)
        .service(audit::list_audit)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(crate::openapi::openapi_json)
        .configure(crate::settings::configure);
}
