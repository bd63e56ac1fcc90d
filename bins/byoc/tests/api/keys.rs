//! `import-env`, `keys rotate` and `keys check`: import legacy credentials under key version 1, rotate them to
//! version 2 (again: nothing left to do), and check that they decrypt with version 2 alone and fail without it;
//! a second `import-env` of the same account reports the first and changes nothing.

use byoc_credential_store::test_support::OPERATOR_LOGIN;
use byoc_credential_store::{AuditPage, Tenant};
use byoc_crypto::MasterKey;
use secrecy::ExposeSecret;

use crate::helpers::{spawn_app, spawn_app_postgres, CliApp};

const LEGACY: [(&str, &str); 3] = [
    ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
    ("TWILIO_AUTH_TOKEN", "legacy-secret-token-4242"),
    ("TWILIO_PHONE_NUMBER", "+14155550123"),
];

fn keys_env(app: &CliApp) -> String {
    app.env
        .iter()
        .find(|(key, _)| key == "BYOC_MASTER_KEYS")
        .map(|(_, value)| value.clone())
        .expect("the test environment has a key")
}

#[tokio::test]
async fn import_rotate_and_check_on_sqlite_and_postgres() {
    for app in [spawn_app().await, spawn_app_postgres().await] {
        app.run(&["migrate"]).ok();
        let mut orgs = Vec::new();
        for name in ["Legacy A", "Legacy B"] {
            let org = app.run(&["org", "create", "--name", name]).ok();
            let imported = app.run_with(&["import-env", "--org", &org], &LEGACY).ok();
            assert!(imported.contains("imported"), "{imported}");
            assert!(!imported.contains("legacy-secret-token-4242"));
            orgs.push(org);
        }
        assert!(app
            .run(&["keys", "check"])
            .ok()
            .contains("all 2 credential(s) decrypt"));

        let version_one = keys_env(&app);
        let key_two = MasterKey::generate().to_hex();
        let both = format!("{version_one},2:{}", key_two.expose_secret());
        let rotated = app
            .run_with(&["keys", "rotate"], &[("BYOC_MASTER_KEYS", &both)])
            .ok();
        assert!(
            rotated.contains("re-wrapped 2 credential(s) under key version 2"),
            "{rotated}"
        );
        assert!(rotated.contains("version 2: 2"), "{rotated}");
        let again = app
            .run_with(&["keys", "rotate"], &[("BYOC_MASTER_KEYS", &both)])
            .ok();
        assert!(
            again.contains("re-wrapped 0 credential(s)"),
            "a second run has nothing to do: {again}"
        );

        let only_two = format!("2:{}", key_two.expose_secret());
        let checked = app
            .run_with(&["keys", "check"], &[("BYOC_MASTER_KEYS", &only_two)])
            .ok();
        assert!(checked.contains("all 2 credential(s) decrypt"), "{checked}");

        let run = app.run(&["keys", "check"]);
        assert_ne!(
            run.code,
            Some(0),
            "version 1 alone cannot open version-2 envelopes"
        );
        assert_eq!(
            run.stdout.matches("FAILED credential").count(),
            2,
            "{}",
            run.stdout
        );
        assert!(
            run.stderr.contains("2 credential(s) failed to decrypt"),
            "{}",
            run.stderr
        );
    }
}

/// The account `second run` imports: another Account SID than [`LEGACY`]'s.
const OTHER_ACCOUNT_SID: (&str, &str) =
    ("TWILIO_ACCOUNT_SID", "ACffffffffffffffffffffffffffffffff");

/// The `created` audit events of `org`, oldest first, as a member of it reads them.
async fn created_events(app: &CliApp, org: &str, member: &str) -> Vec<serde_json::Value> {
    let tenant = Tenant::user(org.parse().unwrap(), member.parse().unwrap());
    let page = AuditPage {
        limit: 100,
        before: None,
    };
    let mut events = app
        .service_store()
        .await
        .list_audit_events(&tenant, page)
        .await
        .unwrap();
    events.reverse();
    events
        .into_iter()
        .filter(|event| event.action.as_str() == "created")
        .map(|event| {
            assert_eq!(event.actor.to_string(), "service:byoc-cli");
            event.detail
        })
        .collect()
}

