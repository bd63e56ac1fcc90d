//! The settings page's markup (maud): the sign-in form and the page for a signed-in caller.
//!
//! Everything a role may not do is left out of the markup, not merely hidden: members get the list, the audit
//! events and "Send test SMS"; admins also the add/verify/revoke controls; owners also "Purge".

use byoc_credential_store::Member;
use byoc_credential_types::GOOGLE_READ_ONLY_HINT_SUFFIX;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use uuid::Uuid;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{AuditEntryDto, CredentialRow, VerificationStatusDto};
use crate::settings::activity::{self, Activity};

/// The Account SID rule of the server, as an HTML `pattern` (anchored by the browser).
pub const ACCOUNT_SID_PATTERN: &str = "AC[0-9a-fA-F]{32}";
/// The Stripe key rule of the server (secret or restricted, test or live), as an HTML `pattern`.
pub const STRIPE_KEY_PATTERN: &str = r"[sr]k_(test|live)_\S{9,}";
/// The HubSpot private-app token rule of the server, as an HTML `pattern`.
pub const HUBSPOT_TOKEN_PATTERN: &str = r"pat-\S{4,}";
/// The E.164 rule of the server, as an HTML `pattern` (the server also checks the number is a real one).
pub const E164_PATTERN: &str = r"\+[1-9][0-9]{7,14}";

/// The outcome of "Connect Google Calendar", from the `?google=` query on return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoogleResult {
    /// `?google=connected`.
    Connected,
    /// `?google=error`, with the `reason=` code when it is one (lowercase letters, digits, `_`).
    Failed(Option<String>),
}

impl GoogleResult {
    /// Reads the query values; any other `google` value is ignored, and so is a reason that is not a plain code.
    pub fn parse(google: &str, reason: Option<&str>) -> Option<GoogleResult> {
        match google {
            "connected" => Some(GoogleResult::Connected),
            "error" => Some(GoogleResult::Failed(
                reason
                    .filter(|code| {
                        (1..=64).contains(&code.len())
                            && code.bytes().all(|byte| {
                                byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_'
                            })
                    })
                    .map(str::to_owned),
            )),
            _ => None,
        }
    }
}

/// A page that reloads itself from this origin: a cross-site navigation (the return from Google) carries no
/// `SameSite=Strict` cookie, the reload it triggers does.
pub fn same_site_reload(target: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0; url=" (target) };
                title { "byoc settings" }
            }
            body {
                p { a href=(target) { "Continue to the settings page" } }
            }
        }
    }
}

/// The sign-in form.
pub struct SignInView<'a> {
    /// The double-submit nonce (also in the `byoc_login` cookie).
    pub nonce: &'a str,
    /// Why the caller sees this form again, if they do.
    pub message: Option<&'a str>,
}

impl SignInView<'_> {
    /// Renders the sign-in page.
    pub fn render(&self) -> Markup {
        layout(
            "Sign in · byoc settings",
            None,
            html! {
                main id="main" class="narrow" {
                    h1 { "Sign in to credential settings" }
                    p { "Paste the bearer token you use with the byoc API. It is kept in an HttpOnly session cookie \
                         for this browser only." }
                    @if let Some(message) = self.message {
                        p class="notice error" role="alert" { "❌ " (message) }
                    }
                    form method="post" action="/dashboard/session" class="card" {
                        input type="hidden" name="nonce" value=(self.nonce);
                        div class="field" {
                            label for="token" { "Bearer token" }
                            input id="token" name="token" type="password" required autocomplete="off"
                                spellcheck="false";
                        }
                        button type="submit" class="primary" { "Sign in" }
                    }
                }
            },
        )
    }
}

/// The page of a signed-in caller.
pub struct SettingsView<'a> {
    /// Who is signed in (organization, user, role).
    pub caller: &'a Caller,
    /// The organization's name, for the header.
    pub organization_name: &'a str,
    /// The organization's members, to name the people in "Recent activity".
    pub members: &'a [Member],
    /// The session's CSRF token (for the page's requests).
    pub csrf_token: &'a str,
    /// The organization's credentials, newest first.
    pub credentials: &'a [CredentialRow],
    /// One page of its audit events, newest first, as the activity card's filters and page select them.
    pub audit: &'a [AuditEntryDto],
    /// The activity card's filters and page.
    pub activity: &'a Activity,
    /// The result of a "Connect Google Calendar" round trip, on return.
    pub google: Option<GoogleResult>,
    /// Whether dev mode's provider sandbox answers provider calls.
    pub sandbox: bool,
}

