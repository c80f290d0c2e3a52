//! `GET /login`, `POST /login` and `GET /logout`: the embedded identity provider's sign-in page.
//!
//! The form is CSRF-protected by a double-submit cookie; a wrong password and an unknown account get the same
//! answer in about the same time; failures slow down per account (a lockout kept in the store, so every
//! replica honours it) and per source address (in memory).

use crate::audit::{self, Event};
use crate::error::PageError;
use crate::form;
use crate::state::AppState;
use crate::web::cookies::{self, CSRF_COOKIE};
use crate::web::pages::{self, LoginForm};
use crate::web::session;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use flyteauth_core::password::{equalize_timing_for_unknown_user, verify_password};
use flyteauth_core::users::normalize_username;
use std::net::SocketAddr;

/// Largest login form accepted.
pub const MAX_LOGIN_FORM_BYTES: usize = 16 * 1024;

const WRONG_CREDENTIALS: &str = "Wrong user name or password.";

/// The validated place to continue to after a sign-in or sign-out: `redirect_url` (flyteadmin's name) or
/// `return_to` (the login form's field). A target that is neither a local path nor on an authorized origin falls
/// back to the public URL; no target at all gives `None`.
pub fn return_target(
    state: &AppState,
    params: &std::collections::HashMap<String, String>,
) -> Option<String> {
    let raw = params
        .get("redirect_url")
        .or_else(|| params.get("return_to"))
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())?;
    let config = &state.config;
    let public = config.public_url();
    Some(
        flyteauth_core::return_url::resolve(raw, &config.auth.authorized_uris, &public)
            .unwrap_or_else(|| public.to_string()),
    )
}

/// The client id of an authorize request we are to continue to, for the page's "to continue to" line.
fn client_of(return_to: &str) -> Option<String> {
    let query = return_to
        .strip_prefix(flyteauth_core::metadata::AUTHORIZE_PATH)?
        .strip_prefix('?')?;
    let params = form::parse(query.as_bytes()).ok()?;
    params
        .get("client_id")
        .map(|c| audit::printable(c))
        .filter(|c| !c.is_empty())
}

/// Whole minutes, rounded up, of a positive number of seconds.
fn minutes_from(secs: i64) -> i64 {
    secs.saturating_add(59) / 60
}

/// `GET /login[?redirect_url=<target>]`: the sign-in form, or straight to the identity provider when local
/// accounts are off; an already signed-in browser goes on to the target at once.
pub async fn show(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let params = form::parse(query.unwrap_or_default().as_bytes()).map_err(|e| {
        PageError::bad_request(
            "Sign-in request refused",
            format!("The address is malformed: {e}."),
        )
    })?;
    let return_to = return_target(&state, &params).unwrap_or_default();
    if let Some(logged_in) = session::current(&state, &headers).await? {
        if !return_to.is_empty() {
            return Ok(see_other(&return_to, None));
        }
        return Ok(signed_in_page(&logged_in.claims.preferred_username));
    }
    if !state.config.local_accounts_enabled()
        && let Some(federation) = &state.federation
    {
        let hint = federation
            .idp_query_parameter()
            .and_then(|name| params.get(name))
            .map(String::as_str);
        return crate::web::federated::begin(&state, federation, &return_to, hint).await;
    }
    Ok(form_page(
        &state,
        &headers,
        &return_to,
        "",
        None,
        StatusCode::OK,
    ))
}

/// The page of a browser that is signed in and has nowhere else to go.
fn signed_in_page(name: &str) -> Response {
    pages::html_response(
        StatusCode::OK,
        pages::notice_page("Signed in", &format!("You are signed in as {name}.")),
    )
}

