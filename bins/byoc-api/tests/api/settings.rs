//! The settings page's sessions over HTTP: sign-in exchanges a bearer token for an HttpOnly, SameSite=Strict
//! cookie (Secure behind an https `BYOC_PUBLIC_URL`), the API accepts that cookie, and every state-changing
//! request made with it needs the session's CSRF token. (The page itself is driven in Chromium by
//! `tests/e2e/run.sh`.)

use actix_web::cookie::{Cookie, SameSite};
use byoc_credential_store::Role;

use crate::helpers::{
    error_code, spawn_app, spawn_app_with, Store, TestApp, TWILIO_PHONE, TWILIO_SID,
};

const PAGE: &str = "/dashboard/settings";

fn set_cookies(response: &reqwest::Response) -> Vec<Cookie<'static>> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| Cookie::parse(value.to_owned()).ok())
        .collect()
}

fn named(cookies: &[Cookie<'static>], name: &str) -> Option<Cookie<'static>> {
    cookies.iter().find(|cookie| cookie.name() == name).cloned()
}

/// The value of `<meta name="csrf-token" content="…">` in a page.
fn csrf_from(html: &str) -> String {
    let marker = r#"name="csrf-token" content=""#;
    let start = html.find(marker).expect("the page carries a CSRF token") + marker.len();
    html[start..].chars().take_while(|c| *c != '"').collect()
}

/// Opens the sign-in form, then submits `token` with the form's nonce (cookie and field) as a browser would.
async fn submit_sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    let form = app.client.get(app.url(PAGE)).send().await.expect("sent");
    assert_eq!(form.status(), 200);
    let nonce = named(&set_cookies(&form), "byoc_login").expect("the sign-in nonce cookie");
    app.client
        .post(app.url("/dashboard/session"))
        .header(
            reqwest::header::COOKIE,
            format!("byoc_login={}", nonce.value()),
        )
        .form(&[("token", token), ("nonce", nonce.value())])
        .send()
        .await
        .expect("sent")
}

/// Signs in through the form and returns the session cookie as the server set it.
async fn sign_in(app: &TestApp, token: &str) -> Cookie<'static> {
    let response = submit_sign_in(app, token).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[reqwest::header::LOCATION], PAGE);
    named(&set_cookies(&response), "byoc_session").expect("a session cookie")
}

