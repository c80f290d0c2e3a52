//! The HTTP forms of the Flyte services, as flyteadmin's gateway served them, and `/me` for an ingress.

use crate::error::{ApiError, CredentialProblem};
use crate::rpc;
use crate::state::AppState;
use crate::web::{cookies, session};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flyteauth_core::browser_session::{SESSION_COOKIE, SessionClaims};
use flyteauth_core::identity::{PrincipalKind, UserInfo, identity_headers};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// `GET /me`: who is calling, for the SDKs and for an ingress's `auth_request`.
///
/// A bearer token (in `Authorization` or the deployment's HTTP header) or else a browser session cookie. The
/// answer is the UserInfo JSON (snake_case, every field) plus `X-User-Subject` and `X-User-Claim-*` headers the
/// ingress copies to the upstream; without valid credentials a 401, never a redirect (the ingress decides who is
/// sent to the sign-in page). Neither path asks the store.
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let has_bearer = [&header::AUTHORIZATION, &state.http_header]
        .iter()
        .any(|name| headers.contains_key(*name));
    if !has_bearer {
        return session_answer(&state, &headers).ok_or_else(|| {
            crate::metrics::validation_failed(CredentialProblem::Missing.reason());
            ApiError::Credentials(CredentialProblem::Missing)
        });
    }
    let identity = rpc::user_info(&state, &headers, &state.http_header).await?;
    let groups = groups_claim(&identity.user_info);
    Ok(render(&identity.user_info, identity.kind, &groups).respond())
}

/// The answer for the request's session cookie, from the memo when this replica has answered it before.
fn session_answer(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let raw = cookies::read_sealed(headers, SESSION_COOKIE)?;
    let now = state.clock.unix_now();
    let entry = match state.session_answers.get(raw) {
        Some(entry) => entry,
        None => {
            let claims = session::open(state, raw)?;
            let rendered = render(&claims.user_info(), PrincipalKind::User, &claims.groups);
            let entry = Arc::new(SessionAnswer { claims, rendered });
            // Only cookies that opened are remembered, so only the holder of the keys can fill the memo.
            state.session_answers.insert(raw, entry.clone());
            entry
        }
    };
    // Liveness is decided on every request: the memo holds what the cookie says, never whether it still holds.
    if !session::is_live(state, &entry.claims, now) {
        return None;
    }
    let mut response = entry.rendered.respond();
    if let Some(cookie) = session::refreshed_cookie(state, &entry.claims, now) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Some(response)
}

/// A `/me` answer rendered once: the JSON body and the identity headers.
#[derive(Debug)]
pub struct Rendered {
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rendered {
    fn respond(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        let out = response.headers_mut();
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Identity answers differ per caller: a shared cache must not keep them by accident.
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in &self.headers {
            out.insert(name.clone(), value.clone());
        }
        response
    }
}

/// The UserInfo JSON with the identity headers.
fn render(info: &UserInfo, kind: PrincipalKind, groups: &[String]) -> Rendered {
    // Serializing a struct of strings and a JSON map cannot fail.
    let body = Bytes::from(serde_json::to_vec(info).unwrap_or_default());
    let headers = identity_headers(info, kind, groups)
        .into_iter()
        .filter_map(|(name, value)| {
            HeaderValue::from_str(&value)
                .ok()
                .map(|v| (HeaderName::from_static(name), v))
        })
        .collect();
    Rendered { body, headers }
}

/// What the memo keeps for a session cookie.
#[derive(Debug)]
pub struct SessionAnswer {
    claims: SessionClaims,
    rendered: Rendered,
}

/// The rendered `/me` answers of session cookies this replica has opened, keyed by the cookie's value, so a
/// session's answer is decrypted and rendered once rather than on every request of the ingress.
///
/// Bounded: when full it starts over (re-opening a cookie costs microseconds, and only valid cookies get in).
#[derive(Debug, Default)]
pub struct SessionAnswers {
    entries: RwLock<HashMap<Box<str>, Arc<SessionAnswer>>>,
}

/// Session cookies remembered per replica.
const SESSION_ANSWERS_CAPACITY: usize = 10_000;

impl SessionAnswers {
    fn get(&self, cookie: &str) -> Option<Arc<SessionAnswer>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(cookie).cloned()
    }

    fn insert(&self, cookie: &str, answer: Arc<SessionAnswer>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= SESSION_ANSWERS_CAPACITY {
            entries.clear();
        }
        entries.insert(cookie.into(), answer);
    }
}

/// The `groups` claim of a token, when it is a list of strings.
fn groups_claim(info: &UserInfo) -> Vec<String> {
    info.additional_claims
        .get("groups")
        .and_then(|g| g.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /config/v1/flyte_client`: the public client configuration (legacy `flyte-cli setup-config`).
pub async fn flyte_client(State(state): State<AppState>) -> Response {
    Json(rpc::public_client_config(&state)).into_response()
}
