//! The HTTP forms of the Flyte services, as flyteadmin's gateway served them.

use crate::error::ApiError;
use crate::rpc;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Identity header set on successful `/me` answers, for ingress `auth_request` setups.
pub const USER_SUBJECT_HEADER: HeaderName = HeaderName::from_static("x-user-subject");

/// `GET /me`: the caller's identity as snake_case JSON with every field present.
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let identity = rpc::user_info(&state, &headers, &state.http_header)?;
    let info = &identity.user_info;
    let subject = HeaderValue::from_str(&info.subject).ok();
    let mut response = Json(info).into_response();
    if let Some(subject) = subject {
        response.headers_mut().insert(USER_SUBJECT_HEADER, subject);
    }
    Ok(response)
}

/// `GET /config/v1/flyte_client`: the public client configuration (legacy `flyte-cli setup-config`).
pub async fn flyte_client(State(state): State<AppState>) -> Response {
    Json(rpc::public_client_config(&state)).into_response()
}
