//! `GET /oauth2/authorize`: the authorization-code grant's front door (RFC 6749 §4.1, RFC 7636).
//!
//! A request whose client or redirect URI cannot be verified gets an HTML page and is never redirected
//! anywhere (RFC 6749 §4.1.2.1); every later problem goes back to the verified redirect URI as an error
//! response carrying `state`. A person without a session is sent through the login page and comes back here.

use crate::audit::{self, Event};
use crate::error::PageError;
use crate::form;
use crate::opaque;
use crate::state::AppState;
use crate::web::{see_other, session};
use axum::Extension;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use flyteauth_core::authorize::{self, AuthorizationRequest, RedirectableError};
use flyteauth_core::metadata::{AUTHORIZE_PATH, LOGIN_PATH};
use flyteauth_core::oauth::{ErrorCode, OAuthError};
use flyteauth_store::NewCode;
use std::net::SocketAddr;

/// Longest authorize query accepted; real ones are well under 1 KiB.
const MAX_QUERY_BYTES: usize = 8 * 1024;

fn refused(message: impl Into<std::borrow::Cow<'static, str>>) -> PageError {
    PageError::bad_request("Sign-in request refused", message).with_hint(
        "Start the sign-in again from the application. If it keeps failing, its configuration \
         (client id or redirect URI) does not match this server's.",
    )
}

/// `GET /oauth2/authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY_BYTES {
        return Err(refused("The sign-in request is too long."));
    }
    let params = form::parse(query.as_bytes())
        .map_err(|e| refused(format!("The sign-in request is malformed: {e}.")))?;
    let client_id = params
        .get("client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| refused("The sign-in request names no application (client_id)."))?;
    let client = state.find_client(client_id).await?.ok_or_else(|| {
        refused(format!(
            "No application is registered as {:?}.",
            audit::printable(client_id)
        ))
    })?;
    let redirect_uri =
        authorize::check_redirect_uri(&client, params.get("redirect_uri").map(String::as_str))
            .map_err(|e| refused(e.to_string()))?;
    let request = match authorize::validate(
        &client,
        &redirect_uri,
        &params,
        &state.accepted_audiences,
        &state.default_audience,
    ) {
        Ok(request) => request,
        Err(e) => return Ok(redirect_error(&e)),
    };

    let Some(logged_in) = session::current(&state, &headers).await? else {
        if params
            .get("prompt")
            .is_some_and(|p| p.split(' ').any(|v| v == "none"))
        {
            return Ok(redirect_error(&RedirectableError {
                redirect_uri: request.redirect_uri.clone(),
                state: request.state.clone(),
                error: OAuthError::new(ErrorCode::LoginRequired, "the person is not signed in"),
            }));
        }
        let return_to = format!("{AUTHORIZE_PATH}?{query}");
        let location = format!(
            "{LOGIN_PATH}?return_to={}",
            percent_encoding::utf8_percent_encode(&return_to, percent_encoding::NON_ALPHANUMERIC)
        );
        return Ok(see_other(&location));
    };

    let code = opaque::new_token();
    let now = state.clock.unix_now();
    let lifetime = session::duration_secs(
        state
            .config
            .auth
            .app_auth
            .self_auth_server
            .authorization_code_lifespan,
    );
    let family_id = uuid::Uuid::new_v4().to_string();
    state
        .store
        .put_code(&NewCode {
            code_hash: opaque::digest(&code),
            client_id: client.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone().unwrap_or_default(),
            scopes: request.scopes.clone(),
            audience: request.audience.clone(),
            subject: logged_in.user.subject.clone(),
            username: logged_in.user.username.clone(),
            family_id: family_id.clone(),
            nonce: request.nonce.clone().unwrap_or_default(),
            auth_time: logged_in.session.auth_time,
            created_at: now,
            expires_at: now.saturating_add(lifetime),
        })
        .await
        .map_err(PageError::internal)?;
    audit::record(
        &state,
        Event {
            kind: "authorization.code_issued",
            client_id: &client.id,
            subject: &logged_in.user.subject,
            outcome: "success",
            peer,
            detail: serde_json::json!({"family_id": family_id, "scope": request.scopes.join(" ")}),
        },
    )
    // Fails closed: a code is a credential (and its token's own event is checked again when it is redeemed).
    .await?;
    Ok(see_other(&success_location(&state, &request, &code)))
}

/// `redirect_uri?code=…&state=…&iss=…` (RFC 9207 `iss` lets the client tell authorization servers apart).
fn success_location(state: &AppState, request: &AuthorizationRequest, code: &str) -> String {
    let mut pairs = vec![("code", code)];
    if let Some(s) = &request.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &state.metadata.issuer));
    with_query(&request.redirect_uri, &pairs)
}

/// The error response of RFC 6749 §4.1.2.1, sent to the already verified redirect URI.
fn redirect_error(e: &RedirectableError) -> Response {
    let mut pairs = vec![
        ("error", e.error.code.as_str()),
        ("error_description", &e.error.description),
    ];
    if let Some(s) = &e.state {
        pairs.push(("state", s));
    }
    see_other(&with_query(&e.redirect_uri, &pairs))
}

/// `uri` with `pairs` appended to its query, form-encoded.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::from(uri);
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in pairs {
        out.push(sep);
        sep = '&';
        out.push_str(k);
        out.push('=');
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_appended_form_encoded() {
        assert_eq!(
            with_query(
                "http://localhost:53593/callback",
                &[("code", "a b"), ("state", "x&y=z")]
            ),
            "http://localhost:53593/callback?code=a+b&state=x%26y%3Dz"
        );
        assert_eq!(
            with_query("http://localhost/cb?k=v", &[("code", "c")]),
            "http://localhost/cb?k=v&code=c"
        );
    }
}
