//! `byoc`: the byoc operator CLI. It reads the same configuration as `byoc-api` (environment variables, the
//! optional `BYOC_CONFIG_FILE`, dev mode under `./.byoc-dev/` when nothing is configured) and exits non-zero
//! with one clear line on bad input.

use std::process::ExitCode;
use std::time::Duration;

use byoc_api::auth::mint_token;
use byoc_api::config::{Config, ConfigError, DatabaseUrl};
use byoc_api::{Services, StartupError};
use byoc_credential_store::{HotLeadThreshold, OrgId, OrganizationName, Role, StoreError, UserId};
use byoc_crypto::MasterKey;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

/// Operator CLI for byoc: database migrations, organizations and members, tokens and master keys.
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
    /// Master keys: generate a new one.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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
    Invalid(String),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
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

/// Help and version go to stdout as clap renders them; a usage error is one line on stderr, exit code 2.
fn clap_exit(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            print!("{}", error.render());
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = error.render().to_string();
            let line = rendered
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("byoc: {line} (see byoc --help)");
            ExitCode::from(2)
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
            println!("{}", organization.id);
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
            println!(
                "{} is now {} of {}",
                member.user_id, member.role, member.org_id
            );
            Ok(())
        }
        Command::Token { org, user, ttl } => {
            let config = Config::from_env()?;
            let secret = match (&config.auth.jwt_secret, config.is_dev()) {
                (Some(secret), _) => secret.clone(),
                (None, true) => {
                    let services = Services::open(&config).await?;
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
                org.as_uuid(),
                user.as_uuid(),
                Duration::from_secs(ttl),
            )
            .map_err(|error| CliError::Invalid(format!("cannot mint the token: {error}")))?;
            println!("{token}");
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            println!("{}", MasterKey::generate().to_hex().expose_secret());
            Ok(())
        }
    }
}

/// `byoc migrate` needs only `DATABASE_URL` (the owner's, for Postgres); in dev mode it opens the dev database.
async fn migrate() -> Result<(), CliError> {
    match std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        Some(url) => {
            let database = DatabaseUrl::parse(&url)?;
            byoc_credential_store::migrate(database.expose()).await?;
        }
        None => {
            open_services().await?;
        }
    }
    println!("migrations applied");
    Ok(())
}

async fn open_services() -> Result<Services, CliError> {
    let config = Config::from_env()?;
    Ok(Services::open(&config).await?)
}
