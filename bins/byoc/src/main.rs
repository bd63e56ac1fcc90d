//! `byoc`: the byoc operator CLI. It reads the same configuration as `byoc-api` (environment variables, the
//! optional `BYOC_CONFIG_FILE`, dev mode under `./.byoc-dev/` when nothing is configured) and exits non-zero
//! with one clear line on bad input.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use byoc_credential_store::service::{EnvelopeFailure, RotationOptions};
use byoc_credential_store::CredentialServiceError;
use byoc_credential_store::{
    AuditChainStatus, ConflictKind, DisplayName, HotLeadThreshold, Imported, OrgId,
    OrganizationAuditChain, OrganizationName, Role, ServiceName, StoreError, UserId,
};
use byoc_crypto::MasterKey;
use byoc_runtime::audit_digest::{check_digest_dir, AuditPublicKey, AuditSigningKey};
use byoc_runtime::config::{self, ConfigError, DatabaseUrl, RuntimeConfig};
use byoc_runtime::kms::KmsKeyId;
use byoc_runtime::master_keys::{create_kms_held_version, list_versions, HeldBy, KmsAccess};
use byoc_runtime::tokens::mint_token;
use byoc_runtime::{open_operator_store, Services, StartupError};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret;

/// Prints a line to stdout; a closed stdout (e.g. `byoc token | head -c 20`) is not an error worth a panic.
macro_rules! say {
    ($($argument:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($argument)*);
    }};
}

