//! The token service: each grant of `POST /oauth2/token` as one sequence of core decisions and store
//! operations. The handler in [`crate::oauth::token`] parses and renders; the rules live in
//! `flyteauth_core::grant`; what happens in which order (and what is revoked when a code or refresh token is
//! replayed) is here.

use crate::audit::{self, Event};
use crate::error::ApiError;
use crate::opaque;
use crate::state::{AppState, Lookup};
use crate::web::session::duration_secs;
use flyteauth_core::clients::{Client, SecretHash};
use flyteauth_core::grant::{
    self, ClientCredentialsRequest, CodeBinding, PresentedClient, TokenRequest,
};
use flyteauth_core::identity::{PrincipalKind, UserInfo};
use flyteauth_core::oauth::{ErrorCode, OAuthError};
use flyteauth_core::token::{AccessTokenRequest, IdTokenRequest};
use flyteauth_store::{
    DevicePoll, NewRefreshToken, Revocation, RevocationKind, Rotation, UserRecord,
};
use std::net::SocketAddr;

/// What a successful grant hands back (RFC 6749 §5.1, plus the OpenID Connect `id_token`).
#[derive(Debug)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// A rotating refresh token, when `offline` / `offline_access` was granted.
    pub refresh_token: Option<String>,
    /// An ID token, when `openid` was granted.
    pub id_token: Option<String>,
}

fn invalid_grant(description: &'static str) -> ApiError {
    ApiError::OAuth(OAuthError::new(ErrorCode::InvalidGrant, description))
}

/// Authenticates the client of a token, revocation or introspection request.
///
/// Confidential clients prove their secret (Basic or form body); public clients name themselves with
/// `client_id` and present no secret. Unknown clients and wrong secrets get the same answer in about the same
/// time, so the endpoint does not reveal which client ids exist.
pub async fn authenticate_client(
    state: &AppState,
    peer: Option<SocketAddr>,
    presented: Option<PresentedClient>,
) -> Result<Client, ApiError> {
    let Some(presented) = presented else {
        return Err(ApiError::ClientAuthentication { basic: false });
    };
    let failure = ApiError::ClientAuthentication {
        basic: presented.via_basic,
    };
    let source = peer.map(|p| p.ip());
    // Before the store and bcrypt: a source over its limit costs neither.
    state.client_auth_limits.check(&presented.id, source)?;
    let found = state.lookup_client(&presented.id, Lookup::Cached).await?;
    let (mut client, mut presented, mut verified) = verify(state, found.client, presented).await?;
    if !verified && found.cached {
        // The app may have a new secret since it was read (rotated on another replica or with the CLI): the
        // new secret works at once, not only once the entry is old enough to be read again.
        let fresh = state.lookup_client(&presented.id, Lookup::Store).await?;
        let same_secret = match (&client, &fresh.client) {
            (Some(before), Some(now)) => before.secret == now.secret,
            _ => false,
        };
        if !same_secret {
            (client, presented, verified) = verify(state, fresh.client, presented).await?;
        }
    }
    match client {
        Some(client) if verified => Ok(client),
        _ => {
            state.client_auth_limits.failed(&presented.id, source);
            audit::client_failure(
                state,
                audit::ClientFailure {
                    client_id: &presented.id,
                    via: if presented.via_basic { "basic" } else { "body" },
                    peer,
                },
            )
            .await;
            Err(failure)
        }
    }
}

/// Checks `presented` against `client` (or, for an unknown client, spends as long as a check would).
///
/// Public clients and generated (SHA-256) secrets are cheap to check; bcrypt, and the dummy bcrypt of an unknown
/// client, run on the bounded hashing pool, refused at once when it is full.
async fn verify(
    state: &AppState,
    client: Option<Client>,
    presented: PresentedClient,
) -> Result<(Option<Client>, PresentedClient, bool), ApiError> {
    let cheap = client
        .as_ref()
        .is_some_and(|c| !matches!(c.secret, Some(SecretHash::Bcrypt(_))));
    if cheap {
        let verified = grant::authenticate(client.as_ref(), &presented);
        return Ok((client, presented, verified));
    }
    Ok(state
        .hashing
        .run(move || {
            let verified = grant::authenticate(client.as_ref(), &presented);
            (client, presented, verified)
        })
        .await?)
}

