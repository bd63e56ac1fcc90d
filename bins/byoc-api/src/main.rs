//! `byoc-api`: the byoc HTTP service. Loads configuration, sets up tracing, builds and runs the application.

use std::process::ExitCode;

use byoc_api::config::Config;
use byoc_api::{telemetry, Application, StartupError};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(error) = telemetry::init("info", std::io::stderr) {
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
        println!("{banner}");
    }
    tracing::info!(port = application.port(), public_url = %application.public_url(), "byoc-api listening");
    application
        .run_until_stopped()
        .await
        .map_err(|error| StartupError::Setup(format!("server: {error}")))
}
