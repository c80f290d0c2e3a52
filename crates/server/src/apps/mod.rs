//! The apps service (`cloudidl.identity.AppsService`): confidential clients people create for themselves,
//! whose client id and secret make the API key of `flyte create api-key`.
//!
//! Each method is written once here, against the shared state, the request headers and the peer address;
//! [`transport`] exposes them over gRPC and Connect. Who may see and change which app is decided by
//! `flyteauth_core::access`; the request rules (client ids, names, redirect URIs, page tokens) by
//! `flyteauth_core::apps`. [`cli`] is the operator's side (`flyteauth apps`, `flyteauth audit`).

pub mod cli;
pub mod transport;
pub mod wire;

pub use transport::{AppsGrpc, connect_routes};

use crate::audit::{self, Event};
use crate::auth;
use crate::error::ApiError;
use crate::grants;
use crate::state::AppState;
use flyteauth_core::access::{AccessPolicy, Caller};
use flyteauth_core::apps::{page_limit, page_token, parse_page_token};
use flyteauth_core::clients::{generate_secret, hash_generated_secret};
use flyteauth_core::identity::{Identity, PrincipalKind};
use flyteauth_proto::cloudidl::common::ListRequest;
use flyteauth_proto::cloudidl::identity as pb;
use flyteauth_store::{AppFilter, AppRecord, StoreError};
use http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `via` of the audit events of changes made through the service.
const VIA_RPC: &str = "rpc";

/// An authenticated caller of the service, with what the account says about it.
struct Authorized {
    identity: Arc<Identity>,
    /// The local account's user name, when the caller is a person with a local account.
    username: Option<String>,
    /// Whether the local account is an administrator.
    is_admin_account: bool,
    policy: AccessPolicy,
}

impl Authorized {
    fn caller(&self) -> Caller<'_> {
        match self.identity.kind {
            PrincipalKind::App => Caller::App {
                client_id: &self.identity.client_id,
            },
            PrincipalKind::User => Caller::Person {
                subject: &self.identity.subject,
                username: self.username.as_deref(),
                is_admin: self.is_admin_account,
            },
        }
    }

    fn subject(&self) -> &str {
        &self.identity.subject
    }
}

/// Authenticates a call (a token with scope `all`) and checks that the caller may manage apps at all.
async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Authorized, ApiError> {
    let identity = auth::authorize_platform_call(state, headers, &state.grpc_header).await?;
    // Only a local account's own record says who is an administrator or what the user name is: a federated
    // token's preferred_username is chosen upstream and must not make anyone an admin.
    let account = match identity.kind {
        PrincipalKind::User => state
            .store
            .get_user_by_subject(&identity.subject)
            .await
            .map_err(ApiError::internal)?,
        PrincipalKind::App => None,
    };
    let authorized = Authorized {
        username: account.as_ref().map(|a| a.username.clone()),
        is_admin_account: account.is_some_and(|a| a.is_admin),
        identity,
        policy: AccessPolicy::from_config(&state.config),
    };
    authorized
        .policy
        .may_manage_apps(&authorized.caller())
        .map_err(|denied| ApiError::PermissionDenied(denied.to_string()))?;
    Ok(authorized)
}

fn no_such_app(client_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no app with client_id {:?}",
        audit::printable(client_id)
    ))
}

/// A store failure as the caller should see it: its own mistakes as such, the rest as internal.
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists { key, .. } => ApiError::AlreadyExists(format!(
            "an app with client_id {:?} already exists",
            audit::printable(&key)
        )),
        StoreError::InvalidInput { field, reason } => {
            ApiError::InvalidArgument(format!("invalid {field}: {reason}"))
        }
        other => ApiError::internal(other),
    }
}

/// The app `client_id` if the caller may see it: it exists, belongs to `organization` when one is named, and
/// is the caller's (or the caller is an admin). Every other case is the same NOT_FOUND, so nobody learns
/// which client ids other people use.
async fn visible_app(
    state: &AppState,
    who: &Authorized,
    organization: &str,
    client_id: &str,
) -> Result<AppRecord, ApiError> {
    if client_id.is_empty() {
        return Err(ApiError::InvalidArgument(
            "invalid client_id: must not be empty".into(),
        ));
    }
    let app = state
        .store
        .get_app(client_id)
        .await
        .map_err(store_error)?
        .filter(|app| organization.is_empty() || app.organization == organization)
        .filter(|app| who.policy.may_touch_app(&who.caller(), &app.created_by))
        .ok_or_else(|| no_such_app(client_id))?;
    Ok(app)
}