/// Runs `request` for the authenticated `client`.
pub async fn exchange(
    state: &AppState,
    client: &Client,
    request: TokenRequest,
    peer: Option<SocketAddr>,
) -> Result<Issued, ApiError> {
    match request {
        TokenRequest::ClientCredentials { scope, audience } => {
            client_credentials(state, client, scope.as_deref(), audience.as_deref(), peer).await
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            authorization_code(
                state,
                client,
                &code,
                redirect_uri.as_deref(),
                code_verifier.as_deref(),
                peer,
            )
            .await
        }
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
        } => refresh(state, client, &refresh_token, scope.as_deref(), peer).await,
        TokenRequest::DeviceCode { device_code } => {
            device_code_grant(state, client, &device_code, peer).await
        }
    }
}

async fn client_credentials(
    state: &AppState,
    client: &Client,
    scope: Option<&str>,
    audience: Option<&str>,
    peer: Option<SocketAddr>,
) -> Result<Issued, ApiError> {
    let granted = grant::client_credentials(
        client,
        &ClientCredentialsRequest {
            scope,
            audience: audience.filter(|a| !a.is_empty()),
        },
        &state.accepted_audiences,
        &state.default_audience,
    )?;
    let issued = state
        .issuer
        .issue(&AccessTokenRequest {
            subject: client.id.clone(),
            client_id: client.id.clone(),
            client_name: Some(client.name.clone()).filter(|n| !n.is_empty()),
            audience: granted.audience,
            scopes: granted.scopes,
            user_info: None,
            kind: PrincipalKind::App,
            session_id: None,
        })
        .map_err(ApiError::internal)?;
    let scope = issued.claims.scp.join(" ");
    audit::record(
        state,
        Event {
            kind: "token.issued",
            client_id: &client.id,
            subject: &client.id,
            outcome: "success",
            peer,
            detail: serde_json::json!({"grant_type": grant::CLIENT_CREDENTIALS, "jti": issued.claims.jti, "scope": scope}),
        },
    )
    // Fails closed: a token is handed out only once its event is committed.
    .await?;
    Ok(Issued {
        access_token: issued.access_token,
        expires_in: issued.expires_in,
        scope,
        refresh_token: None,
        id_token: None,
    })
}

/// What the access token says about a person.
fn user_info(user: &UserRecord) -> UserInfo {
    UserInfo {
        subject: user.subject.clone(),
        name: user.display_name.clone(),
        preferred_username: user.username.clone(),
        email: user.email.clone(),
        ..UserInfo::default()
    }
}

/// The person a grant is for, refusing accounts that were disabled or removed since the login.
async fn active_user(state: &AppState, subject: &str) -> Result<UserRecord, ApiError> {
    match state
        .store
        .get_user_by_subject(subject)
        .await
        .map_err(ApiError::internal)?
    {
        Some(user) if !user.disabled => Ok(user),
        _ => Err(invalid_grant(
            "the account of this grant is disabled or no longer exists",
        )),
    }
}

/// Revokes a refresh family and every access token carrying its `sid`, here at once and on every replica
/// through the store.
pub async fn revoke_family(
    state: &AppState,
    family_id: &str,
    reason: &'static str,
) -> Result<(), ApiError> {
    let now = state.clock.unix_now();
    state
        .store
        .revoke_family(family_id, now)
        .await
        .map_err(ApiError::internal)?;
    revoke(state, RevocationKind::Family, family_id, reason).await
}

/// Records a revocation in the store (for every replica) and in this replica's set (at once). It stays until
/// every token it can match has expired: the access-token lifetime plus the validation leeway from now.
pub async fn revoke(
    state: &AppState,
    kind: RevocationKind,
    id: &str,
    reason: &'static str,
) -> Result<(), ApiError> {
    let now = state.clock.unix_now();
    let lifetime = duration_secs(
        state
            .config
            .auth
            .app_auth
            .self_auth_server
            .access_token_lifespan,
    );
    let leeway = duration_secs(state.config.flyteauth.token_leeway);
    let expires_at = now.saturating_add(lifetime).saturating_add(leeway);
    revoke_until(state, kind, id, reason, expires_at).await
}

