//! docs/clinic-guide.md quotes what the service says and accepts: the Account SID's shape, the refusal when
//! no Twilio credential is usable, the send-time refusal, and every action of the activity log.

use byoc_api::plumbing::error::ApiError;
use byoc_credential_store::{CredentialServiceError, CredentialType};
use byoc_credential_types::TwilioAccountSid;

fn guide() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/clinic-guide.md");
    std::fs::read_to_string(path).expect("read docs/clinic-guide.md")
}

#[test]
fn the_account_sid_is_described_as_the_service_parses_it() {
    let guide = guide();
    assert!(
        guide.contains("`AC` followed by 32\n   hexadecimal digits"),
        "the guide's SID rule changed"
    );
    let example = "AC0123456789abcdef0123456789abcdef";
    assert!(guide.contains(example));
    assert!(TwilioAccountSid::parse("accountSid", example).is_ok());
    let letters = "AC0123456789abcdef0123456789abcdeg";
    assert!(
        TwilioAccountSid::parse("accountSid", letters).is_err(),
        "a letter past f is refused, as the guide says"
    );
}

#[test]
fn refusals_are_quoted_as_the_service_answers() {
    let guide = guide();
    let not_configured = CredentialServiceError::NotConfigured {
        provider: CredentialType::Twilio,
    }
    .to_string();
    assert!(
        guide.contains(&not_configured),
        "the guide should quote: {not_configured}"
    );
    let refused = ApiError::provider_refused("Twilio", "21608", "MESSAGE").to_string();
    let prefix = refused
        .split_once(": ")
        .map(|(_, message)| message.trim_end_matches("MESSAGE"))
        .expect("status: message");
    assert!(
        guide.contains(&format!("`{prefix}…`")),
        "the guide should quote: {prefix}…"
    );
}

#[test]
fn the_activity_table_lists_every_action() {
    let guide = guide();
    let actions = [
        "created",
        "verified",
        "verification_failed",
        "read",
        "updated",
        "deactivated",
        "purged",
        "rotated",
        "legacy_fallback_used",
    ];
    for action in actions {
        assert!(
            guide.contains(&format!("`{action}`")),
            "{action} is missing from the activity table"
        );
    }
    let baseline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres/0001_baseline.sql"
    );
    let baseline = std::fs::read_to_string(baseline).expect("read the baseline");
    for written in ["'rotated'", "'created'", "'purged'"] {
        assert!(
            baseline.contains(written),
            "{written} is no longer an action the database writes"
        );
    }
}