async fn page(app: &TestApp, session: &Cookie<'_>) -> String {
    let response = app
        .client
        .get(app.url(PAGE))
        .header(
            reqwest::header::COOKIE,
            format!("byoc_session={}", session.value()),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let policy = response.headers()[reqwest::header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    response.text().await.expect("html")
}

#[tokio::test]
async fn the_session_cookie_authenticates_the_api_and_state_changes_need_the_csrf_token() {
    let app = spawn_app().await;
    let org = app.create_org("Cookie Clinic").await;
    let session = sign_in(&app, &app.token(org.id, org.admin)).await;
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(SameSite::Strict));
    assert_eq!(session.path(), Some("/"));
    assert_ne!(session.secure(), Some(true), "plain http: no Secure flag");
    let cookie = format!("byoc_session={}", session.value());

    let list = app
        .client
        .get(app.url("/api/organization/credentials"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(list.status(), 200, "a GET needs no CSRF token");

    let body = serde_json::json!({
        "accountSid": TWILIO_SID, "authToken": "tw-cookie-secret", "phoneNumber": TWILIO_PHONE,
        "displayName": "Front desk"
    });
    let add = |csrf: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/api/organization/credentials/twilio"))
            .header(reqwest::header::COOKIE, &cookie)
            .json(&body);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    let refused = add(None).await.expect("sent");
    assert_eq!(refused.status(), 403);
    assert_eq!(error_code(refused).await, "csrf_failed");
    let forged = add(Some("00".repeat(32))).await.expect("sent");
    assert_eq!(forged.status(), 403);

    let csrf = csrf_from(&page(&app, &session).await);
    let added = add(Some(csrf)).await.expect("sent");
    assert_eq!(added.status(), 201);
}

#[tokio::test]
async fn sign_in_needs_the_form_nonce_and_a_valid_member_token() {
    let app = spawn_app().await;
    let org = app.create_org("Nonce Clinic").await;
    let token = app.token(org.id, org.owner);

    let cross_site = app
        .client
        .post(app.url("/dashboard/session"))
        .form(&[("token", token.as_str()), ("nonce", "guessed")])
        .send()
        .await
        .expect("sent");
    assert_eq!(cross_site.status(), 403);
    assert!(named(&set_cookies(&cross_site), "byoc_session").is_none());

    let outsider = app.token(org.id, byoc_credential_store::UserId::new_random());
    let refused = submit_sign_in(&app, &outsider).await;
    assert_eq!(refused.status(), 401);
    assert!(named(&set_cookies(&refused), "byoc_session").is_none());
    assert!(refused.text().await.expect("html").contains("not a member"));
}

#[tokio::test]
async fn controls_are_rendered_by_role_and_sign_out_needs_the_csrf_token() {
    let app = spawn_app().await;
    let org = app.create_org("Role Clinic").await;
    app.add_twilio(&app.token(org.id, org.owner), TWILIO_SID, "Front desk")
        .await;
    for (role, manage, purge) in [
        (Role::Member, false, false),
        (Role::Admin, true, false),
        (Role::Owner, true, true),
    ] {
        let session = sign_in(&app, &app.token(org.id, org.user(role))).await;
        let html = page(&app, &session).await;
        assert!(html.contains("Front desk"), "{role:?} sees the list");
        assert_eq!(html.contains(r#"id="add-twilio""#), manage, "{role:?}");
        assert_eq!(html.contains(r#"data-action="revoke""#), manage, "{role:?}");
        assert_eq!(html.contains(r#"data-action="purge""#), purge, "{role:?}");
        assert!(
            html.contains(r#"id="test-sms""#),
            "{role:?} may send a test SMS"
        );
    }

    let session = sign_in(&app, &app.token(org.id, org.owner)).await;
    let cookie = format!("byoc_session={}", session.value());
    let without = app
        .client
        .post(app.url("/dashboard/signout"))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .expect("sent");
    assert_eq!(without.status(), 403);
    let csrf = csrf_from(&page(&app, &session).await);
    let signed_out = app
        .client
        .post(app.url("/dashboard/signout"))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sent");
    assert_eq!(signed_out.status(), 303);
    let removal = named(&set_cookies(&signed_out), "byoc_session").expect("removal cookie");
    assert_eq!(removal.value(), "");
}

#[tokio::test]
async fn cookies_are_secure_behind_https_and_a_cross_site_return_reloads_same_site() {
    let app = spawn_app_with(
        Store::Sqlite,
        &[("BYOC_PUBLIC_URL", "https://byoc.example/".to_owned())],
    )
    .await;
    let org = app.create_org("Https Clinic").await;
    let session = sign_in(&app, &app.token(org.id, org.owner)).await;
    assert_eq!(session.secure(), Some(true));

    let back_from_google = app
        .client
        .get(app.url("/dashboard/settings?google=connected"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("sent");
    assert_eq!(back_from_google.status(), 200);
    let html = back_from_google.text().await.expect("html");
    assert!(
        html.contains(
            r#"http-equiv="refresh" content="0; url=/dashboard/settings?google=connected""#
        ),
        "{html}"
    );
}

/// A request to `path` with the session cookie `session` (and its CSRF token, when given).
async fn with_cookie(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    session: &Cookie<'_>,
    csrf: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).header(
        reqwest::header::COOKIE,
        format!("byoc_session={}", session.value()),
    );
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn sign_out_revokes_the_session_and_the_old_cookie_no_longer_works() {
    for store in [Store::Sqlite, Store::Postgres] {
        let app = spawn_app_with(store, &[]).await;
        let org = app.create_org("Revoke Clinic").await;
        let token = app.token(org.id, org.admin);
        let session = sign_in(&app, &token).await;
        assert_eq!(session.value().len(), 64, "{store:?}: a 256-bit random id");
        assert!(session.value().bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert!(!token.contains(session.value()) && !session.value().contains(&token));
        assert_eq!(
            session.max_age(),
            Some(actix_web::cookie::time::Duration::hours(12))
        );
        assert!(
            !app.database_text().await.contains(session.value()),
            "{store:?}: the store keeps only the id's hash"
        );

        let list = "/api/organization/credentials";
        let listed = with_cookie(&app, reqwest::Method::GET, list, &session, None).await;
        assert_eq!(listed.status(), 200, "{store:?}");
        let csrf = csrf_from(&page(&app, &session).await);

        let signed_out = app
            .client
            .post(app.url("/dashboard/signout"))
            .header(
                reqwest::header::COOKIE,
                format!("byoc_session={}", session.value()),
            )
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .expect("sent");
        assert_eq!(signed_out.status(), 303);

        // A stolen copy of the cookie is worthless now, on the API and on the page.
        let listed = with_cookie(&app, reqwest::Method::GET, list, &session, None).await;
        assert_eq!(listed.status(), 401, "{store:?}");
        assert_eq!(error_code(listed).await, "unauthorized");
        let delete = with_cookie(
            &app,
            reqwest::Method::DELETE,
            &format!("{list}/{}", uuid::Uuid::new_v4()),
            &session,
            Some(&csrf),
        )
        .await;
        assert_eq!(delete.status(), 401, "{store:?}");
        let page_after = with_cookie(&app, reqwest::Method::GET, PAGE, &session, None).await;
        assert_eq!(page_after.status(), 200);
        let removal = named(&set_cookies(&page_after), "byoc_session").expect("removal cookie");
        assert_eq!(removal.value(), "");
        let html = page_after.text().await.expect("html");
        assert!(html.contains("no longer valid"), "{html}");

        // The bearer token itself still works on the API: sign-out ends the session, not the token.
        assert_eq!(app.get(list, &token).await.status(), 200);
    }
}

#[tokio::test]
async fn a_session_signed_in_on_one_replica_works_and_ends_on_another() {
    let first = spawn_app_with(Store::Postgres, &[]).await;
    let second = first.spawn_replica().await;
    let org = first.create_org("Replica Clinic").await;
    let session = sign_in(&first, &first.token(org.id, org.owner)).await;
    let list = "/api/organization/credentials";
    assert_eq!(
        with_cookie(&second, reqwest::Method::GET, list, &session, None)
            .await
            .status(),
        200,
        "the other replica knows the session"
    );
    let csrf = csrf_from(&page(&second, &session).await);
    let signed_out = second
        .client
        .post(second.url("/dashboard/signout"))
        .header(
            reqwest::header::COOKIE,
            format!("byoc_session={}", session.value()),
        )
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sent");
    assert_eq!(signed_out.status(), 303);
    assert_eq!(
        with_cookie(&first, reqwest::Method::GET, list, &session, None)
            .await
            .status(),
        401,
        "signing out on one replica ends the session on every one"
    );
}

#[tokio::test]
async fn a_made_up_session_cookie_is_refused() {
    let app = spawn_app().await;
    let org = app.create_org("Guess Clinic").await;
    // The old design's cookie: the bearer token itself.
    let token_as_cookie = Cookie::new("byoc_session", app.token(org.id, org.owner));
    let guessed = Cookie::new("byoc_session", "00".repeat(32));
    for cookie in [token_as_cookie, guessed] {
        let response = with_cookie(
            &app,
            reqwest::Method::GET,
            "/api/organization/credentials",
            &cookie,
            None,
        )
        .await;
        assert_eq!(response.status(), 401);
        assert_eq!(error_code(response).await, "unauthorized");
    }
}

#[tokio::test]
async fn the_page_names_the_organization_and_the_people_whose_tokens_carried_them() {
    for store in [Store::Sqlite, Store::Postgres] {
        let app = spawn_app_with(store, &[]).await;
        let org = app.create_org("Sunrise <Dental>").await;
        // The admin's token carries an email and a Supabase name; the owner's carries neither.
        let admin_token = app.token_with_claims(
            org.id,
            org.admin,
            serde_json::json!({"email": "ana@sunrise.example",
                               "user_metadata": {"full_name": "Ana Admin"}}),
        );
        app.add_twilio(&admin_token, TWILIO_SID, "Front desk").await;
        let owner_token = app.token(org.id, org.owner);
        app.add_twilio(&owner_token, TWILIO_SID, "Back office")
            .await;

        let session = sign_in(&app, &owner_token).await;
        let html = page(&app, &session).await;
        assert!(
            html.contains(r#"data-testid="org-name""#) && html.contains("Sunrise &lt;Dental&gt;"),
            "{store:?}: {html}"
        );
        assert!(!html.contains("Sunrise <Dental>"));
        assert!(html.contains(">Ana Admin<"), "{store:?}");
        assert!(html.contains(&format!(">user:{}<", org.owner.as_uuid())));

        // A new email (and no name) in a later token replaces what was recorded, on the next request.
        let changed = app.token_with_claims(
            org.id,
            org.admin,
            serde_json::json!({"email": "ana@new.example"}),
        );
        let listed = app.get("/api/organization/credentials", &changed).await;
        assert_eq!(listed.status(), 200);
        let html = page(&app, &session).await;
        assert!(html.contains(">ana@new.example<"), "{store:?}");
        assert!(!html.contains("Ana Admin"));
    }
}

/// Asks for a login link with `token` and returns the answer.
async fn ask_login_link(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/dashboard/login-links"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent")
}

/// The path and query of a login link's URL, to open it on `app`.
fn link_path(body: &serde_json::Value) -> String {
    let url = url::Url::parse(body["url"].as_str().expect("url")).expect("a URL");
    assert_eq!(url.path(), "/dashboard/login");
    format!("{}?{}", url.path(), url.query().expect("the secret"))
}

async fn open_link(app: &TestApp, path: &str, json: bool) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if json {
        request = request.header(reqwest::header::ACCEPT, "application/json");
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn a_login_link_opens_a_session_once_on_any_replica_and_lands_on_the_page() {
    for store in [Store::Sqlite, Store::Postgres] {
        let app = spawn_app_with(store, &[]).await;
        // On Postgres the link is opened on another replica than the one that made it.
        let replica = match store {
            Store::Postgres => Some(app.spawn_replica().await),
            Store::Sqlite => None,
        };
        let opener = replica.as_ref().unwrap_or(&app);
        let org = app.create_org("Link Clinic").await;

        let asked = ask_login_link(&app, &app.token(org.id, org.member)).await;
        assert_eq!(asked.status(), 201, "{store:?}");
        let body: serde_json::Value = asked.json().await.expect("json");
        let expires_at = chrono::DateTime::parse_from_rfc3339(body["expiresAt"].as_str().unwrap())
            .expect("a time");
        let lifetime = expires_at.signed_duration_since(chrono::Utc::now());
        assert!(
            lifetime <= chrono::Duration::seconds(60) && lifetime > chrono::Duration::seconds(50),
            "{lifetime:?}"
        );
        let path = link_path(&body);

        let opened = open_link(opener, &path, false).await;
        assert_eq!(opened.status(), 200, "{store:?}");
        let session = named(&set_cookies(&opened), "byoc_session").expect("a session cookie");
        assert_eq!(session.http_only(), Some(true));
        assert_eq!(session.same_site(), Some(SameSite::Strict));
        let landing = opened.text().await.expect("html");
        assert!(landing.contains("url=/dashboard/settings"), "{landing}");
        let html = page(opener, &session).await;
        assert!(html.contains(r#"data-testid="role">member<"#), "{html}");
        assert!(html.contains("Link Clinic"));

        // Used: the second opening opens nothing, as a page and as JSON.
        let again = open_link(&app, &path, false).await;
        assert_eq!(again.status(), 410);
        assert!(named(&set_cookies(&again), "byoc_session").is_none());
        assert!(again.text().await.unwrap().contains("already used"));
        let again = open_link(&app, &path, true).await;
        assert_eq!(again.status(), 410);
        assert_eq!(error_code(again).await, "login_link_used");
        let made_up = open_link(
            &app,
            &format!("/dashboard/login?link={}", "0".repeat(64)),
            true,
        )
        .await;
        assert_eq!(made_up.status(), 410);
        assert_eq!(error_code(made_up).await, "login_link_used");

        // Not a link's shape (missing, short, upper case): 422 naming `link`, and no session.
        let short = open_link(&app, "/dashboard/login?link=0000", true).await;
        assert_eq!(short.status(), 422);
        assert_eq!(error_code(short).await, "invalid_field");
        let upper = open_link(
            &app,
            &format!("/dashboard/login?link={}", "A".repeat(64)),
            true,
        )
        .await;
        assert_eq!(upper.status(), 422);
        let bare = open_link(&app, "/dashboard/login", false).await;
        assert_eq!(bare.status(), 422);
        assert!(named(&set_cookies(&bare), "byoc_session").is_none());
        assert!(bare.text().await.unwrap().contains("not valid"));
    }
}

#[tokio::test]
async fn only_a_members_bearer_token_gets_a_login_link_and_an_expired_one_opens_nothing() {
    let app = spawn_app_with(Store::Postgres, &[]).await;
    let org = app.create_org("Expiry Clinic").await;
    let none = ask_login_link(&app, "").await;
    assert_eq!(error_code(none).await, "unauthorized");
    let bad = ask_login_link(&app, "not-a-token").await;
    assert_eq!(bad.status(), 401);
    let stranger = app.token(org.id, byoc_credential_store::UserId::new_random());
    assert_eq!(
        error_code(ask_login_link(&app, &stranger).await).await,
        "not_a_member"
    );
    // The page's session cookie alone does not make links: a link stands for a bearer token.
    let session = sign_in(&app, &app.token(org.id, org.owner)).await;
    let csrf = csrf_from(&page(&app, &session).await);
    let with_session = app
        .client
        .post(app.url("/api/dashboard/login-links"))
        .header(
            reqwest::header::COOKIE,
            format!("byoc_session={}", session.value()),
        )
        .header("x-csrf-token", csrf)
        .send()
        .await
        .expect("sent");
    assert_eq!(with_session.status(), 401);

    let asked = ask_login_link(&app, &app.token(org.id, org.owner)).await;
    assert_eq!(asked.status(), 201);
    let path = link_path(&asked.json().await.expect("json"));
    // Sixty seconds pass (behind the service's back).
    app.superuser_execute(
        "UPDATE dashboard_login_links SET expires_at = now() - interval '1 second' WHERE org_id = $1",
        org.id,
    )
    .await;
    let expired = open_link(&app, &path, false).await;
    assert_eq!(expired.status(), 410);
    assert!(named(&set_cookies(&expired), "byoc_session").is_none());
    assert!(expired.text().await.unwrap().contains("has expired"));
    // Used up by that attempt.
    assert_eq!(
        error_code(open_link(&app, &path, true).await).await,
        "login_link_used"
    );
    // Only the hash of the secret is stored.
    let secret = path.rsplit('=').next().expect("secret").to_owned();
    assert!(!app.database_text().await.contains(&secret));
}