impl SettingsView<'_> {
    /// Renders the settings page.
    pub fn render(&self) -> Markup {
        let can_manage = Permission::Manage.allows(self.caller.role);
        layout(
            "Credential settings · byoc",
            Some(self.csrf_token),
            html! {
                header class="topbar" {
                    div {
                        p class="brand" { "byoc" }
                        p class="who" {
                            strong data-testid="org-name" title=(self.caller.tenant.org_id.as_uuid()) {
                                (self.organization_name)
                            }
                            " · role " strong data-testid="role" { (self.caller.role.as_str()) }
                        }
                    }
                    form method="post" action="/dashboard/signout" {
                        input type="hidden" name="csrf" value=(self.csrf_token);
                        button type="submit" class="secondary" { "Sign out" }
                    }
                }
                main id="main" {
                    @if self.sandbox { (sandbox_banner()) }
                    h1 { "Credential settings" }
                    div id="flash" role="status" aria-live="polite" {
                        @match &self.google {
                            Some(GoogleResult::Connected) => {
                                p class="notice ok" { "✅ Google Calendar connected." }
                            }
                            Some(GoogleResult::Failed(reason)) => {
                                p class="notice error" {
                                    "❌ Google Calendar could not be connected"
                                    @if let Some(reason) = reason { " (" code { (reason) } ")" }
                                    ". Try again, and allow calendar access when Google asks."
                                }
                            }
                            None => {}
                        }
                    }
                    @if !can_manage {
                        p class="notice info" {
                            "You are a member of this organization: you can see its credentials and send a \
                             test SMS. Ask an admin or owner to add, verify or revoke credentials."
                        }
                    }
                    (self.credential_list())
                    @if can_manage {
                        div class="grid" {
                            (add_twilio_form())
                            (connect_google())
                            (add_stripe_form())
                            (add_hubspot_form())
                        }
                    }
                    (test_sms_form())
                    (self.audit_list())
                }
            },
        )
    }

    fn credential_list(&self) -> Markup {
        let can_manage = Permission::Manage.allows(self.caller.role);
        let can_purge = Permission::Purge.allows(self.caller.role);
        html! {
            section aria-labelledby="credentials-heading" class="card" {
                h2 id="credentials-heading" { "Credentials" }
                @if self.credentials.is_empty() {
                    p id="no-credentials" { "No credentials yet." }
                } @else {
                    table id="credentials" class="stack" {
                        thead {
                            tr {
                                th scope="col" { "Type" }
                                th scope="col" { "Name" }
                                th scope="col" { "Status" }
                                th scope="col" { "Last verified" }
                                th scope="col" { "Key version" }
                                @if can_manage { th scope="col" { "Actions" } }
                            }
                        }
                        tbody {
                            @for row in self.credentials {
                                tr data-credential-id=(row.id) data-status=(status_key(row)) {
                                    td data-label="Type" { div class="cell" { (type_label(&row.credential_type)) } }
                                    td data-label="Name" { div class="cell" {
                                        (row.display_name)
                                        @if let Some(hint) = &row.public_hint {
                                            br; small class="hint" { (hint) }
                                        }
                                        @if is_read_only_calendar(row) {
                                            br; small class="todo" data-testid="read-only-calendar" {
                                                "Connected read-only: free slots work, booking appointments does \
                                                 not. To book, click Connect Google Calendar again and allow it \
                                                 to manage events."
                                            }
                                        }
                                    } }
                                    td data-label="Status" { div class="cell" { (status_cell(row)) } }
                                    td data-label="Last verified" { div class="cell" { (optional_time(row.last_verified_at)) } }
                                    td data-label="Key version" { div class="cell" { "v" (row.encryption_key_version) } }
                                    @if can_manage {
                                        td data-label="Actions" class="actions" { div class="cell" {
                                            @if row.is_active {
                                                button type="button" class="secondary" data-action="verify"
                                                    data-id=(row.id) data-name=(row.display_name) {
                                                    "Verify" span class="visually-hidden" { " " (row.display_name) }
                                                }
                                                button type="button" class="danger" data-action="revoke"
                                                    data-id=(row.id) data-name=(row.display_name) {
                                                    "Revoke" span class="visually-hidden" { " " (row.display_name) }
                                                }
                                            }
                                            @if can_purge {
                                                button type="button" class="danger" data-action="purge"
                                                    data-id=(row.id) data-name=(row.display_name) {
                                                    "Purge" span class="visually-hidden" { " " (row.display_name) }
                                                }
                                            }
                                        } }
                                    }
                                }
                            }
                        }
                    }
                }
                p id="credentials-error" class="field-error" role="alert" {}
            }
        }
    }

    fn audit_list(&self) -> Markup {
        let activity = self.activity;
        let older = (self.audit.len() == activity::EVENTS_PER_PAGE as usize)
            .then(|| {
                self.audit
                    .last()
                    .map(|event| activity.page_url(Some(event.id)))
            })
            .flatten();
        html! {
            section aria-labelledby="audit-heading" class="card" {
                h2 id="audit-heading" { "Recent activity" }
                p id="chain-status" class="hint" data-testid="chain-status" role="status" aria-live="polite" {
                    "Checking that the activity record is complete and unchanged…"
                }
                (self.activity_filters())
                @if let Some(error) = &activity.error {
                    p class="notice error" role="alert" data-testid="activity-error" { (error) }
                }
                @if self.audit.is_empty() {
                    p data-testid="no-activity" {
                        @if activity.is_filtered() || activity.before.is_some() {
                            "No activity matches."
                        } @else {
                            "No activity yet."
                        }
                    }
                } @else {
                    table id="audit" class="stack" {
                        thead {
                            tr {
                                th scope="col" { "When" }
                                th scope="col" { "Action" }
                                th scope="col" { "Credential" }
                                th scope="col" { "By" }
                            }
                        }
                        tbody {
                            @for event in self.audit {
                                tr {
                                    td data-label="When" { div class="cell" { (time(event.at)) } }
                                    td data-label="Action" { div class="cell" { code { (event.action) } } }
                                    td data-label="Credential" { div class="cell" {
                                        @if let Some(kind) = &event.credential_type { (type_label(kind)) " " }
                                        @if let Some(id) = event.credential_id {
                                            small class="hint" { (short_id(&id.to_string())) }
                                        }
                                    } }
                                    td data-label="By" { div class="cell" {
                                        small data-testid="actor" title=(event.actor) {
                                            (self.actor_name(&event.actor).unwrap_or(&event.actor))
                                        }
                                    } }
                                }
                            }
                        }
                    }
                }
                nav class="pager" aria-label="Activity pages" {
                    @if activity.before.is_some() {
                        a href=(activity.page_url(None)) data-testid="activity-newest" { "← Newest" }
                    }
                    @if let Some(older) = older {
                        a href=(older) data-testid="activity-older" { "Older →" }
                    }
                }
            }
        }
    }

    fn activity_filters(&self) -> Markup {
        let query = &self.activity.query;
        let actor = query.actor.as_deref().unwrap_or_default();
        html! {
            form id="activity-filters" method="get" action=(super::SETTINGS_PATH) class="filters" {
                label {
                    "Action"
                    input type="text" name="action" value=(query.action.as_deref().unwrap_or_default())
                        placeholder="e.g. read, verified" maxlength="64";
                }
                label {
                    "Person"
                    select name="actor" {
                        option value="" selected[actor.is_empty()] { "Anyone" }
                        @for member in self.members {
                            @let value = format!("user:{}", member.user_id.as_uuid());
                            option value=(value) selected[actor == value] {
                                (member.profile.label().unwrap_or(&value))
                            }
                        }
                    }
                }
                label { "From" input type="date" name="from" value=(query.from.as_deref().unwrap_or_default()); }
                label { "To" input type="date" name="to" value=(query.to.as_deref().unwrap_or_default()); }
                button type="submit" class="secondary" { "Filter" }
                @if self.activity.is_filtered() {
                    a href=(super::SETTINGS_PATH) { "Clear" }
                }
            }
        }
    }
}

