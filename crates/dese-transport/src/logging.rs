//! How the SDK's binaries install a `tracing` subscriber (feature `log-subscriber`): log lines
//! on standard error, filtered by `RUST_LOG`, as text or as JSON lines.
//!
//! The libraries never install one; this is for applications that want the binaries' choice.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The shape of the log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event: time, level, span fields, message, fields.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, and `span`: the
    /// client's span, with its `client_id` and `broker`), for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format {other:?}: expected text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Why the subscriber was not installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `RUST_LOG` is not a filter (`info`, `dese_transport=debug,warn`, ...).
    #[error("RUST_LOG={spec:?} is not a filter: {reason}")]
    Filter {
        /// `RUST_LOG` as given.
        spec: String,
        /// What the filter parser said.
        reason: String,
    },
    /// A subscriber was installed already.
    #[error("a tracing subscriber is installed already")]
    AlreadySet,
}

/// Installs the process's subscriber: events at `default` level and above (such as `"info"`)
/// unless `RUST_LOG` says otherwise, on standard error, in `format`.
pub fn init(format: LogFormat, default: &str) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| LoggingError::Filter {
                reason: e.to_string(),
                spec: spec.clone(),
            })?
        }
        _ => EnvFilter::new(default),
    };
    // Colours only on a terminal: a log file or a collector gets plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours)
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadySet)
}
