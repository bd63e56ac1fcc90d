//! Tracing set-up shared by the service and the CLI: `RUST_LOG` filters (default `info`), logs go to stderr.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber writing to `writer`, filtered by `RUST_LOG` or else `default_filter`;
/// `ansi` turns colours on (for a terminal only, so log files stay plain text).
///
/// Returns an error if a global subscriber is already installed.
pub fn init<W>(
    default_filter: &str,
    writer: W,
    ansi: bool,
) -> Result<(), tracing_subscriber::util::TryInitError>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi)
                .with_target(true),
        )
        .try_init()
}
