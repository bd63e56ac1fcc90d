//! Twilio request signatures (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed by the auth token, over
//! the full request URL followed by every POST parameter name and value sorted by name.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};

/// Why a status callback's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The `X-Twilio-Signature` header is absent or empty.
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    /// The header is not base64 of a 20-byte HMAC-SHA1.
    #[error("the X-Twilio-Signature header is malformed")]
    Malformed,
    /// The signature does not match this URL, these parameters and this auth token.
    #[error("the X-Twilio-Signature does not match")]
    Mismatch,
}

fn signed_bytes(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.as_bytes().to_vec();
    for (name, value) in sorted {
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(value.as_bytes());
    }
    data
}

fn key(auth_token: &SecretString) -> hmac::Key {
    hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        auth_token.expose_secret().as_bytes(),
    )
}

/// The signature Twilio sends for a POST to `url` with form `params` (for tests and tools that play Twilio).
pub fn compute_signature(
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
) -> String {
    BASE64.encode(hmac::sign(&key(auth_token), &signed_bytes(url, params)).as_ref())
}

/// Checks `signature` (the `X-Twilio-Signature` header) against the exact public `url` Twilio called
/// (scheme, host, path and query) and the form `params`, in constant time.
pub fn validate_signature(
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .ok_or(SignatureError::Missing)?;
    let tag = BASE64
        .decode(signature)
        .map_err(|_| SignatureError::Malformed)?;
    if tag.len()
        != hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
            .digest_algorithm()
            .output_len()
    {
        return Err(SignatureError::Malformed);
    }
    hmac::verify(&key(auth_token), &signed_bytes(url, params), &tag)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs_example() -> (SecretString, &'static str, Vec<(String, String)>) {
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        (
            SecretString::from("12345"),
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            params,
        )
    }

    #[test]
    fn twilio_security_docs_example_signature_matches() {
        let (token, url, params) = docs_example();
        assert_eq!(
            compute_signature(&token, url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert_eq!(
            validate_signature(&token, url, &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Ok(())
        );
    }

    #[test]
    fn parameter_order_does_not_matter_but_every_byte_does() {
        let (token, url, mut params) = docs_example();
        params.reverse();
        let signature = Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert_eq!(validate_signature(&token, url, &params, signature), Ok(()));

        params[0].1.push('0');
        assert_eq!(
            validate_signature(&token, url, &params, signature),
            Err(SignatureError::Mismatch)
        );
        let (_, _, params) = docs_example();
        assert_eq!(
            validate_signature(
                &token,
                "https://mycompany.com/myapp.php?foo=1&bar=3",
                &params,
                signature
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate_signature(&SecretString::from("54321"), url, &params, signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        let (token, url, params) = docs_example();
        assert_eq!(
            validate_signature(&token, url, &params, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            validate_signature(&token, url, &params, Some("  ")),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            validate_signature(&token, url, &params, Some("not base64!")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            validate_signature(&token, url, &params, Some("AAAA")),
            Err(SignatureError::Malformed)
        );
    }
}
