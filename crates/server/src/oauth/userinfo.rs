//! `GET|POST /oauth2/userinfo` (OpenID Connect Core §5.3): the standard claims of the token's person.

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// `GET|POST /oauth2/userinfo`.
pub async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let identity = auth::authenticate(&state, &headers, &state.http_header).await?;
    let info = &identity.user_info;
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(identity.subject.clone()));
    for (name, value) in [
        ("name", &info.name),
        ("preferred_username", &info.preferred_username),
        ("given_name", &info.given_name),
        ("family_name", &info.family_name),
        ("email", &info.email),
        ("picture", &info.picture),
    ] {
        if !value.is_empty() {
            claims.insert(name.into(), Value::String(value.clone()));
        }
    }
    Ok(axum::Json(claims).into_response())
}
