//! Authorization code with PKCE (RFC 7636) through a browser and a loopback listener (RFC 8252).

mod listener;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

use super::{LoginEvent, LoginUi};
use crate::browser::{self, Opened};
use crate::token::{TokenClient, Tokens};
use crate::{ClientError, Secret};

/// 64 bytes give an 86-character verifier, inside the 43..=128 of RFC 7636 §4.1, as the SDKs make it.
const VERIFIER_BYTES: usize = 64;
const STATE_BYTES: usize = 32;

/// What a PKCE login needs.
#[derive(Debug, Clone)]
pub struct PkceLogin<'a> {
    /// The token endpoint's client.
    pub token_client: &'a TokenClient,
    /// `authorization_endpoint` from discovery.
    pub authorization_endpoint: &'a url::Url,
    /// The public client.
    pub client_id: &'a str,
    /// The loopback redirect URI from discovery; the listener binds its host and port.
    pub redirect_uri: &'a url::Url,
    /// Scopes to ask for.
    pub scopes: &'a [String],
    /// Audience to ask for.
    pub audience: Option<&'a str>,
    /// How long to wait for the browser.
    pub timeout: Duration,
}

/// Runs the login: binds the listener first (a taken port is [`ClientError::CallbackPortInUse`]), opens the
/// browser (or says where to go), waits for the callback with the right `state` (other paths get a 404 page, a
/// wrong or missing `state` a 400 page, and the wait goes on; an `error` callback is
/// [`ClientError::LoginDenied`]), exchanges the code. No callback within the timeout is
/// [`ClientError::LoginTimedOut`]; Ctrl-C is [`ClientError::Interrupted`].
pub async fn login(login: PkceLogin<'_>, ui: &dyn LoginUi) -> Result<Tokens, ClientError> {
    login_with(login, ui, browser::open, super::ctrl_c()).await
}

/// [`login`] with the browser and the interruption injected.
async fn login_with(
    login: PkceLogin<'_>,
    ui: &dyn LoginUi,
    open_browser: impl FnOnce(&str) -> Opened,
    interrupt: impl Future<Output = ()>,
) -> Result<Tokens, ClientError> {
    let verifier = Secret::new(random_token(VERIFIER_BYTES));
    let state = random_token(STATE_BYTES);
    let challenge = flyteauth_types::pkce::s256_challenge(verifier.expose());

    // A browser (or a script standing in for one) may come back at once: the port must already be listening.
    let listener = listener::bind(login.redirect_uri).await?;
    let url = authorize_url(&login, &state, &challenge);
    match open_browser(url.as_str()) {
        Opened::Started(program) => {
            tracing::debug!(%program, "browser started");
            ui.event(LoginEvent::BrowserOpened { url: url.as_str() });
        }
        Opened::Unavailable(reason) => {
            tracing::debug!(%reason, "no browser");
            ui.event(LoginEvent::BrowserUnavailable {
                url: url.as_str(),
                reason: &reason,
            });
        }
    }

    let expected = listener::Expected {
        redirect_uri: login.redirect_uri,
        state: &state,
        signed_in_to: login
            .authorization_endpoint
            .host_str()
            .unwrap_or("the identity provider"),
    };
    let work = async {
        let code = listener::wait_for_callback(listener, &expected, login.timeout, ui).await?;
        let tokens = login
            .token_client
            .exchange_code(
                login.client_id,
                &code,
                login.redirect_uri.as_str(),
                &verifier,
            )
            .await?;
        ui.event(LoginEvent::LoggedIn);
        Ok(tokens)
    };
    super::until_interrupted(work, interrupt).await
}

/// The authorization request (RFC 6749 §4.1.1 with RFC 7636 §4.3). Unlike the SDKs, a query the endpoint
/// already has (a tenant, a policy) is kept: the parameters are added after it.
fn authorize_url(login: &PkceLogin<'_>, state: &str, challenge: &str) -> url::Url {
    let mut url = login.authorization_endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("client_id", login.client_id)
            .append_pair("response_type", "code");
        if !login.scopes.is_empty() {
            query.append_pair("scope", &login.scopes.join(" "));
        }
        query
            .append_pair("redirect_uri", login.redirect_uri.as_str())
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(audience) = login.audience.filter(|a| !a.is_empty()) {
            query.append_pair("audience", audience);
        }
    }
    url
}

/// `bytes` random bytes from the thread's CSPRNG, unpadded base64url.
fn random_token(bytes: usize) -> String {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(&*buf)
}