/// AppsService.Create: a new app owned by the caller; the answer carries its secret, the only time it is shown.
pub async fn create(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    request: pb::CreateAppRequest,
) -> Result<pb::CreateAppResponse, ApiError> {
    let who = authorize(state, headers).await?;
    let spec =
        wire::create_spec(&request).map_err(|invalid| ApiError::InvalidArgument(invalid.0))?;
    // The token endpoint looks static clients up first: an app under such an id could never sign in.
    if state.static_clients.contains_key(&spec.client_id) {
        return Err(ApiError::AlreadyExists(format!(
            "a client with client_id {:?} already exists",
            spec.client_id
        )));
    }
    let secret = generate_secret();
    let now = state.clock.unix_now();
    let new = spec.into_new_app(hash_generated_secret(&secret).encode(), who.subject(), now);
    let app = state.store.create_app(&new).await.map_err(store_error)?;
    // An app deleted elsewhere under this id may still be held here.
    state.apps.forget(&app.client_id);
    // Logged, not failed: the app exists by now, and refusing the answer would only leave its creator to retry
    // into AlreadyExists without the secret. The same holds for the update and delete below.
    audit::record_or_log(
        state,
        Event {
            kind: "app.created",
            client_id: &app.client_id,
            subject: who.subject(),
            outcome: "success",
            peer,
            detail: serde_json::json!({
                "via": VIA_RPC,
                "client_name": app.client_name,
                "organization": app.organization,
                "grant_types": app.grant_types,
            }),
        },
    )
    .await;
    Ok(pb::CreateAppResponse {
        app: Some(wire::app(&app, Some(&secret))),
    })
}

/// AppsService.Get: one of the caller's apps (any app for an admin), without its secret.
pub async fn get(
    state: &AppState,
    headers: &HeaderMap,
    _peer: Option<SocketAddr>,
    request: pb::GetAppRequest,
) -> Result<pb::GetAppResponse, ApiError> {
    let who = authorize(state, headers).await?;
    let app = visible_app(state, &who, &request.organization, &request.client_id).await?;
    Ok(pb::GetAppResponse {
        app: Some(wire::app(&app, None)),
    })
}

/// AppsService.Update: new name, grant types and redirect URIs; never the secret.
pub async fn update(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    request: pb::UpdateAppRequest,
) -> Result<pb::UpdateAppResponse, ApiError> {
    let who = authorize(state, headers).await?;
    let app = visible_app(state, &who, &request.organization, &request.client_id).await?;
    let update = wire::update_of(&request, state.clock.unix_now())
        .map_err(|invalid| ApiError::InvalidArgument(invalid.0))?;
    let changed = wire::changed_fields(&app, &update);
    let updated = state
        .store
        .update_app(&app.client_id, &update)
        .await
        .map_err(store_error)?
        // Deleted since we read it.
        .ok_or_else(|| no_such_app(&app.client_id))?;
    state.apps.forget(&updated.client_id);
    audit::record_or_log(
        state,
        Event {
            kind: "app.updated",
            client_id: &updated.client_id,
            subject: who.subject(),
            outcome: "success",
            peer,
            detail: serde_json::json!({"via": VIA_RPC, "changed": changed}),
        },
    )
    .await;
    Ok(pb::UpdateAppResponse {
        app: Some(wire::app(&updated, None)),
    })
}

/// AppsService.Delete: removes the app and revokes every token issued to it so far.
pub async fn delete(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    request: pb::DeleteAppRequest,
) -> Result<pb::DeleteAppResponse, ApiError> {
    let who = authorize(state, headers).await?;
    let app = visible_app(state, &who, &request.organization, &request.client_id).await?;
    if !state
        .store
        .delete_app(&app.client_id)
        .await
        .map_err(store_error)?
    {
        return Err(no_such_app(&app.client_id));
    }
    // At once, even if the revocation below fails: this replica issues no further token to it.
    state.apps.forget(&app.client_id);
    // After the row is gone no new token can be issued here; the cut-off also catches those another replica
    // issues from its copy of the app until it reads it again.
    let revoked_at = grants::revoke_app(state, &app.client_id, "app.deleted").await?;
    audit::record_or_log(
        state,
        Event {
            kind: "app.deleted",
            client_id: &app.client_id,
            subject: who.subject(),
            outcome: "success",
            peer,
            detail: serde_json::json!({"via": VIA_RPC, "organization": app.organization}),
        },
    )
    .await;
    let_revocation_pass(revoked_at).await;
    Ok(pb::DeleteAppResponse {})
}

