//! The device authorization grant (RFC 8628).

#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{LoginEvent, LoginUi};
use crate::ClientError;
use crate::token::{DevicePoll, TokenClient, Tokens};

/// RFC 8628 §3.5: each `slow_down` adds this to the interval for the rest of the login.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// A server announcing no wait at all would be polled in a tight loop.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How often the time left is shown while waiting.
const WAITING_EVERY: Duration = Duration::from_secs(1);

/// What a device login needs.
#[derive(Debug, Clone)]
pub struct DeviceLogin<'a> {
    /// The token endpoint's client.
    pub token_client: &'a TokenClient,
    /// `device_authorization_endpoint` from discovery.
    pub device_endpoint: &'a url::Url,
    /// The public client.
    pub client_id: &'a str,
    /// Scopes to ask for.
    pub scopes: &'a [String],
    /// Audience to ask for.
    pub audience: Option<&'a str>,
    /// The longest wait, whatever the server's `expires_in`.
    pub timeout: Duration,
}

/// Runs the flow: asks for a code, shows it, polls at the server's interval (5 s more after each `slow_down`)
/// until approval, denial, expiry or Ctrl-C ([`ClientError::Interrupted`]).
pub async fn login(login: DeviceLogin<'_>, ui: &dyn LoginUi) -> Result<Tokens, ClientError> {
    login_with(login, ui, super::ctrl_c()).await
}

/// [`login`] with the interruption injected.
async fn login_with(
    login: DeviceLogin<'_>,
    ui: &dyn LoginUi,
    interrupt: impl Future<Output = ()>,
) -> Result<Tokens, ClientError> {
    super::until_interrupted(run(&login, ui), interrupt).await
}

async fn run(login: &DeviceLogin<'_>, ui: &dyn LoginUi) -> Result<Tokens, ClientError> {
    let client = login.token_client;
    let authorization = client
        .device_authorize(
            login.device_endpoint,
            login.client_id,
            login.scopes,
            login.audience,
        )
        .await?;
    ui.event(LoginEvent::DeviceCode {
        verification_uri: &authorization.verification_uri,
        verification_uri_complete: &authorization.verification_uri_complete,
        user_code: &authorization.user_code,
        expires_in: authorization.expires_in,
    });
    let deadline = Instant::now() + authorization.expires_in.min(login.timeout);
    let mut interval = authorization.interval.max(MIN_INTERVAL);
    loop {
        // The first poll too waits for the interval (RFC 8628 §3.5): nobody has approved anything yet. The last
        // one is made at the deadline rather than skipped.
        wait_until((Instant::now() + interval).min(deadline), deadline, ui).await;
        match client
            .device_poll(login.client_id, &authorization.device_code)
            .await
        {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => {
                interval += SLOW_DOWN_STEP;
                tracing::debug!(
                    interval_s = interval.as_secs(),
                    "device polling slowed down"
                );
                ui.event(LoginEvent::DeviceSlowDown { interval });
            }
            Ok(DevicePoll::Done(tokens)) => {
                ui.event(LoginEvent::LoggedIn);
                return Ok(tokens);
            }
            Err(error) if is_transient(&error) => {
                tracing::debug!(%error, "device poll failed; polling on")
            }
            Err(error) => return Err(error),
        }
        if Instant::now() >= deadline {
            return Err(ClientError::DeviceCodeExpired);
        }
    }
}

/// Whether polling should go on after `error`: the server or the network is briefly unwell, which the
/// deadline bounds anyway. (The token client already reads `authorization_pending`, `slow_down`,
/// `expired_token` and `access_denied`, and a 5xx or 429 without an OAuth error as pending.)
fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable { .. } => true,
        ClientError::OAuth { error, .. } => {
            error == "temporarily_unavailable"
                || error == "server_error"
                || error.starts_with("http 429")
                || error.starts_with("http 5")
        }
        _ => false,
    }
}

/// Sleeps until `at`, telling the person every second how long the code has left.
async fn wait_until(at: Instant, deadline: Instant, ui: &dyn LoginUi) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        ui.event(LoginEvent::DeviceWaiting {
            remaining: deadline.saturating_duration_since(now),
        });
        tokio::time::sleep_until(at.min(now + WAITING_EVERY)).await;
    }
}