/// Renders the login form, reusing the CSRF cookie if the browser has one.
fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (csrf, set_cookie) = cookies::csrf_for_form(&state.cookies, headers);
    let client = client_of(return_to);
    let federated = state.federation.as_ref().map(|f| {
        let mut href = String::from("/login/federated");
        if !return_to.is_empty() {
            href.push_str("?redirect_url=");
            href.extend(url::form_urlencoded::byte_serialize(return_to.as_bytes()));
        }
        (href, f.display_name())
    });
    let html = pages::login_page(&LoginForm {
        username,
        return_to,
        csrf_token: &csrf,
        error,
        client: client.as_deref(),
        federated: federated.as_ref().map(|(h, n)| (h.as_str(), n.as_str())),
    });
    let mut response = pages::html_response(status, html);
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn see_other(location: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = crate::web::see_other(location);
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PageError> {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let body = body.map_err(|r| PageError::unreadable_form("Sign-in request refused", &r))?;
    let params = form::parse(&body).map_err(|e| {
        PageError::bad_request(
            "Sign-in request refused",
            format!("The form is malformed: {e}."),
        )
    })?;
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let return_to = return_target(&state, &params).unwrap_or_default();
    let return_to = return_to.as_str();
    let typed_name = field("username");
    if !state.config.local_accounts_enabled() {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            ..PageError::bad_request(
                "Local accounts are off",
                "This deployment signs people in through its identity provider only.",
            )
        }
        .with_hint("Open the sign-in page again to be sent to the identity provider."));
    }

    if !cookies::csrf_matches(
        cookies::read(&headers, CSRF_COOKIE),
        params.get("csrf_token").map(String::as_str),
    ) {
        // Usually a form left open past its cookie's lifetime: show a fresh one rather than a dead end.
        return Ok(form_page(
            &state,
            &HeaderMap::new(),
            return_to,
            &audit::printable(typed_name),
            Some("This sign-in form has expired. Please sign in again."),
            StatusCode::FORBIDDEN,
        ));
    }

    let now = state.clock.unix_now();
    let password = field("password").to_owned();
    let username = normalize_username(typed_name).ok();
    // Checked before any store read or argon2: a source over its limit costs nothing.
    let limit_key = username.as_deref().unwrap_or(typed_name);
    state
        .login_limits
        .check(limit_key, peer.map(|p| p.ip()))
        .map_err(|limited| PageError::from(crate::error::ApiError::from(limited)))?;
    let user = match &username {
        Some(name) => state
            .store
            .get_user(name)
            .await
            .map_err(PageError::internal)?,
        None => None,
    };
    let login = &state.config.flyteauth.login;

    if let Some(user) = &user
        && user.locked_until > now
    {
        audit::record_or_log(
            &state,
            Event {
                kind: "login.locked_out",
                client_id: "",
                subject: &user.subject,
                outcome: "failure",
                peer,
                detail: serde_json::json!({"username": user.username}),
            },
        )
        .await;
        let minutes = minutes_from(user.locked_until - now);
        return Ok(form_page(
            &state,
            &headers,
            return_to,
            &user.username,
            Some(&format!(
                "Too many failed sign-in attempts. This account is locked for {minutes} more minute(s)."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        ));
    }

    // argon2 is deliberately slow: keep it off the async workers.
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state
        .hashing
        .run(move || match hash {
            Some(hash) => verify_password(&hash, &password),
            None => {
                equalize_timing_for_unknown_user(&password);
                false
            }
        })
        .await?;

    match user {
        Some(user) if verified && !user.disabled => {
            state
                .store
                .record_login_success(&user.username, now)
                .await
                .map_err(PageError::internal)?;
            let cookie = session::start(&state, &user, session::SessionProfile::default()).await?;
            audit::record(
                &state,
                Event {
                    kind: "login.succeeded",
                    client_id: "",
                    subject: &user.subject,
                    outcome: "success",
                    peer,
                    detail: serde_json::json!({"username": user.username}),
                },
            )
            // Fails closed: the session cookie is a credential.
            .await?;
            crate::metrics::login("success");
            if return_to.is_empty() {
                let mut response = signed_in_page(&user.username);
                response.headers_mut().append(header::SET_COOKIE, cookie);
                return Ok(response);
            }
            Ok(see_other(return_to, Some(cookie)))
        }
        user => {
            state.login_limits.failed(limit_key, peer.map(|p| p.ip()));
            let (subject, reason) = match &user {
                Some(u) if u.disabled => (u.subject.as_str(), "disabled"),
                Some(u) => (u.subject.as_str(), "wrong_password"),
                None => ("", "unknown_user"),
            };
            if let Some(u) = &user {
                state
                    .store
                    .record_login_failure(
                        &u.username,
                        now,
                        login.max_failures,
                        session::duration_secs(login.lockout_duration),
                    )
                    .await
                    .map_err(PageError::internal)?;
            }
            audit::record_or_log(&state, Event {
                kind: "login.failed",
                client_id: "",
                subject,
                outcome: "failure",
                peer,
                // The account's name when there is one; never what was typed for an unknown account, which may be
                // a password typed into the wrong field.
                detail: serde_json::json!({"username": user.as_ref().map(|u| u.username.as_str()), "reason": reason}),
            })
            .await;
            crate::metrics::login(reason);
            Ok(form_page(
                &state,
                &headers,
                return_to,
                &audit::printable(typed_name),
                Some(WRONG_CREDENTIALS),
                StatusCode::UNAUTHORIZED,
            ))
        }
    }
}

/// `GET /`: who is signed in here, or the way to the login page (where a sign-in without a destination lands).
pub async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    match session::current(&state, &headers).await? {
        Some(who) => Ok(signed_in_page(&who.claims.preferred_username)),
        None => Ok(see_other(flyteauth_core::metadata::LOGIN_PATH, None)),
    }
}

/// `GET /logout[?redirect_url=<target>]`: ends the session here — and at the identity provider when it came from
/// there and the provider offers RP-initiated logout — then goes on to the validated target, or says so.
pub async fn logout(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    // A malformed query only loses the target: signing out must always work.
    let params = form::parse(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let target = return_target(&state, &params);
    let ended = session::end(&state, &headers).await?;
    let mut response = match (&state.federation, ended.federated) {
        (Some(federation), true) => {
            let back = absolute(&state, target.as_deref().unwrap_or("/"));
            match federation
                .end_session_url(ended.idp_id_token.as_deref(), &back)
                .await
            {
                Some(url) => see_other(url.as_str(), None),
                None => after_logout(target.as_deref()),
            }
        }
        _ => after_logout(target.as_deref()),
    };
    if let Some(cookie) = ended.clear_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

fn after_logout(target: Option<&str>) -> Response {
    match target {
        Some(target) => see_other(target, None),
        None => pages::html_response(
            StatusCode::OK,
            pages::notice_page("Signed out", "You are signed out."),
        ),
    }
}

/// `target` (a validated local path or absolute URL) as an absolute URL on the public origin.
fn absolute(state: &AppState, target: &str) -> String {
    if target.starts_with('/') {
        let public = state.config.public_url();
        let base = public.as_str().trim_end_matches('/');
        // A public URL with a path prefix (behind a proxy) keeps it.
        format!("{base}{target}")
    } else {
        target.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_of_reads_the_authorize_request() {
        assert_eq!(
            client_of("/oauth2/authorize?client_id=flytectl&x=1").as_deref(),
            Some("flytectl")
        );
        assert_eq!(client_of("/other?client_id=flytectl"), None);
    }
}
