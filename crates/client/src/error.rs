//! The one error type of the client library. Every variant prints as one line a person can act on, and none
//! carries a secret or a token.

use std::path::PathBuf;
use std::time::Duration;

use crate::cache::CacheError;
use crate::config::ConfigError;
use crate::connect::RpcError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration could not be read or is incomplete.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The token cache could not be read or written (the keyring and the file both failed).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The server (or the identity provider) could not be reached at all.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Where the request went (no query string).
        url: String,
        /// The transport's explanation (connection refused, TLS, timeout).
        reason: String,
    },
    /// The token or device endpoint answered with an OAuth 2.0 error.
    #[error("{endpoint} refused the request: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    OAuth {
        /// The endpoint's URL.
        endpoint: String,
        /// The RFC 6749 `error` code (`invalid_client`, `invalid_grant`, …), or `http <status>` without one.
        error: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// An RPC (Connect or gRPC) failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The cached credentials stopped working (refresh token revoked or expired) and a new login is needed.
    #[error(
        "your sign-in to {endpoint} has ended ({reason}); please log in again: run `flyte login`"
    )]
    LoginRequired {
        /// The control plane (`host[:port]`).
        endpoint: String,
        /// What the server said.
        reason: String,
    },
    /// Nobody completed the browser login in time.
    #[error("no login arrived at {redirect_uri} within {}s; run the command again to retry", timeout.as_secs())]
    LoginTimedOut {
        /// The redirect URI the listener waited on.
        redirect_uri: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The person (or the identity provider) refused the login.
    #[error("the login was refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    LoginDenied {
        /// The `error` of the callback or device poll (`access_denied`, …).
        error: String,
        /// Its `error_description`, if any.
        description: Option<String>,
    },
    /// The loopback port of the redirect URI is taken by another program.
    #[error(
        "cannot listen on {address} for the login callback ({reason}); is another login running? Free the port or change the redirect URI"
    )]
    CallbackPortInUse {
        /// `host:port` of the redirect URI.
        address: String,
        /// The operating system's explanation.
        reason: String,
    },
    /// The device code expired before anybody approved it.
    #[error(
        "the device code expired before the request was approved; run the command again for a new code"
    )]
    DeviceCodeExpired,
    /// The server does not offer the flow the configuration asks for.
    #[error("{0}")]
    Unsupported(String),
    /// A command of the configuration (`admin.command`, `admin.proxyCommand`) failed.
    #[error("the command {program} {reason}")]
    Command {
        /// The program (first word of the command).
        program: String,
        /// What went wrong (exit status, no output, could not start).
        reason: String,
    },
    /// The server answered something this client cannot read.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol {
        /// Where the answer came from.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {}: {reason}", path.display())]
    File {
        /// `read`, `write`, `create` …
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's explanation.
        reason: String,
    },
    /// The operation was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

impl ClientError {
    /// Whether the failure means "the credentials are missing, invalid or expired": the error a caller answers by
    /// logging in again.
    pub fn is_authentication(&self) -> bool {
        match self {
            Self::LoginRequired { .. } => true,
            Self::OAuth { error, .. } => error == "invalid_client" || error == "invalid_grant",
            Self::Rpc(e) => e.is_unauthenticated(),
            _ => false,
        }
    }
}