impl SettingsView<'_> {
    /// The name or email recorded for the member an audit actor (`user:<uuid>`) names, if one is known.
    fn actor_name(&self, actor: &str) -> Option<&str> {
        let user_id = actor.strip_prefix("user:")?.parse::<Uuid>().ok()?;
        self.members
            .iter()
            .find(|member| member.user_id.as_uuid() == user_id)?
            .profile
            .label()
    }
}

/// Dev mode's sandbox, said on every page view.
fn sandbox_banner() -> Markup {
    html! {
        p class="notice error" role="alert" data-testid="sandbox-banner" {
            strong { "DEV MODE SANDBOX: " }
            "Twilio, Google Calendar, Stripe and HubSpot are simulated; nothing reaches a real provider. Test SMS \
             to " code { "+15005550001" } " fails as an invalid number, to " code { "+15005550009" }
            " as a number that cannot receive SMS."
        }
    }
}

fn layout(title: &str, csrf_token: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(token) = csrf_token { meta name="csrf-token" content=(token); }
                title { (title) }
                link rel="stylesheet" href="/dashboard/assets/settings.css";
                script src="/dashboard/assets/settings.js" defer {}
            }
            body {
                a href="#main" class="skip-link" { "Skip to content" }
                (body)
            }
        }
    }
}