/// Operator CLI for byoc: database migrations, organizations and members, tokens, master keys, the
/// legacy-credential import and the audit chain check.
#[derive(Debug, Parser)]
#[command(name = "byoc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations (idempotent). Postgres needs the owner's DATABASE_URL.
    Migrate,
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Manage organization members.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Print a bearer token (HS256, signed with BYOC_JWT_SECRET or the dev-mode secret).
    Token {
        /// The organization the token acts for.
        #[arg(long, value_name = "ORG_ID")]
        org: OrgId,
        /// The user (the token's `sub`).
        #[arg(long, value_name = "USER_UUID")]
        user: UserId,
        /// Lifetime in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl: u64,
    },
    /// Master keys: generate, rotate (re-wrap every data key under the active version), check.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit log's hash chains.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Move the legacy TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN / TWILIO_PHONE_NUMBER into an organization as a
    /// normal (encrypted, pending) Twilio credential. Idempotent: when the organization already has an active
    /// Twilio credential for that Account SID, it is reported and nothing changes.
    ImportEnv {
        /// The organization that receives the credential.
        #[arg(long, value_name = "ORG_ID")]
        org: OrgId,
        /// The credential's display name.
        #[arg(long, default_value = "Imported Twilio (env)")]
        display_name: String,
    },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization and print its id.
    Create {
        /// The organization's name (1 to 200 characters).
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Add a user to an organization with a role.
    Add {
        /// The organization.
        #[arg(long, value_name = "ORG_ID")]
        org: OrgId,
        /// The user's uuid.
        #[arg(long, value_name = "USER_UUID")]
        user: UserId,
        /// `owner`, `admin` or `member`.
        #[arg(long)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random 256-bit master key as 64 hex digits (add it to BYOC_MASTER_KEYS as `VERSION:HEX`).
    Generate,
    /// Add a KMS-held master key version: a fresh key encrypted by AWS KMS under the given key (the key itself is
    /// never written anywhere) and stored in the database; prints the new version. AWS is configured by
    /// AWS_REGION, the AWS credentials and AWS_ENDPOINT_URL_KMS.
    Create {
        /// The KMS key: key id, key ARN, alias/NAME or alias ARN.
        #[arg(long, value_name = "KMS_KEY")]
        kms: KmsKeyId,
    },
    /// List every master key version: where it is held (env or its KMS key), whether it is active, its key
    /// check value, and how many credentials it wraps.
    List,
    /// Re-wrap every data key under BYOC_ACTIVE_KEY_VERSION, online and resumable (run it again after an
    /// interruption), with a progress bar.
    Rotate,
    /// Decrypt every credential; list those that fail and exit non-zero if any does.
    Check,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit hash chain of every organization (or one): one line per organization; exits non-zero
    /// naming the first broken link (organization and sequence number).
    Verify {
        /// Check only this organization.
        #[arg(long, value_name = "ORG_ID")]
        org: Option<OrgId>,
        /// Also check the signed digests in this folder (`*.json` in it and its folders, as
        /// BYOC_AUDIT_DIGEST_DIR holds them): every signature holds, each organization's digests link up, and
        /// each chain still has every digested head at its position. Exits non-zero naming the first that
        /// does not.
        #[arg(long, value_name = "DIR")]
        digests: Option<std::path::PathBuf>,
        /// The public key that checks the digests (64 hex digits, as `GET /api/audit/signing-key` serves it);
        /// default: the one of BYOC_AUDIT_SIGNING_KEY, or dev mode's.
        #[arg(long, value_name = "HEX", requires = "digests")]
        public_key: Option<String>,
    },
}

/// Why a command failed; one line, never a secret.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Service(#[from] CredentialServiceError),
    #[error("{0}")]
    Invalid(String),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return byoc_runtime::command_line::exit_for("byoc", &error),
    };
    if let Err(error) = byoc_runtime::telemetry::init(
        "warn,sqlx=error",
        std::io::stderr,
        std::io::stderr().is_terminal(),
    ) {
        eprintln!("byoc: cannot set up logging: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("byoc: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("byoc: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Migrate => migrate().await,
        Command::Org {
            command: OrgCommand::Create { name },
        } => {
            let name = OrganizationName::parse(name.trim())
                .map_err(|error| CliError::Invalid(format!("--{error}")))?;
            let services = open_services().await?;
            let organization = services
                .repository
                .operator_create_organization(&name, HotLeadThreshold::DEFAULT)
                .await?;
            say!("{}", organization.id);
            Ok(())
        }
        Command::Member {
            command: MemberCommand::Add { org, user, role },
        } => {
            let services = open_services().await?;
            let member = services
                .repository
                .operator_add_member(org, user, role)
                .await?;
            say!(
                "{} is now {} of {}",
                member.user_id,
                member.role,
                member.org_id
            );
            Ok(())
        }
        Command::Token { org, user, ttl } => {
            let config = RuntimeConfig::from_env()?;
            let secret = match (&config.auth.jwt_secret, config.is_dev()) {
                (Some(secret), _) => secret.clone(),
                (None, true) => {
                    let services = Services::open_for_operator(&config).await?;
                    services.auth.jwt_secret.ok_or_else(|| {
                        CliError::Invalid("dev mode has no JWT secret".to_owned())
                    })?
                }
                (None, false) => {
                    return Err(CliError::Invalid(
                        "BYOC_JWT_SECRET: required to mint tokens (tokens from a JWKS issuer are minted there)".to_owned(),
                    ))
                }
            };
            let token = mint_token(
                &secret,
                &config.auth.claims,
                org.as_uuid(),
                user.as_uuid(),
                Duration::from_secs(ttl),
            )
            .map_err(|error| CliError::Invalid(format!("cannot mint the token: {error}")))?;
            say!("{token}");
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            say!("{}", MasterKey::generate().to_hex().expose_secret());
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Create { kms },
        } => create_kms_held(&kms).await,
        Command::Keys {
            command: KeysCommand::List,
        } => list_keys().await,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => rotate().await,
        Command::Keys {
            command: KeysCommand::Check,
        } => check().await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    org,
                    digests,
                    public_key,
                },
        } => verify_audit(org, digests.as_deref(), public_key.as_deref()).await,
        Command::ImportEnv { org, display_name } => import_env(org, &display_name).await,
    }
}

