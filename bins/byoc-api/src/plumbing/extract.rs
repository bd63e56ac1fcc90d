//! [`ApiJson`]: the request-body extractor every endpoint uses.
//!
//! It enforces the small body limit (413), requires `application/json` (415), and reports malformed JSON (400),
//! wrong shapes (400, naming the field by its JSON path) without ever quoting a submitted value.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::plumbing::error::{describe_data_error, describe_json_error, ApiError, JSON_MEDIA_TYPE};
use crate::BODY_LIMIT_BYTES;

/// A JSON request body deserialized into `T`, with the contract's error answers.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<ApiJson<T>, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = match request.mime_type() {
            Ok(Some(mime)) => {
                mime.subtype() == "json" || mime.suffix().is_some_and(|suffix| suffix == "json")
            }
            _ => false,
        };
        let declared_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::unsupported_media_type(JSON_MEDIA_TYPE));
            }
            if declared_length.is_some_and(|length| length > BODY_LIMIT_BYTES) {
                return Err(ApiError::payload_too_large(BODY_LIMIT_BYTES));
            }
            let mut body = Vec::with_capacity(declared_length.unwrap_or(0));
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|_| ApiError::malformed("the request body could not be read"))?;
                if body.len() + chunk.len() > BODY_LIMIT_BYTES {
                    return Err(ApiError::payload_too_large(BODY_LIMIT_BYTES));
                }
                body.extend_from_slice(&chunk);
            }
            parse_body(&body).map(ApiJson)
        })
    }
}

/// Deserializes a body, naming the JSON path of a field with the wrong shape.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid_body(describe_data_error(&inner.to_string(), Some(&path)))
            }
            _ => describe_json_error(&inner),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| describe_json_error(&error))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::test::TestRequest;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Probe {
        display_name: String,
    }

    async fn extract(request: TestRequest) -> Result<Probe, ApiError> {
        let (request, mut payload) = request.to_http_parts();
        ApiJson::<Probe>::from_request(&request, &mut payload)
            .await
            .map(|ApiJson(probe)| probe)
    }

    #[actix_web::test]
    async fn accepts_a_well_formed_body() {
        let probe = extract(
            TestRequest::post()
                .insert_header(header::ContentType::json())
                .set_payload(r#"{"displayName": "main"}"#),
        )
        .await
        .expect("a valid body");
        assert_eq!(probe.display_name, "main");
    }

    #[actix_web::test]
    async fn rejects_wrong_type_naming_the_field_only() {
        let error = extract(
            TestRequest::post()
                .insert_header(header::ContentType::json())
                .set_payload(r#"{"displayName": 987654321}"#),
        )
        .await
        .expect_err("a number is not a string");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        let message = error.to_string();
        assert!(message.contains("displayName"), "{message}");
        assert!(!message.contains("987654321"), "{message}");
    }

    #[actix_web::test]
    async fn rejects_oversized_bodies_with_413() {
        let big = format!(r#"{{"displayName": "{}"}}"#, "x".repeat(BODY_LIMIT_BYTES));
        let error = extract(
            TestRequest::post()
                .insert_header(header::ContentType::json())
                .set_payload(big),
        )
        .await
        .expect_err("too large");
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[actix_web::test]
    async fn rejects_other_content_types_and_trailing_garbage() {
        let error = extract(TestRequest::post().set_payload(r#"{"displayName": "a"}"#))
            .await
            .expect_err("no content type");
        assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let error = extract(
            TestRequest::post()
                .insert_header(header::ContentType::json())
                .set_payload(r#"{"displayName": "a"} trailing"#),
        )
        .await
        .expect_err("trailing characters");
        assert_eq!(error.code(), "malformed_request");
    }
}
