//! The error of parsing a payload or an input field.

/// An input or credential field that failed validation; `field` is the API's camelCase field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The request or payload field at fault (`phoneNumber`, `to`, `timeZone`, ...).
    pub field: &'static str,
    /// Why it was refused; never contains the value of a secret field.
    pub reason: String,
}

impl InvalidField {
    /// Builds the error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        InvalidField {
            field,
            reason: reason.into(),
        }
    }
}