/// AppsService.List: the caller's apps (every app for an admin) in client id order, a page at a time.
pub async fn list(
    state: &AppState,
    headers: &HeaderMap,
    _peer: Option<SocketAddr>,
    request: pb::ListAppsRequest,
) -> Result<pb::ListAppsResponse, ApiError> {
    let who = authorize(state, headers).await?;
    let (limit, after) = page_request(request.request.as_ref())?;
    let filter = AppFilter {
        created_by: who.policy.list_filter(&who.caller()).map(str::to_owned),
        organization: Some(request.organization).filter(|o| !o.is_empty()),
    };
    let page = state
        .store
        .list_apps_by(&filter, after.as_deref(), limit)
        .await
        .map_err(store_error)?;
    Ok(pb::ListAppsResponse {
        token: next_page_token(&page, limit),
        apps: page.iter().map(|app| wire::app(app, None)).collect(),
    })
}

/// The page size and the client id to continue after. Sorting and filters are not supported and ignored.
fn page_request(request: Option<&ListRequest>) -> Result<(u32, Option<String>), ApiError> {
    let Some(request) = request else {
        return Ok((page_limit(0), None));
    };
    let after = if request.token.is_empty() {
        None
    } else {
        Some(
            parse_page_token(&request.token)
                .map_err(|e| ApiError::InvalidArgument(e.to_string()))?,
        )
    };
    Ok((page_limit(request.limit), after))
}

/// The token of the next page: empty once a page comes back shorter than asked for.
fn next_page_token(page: &[AppRecord], limit: u32) -> String {
    match page.last() {
        Some(last) if page.len() >= limit as usize => page_token(&last.client_id),
        _ => String::new(),
    }
}

/// Revocations of an app cover its tokens issued at or before a second, which lies a few seconds ahead
/// ([`grants::revoke_app`]). The answer waits until the wall clock has passed it, so a token fetched right after
/// the answer (with a rotated secret, or for an app re-created under the same id) is not covered by it. A cut-off
/// further away than that (a clock that is not the wall clock, in tests) is not waited for.
pub(crate) async fn let_revocation_pass(revoked_at: i64) {
    let Ok(wall) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return;
    };
    let Ok(cut_off) = u64::try_from(revoked_at) else {
        return;
    };
    let next = Duration::from_secs(cut_off.saturating_add(1));
    let longest = Duration::from_secs(crate::app_cache::REVOCATION_COVER_SECS.unsigned_abs() + 1);
    match next.checked_sub(wall) {
        Some(wait) if wait <= longest => {
            tokio::time::sleep(wait + Duration::from_millis(5)).await;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(client_id: &str) -> AppRecord {
        AppRecord {
            client_id: client_id.into(),
            client_name: client_id.into(),
            organization: String::new(),
            secret_hash: "sha256:00".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["all".into()],
            audience: vec![],
            redirect_uris: vec![],
            created_by: "alice".into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn page_requests_default_cap_and_decode_tokens() {
        assert_eq!(page_request(None).unwrap(), (100, None));
        let zero = ListRequest::default();
        assert_eq!(page_request(Some(&zero)).unwrap(), (100, None));
        let big = ListRequest {
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(page_request(Some(&big)).unwrap().0, 100);
        let next = ListRequest {
            limit: 2,
            token: page_token("b-app"),
            ..Default::default()
        };
        assert_eq!(
            page_request(Some(&next)).unwrap(),
            (2, Some("b-app".to_owned()))
        );
        for bad in ["%%%", "bm90IGFuIGlk!", "Tm90IEFuIElk"] {
            let request = ListRequest {
                token: bad.into(),
                ..Default::default()
            };
            let err = page_request(Some(&request)).unwrap_err();
            assert!(matches!(err, ApiError::InvalidArgument(_)), "{bad}");
            assert_eq!(
                tonic::Status::from(err).code(),
                tonic::Code::InvalidArgument
            );
        }
    }

    #[test]
    fn a_short_page_ends_the_listing() {
        let full = [named("a"), named("b")];
        let token = next_page_token(&full, 2);
        assert_eq!(parse_page_token(&token).unwrap(), "b");
        assert_eq!(next_page_token(&full[..1], 2), "");
        assert_eq!(next_page_token(&[], 2), "");
    }

    #[test]
    fn store_errors_keep_client_mistakes_apart() {
        let exists = store_error(StoreError::AlreadyExists {
            entity: "app",
            key: "ci-bot".into(),
        });
        assert!(matches!(exists, ApiError::AlreadyExists(ref m) if m.contains("ci-bot")));
        let invalid = store_error(StoreError::InvalidInput {
            field: "organization",
            reason: "contains a NUL character",
        });
        assert!(matches!(invalid, ApiError::InvalidArgument(_)));
    }
}