fn add_twilio_form() -> Markup {
    html! {
        section aria-labelledby="add-twilio-heading" class="card" {
            h2 id="add-twilio-heading" { "Add Twilio account" }
            form id="add-twilio" novalidate data-endpoint="/api/organization/credentials/twilio"
                data-added="Twilio account" {
                (field("accountSid", "Account SID", html! {
                    input id="accountSid" name="accountSid" type="text" required autocomplete="off"
                        spellcheck="false" pattern=(ACCOUNT_SID_PATTERN) placeholder="AC…"
                        aria-describedby="accountSid-help accountSid-error"
                        data-error="Enter the Account SID: AC followed by 32 hexadecimal digits.";
                }, "From the Twilio console: AC followed by 32 hex digits."))
                (field("authToken", "Auth Token", html! {
                    input id="authToken" name="authToken" type="password" required autocomplete="new-password"
                        pattern=r"\S+" aria-describedby="authToken-help authToken-error"
                        data-error="Enter the Auth Token (no spaces).";
                }, "Stored encrypted; it is never shown again."))
                (field("phoneNumber", "Phone number", html! {
                    input id="phoneNumber" name="phoneNumber" type="tel" required autocomplete="off"
                        pattern=(E164_PATTERN) placeholder="+14155550123"
                        aria-describedby="phoneNumber-help phoneNumber-error"
                        data-error="Enter the Twilio number in international form, e.g. +14155550123.";
                }, "The sending number in E.164 form, e.g. +14155550123."))
                (field("displayName", "Display name", html! {
                    input id="displayName" name="displayName" type="text" required maxlength="255"
                        autocomplete="off" aria-describedby="displayName-help displayName-error"
                        data-error="Enter a name (up to 255 characters).";
                }, "A name for people, e.g. Reception."))
                p id="add-twilio-error" class="field-error" role="alert" {}
                button type="submit" class="primary" { "Add Twilio account" }
            }
        }
    }
}

fn add_stripe_form() -> Markup {
    html! {
        section aria-labelledby="add-stripe-heading" class="card" {
            h2 id="add-stripe-heading" { "Add Stripe key" }
            form id="add-stripe" novalidate data-endpoint="/api/organization/credentials/stripe"
                data-added="Stripe key" {
                (field("stripe-secretKey", "Secret key", html! {
                    input id="stripe-secretKey" name="secretKey" type="password" required
                        autocomplete="new-password" spellcheck="false" pattern=(STRIPE_KEY_PATTERN)
                        aria-describedby="stripe-secretKey-help stripe-secretKey-error"
                        data-error="Enter a secret key (sk_live_… or sk_test_…) or a restricted key (rk_live_… or rk_test_…).";
                }, "From the Stripe dashboard (Developers → API keys). Stored encrypted; only its last four characters are shown again."))
                (field("stripe-displayName", "Display name", html! {
                    input id="stripe-displayName" name="displayName" type="text" required maxlength="255"
                        autocomplete="off" aria-describedby="stripe-displayName-help stripe-displayName-error"
                        data-error="Enter a name (up to 255 characters).";
                }, "A name for people, e.g. Payments."))
                p id="add-stripe-error" class="field-error" role="alert" {}
                button type="submit" class="primary" { "Add Stripe key" }
            }
        }
    }
}