#[tokio::test]
async fn import_env_twice_reports_the_first_import_and_changes_nothing() {
    for (app, database_login) in [
        (spawn_app().await, None),
        (spawn_app_postgres().await, Some(OPERATOR_LOGIN)),
    ] {
        app.run(&["migrate"]).ok();
        let org = app.run(&["org", "create", "--name", "Twice"]).ok();
        let member = uuid::Uuid::new_v4().to_string();
        app.run(&[
            "member", "add", "--org", &org, "--user", &member, "--role", "member",
        ])
        .ok();
        let as_alice = [LEGACY[0], LEGACY[1], LEGACY[2], ("USER", "alice")];
        let first = app.run_with(&["import-env", "--org", &org], &as_alice).ok();
        assert!(
            first.starts_with("imported the legacy Twilio credential"),
            "{first}"
        );
        let id = first
            .split(" as ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("the output names the credential");

        // Again, by someone else, then under another name: the first import is reported, exit 0.
        let as_bob = [LEGACY[0], LEGACY[1], LEGACY[2], ("USER", "bob")];
        for (args, env) in [
            (&["import-env", "--org", &org][..], &as_bob[..]),
            (
                &["import-env", "--org", &org, "--display-name", "Front desk"][..],
                &LEGACY[..],
            ),
        ] {
            let again = app.run_with(args, env).ok();
            assert!(
                again.contains(&format!(
                    "already imported into {org} as {id} (Imported Twilio (env))"
                )) && again.contains("nothing changed"),
                "{again}"
            );
        }
        assert!(app
            .run(&["keys", "check"])
            .ok()
            .contains("all 1 credential(s) decrypt"));

        // Another account: a second credential, which needs a name of its own.
        let other = [OTHER_ACCOUNT_SID, LEGACY[1], LEGACY[2]];
        let line = app
            .run_with(&["import-env", "--org", &org], &other)
            .one_line_failure();
        assert!(line.contains("--display-name"), "{line}");
        let second = app
            .run_with(
                &[
                    "import-env",
                    "--org",
                    &org,
                    "--display-name",
                    "Second account",
                ],
                &other,
            )
            .ok();
        assert!(second.starts_with("imported"), "{second}");
        assert!(!second.contains(id), "{second}");
        assert!(app
            .run(&["keys", "check"])
            .ok()
            .contains("all 2 credential(s) decrypt"));

        // Only the two imports that stored a credential are audited, each with who ran it.
        let mut expected = vec![
            serde_json::json!({
                "display_name": "Imported Twilio (env)",
                "source": "import-env",
                "os_user": "alice",
            }),
            serde_json::json!({
                "display_name": "Second account",
                "source": "import-env",
                "os_user": "unknown",
            }),
        ];
        if let Some(login) = database_login {
            for detail in &mut expected {
                detail["session_user"] = serde_json::json!(login);
            }
        }
        assert_eq!(created_events(&app, &org, &member).await, expected);
    }
}

#[tokio::test]
async fn import_env_without_legacy_variables_fails_in_one_line() {
    let app = spawn_app().await;
    let org = app.run(&["org", "create", "--name", "No legacy"]).ok();
    let line = app.run(&["import-env", "--org", &org]).one_line_failure();
    assert!(line.contains("TWILIO_ACCOUNT_SID"), "{line}");
    let line = app
        .run_with(
            &["import-env", "--org", &org],
            &[LEGACY[0], LEGACY[1], ("TWILIO_PHONE_NUMBER", "12345")],
        )
        .one_line_failure();
    assert!(
        line.contains("TWILIO_PHONE_NUMBER") && !line.contains("legacy-secret-token-4242"),
        "{line}"
    );
}

#[tokio::test]
async fn a_different_key_for_a_used_version_is_refused_at_start() {
    let app = spawn_app().await;
    let org = app.run(&["org", "create", "--name", "Key check"]).ok();
    app.run_with(&["import-env", "--org", &org], &LEGACY).ok();
    let wrong = format!("1:{}", MasterKey::generate().to_hex().expose_secret());
    let line = app
        .run_with(&["keys", "check"], &[("BYOC_MASTER_KEYS", &wrong)])
        .one_line_failure();
    assert!(
        line.contains("BYOC_MASTER_KEYS") && line.contains("version 1"),
        "{line}"
    );
    assert!(!line.contains(&wrong[2..]), "{line}");
}
