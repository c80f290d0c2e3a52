//! The HTTP forms of the Flyte services, as flyteadmin's gateway served them, and `/me` for an ingress.

use crate::error::{ApiError, CredentialProblem};
use crate::state::AppState;
use crate::web::{cookies, session};
use crate::{auth, rpc};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flyteauth_core::browser_session::{SESSION_COOKIE, SessionClaims};
use flyteauth_core::identity::{Identity, PrincipalKind, UserInfo, identity_headers};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// `GET /me`: who is calling, for the SDKs and for an ingress's `auth_request`.
///
/// A bearer token (in `Authorization` or the deployment's HTTP header) or else a browser session cookie. The
/// answer is the UserInfo JSON (snake_case, every field) plus `X-User-Subject` and `X-User-Claim-*` headers the
/// ingress copies to the upstream; without valid credentials a 401, never a redirect (the ingress decides who is
/// sent to the sign-in page). Neither path asks the store.
///
/// The answer for a token is rendered once and kept with its identity ([`Identity::memoized`]), which the
/// validator's memo hands to every request presenting the same token; the request itself is read in place (the
/// `HeaderMap` extractor would copy every header).
pub async fn me(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers();
    let token = match auth::bearer_token(headers, &state.http_header) {
        Ok(token) => token,
        // No credential header at all: the browser session, if any.
        Err(CredentialProblem::Missing) => {
            return session_answer(&state, headers)
                .ok_or_else(|| auth::credential_failure(CredentialProblem::Missing));
        }
        Err(problem) => return Err(auth::credential_failure(problem)),
    };
    let identity = auth::authorize_platform_token(&state, token).await?;
    let render_identity = |identity: &Identity| {
        render(
            &identity.user_info,
            identity.kind,
            &groups_claim(&identity.user_info),
        )
    };
    Ok(match identity.memoized(render_identity) {
        Some(rendered) => rendered.respond(),
        // The slot holds something else (not ours to replace): render for this request only.
        None => render_identity(&identity).respond(),
    })
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

/// A `/me` answer rendered once: the JSON body and every response header.
#[derive(Debug)]
pub struct Rendered {
    body: Bytes,
    /// Built with room for [`HEADERS_ADDED_LATER`]: a copy keeps the size of its hash table, so the headers the
    /// outer layers add do not re-hash it on every request (a copy of a full map would be).
    headers: HeaderMap,
}

/// Headers the layers around `/me` may still add to its answer (CORS's `Vary` and
/// `Access-Control-Allow-Origin`, a refreshed session's `Set-Cookie`), with one to spare.
const HEADERS_ADDED_LATER: usize = 4;

impl Rendered {
    /// The response: the body shared, the header map copied in one piece.
    fn respond(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The UserInfo JSON with the identity headers.
fn render(info: &UserInfo, kind: PrincipalKind, groups: &[String]) -> Rendered {
    // Serializing a struct of strings and a JSON map cannot fail.
    let body = Bytes::from(serde_json::to_vec(info).unwrap_or_default());
    let identity = identity_headers(info, kind, groups);
    let mut headers = HeaderMap::with_capacity(2 + identity.len() + HEADERS_ADDED_LATER);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Identity answers differ per caller: a shared cache must not keep them by accident.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in identity {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
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
