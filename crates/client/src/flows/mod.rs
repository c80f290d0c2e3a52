//! The login flows a person goes through, and what they tell the person while it happens.
//!
//! - [`pkce`]: authorization code with PKCE in a browser, a loopback listener on the advertised redirect URI;
//! - [`device`]: the device authorization grant, a code typed in on another device;
//! - [`command`]: a configured command prints the token (`admin.command`, `admin.proxyCommand`).

pub mod command;
pub mod device;
pub mod pkce;
#[cfg(test)]
mod testing;

use std::future::Future;
use std::time::Duration;

use crate::ClientError;

/// Something a person should see during a login. The CLI draws these (QR code, spinner); a service logs them.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum LoginEvent<'a> {
    /// The browser was asked to open `url`.
    BrowserOpened {
        /// The authorization URL.
        url: &'a str,
    },
    /// No browser could be started: the person must open `url` by hand.
    BrowserUnavailable {
        /// The authorization URL.
        url: &'a str,
        /// Why (no `$BROWSER`, no `xdg-open`, the command failed).
        reason: &'a str,
    },
    /// Still waiting for the browser to come back to the redirect URI.
    WaitingForBrowser {
        /// Time left before the login times out.
        remaining: Duration,
    },
    /// A device code to show: open `verification_uri_complete` (or `verification_uri` and type `user_code`).
    DeviceCode {
        /// Where to go.
        verification_uri: &'a str,
        /// Where to go with the code already filled in.
        verification_uri_complete: &'a str,
        /// The code to type.
        user_code: &'a str,
        /// How long the code is good for.
        expires_in: Duration,
    },
    /// Still waiting for the device code to be approved.
    DeviceWaiting {
        /// Time left before the code expires.
        remaining: Duration,
    },
    /// The server asked to poll less often; the new interval.
    DeviceSlowDown {
        /// The interval from now on.
        interval: Duration,
    },
    /// The login succeeded.
    LoggedIn,
}

/// Receives [`LoginEvent`]s.
pub trait LoginUi: Send + Sync {
    /// Shows `event`.
    fn event(&self, event: LoginEvent<'_>);
}

/// Prints the events a person cannot do without (where to go, which code) to stderr, one line each, and
/// nothing else: the default for services and scripts.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainUi;

impl LoginUi for PlainUi {
    fn event(&self, event: LoginEvent<'_>) {
        match event {
            LoginEvent::BrowserUnavailable { url, .. } => {
                eprintln!("Open this URL in a browser to sign in: {url}");
            }
            LoginEvent::DeviceCode {
                verification_uri_complete,
                user_code,
                ..
            } => {
                eprintln!(
                    "To sign in, open {verification_uri_complete} and confirm the code {user_code}"
                );
            }
            _ => {}
        }
    }
}

/// Runs `work` unless `interrupt` completes first, which is [`ClientError::Interrupted`]. The flows take the
/// interruption as a future so tests can interrupt them without sending the process a signal.
async fn until_interrupted<T>(
    work: impl Future<Output = Result<T, ClientError>>,
    interrupt: impl Future<Output = ()>,
) -> Result<T, ClientError> {
    tokio::select! {
        biased;
        () = interrupt => Err(ClientError::Interrupted),
        result = work => result,
    }
}

/// Completes at Ctrl-C. Where no handler can be installed the login simply cannot be interrupted this way, which
/// is no reason to refuse it.
async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::debug!(%error, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}