/// Revokes every token of the app `client_id` issued up to [`crate::app_cache::REVOCATION_COVER_SECS`] from
/// now, in the store and here, and drops the app from this replica's memory; returns the cut-off (unix seconds).
///
/// The cut-off lies ahead because another replica (or this one, after a change made with the CLI) may go on
/// issuing tokens from the app as it read it for up to [`crate::app_cache::MAX_AGE`]; those are caught too.
/// Tokens of an app registered again under this id are not, once the cut-off has passed: callers answer only
/// then ([`crate::apps::let_revocation_pass`]).
pub async fn revoke_app(
    state: &AppState,
    client_id: &str,
    reason: &'static str,
) -> Result<i64, ApiError> {
    let now = state.clock.unix_now();
    let revoked_at = now.saturating_add(crate::app_cache::REVOCATION_COVER_SECS);
    let lifetime = duration_secs(
        state
            .config
            .auth
            .app_auth
            .self_auth_server
            .access_token_lifespan,
    );
    let leeway = duration_secs(state.config.flyteauth.token_leeway);
    let expires_at = revoked_at.saturating_add(lifetime).saturating_add(leeway);
    state
        .store
        .revoke(&Revocation {
            kind: RevocationKind::App,
            token_id: client_id.to_owned(),
            expires_at,
            reason: reason.to_owned(),
            revoked_at,
        })
        .await
        .map_err(ApiError::internal)?;
    state.validator.revocations().insert(
        crate::revocation_mirror::as_revoked(RevocationKind::App, client_id, revoked_at),
        expires_at,
    );
    state.apps.forget(client_id);
    Ok(revoked_at)
}

/// Records a revocation kept until `expires_at` (unix seconds), in the store and in this replica's set.
pub async fn revoke_until(
    state: &AppState,
    kind: RevocationKind,
    id: &str,
    reason: &'static str,
    expires_at: i64,
) -> Result<(), ApiError> {
    let now = state.clock.unix_now();
    state
        .store
        .revoke(&Revocation {
            kind,
            token_id: id.to_owned(),
            expires_at,
            reason: reason.to_owned(),
            revoked_at: now,
        })
        .await
        .map_err(ApiError::internal)?;
    state.validator.revocations().insert(
        crate::revocation_mirror::as_revoked(kind, id, now),
        expires_at,
    );
    if kind == RevocationKind::App {
        state.apps.forget(id);
    }
    Ok(())
}

/// Mints the tokens of a person's grant: access token, and a refresh token and ID token when granted.
struct UserGrant<'a> {
    client: &'a Client,
    user: &'a UserRecord,
    scopes: Vec<String>,
    audience: Vec<String>,
    family_id: &'a str,
    auth_time: i64,
    nonce: Option<&'a str>,
    refresh_token: Option<String>,
}

fn mint_for_user(state: &AppState, g: &UserGrant<'_>) -> Result<Issued, ApiError> {
    let issued = state
        .issuer
        .issue(&AccessTokenRequest {
            subject: g.user.subject.clone(),
            client_id: g.client.id.clone(),
            client_name: None,
            audience: g.audience.clone(),
            scopes: g.scopes.clone(),
            user_info: Some(user_info(g.user)),
            kind: PrincipalKind::User,
            session_id: Some(g.family_id.to_owned()),
        })
        .map_err(ApiError::internal)?;
    let id_token = if g.scopes.iter().any(|s| s == "openid") {
        Some(
            state
                .issuer
                .issue_id_token(&IdTokenRequest {
                    subject: g.user.subject.clone(),
                    client_id: g.client.id.clone(),
                    auth_time: g.auth_time,
                    nonce: g.nonce.map(str::to_owned),
                    name: g.user.display_name.clone(),
                    preferred_username: g.user.username.clone(),
                    email: g.user.email.clone(),
                    access_token: issued.access_token.clone(),
                    session_id: Some(g.family_id.to_owned()),
                })
                .map_err(ApiError::internal)?,
        )
    } else {
        None
    };
    Ok(Issued {
        scope: issued.claims.scp.join(" "),
        access_token: issued.access_token,
        expires_in: issued.expires_in,
        refresh_token: g.refresh_token.clone(),
        id_token,
    })
}

fn grants_offline(scopes: &[String]) -> bool {
    scopes
        .iter()
        .any(|s| s == "offline" || s == "offline_access")
}