fn add_hubspot_form() -> Markup {
    html! {
        section aria-labelledby="add-hubspot-heading" class="card" {
            h2 id="add-hubspot-heading" { "Add HubSpot token" }
            form id="add-hubspot" novalidate data-endpoint="/api/organization/credentials/hubspot"
                data-added="HubSpot token" {
                (field("hubspot-accessToken", "Access token", html! {
                    input id="hubspot-accessToken" name="accessToken" type="password" required
                        autocomplete="new-password" spellcheck="false" pattern=(HUBSPOT_TOKEN_PATTERN)
                        aria-describedby="hubspot-accessToken-help hubspot-accessToken-error"
                        data-error="Enter the private app's access token (pat-…).";
                }, "A HubSpot private app's access token (Settings → Integrations → Private apps). Stored encrypted."))
                (field("hubspot-displayName", "Display name", html! {
                    input id="hubspot-displayName" name="displayName" type="text" required maxlength="255"
                        autocomplete="off" aria-describedby="hubspot-displayName-help hubspot-displayName-error"
                        data-error="Enter a name (up to 255 characters).";
                }, "A name for people, e.g. CRM."))
                p id="add-hubspot-error" class="field-error" role="alert" {}
                button type="submit" class="primary" { "Add HubSpot token" }
            }
        }
    }
}

fn field(id: &str, label: &str, input: Markup, help: &str) -> Markup {
    html! {
        div class="field" {
            label for=(id) { (label) }
            (input)
            small id={ (id) "-help" } class="help" { (help) }
            span id={ (id) "-error" } class="field-error" aria-live="polite" {}
        }
    }
}

fn connect_google() -> Markup {
    html! {
        section aria-labelledby="google-heading" class="card" {
            h2 id="google-heading" { "Google Calendar" }
            p { "Connect the clinic's Google Calendar so availability comes from its free/busy times and \
                 appointments can be booked on it. You will be sent to Google to allow access, then back here." }
            a id="connect-google" class="button primary" href="/api/auth/google/start" {
                "Connect Google Calendar"
            }
        }
    }
}

fn test_sms_form() -> Markup {
    html! {
        section aria-labelledby="test-sms-heading" class="card" {
            h2 id="test-sms-heading" { "Send test SMS" }
            form id="test-sms" novalidate {
                div class="field" {
                    label for="to" { "Send to" }
                    input id="to" name="to" type="tel" required autocomplete="tel" pattern=(E164_PATTERN)
                        placeholder="+14155550123" aria-describedby="to-help to-error"
                        data-error="Enter a phone number in international form, e.g. +14155550123.";
                    small id="to-help" class="help" { "Sends the hot-lead alert text with the verified Twilio account." }
                    span id="to-error" class="field-error" aria-live="polite" {}
                }
                button type="submit" class="primary" { "Send test SMS" }
            }
            p id="test-sms-result" role="status" aria-live="polite" {}
        }
    }
}

/// Whether `row` is an active Google Calendar connection whose granted scopes allow no event writes.
fn is_read_only_calendar(row: &CredentialRow) -> bool {
    row.is_active
        && row.credential_type == "google_calendar"
        && row
            .public_hint
            .as_deref()
            .is_some_and(|hint| hint.ends_with(GOOGLE_READ_ONLY_HINT_SUFFIX))
}

fn status_key(row: &CredentialRow) -> &'static str {
    if !row.is_active {
        return "revoked";
    }
    match row.verification_status {
        VerificationStatusDto::Verified => "verified",
        VerificationStatusDto::Pending => "pending",
        VerificationStatusDto::Failed => "failed",
    }
}

fn status_cell(row: &CredentialRow) -> Markup {
    html! {
        @match status_key(row) {
            "revoked" => { span class="status revoked" { "⛔ Revoked" } }
            "verified" => { span class="status verified" { "✅ Verified" } }
            "failed" => {
                span class="status failed" { "❌ Verification failed" }
                @if let Some(error) = &row.verification_error {
                    br; small class="provider-error" { (error) }
                }
                br; small class="todo" { (failure_advice(&row.credential_type)) }
            }
            _ => { span class="status pending" { "⚠️ Needs verification" } }
        }
    }
}

