//! `GET /login/federated` and `GET|POST /callback`: signing in through the upstream identity provider.
//!
//! The sign-in in progress lives in a sealed cookie of its own (`flyteauth_login_<first 8 characters of the
//! state>`), so several tabs can sign in at once and any replica can finish what another started. It carries the
//! `state`, the `nonce`, the PKCE verifier and where to go afterwards; it is cleared when the sign-in ends.

use crate::audit::{self, Event};
use crate::error::PageError;
use crate::federation::{Federation, FederationError};
use crate::form;
use crate::state::AppState;
use crate::web::cookies;
use crate::web::login::return_target;
use crate::web::pages;
use crate::web::session::{self, SessionProfile};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flyteauth_core::browser_session::{
    PENDING_LOGIN_SECS, PendingLogin, pending_login_cookie, seal_pending_login,
};
use flyteauth_store::{FederatedUser, StoreError};
use std::net::SocketAddr;

/// Largest `/callback` form (`response_mode=form_post`) accepted.
pub const MAX_CALLBACK_FORM_BYTES: usize = 64 * 1024;

/// Sends the browser to the identity provider, remembering the sign-in in its cookie.
pub async fn begin(
    state: &AppState,
    federation: &Federation,
    return_to: &str,
    idp_hint: Option<&str>,
) -> Result<Response, PageError> {
    let now = state.clock.unix_now();
    let pending = PendingLogin::new(return_to, now);
    let url = federation
        .authorization_url(&pending, idp_hint)
        .await
        .map_err(|e| provider_down(&e))?;
    // A destination too long for the cookie is dropped (the browser then lands on the public URL), never a 500.
    let (name, sealed) =
        seal_pending_login(&state.sealer, &pending).map_err(PageError::internal)?;
    let cookie = state
        .cookies
        .set_lax(
            &name,
            &sealed,
            u64::try_from(PENDING_LOGIN_SECS).unwrap_or(600),
        )
        .ok_or_else(|| PageError::internal("the sign-in cookie is not a valid header value"))?;
    let mut response = crate::web::see_other(url.as_str());
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `GET /login/federated[?redirect_url=<target>]`: the "Sign in with …" link of the login page.
pub async fn start(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let Some(federation) = &state.federation else {
        return Err(PageError {
            status: StatusCode::NOT_FOUND,
            ..PageError::bad_request(
                "No identity provider",
                "This deployment does not sign people in through an identity provider.",
            )
        });
    };
    let params = form::parse(query.unwrap_or_default().as_bytes()).map_err(|e| {
        PageError::bad_request(
            "Sign-in request refused",
            format!("The address is malformed: {e}."),
        )
    })?;
    let return_to = return_target(&state, &params).unwrap_or_default();
    let hint = federation
        .idp_query_parameter()
        .and_then(|name| params.get(name))
        .map(String::as_str);
    begin(&state, federation, &return_to, hint).await
}

/// `GET|POST /callback`: where the identity provider sends the browser back.
pub async fn callback(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PageError> {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let Some(federation) = &state.federation else {
        return Err(PageError {
            status: StatusCode::NOT_FOUND,
            ..PageError::bad_request(
                "No identity provider",
                "This deployment does not sign people in through an identity provider.",
            )
        });
    };
    let raw = if method == Method::POST {
        body.map_err(|r| PageError::unreadable_form("Sign-in answer refused", &r))?
            .to_vec()
    } else {
        query.unwrap_or_default().into_bytes()
    };
    let params = form::parse(&raw).map_err(|e| {
        PageError::bad_request(
            "Sign-in answer refused",
            format!("The identity provider's answer is malformed: {e}."),
        )
    })?;
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();

    let stale = || {
        PageError::bad_request(
            "This sign-in has expired",
            "This sign-in was not started in this browser, was already used, or is more than 10 minutes old.",
        )
        .with_hint("Open the sign-in page again.")
    };
    let presented_state = field("state");
    let name = pending_login_cookie(presented_state).ok_or_else(stale)?;
    let sealed = cookies::read_sealed(&headers, &name).ok_or_else(stale)?;
    let pending: PendingLogin = state.sealer.open(&name, sealed).map_err(|_| stale())?;
    let now = state.clock.unix_now();
    if pending.is_expired(now) || !pending.state_matches(presented_state) {
        return Err(stale());
    }
    // The sign-in is over whatever happens next: its cookie goes, on the error pages too.
    let clear = state.cookies.clear(&name);
    let mut response = complete(&state, federation, &pending, &params, peer, now)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if let Some(clear) = clear {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}

/// The rest of `/callback` once the sign-in's cookie matched: the provider's answer, the account, the session.
async fn complete(
    state: &AppState,
    federation: &Federation,
    pending: &PendingLogin,
    params: &std::collections::HashMap<String, String>,
    peer: Option<SocketAddr>,
    now: i64,
) -> Result<Response, PageError> {
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if !field("error").is_empty() {
        let error = audit::printable(field("error"));
        let description = audit::printable(field("error_description"));
        audit::record_or_log(
            state,
            Event {
                kind: "login.federated_refused",
                client_id: "",
                subject: "",
                outcome: "failure",
                peer,
                detail: serde_json::json!({"error": error, "error_description": description}),
            },
        )
        .await;
        crate::metrics::login("idp_refused");
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            ..PageError::bad_request(
                "The identity provider did not sign you in",
                if description.is_empty() {
                    format!("It answered: {error}.")
                } else {
                    format!("It answered: {error} ({description}).")
                },
            )
        });
    }
    let code = field("code");
    if code.is_empty() {
        return Err(PageError::bad_request(
            "Sign-in answer refused",
            "The identity provider's answer carries no authorization code.",
        ));
    }

    let signed_in = match federation.finish(code, pending).await {
        Ok(s) => s,
        Err(e) => {
            audit::record_or_log(
                state,
                Event {
                    kind: "login.federated_failed",
                    client_id: "",
                    subject: "",
                    outcome: "failure",
                    peer,
                    detail: serde_json::json!({"reason": e.to_string()}),
                },
            )
            .await;
            crate::metrics::login("idp_failed");
            return Err(callback_failure(&e));
        }
    };
    let profile = &signed_in.profile;
    let user = state
        .store
        .upsert_federated_user(&FederatedUser {
            username: profile.username.clone(),
            subject: profile.subject.clone(),
            email: profile.email.clone(),
            display_name: profile.name.clone(),
            groups: profile.groups.clone(),
            now,
        })
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => PageError {
                status: StatusCode::CONFLICT,
                ..PageError::bad_request(
                    "This account cannot sign in here",
                    "Another account already uses this identity.",
                )
            }
            .with_hint("Ask the operators to look at the account list (flyteauth users list)."),
            other => PageError::internal(other),
        })?;
    if user.disabled {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            ..PageError::bad_request(
                "This account is disabled",
                "Your account was disabled on this server.",
            )
        });
    }
    let cookie = session::start(
        state,
        &user,
        SessionProfile {
            preferred_username: profile.preferred_username.clone(),
            groups: profile.groups.clone(),
            idp_id_token: Some(signed_in.id_token),
        },
    )
    .await
    .map_err(PageError::from)?;
    audit::record(
        state,
        Event {
            kind: "login.succeeded",
            client_id: "",
            subject: &user.subject,
            outcome: "success",
            peer,
            detail: serde_json::json!({"username": user.username, "federated": true}),
        },
    )
    // Fails closed: the session cookie is a credential.
    .await?;
    crate::metrics::login("success");
    let mut response = if pending.return_to.is_empty() {
        let name = if profile.preferred_username.is_empty() {
            &profile.subject
        } else {
            &profile.preferred_username
        };
        pages::html_response(
            StatusCode::OK,
            pages::notice_page("Signed in", &format!("You are signed in as {name}.")),
        )
    } else {
        crate::web::see_other(&pending.return_to)
    };
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The page for an identity provider that cannot be reached when a sign-in starts.
fn provider_down(e: &FederationError) -> PageError {
    tracing::warn!(error = %e, "identity provider unavailable");
    PageError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        retry_after: Some(30),
        ..PageError::bad_request(
            "The identity provider cannot be reached",
            "Signing in needs the organisation's identity provider, which does not answer right now.",
        )
    }
    .with_hint("Try again in a minute. If it keeps happening, tell the operators.")
}

/// The page for a sign-in that failed after the provider sent the browser back.
fn callback_failure(e: &FederationError) -> PageError {
    tracing::warn!(error = %e, "federated sign-in failed");
    match e {
        FederationError::Unreachable { .. } | FederationError::TokenRefused(_) => PageError {
            status: StatusCode::BAD_GATEWAY,
            ..PageError::bad_request(
                "The identity provider did not complete the sign-in",
                "Its token endpoint refused the sign-in or could not be reached.",
            )
        },
        FederationError::InvalidIdToken(_) | FederationError::Profile(_) => PageError {
            status: StatusCode::UNAUTHORIZED,
            ..PageError::bad_request(
                "The sign-in could not be verified",
                "The identity provider's answer did not prove who you are.",
            )
        },
    }
}
