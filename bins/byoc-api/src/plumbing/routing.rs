//! Which methods each known path serves, so that a known path asked with another method answers 405 with an
//! `Allow` header (and a JSON error body) instead of the 404 of a path no route serves.
//!
//! A template's `{parameter}` is an id: it matches what the routes' `{id:[0-9a-fA-F-]+}` matches (hex digits
//! and dashes), so `/api/organization/credentials/twilio` is the Twilio route's path only, and a path whose id
//! segment is not even id-shaped is one no route serves (404). `{eventId}` matches what the booking route's
//! `{event_id:[0-9a-v]+}` matches (base32hex).

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::plumbing::error::ApiError;

/// One segment of a path template: literal text, or a `{name}` that matches one id-shaped segment (a calendar
/// event id for `{eventId}`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
    EventId,
}

/// The served paths (as templates such as `/api/organization/credentials/{id}`) and their methods.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<(Vec<Segment>, Vec<Method>)>,
}

impl RouteTable {
    /// Adds `method` to the methods of the path `template`.
    pub fn add(&mut self, template: &str, method: Method) {
        let segments = segments(template)
            .map(|segment| {
                if segment == "{eventId}" {
                    Segment::EventId
                } else if segment.starts_with('{') && segment.ends_with('}') {
                    Segment::Parameter
                } else {
                    Segment::Literal(segment.to_owned())
                }
            })
            .collect::<Vec<_>>();
        match self.routes.iter_mut().find(|(known, _)| *known == segments) {
            Some((_, methods)) if methods.contains(&method) => {}
            Some((_, methods)) => methods.push(method),
            None => self.routes.push((segments, vec![method])),
        }
    }

    /// The methods served at `path` (empty when no route has that path), sorted by name.
    pub fn methods_at(&self, path: &str) -> Vec<Method> {
        let asked = segments(path).collect::<Vec<_>>();
        let mut methods = self
            .routes
            .iter()
            .filter(|(template, _)| matches(template, &asked))
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect::<Vec<_>>();
        methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        methods.dedup();
        methods
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.trim_start_matches('/').split('/')
}

fn matches(template: &[Segment], asked: &[&str]) -> bool {
    template.len() == asked.len()
        && template
            .iter()
            .zip(asked)
            .all(|(segment, asked)| match segment {
                Segment::Literal(text) => text == asked,
                Segment::Parameter => is_id_shaped(asked),
                Segment::EventId => is_event_id_shaped(asked),
            })
}

/// What the booking route's `{event_id:[0-9a-v]+}` matches.
fn is_event_id_shaped(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'v').contains(&byte))
}

/// What the routes' `{id:[0-9a-fA-F-]+}` matches.
fn is_id_shaped(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit() || byte == b'-')
}

/// The answer for a request no route took: 405 with `Allow` when its path is served with other methods (HEAD
/// is served wherever GET is), else 404.
pub async fn unrouted(
    request: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    let mut allowed = table.methods_at(request.path());
    if allowed.is_empty() {
        return Err(ApiError::no_route());
    }
    if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
        allowed.push(Method::HEAD);
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    }
    Err(ApiError::method_not_allowed(&allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_paths_only() {
        let mut table = RouteTable::default();
        table.add("/api/organization/credentials", Method::GET);
        table.add("/api/organization/credentials/twilio", Method::POST);
        table.add("/api/organization/credentials/{id}", Method::DELETE);
        table.add("/api/organization/credentials/{id}/verify", Method::POST);
        assert_eq!(
            table.methods_at("/api/organization/credentials"),
            [Method::GET]
        );
        assert_eq!(
            table.methods_at("/api/organization/credentials/twilio"),
            [Method::POST],
            "a parameter matches ids only"
        );
        let id = "7e5d9c5d-77cc-4510-9081-c4764fc21a30";
        assert_eq!(
            table.methods_at(&format!("/api/organization/credentials/{id}")),
            [Method::DELETE]
        );
        assert_eq!(
            table.methods_at(&format!("/api/organization/credentials/{id}/verify")),
            [Method::POST]
        );
        assert!(table
            .methods_at("/api/organization/credentials/not-an-id/verify")
            .is_empty());
        assert!(table
            .methods_at("/api/organization/credentials//verify")
            .is_empty());
        assert!(table.methods_at("/api/unknown").is_empty());
        assert!(table
            .methods_at("/api/organization/credentials/a/b/c")
            .is_empty());
    }
}
