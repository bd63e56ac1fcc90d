//! Every command's success path, its output, and one clear line with a non-zero exit on bad input.

use crate::helpers::{spawn_app, spawn_app_postgres, spawn_dev};

#[tokio::test]
async fn migrate_org_member_token_on_sqlite_and_postgres() {
    for app in [spawn_app().await, spawn_app_postgres().await] {
        assert_eq!(app.run(&["migrate"]).ok(), "migrations applied");
        assert_eq!(
            app.run(&["migrate"]).ok(),
            "migrations applied",
            "migrate is idempotent"
        );

        let org = app.run(&["org", "create", "--name", "CLI Clinic"]).ok();
        uuid::Uuid::parse_str(&org).expect("org create prints the id");
        let user = uuid::Uuid::new_v4().to_string();
        let added = app
            .run(&[
                "member", "add", "--org", &org, "--user", &user, "--role", "admin",
            ])
            .ok();
        assert!(added.contains(&user) && added.contains("admin"), "{added}");

        let line = app
            .run(&[
                "member", "add", "--org", &org, "--user", &user, "--role", "member",
            ])
            .one_line_failure();
        assert!(line.contains("already exists"), "{line}");

        let token = app
            .run(&["token", "--org", &org, "--user", &user, "--ttl", "120"])
            .ok();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"cli-test-secret-0123456789abcdef0123"),
            &validation,
        )
        .expect("the token verifies with BYOC_JWT_SECRET")
        .claims;
        assert_eq!(claims["sub"], user.as_str());
        assert_eq!(claims["org_id"], org.as_str());
        let exp = claims["exp"].as_i64().expect("exp");
        let ttl = exp - chrono::Utc::now().timestamp();
        assert!((100..=121).contains(&ttl), "ttl {ttl}");
    }
}

#[test]
fn keys_generate_prints_a_fresh_64_hex_key() {
    let app = spawn_dev();
    let first = app.run(&["keys", "generate"]).ok();
    let second = app.run(&["keys", "generate"]).ok();
    assert_eq!(first.len(), 64);
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(first, second);
    assert!(
        !app.dir().join(".byoc-dev").exists(),
        "generating a key touches nothing"
    );
}

#[tokio::test]
async fn bad_input_exits_non_zero_with_one_line() {
    let app = spawn_app().await;
    let line = app
        .run(&["org", "create", "--name", "   "])
        .one_line_failure();
    assert!(line.contains("name"), "{line}");
    let line = app
        .run(&[
            "member",
            "add",
            "--org",
            "nope",
            "--user",
            &uuid::Uuid::new_v4().to_string(),
            "--role",
            "admin",
        ])
        .one_line_failure();
    assert!(line.contains("--org"), "{line}");
    let org = uuid::Uuid::new_v4().to_string();
    let user = uuid::Uuid::new_v4().to_string();
    let line = app
        .run(&[
            "member", "add", "--org", &org, "--user", &user, "--role", "boss",
        ])
        .one_line_failure();
    assert!(line.contains("--role"), "{line}");
    let line = app
        .run(&[
            "member", "add", "--org", &org, "--user", &user, "--role", "owner",
        ])
        .one_line_failure();
    assert!(
        line.contains("not found"),
        "an unknown organization: {line}"
    );
    let line = app
        .run(&["token", "--org", &org, "--user", &user, "--ttl", "0"])
        .one_line_failure();
    assert!(line.contains("--ttl"), "{line}");
    let line = app.run(&["frobnicate"]).one_line_failure();
    assert!(line.contains("frobnicate"), "{line}");

    let line = app
        .run_with(
            &["org", "create", "--name", "X"],
            &[("BYOC_MASTER_KEYS", "1:abc-secret-abc")],
        )
        .one_line_failure();
    assert!(
        line.contains("BYOC_MASTER_KEYS") && !line.contains("abc-secret-abc"),
        "{line}"
    );
    let line = app
        .run_with(
            &["migrate"],
            &[("DATABASE_URL", "mysql://user:hunter2@db/x")],
        )
        .one_line_failure();
    assert!(
        line.contains("DATABASE_URL") && !line.contains("hunter2"),
        "{line}"
    );
}

#[test]
fn help_describes_every_command() {
    let app = spawn_dev();
    let help = app.run(&["--help"]).ok();
    for command in ["migrate", "org", "member", "token", "keys", "import-env"] {
        assert!(help.contains(command), "{command} in {help}");
    }
    let help = app.run(&["token", "--help"]).ok();
    assert!(
        help.contains("--org") && help.contains("--user") && help.contains("--ttl"),
        "{help}"
    );
}

#[test]
fn dev_mode_tokens_are_signed_with_the_dev_secret() {
    let app = spawn_dev();
    let org = app.run(&["org", "create", "--name", "Dev Clinic"]).ok();
    let user = uuid::Uuid::new_v4().to_string();
    let token = app.run(&["token", "--org", &org, "--user", &user]).ok();
    let secret =
        std::fs::read_to_string(app.dir().join(".byoc-dev/jwt-secret")).expect("dev secret exists");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(secret.trim().as_bytes()),
        &validation,
    )
    .expect("signed with the dev secret");
}

#[tokio::test]
async fn a_config_file_supplies_unset_variables() {
    let app = spawn_app().await;
    let file = app.dir().join("byoc.env");
    let lines: Vec<String> = app
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    std::fs::write(&file, lines.join("\n")).expect("write the config file");
    let file = file.display().to_string();
    let only_file = crate::helpers::spawn_dev();
    let run = |args: &[&str]| only_file.run_with(args, &[("BYOC_CONFIG_FILE", &file)]);
    assert_eq!(run(&["migrate"]).ok(), "migrations applied");
    let org = run(&["org", "create", "--name", "From file"]).ok();
    uuid::Uuid::parse_str(&org).expect("an id");
    assert!(
        !only_file.dir().join(".byoc-dev").exists(),
        "the file's DATABASE_URL was used, not dev mode"
    );
    let line = only_file
        .run_with(
            &["migrate"],
            &[("BYOC_CONFIG_FILE", "/nonexistent/byoc.env")],
        )
        .one_line_failure();
    assert!(line.contains("BYOC_CONFIG_FILE"), "{line}");
}