fn failure_advice(credential_type: &str) -> &'static str {
    match credential_type {
        "twilio" => "Check the Account SID, Auth Token and that the number belongs to the account and can send \
                     SMS; then revoke this one and add it again.",
        "google_calendar" => "Connect Google Calendar again and allow calendar access.",
        "stripe" => "Check the key in the Stripe dashboard (it may have been rolled or deleted); then revoke this \
                     one and add the current key.",
        "hubspot" => "Check that the private app still exists and its token was not rotated; then revoke this \
                      one and add the current token.",
        _ => "Check the credential with the provider, then revoke it and add it again.",
    }
}

fn type_label(credential_type: &str) -> &str {
    match credential_type {
        "twilio" => "Twilio",
        "google_calendar" => "Google Calendar",
        "stripe" => "Stripe",
        "hubspot" => "HubSpot",
        other => other,
    }
}

fn optional_time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span class="muted" { "Never" } },
    }
}

fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M UTC")) }
    }
}

fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::activity::ActivityQuery;
    use byoc_credential_store::{MemberProfile, OrgId, Role, Tenant, UserId};

    fn row(status: VerificationStatusDto, active: bool) -> CredentialRow {
        CredentialRow {
            id: Uuid::new_v4(),
            credential_type: "twilio".into(),
            display_name: "<Front desk>".into(),
            is_active: active,
            verification_status: status,
            last_verified_at: None,
            verification_error: Some("Authenticate (20003)".into()),
            created_at: Utc::now(),
            created_by: None,
            encryption_key_version: 1,
            public_hint: None,
        }
    }

    fn page(role: Role, rows: &[CredentialRow]) -> String {
        let caller = Caller {
            tenant: Tenant::user(
                OrgId::from_uuid(Uuid::new_v4()),
                UserId::from_uuid(Uuid::new_v4()),
            ),
            role,
        };
        SettingsView {
            caller: &caller,
            organization_name: "Clinic A",
            members: &[],
            csrf_token: "csrf",
            credentials: rows,
            audit: &[],
            activity: &Activity::default(),
            google: None,
            sandbox: false,
        }
        .render()
        .into_string()
    }

    #[test]
    fn the_header_names_the_organization_and_activity_names_people() {
        let org_id = OrgId::from_uuid(Uuid::new_v4());
        let caller = Caller {
            tenant: Tenant::user(org_id, UserId::from_uuid(Uuid::new_v4())),
            role: Role::Owner,
        };
        let member = |profile: MemberProfile| Member {
            org_id,
            user_id: UserId::from_uuid(Uuid::new_v4()),
            role: Role::Admin,
            created_at: Utc::now(),
            profile,
        };
        let members = [
            member(MemberProfile::new(
                Some("dana@clinic.example"),
                Some("<Dana>"),
            )),
            member(MemberProfile::new(Some("fox@clinic.example"), None)),
            member(MemberProfile::default()),
        ];
        let event = |member: &Member| AuditEntryDto {
            id: 1,
            seq: 1,
            at: Utc::now(),
            actor: format!("user:{}", member.user_id.as_uuid()),
            action: "created".into(),
            credential_id: None,
            credential_type: None,
            detail: serde_json::json!({}),
        };
        let audit: Vec<AuditEntryDto> = members.iter().map(event).collect();
        let html = SettingsView {
            caller: &caller,
            organization_name: "Clinic <A>",
            members: &members,
            csrf_token: "csrf",
            credentials: &[],
            audit: &audit,
            activity: &Activity::default(),
            google: None,
            sandbox: false,
        }
        .render()
        .into_string();
        assert!(html.contains("Clinic &lt;A&gt;"), "{html}");
        assert!(html.contains("&lt;Dana&gt;"));
        assert!(html.contains("fox@clinic.example"));
        assert!(html.contains(&format!(">user:{}<", members[2].user_id.as_uuid())));
    }

    #[test]
    fn a_full_page_of_activity_links_to_the_older_one_with_the_same_filters() {
        let caller = Caller {
            tenant: Tenant::user(
                OrgId::from_uuid(Uuid::new_v4()),
                UserId::from_uuid(Uuid::new_v4()),
            ),
            role: Role::Member,
        };
        let page_of = |count: i64| -> Vec<AuditEntryDto> {
            (0..count)
                .map(|index| AuditEntryDto {
                    id: 100 - index,
                    seq: 100 - index,
                    at: Utc::now(),
                    actor: "service:reverify".into(),
                    action: "verified".into(),
                    credential_id: None,
                    credential_type: None,
                    detail: serde_json::json!({}),
                })
                .collect()
        };
        let render = |audit: &[AuditEntryDto], activity: &Activity| {
            SettingsView {
                caller: &caller,
                organization_name: "Clinic",
                members: &[],
                csrf_token: "csrf",
                credentials: &[],
                audit,
                activity,
                google: None,
                sandbox: false,
            }
            .render()
            .into_string()
        };
        let filtered = Activity::from_query(ActivityQuery {
            action: Some("verified".into()),
            ..ActivityQuery::default()
        });
        let full = render(&page_of(20), &filtered);
        assert!(
            full.contains(r#"href="/dashboard/settings?action=verified&amp;before=81""#),
            "{full}"
        );
        assert!(!full.contains("activity-newest"), "the first page");
        assert!(full.contains(r#"data-testid="chain-status""#));
        let last = render(
            &page_of(3),
            &Activity::from_query(ActivityQuery {
                before: Some("81".into()),
                ..ActivityQuery::default()
            }),
        );
        assert!(
            !last.contains("activity-older"),
            "no page after a short one"
        );
        assert!(
            last.contains(r#"href="/dashboard/settings" data-testid="activity-newest""#),
            "{last}"
        );
        let refused = render(
            &[],
            &Activity::from_query(ActivityQuery {
                to: Some("soon".into()),
                ..ActivityQuery::default()
            }),
        );
        assert!(refused.contains("The to date must be a day as YYYY-MM-DD."));
        assert!(refused.contains("No activity yet."));
    }

    #[test]
    fn controls_follow_the_role() {
        let rows = [row(VerificationStatusDto::Pending, true)];
        let member = page(Role::Member, &rows);
        assert!(!member.contains("data-action"), "{member}");
        assert!(!member.contains("add-twilio"));
        assert!(!member.contains("add-stripe") && !member.contains("add-hubspot"));
        assert!(member.contains("test-sms"));
        let admin = page(Role::Admin, &rows);
        assert!(admin.contains(r#"data-action="revoke""#));
        assert!(admin.contains("add-twilio"));
        assert!(admin.contains("add-stripe") && admin.contains("add-hubspot"));
        assert!(!admin.contains(r#"data-action="purge""#));
        let owner = page(Role::Owner, &rows);
        assert!(owner.contains(r#"data-action="purge""#));
    }

    #[test]
    fn statuses_and_escaping() {
        let html = page(
            Role::Owner,
            &[
                row(VerificationStatusDto::Verified, true),
                row(VerificationStatusDto::Failed, true),
                row(VerificationStatusDto::Pending, true),
                row(VerificationStatusDto::Verified, false),
            ],
        );
        for expected in [
            "✅ Verified",
            "❌ Verification failed",
            "Authenticate (20003)",
            "⚠️ Needs verification",
            "⛔ Revoked",
        ] {
            assert!(html.contains(expected), "{expected}");
        }
        assert!(html.contains("&lt;Front desk&gt;"));
        assert!(!html.contains("<Front desk>"));
    }

    #[test]
    fn a_read_only_google_connection_says_to_reconnect_for_booking() {
        let google = |hint: &str| CredentialRow {
            credential_type: "google_calendar".into(),
            public_hint: Some(hint.into()),
            ..row(VerificationStatusDto::Verified, true)
        };
        let read_only = page(
            Role::Member,
            &[google("client …abcdef / calendar primary / read-only")],
        );
        assert!(
            read_only.contains("To book, click Connect Google Calendar again"),
            "{read_only}"
        );
        let writable = page(Role::Member, &[google("client …abcdef / calendar primary")]);
        assert!(!writable.contains("read-only-calendar"));
    }

    #[test]
    fn google_result_is_read_from_known_values_only() {
        assert_eq!(
            GoogleResult::parse("connected", None),
            Some(GoogleResult::Connected)
        );
        assert_eq!(
            GoogleResult::parse("error", Some("access_denied")),
            Some(GoogleResult::Failed(Some("access_denied".into())))
        );
        assert_eq!(
            GoogleResult::parse("error", Some("<b>phish</b>")),
            Some(GoogleResult::Failed(None))
        );
        assert_eq!(GoogleResult::parse("<script>", None), None);
    }
}
