//! Twilio's message status callback (the form Twilio posts to `StatusCallback`), parsed after its
//! signature has been checked with [`super::signature::validate_signature`].

use byoc_credential_types::InvalidField;
use byoc_credential_types::TwilioAccountSid;

/// The fields of a status callback byoc records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// The message (`MessageSid`, `SM…` or `MM…`).
    pub message_sid: String,
    /// The account that sent it (`AccountSid`): look up the organization's credential, and so its auth token,
    /// by this before validating the signature.
    pub account_sid: TwilioAccountSid,
    /// The new status (`MessageStatus`: `queued`, `sent`, `delivered`, `undelivered`, `failed`, ...).
    pub status: String,
    /// Twilio's error code when delivery failed (`ErrorCode`).
    pub error_code: Option<String>,
}

impl StatusCallback {
    /// Parses the posted form parameters; the error names the missing or malformed parameter.
    pub fn from_params(params: &[(String, String)]) -> Result<Self, InvalidField> {
        let value = |name: &'static str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim())
                .filter(|value| !value.is_empty())
        };
        let required =
            |name: &'static str| value(name).ok_or_else(|| InvalidField::new(name, "is required"));
        let message_sid = required("MessageSid")?;
        let well_formed = message_sid.len() == 34
            && (message_sid.starts_with("SM") || message_sid.starts_with("MM"))
            && message_sid[2..]
                .bytes()
                .all(|byte| byte.is_ascii_hexdigit());
        if !well_formed {
            return Err(InvalidField::new(
                "MessageSid",
                "must be \"SM\" or \"MM\" followed by 32 hexadecimal digits",
            ));
        }
        let status = required("MessageStatus")?;
        if !status
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'-')
        {
            return Err(InvalidField::new(
                "MessageStatus",
                "must be a Twilio message status",
            ));
        }
        Ok(StatusCallback {
            message_sid: message_sid.to_owned(),
            account_sid: TwilioAccountSid::parse("AccountSid", required("AccountSid")?)?,
            status: status.to_owned(),
            error_code: value("ErrorCode").map(str::to_owned),
        })
    }

    /// Whether Twilio will send no further status for this message (`delivered`, `undelivered`,
    /// `failed`, `read`, `canceled`).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "delivered" | "undelivered" | "failed" | "read" | "canceled"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn a_delivery_report_parses() {
        let callback = StatusCallback::from_params(&params(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "delivered"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("To", "+14155550123"),
            ("ApiVersion", "2010-04-01"),
        ]))
        .expect("valid callback");
        assert_eq!(callback.status, "delivered");
        assert!(callback.is_final());
        assert_eq!(callback.error_code, None);
        assert_eq!(
            callback.account_sid.as_str(),
            "AC0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn a_failure_keeps_the_error_code_and_bad_fields_are_named() {
        let callback = StatusCallback::from_params(&params(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "undelivered"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("ErrorCode", "30003"),
        ]))
        .expect("valid callback");
        assert_eq!(callback.error_code.as_deref(), Some("30003"));

        let missing =
            StatusCallback::from_params(&params(&[("MessageStatus", "sent")])).expect_err("no sid");
        assert_eq!(missing.field, "MessageSid");
        let bad_account = StatusCallback::from_params(&params(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "sent"),
            ("AccountSid", "XX1"),
        ]))
        .expect_err("bad account");
        assert_eq!(bad_account.field, "AccountSid");
        let sent = StatusCallback::from_params(&params(&[
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "sent"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ]))
        .expect("valid");
        assert!(!sent.is_final());
    }
}