/// `byoc audit verify`: checks the chains, prints one line per organization, and fails naming the first
/// organization (in id order) whose chain is broken and where.
async fn verify_audit(
    org: Option<OrgId>,
    digest_dir: Option<&Path>,
    public_key: Option<&str>,
) -> Result<(), CliError> {
    let services = open_services().await?;
    let digests = match digest_dir {
        Some(dir) => {
            let key = digest_public_key(public_key, &services)?;
            verify_digests(dir, &key, &services, org).await
        }
        None => Ok(()),
    };
    let checked = services
        .repository
        .operator_verify_audit_chains(org)
        .await?;
    if let (Some(org), true) = (org, checked.is_empty()) {
        return Err(CliError::Invalid(format!("--org: no organization {org}")));
    }
    for chain in &checked {
        say!("{}", audit_chain_line(chain));
    }
    let first_broken = checked.iter().find_map(|chain| match &chain.report.status {
        AuditChainStatus::Broken {
            first_broken_seq,
            problem,
            ..
        } => Some((chain.org_id, *first_broken_seq, problem)),
        AuditChainStatus::Intact { .. } => None,
    });
    let broken = checked
        .iter()
        .filter(|chain| matches!(chain.report.status, AuditChainStatus::Broken { .. }))
        .count();
    let chains = match first_broken {
        None => {
            say!("{} audit chain(s) intact", checked.len());
            Ok(())
        }
        Some((org_id, seq, problem)) => Err(CliError::Invalid(format!(
            "{broken} of {} audit chain(s) broken; the first: organization {org_id} at seq {seq}: {problem}",
            checked.len()
        ))),
    };
    digests.and(chains)
}

/// The key that checks digests: `--public-key`, else BYOC_AUDIT_SIGNING_KEY's, else dev mode's.
fn digest_public_key(given: Option<&str>, services: &Services) -> Result<AuditPublicKey, CliError> {
    if let Some(text) = given {
        return AuditPublicKey::parse(text)
            .map_err(|error| CliError::Invalid(format!("--public-key: {error}")));
    }
    let environment = config::environment()?;
    if let Some(seed) = environment
        .get("BYOC_AUDIT_SIGNING_KEY")
        .filter(|seed| !seed.trim().is_empty())
    {
        return AuditSigningKey::parse(seed)
            .map(|key| key.public_key())
            .map_err(|error| CliError::Invalid(format!("BYOC_AUDIT_SIGNING_KEY: {error}")));
    }
    services
        .dev
        .as_ref()
        .map(|dev| dev.audit_signing_key.public_key())
        .ok_or_else(|| {
            CliError::Invalid(
                "--public-key: required (or BYOC_AUDIT_SIGNING_KEY) to check digests".to_owned(),
            )
        })
}

/// `byoc audit verify --digests DIR`: one line per organization with digests; fails naming the first file or
/// organization that does not check out (the chains are checked and printed either way).
async fn verify_digests(
    dir: &Path,
    key: &AuditPublicKey,
    services: &Services,
    org: Option<OrgId>,
) -> Result<(), CliError> {
    let report = check_digest_dir(dir, key, services.repository.as_ref(), org)
        .await
        .map_err(|error| CliError::Invalid(format!("--digests: {error}")))?;
    for check in &report.organizations {
        match &check.problem {
            None => say!(
                "{} digests hold: {} digest(s), newest at seq {}",
                check.org_id,
                check.digests,
                check.newest_head_seq
            ),
            Some(problem) => say!("{} DIGESTS FAIL: {problem}", check.org_id),
        }
    }
    if let Some(refused) = report.refused_files.first() {
        return Err(CliError::Invalid(format!(
            "{} digest file(s) refused; the first: {refused}",
            report.refused_files.len()
        )));
    }
    if let Some(check) = report
        .organizations
        .iter()
        .find(|check| check.problem.is_some())
    {
        return Err(CliError::Invalid(format!(
            "the audit chain of organization {} does not match its digests: {}",
            check.org_id,
            check.problem.as_deref().unwrap_or_default()
        )));
    }
    if report.organizations.is_empty() {
        return Err(CliError::Invalid(format!(
            "--digests: no digest in {}",
            dir.display()
        )));
    }
    Ok(())
}

