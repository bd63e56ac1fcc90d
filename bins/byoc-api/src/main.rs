//! `byoc-api`: the byoc HTTP service. Loads configuration, sets up tracing, builds and runs the application.
//! It takes no arguments (configuration comes from the environment and `BYOC_CONFIG_FILE`): `--help` and
//! `--version` answer and exit, anything else is refused before anything starts.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use byoc_api::startup::config::Config;
use byoc_api::{Application, StartupError};
use byoc_runtime::telemetry;
use clap::Parser;

/// The byoc HTTP service: bring-your-own-credentials for every organization. Configured by environment
/// variables (and BYOC_CONFIG_FILE); with no DATABASE_URL it runs in dev mode (embedded SQLite store and
/// generated keys under ./.byoc-dev). See docs/operations.md.
#[derive(Debug, Parser)]
#[command(name = "byoc-api", version)]
struct Arguments {}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(error) = Arguments::try_parse() {
        return byoc_runtime::command_line::exit_for("byoc-api", &error);
    }
    if let Err(error) = telemetry::init("info", std::io::stderr, std::io::stderr().is_terminal()) {
        eprintln!("byoc-api: cannot set up logging: {error}");
        return ExitCode::FAILURE;
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("byoc-api: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), StartupError> {
    let config = Config::from_env()?;
    let application = Application::build(config).await?;
    if let Some(banner) = application.dev_banner()? {
        // A closed stdout (e.g. piped into `head`) must not stop the service.
        let _ = writeln!(std::io::stdout(), "{banner}");
    }
    tracing::info!(port = application.port(), public_url = %application.public_url(), "byoc-api listening");
    application
        .run_until_stopped()
        .await
        .map_err(|error| StartupError::Setup(format!("server: {error}")))
}
