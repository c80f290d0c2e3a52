//! Process-wide logging setup (tracing-subscriber), plain text or JSON lines on stderr.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Errors of the telemetry setup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The filter directive (from `RUST_LOG` or the caller) does not parse.
    #[error("invalid log filter {directive:?}: {message}")]
    InvalidFilter {
        /// The rejected directive.
        directive: String,
        /// Why it was rejected.
        message: String,
    },
}

/// Installs the global subscriber, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]).
///
/// Returns `Ok(false)` without changing anything if a global subscriber already exists, so tests
/// and embedders may call it repeatedly.
pub fn init(format: LogFormat) -> Result<bool, TelemetryError> {
    let directive = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    init_with_filter(format, &directive)
}

/// Installs the global subscriber with an explicit filter directive (`RUST_LOG` syntax).
///
/// Returns `Ok(false)` if a global subscriber was already installed.
pub fn init_with_filter(format: LogFormat, directive: &str) -> Result<bool, TelemetryError> {
    let filter = parse_filter(directive)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match format {
        LogFormat::Plain => builder.finish().try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .finish()
            .try_init()
            .is_ok(),
    };
    Ok(installed)
}

fn parse_filter(directive: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directive)
        .map_err(|err| TelemetryError::InvalidFilter {
            directive: directive.to_owned(),
            message: err.to_string(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn init_is_idempotent() {
        // Another test may already have installed one; either way a second call is a no-op.
        let _ = init_with_filter(LogFormat::Json, "debug").unwrap();
        assert!(!init_with_filter(LogFormat::Plain, "info").unwrap());
    }

    #[test]
    fn bad_filter_is_reported() {
        let err = init_with_filter(LogFormat::Plain, "flyteauth=notalevel").unwrap_err();
        assert!(err.to_string().contains("notalevel"));
    }
}