/// One organization's line: `<org> intact: <n> events, head <seq> <hash>` or `<org> BROKEN at seq <seq>: …`.
fn audit_chain_line(chain: &OrganizationAuditChain) -> String {
    let head = match chain.report.head {
        Some(head) => format!("head {} {}", head.seq, head.hash_hex()),
        None => "no head".to_owned(),
    };
    match &chain.report.status {
        AuditChainStatus::Intact { events } => {
            format!("{} intact: {events} event(s), {head}", chain.org_id)
        }
        AuditChainStatus::Broken {
            events_checked,
            first_broken_seq,
            problem,
        } => format!(
            "{} BROKEN at seq {first_broken_seq}: {problem} ({events_checked} event(s) check out before it; stored {head})",
            chain.org_id
        ),
    }
}

async fn rotate() -> Result<(), CliError> {
    let services = open_services().await?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} re-wrapped ({eta} left)")
            .map_err(|error| CliError::Invalid(format!("progress bar: {error}")))?
            .progress_chars("=> "),
    );
    bar.set_message(format!(
        "rotating to key version {}",
        services.keyring.active_version()
    ));
    let rotated = services
        .credential_service
        .rotate(&RotationOptions::default(), |progress| {
            let left: u64 = progress
                .remaining
                .iter()
                .map(|count| count.credentials)
                .sum();
            bar.set_length(progress.rewrapped + left);
            bar.set_position(progress.rewrapped);
        })
        .await;
    bar.finish_and_clear();
    let report = finish(&services, rotated).await?;
    say_failures(&report.failures);
    let per_version: Vec<String> = report
        .remaining
        .iter()
        .map(|count| format!("version {}: {}", count.key_version, count.credentials))
        .collect();
    say!(
        "re-wrapped {} credential(s) under key version {}; credentials per key version: {}",
        report.rewrapped,
        report.active_version,
        if per_version.is_empty() {
            "none".to_owned()
        } else {
            per_version.join(", ")
        }
    );
    if report.changed_meanwhile > 0 {
        say!(
            "{} credential(s) changed while being re-wrapped; run `byoc keys rotate` again",
            report.changed_meanwhile
        );
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Invalid(format!(
            "{} credential(s) could not be re-wrapped",
            report.failures.len()
        )))
    }
}

/// `byoc keys create --kms KEY`: prints the new version alone on stdout, what to do next on stderr.
async fn create_kms_held(kms_key: &KmsKeyId) -> Result<(), CliError> {
    let config = RuntimeConfig::from_env()?;
    let (repository, keys) = open_operator_store(&config).await?;
    let kms = KmsAccess::Environment.client().await?;
    let created =
        create_kms_held_version(&keys, repository.as_ref(), kms.as_ref(), kms_key).await?;
    say!("{}", created.version);
    eprintln!(
        "byoc: master key version {} is held by KMS key {kms_key} (key check value {}); make it active with \
         BYOC_ACTIVE_KEY_VERSION={}, restart, then run `byoc keys rotate`",
        created.version, created.check_value, created.version
    );
    Ok(())
}

/// `byoc keys list`: one line per version.
async fn list_keys() -> Result<(), CliError> {
    let services = open_services().await?;
    let listed = list_versions(&services.keyring, services.repository.as_ref()).await;
    let _ = services.credential_service.shutdown().await;
    say!("VERSION\tHELD BY\tACTIVE\tKEY CHECK VALUE\tCREDENTIALS");
    for version in listed? {
        let held_by = match &version.held_by {
            HeldBy::Environment => "env".to_owned(),
            HeldBy::Kms(key) => format!("kms:{key}"),
            HeldBy::Missing => "missing".to_owned(),
        };
        say!(
            "{}\t{}\t{}\t{}\t{}",
            version.version,
            held_by,
            if version.active { "active" } else { "-" },
            version
                .check_value
                .map_or_else(|| "-".to_owned(), |value| value.to_hex()),
            version.credentials
        );
    }
    Ok(())
}