/// A new refresh token of `family_id`, stored (as a digest) before it is handed out.
fn new_refresh_token(
    state: &AppState,
    client: &Client,
    user: &UserRecord,
    family_id: &str,
    scopes: &[String],
    audience: &[String],
    auth_time: i64,
) -> (String, NewRefreshToken) {
    let now = state.clock.unix_now();
    let lifetime = duration_secs(
        state
            .config
            .auth
            .app_auth
            .self_auth_server
            .refresh_token_lifespan,
    );
    let token = opaque::new_token();
    let record = NewRefreshToken {
        token_hash: opaque::digest(&token),
        family_id: family_id.to_owned(),
        client_id: client.id.clone(),
        subject: user.subject.clone(),
        username: user.username.clone(),
        scopes: scopes.to_vec(),
        audience: audience.to_vec(),
        auth_time,
        issued_at: now,
        expires_at: now.saturating_add(lifetime),
    };
    (token, record)
}

async fn authorization_code(
    state: &AppState,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    peer: Option<SocketAddr>,
) -> Result<Issued, ApiError> {
    let now = state.clock.unix_now();
    let Some((record, first)) = state
        .store
        .redeem_code(&opaque::digest(code), now)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(invalid_grant("the authorization code is unknown"));
    };
    if !first {
        // RFC 6749 §4.1.2: a code used twice revokes what its first redemption issued.
        revoke_family(state, &record.family_id, "code.replayed").await?;
        crate::metrics::revoked("code_replay");
        audit::record_or_log(
            state,
            Event {
                kind: "code.replayed",
                client_id: &client.id,
                subject: &record.subject,
                outcome: "failure",
                peer,
                detail: serde_json::json!({"family_id": record.family_id}),
            },
        )
        .await;
        return Err(invalid_grant("the authorization code was already used"));
    }
    grant::authorization_code(
        client,
        &CodeBinding {
            client_id: &record.client_id,
            redirect_uri: &record.redirect_uri,
            code_challenge: &record.code_challenge,
            expires_at: record.expires_at,
        },
        redirect_uri,
        code_verifier,
        now,
    )?;
    let user = active_user(state, &record.subject).await?;
    let login = Login {
        family_id: &record.family_id,
        scopes: &record.scopes,
        audience: &record.audience,
        auth_time: record.auth_time,
        nonce: Some(record.nonce.as_str()).filter(|n| !n.is_empty()),
    };
    issue_for_login(
        state,
        client,
        &user,
        &login,
        grant::AUTHORIZATION_CODE,
        peer,
    )
    .await
}

/// The device grant's token request (RFC 8628 §3.4–3.5): the device polls until the person decides.
async fn device_code_grant(
    state: &AppState,
    client: &Client,
    device_code: &str,
    peer: Option<SocketAddr>,
) -> Result<Issued, ApiError> {
    let now = state.clock.unix_now();
    let fail = |code: ErrorCode, description: &'static str| {
        ApiError::OAuth(OAuthError::new(code, description))
    };
    let record = match state
        .store
        .poll_device_code(&opaque::digest(device_code), now)
        .await
        .map_err(ApiError::internal)?
    {
        DevicePoll::Redeemed(record) => record,
        DevicePoll::Pending(_) => {
            return Err(fail(
                ErrorCode::AuthorizationPending,
                "the person has not approved the request yet",
            ));
        }
        DevicePoll::SlowDown(_) => {
            return Err(fail(
                ErrorCode::SlowDown,
                "polled too often; the interval grew by 5 seconds",
            ));
        }
        DevicePoll::Denied(_) => {
            return Err(fail(
                ErrorCode::AccessDenied,
                "the person denied the request",
            ));
        }
        DevicePoll::Expired(_) => {
            return Err(fail(
                ErrorCode::ExpiredToken,
                "the device code expired before it was approved",
            ));
        }
        DevicePoll::AlreadyRedeemed(_) => {
            return Err(invalid_grant("the device code was already used"));
        }
        DevicePoll::NotFound => return Err(invalid_grant("the device code is unknown")),
    };
    if record.client_id != client.id {
        return Err(invalid_grant(
            "the device code was issued to another client",
        ));
    }
    let user = active_user(state, &record.subject).await?;
    let login = Login {
        family_id: &record.family_id,
        scopes: &record.scopes,
        audience: &record.audience,
        auth_time: record.auth_time,
        nonce: None,
    };
    issue_for_login(state, client, &user, &login, grant::DEVICE_CODE, peer).await
}

/// A person's login as a code or an approved device records it.
struct Login<'a> {
    family_id: &'a str,
    scopes: &'a [String],
    audience: &'a [String],
    auth_time: i64,
    nonce: Option<&'a str>,
}

