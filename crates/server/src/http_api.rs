//! The HTTP forms of the Flyte services, as flyteadmin's gateway served them, and `/me` for an ingress.

use crate::error::{ApiError, CredentialProblem};
use crate::rpc;
use crate::state::AppState;
use crate::web::session;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flyteauth_core::identity::{PrincipalKind, UserInfo, identity_headers};

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
    if !has_bearer && let Some((claims, refreshed)) = session::fast(&state, &headers) {
        let info = claims.user_info();
        let mut response = answer(&info, PrincipalKind::User, &claims.groups);
        if let Some(cookie) = refreshed {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        return Ok(response);
    }
    if !has_bearer {
        crate::metrics::validation_failed(CredentialProblem::Missing.reason());
        return Err(ApiError::Credentials(CredentialProblem::Missing));
    }
    let identity = rpc::user_info(&state, &headers, &state.http_header)?;
    let groups = groups_claim(&identity.user_info);
    Ok(answer(&identity.user_info, identity.kind, &groups))
}

/// The UserInfo JSON with the identity headers.
fn answer(info: &UserInfo, kind: PrincipalKind, groups: &[String]) -> Response {
    let mut response = Json(info).into_response();
    let out = response.headers_mut();
    for (name, value) in identity_headers(info, kind, groups) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), value);
        }
    }
    // Identity answers differ per caller: a shared cache must not keep them.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