/// Prints one `FAILED credential …` line for each credential whose envelope could not be handled.
fn say_failures(failures: &[EnvelopeFailure]) {
    for failure in failures {
        say!(
            "FAILED credential {} (organization {}, key version {}): {}",
            failure.id,
            failure.org_id,
            failure.key_version,
            failure.error
        );
    }
}

async fn check() -> Result<(), CliError> {
    let services = open_services().await?;
    let checked = services.credential_service.check_all().await;
    let report = finish(&services, checked).await?;
    say_failures(&report.failures);
    if report.failures.is_empty() {
        say!("all {} credential(s) decrypt", report.ok);
        Ok(())
    } else {
        Err(CliError::Invalid(format!(
            "{} credential(s) failed to decrypt, {} decrypt",
            report.failures.len(),
            report.ok
        )))
    }
}

/// Imports the legacy Twilio credential into `org`, or reports the one already there (same Account SID,
/// active) and changes nothing.
async fn import_env(org: OrgId, display_name: &str) -> Result<(), CliError> {
    let config = RuntimeConfig::from_env()?;
    let legacy = config.legacy_twilio.clone().ok_or_else(|| {
        CliError::Invalid(
            "TWILIO_ACCOUNT_SID: the legacy TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_PHONE_NUMBER are not set"
                .to_owned(),
        )
    })?;
    let display_name = DisplayName::parse(display_name.trim())
        .map_err(|error| CliError::Invalid(format!("--display-name: {}", error.reason)))?;
    let requested_name = display_name.as_str().to_owned();
    let actor =
        ServiceName::parse("byoc-cli").map_err(|error| CliError::Invalid(error.to_string()))?;
    let services = Services::open_for_operator(&config).await?;
    let imported = services
        .credential_service
        .import(org, actor, &os_user(), &legacy, display_name)
        .await;
    let imported = finish(&services, imported).await.map_err(|error| match error {
        CliError::Service(service_error)
            if matches!(
                service_error.store_error(),
                Some(StoreError::Conflict {
                    what: ConflictKind::DisplayName
                })
            ) =>
        {
            CliError::Invalid(format!(
                "--display-name: {org} already has another Twilio credential named \"{requested_name}\" \
                 (deactivated, or for another account); choose another --display-name"
            ))
        }
        other => other,
    })?;
    match imported {
        Imported::Created(metadata) => say!(
            "imported the legacy Twilio credential into {org} as {} ({}); verify it, then remove the TWILIO_* variables",
            metadata.id, metadata.display_name
        ),
        Imported::AlreadyPresent(metadata) => say!(
            "the legacy Twilio account is already imported into {org} as {} ({}); nothing changed",
            metadata.id, metadata.display_name
        ),
    }
    Ok(())
}

/// The operating-system user running the CLI (`$USER`), for the import's audit event; `unknown` when unset.
fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes the credential service's queued audit events, then hands back the command's result.
async fn finish<T>(
    services: &Services,
    result: Result<T, CredentialServiceError>,
) -> Result<T, CliError> {
    let flushed = services.credential_service.shutdown().await;
    let value = result?;
    flushed.map_err(|error| CliError::Invalid(format!("audit log: {error}")))?;
    Ok(value)
}

/// `byoc migrate` needs only `DATABASE_URL` (the owner's, for Postgres; from the environment or
/// `BYOC_CONFIG_FILE`); in dev mode it opens the dev database.
async fn migrate() -> Result<(), CliError> {
    match config::environment()?.remove("DATABASE_URL") {
        Some(url) => {
            let database = DatabaseUrl::parse(&url)?;
            byoc_credential_store::migrate(database.expose()).await?;
        }
        None => {
            open_services().await?;
        }
    }
    say!("migrations applied");
    Ok(())
}

async fn open_services() -> Result<Services, CliError> {
    let config = RuntimeConfig::from_env()?;
    Ok(Services::open_for_operator(&config).await?)
}