/// The first tokens of a login (authorization code, device code): a refresh token of its family when
/// `offline` was granted, the access token, an ID token for `openid`, and the audit event.
async fn issue_for_login(
    state: &AppState,
    client: &Client,
    user: &UserRecord,
    login: &Login<'_>,
    grant_type: &'static str,
    peer: Option<SocketAddr>,
) -> Result<Issued, ApiError> {
    let refresh_token = if grants_offline(login.scopes) {
        let (token, new) = new_refresh_token(
            state,
            client,
            user,
            login.family_id,
            login.scopes,
            login.audience,
            login.auth_time,
        );
        state
            .store
            .create_refresh_token(&new)
            .await
            .map_err(ApiError::internal)?;
        Some(token)
    } else {
        None
    };
    let issued = mint_for_user(
        state,
        &UserGrant {
            client,
            user,
            scopes: login.scopes.to_vec(),
            audience: login.audience.to_vec(),
            family_id: login.family_id,
            auth_time: login.auth_time,
            nonce: login.nonce,
            refresh_token,
        },
    )?;
    audit::record(
        state,
        Event {
            kind: "token.issued",
            client_id: &client.id,
            subject: &user.subject,
            outcome: "success",
            peer,
            detail: serde_json::json!({"grant_type": grant_type, "family_id": login.family_id, "scope": issued.scope, "refresh_token": issued.refresh_token.is_some()}),
        },
    )
    // Fails closed, like every issuance. The code or device code is spent by now: the person signs in again.
    .await?;
    Ok(issued)
}

async fn refresh(
    state: &AppState,
    client: &Client,
    refresh_token: &str,
    scope: Option<&str>,
    peer: Option<SocketAddr>,
) -> Result<Issued, ApiError> {
    let now = state.clock.unix_now();
    let hash = opaque::digest(refresh_token);
    let Some(current) = state
        .store
        .get_refresh_token(&hash)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(invalid_grant("the refresh token is unknown"));
    };
    if current.client_id != client.id {
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let scopes = grant::refresh_scopes(&current.scopes, scope)?;
    let user = active_user(state, &current.subject).await?;
    let (token, successor) = new_refresh_token(
        state,
        client,
        &user,
        &current.family_id,
        &current.scopes,
        &current.audience,
        current.auth_time,
    );
    let grace = duration_secs(state.config.flyteauth.refresh_token_reuse_grace);
    let outcome = state
        .store
        .rotate_refresh_token(&hash, &successor, now, grace)
        .await
        .map_err(ApiError::internal)?;
    match outcome {
        Rotation::Rotated(_) | Rotation::WithinGrace(_) => {}
        Rotation::Reused(old) => {
            // RFC 9700 §4.14: a refresh token used twice means it leaked; end the whole family.
            revoke_family(state, &old.family_id, "refresh.reused").await?;
            crate::metrics::revoked("reuse_detected");
            audit::record_or_log(
                state,
                Event {
                    kind: "refresh.reuse_detected",
                    client_id: &client.id,
                    subject: &old.subject,
                    outcome: "failure",
                    peer,
                    detail: serde_json::json!({"family_id": old.family_id}),
                },
            )
            .await;
            return Err(invalid_grant(
                "the refresh token was already used; its login is revoked",
            ));
        }
        Rotation::FamilyRevoked(_) => return Err(invalid_grant("the refresh token is revoked")),
        Rotation::Expired(_) => return Err(invalid_grant("the refresh token has expired")),
        Rotation::NotFound => return Err(invalid_grant("the refresh token is unknown")),
    }
    let issued = mint_for_user(
        state,
        &UserGrant {
            client,
            user: &user,
            scopes,
            audience: current.audience.clone(),
            family_id: &current.family_id,
            auth_time: current.auth_time,
            nonce: None,
            refresh_token: Some(token),
        },
    )?;
    audit::record(
        state,
        Event {
            kind: "token.issued",
            client_id: &client.id,
            subject: &user.subject,
            outcome: "success",
            peer,
            detail: serde_json::json!({"grant_type": "refresh_token", "family_id": current.family_id, "scope": issued.scope}),
        },
    )
    // Fails closed. The old refresh token was rotated, but a retry within the reuse grace gets a new pair.
    .await?;
    Ok(issued)
}
