//! What the grants benchmark needs in the server's store before it times anything: a registered app for
//! `client_credentials`, a person, and single-use authorization codes and refresh tokens, one per timed
//! request.
//!
//! Codes and refresh tokens are written straight into the store, as `/oauth2/authorize` and the token
//! endpoint write them: the code record comes from the same `authorize::validate` the authorize endpoint
//! runs (so its scopes, audience and PKCE challenge are the ones a real login of `flytectl` stores), and
//! each credential is stored as the lower-hex SHA-256 digest the server keeps.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flyteauth_core::authorize::{self, AuthorizationRequest};
use flyteauth_core::clients::{generate_secret, hash_generated_secret};
use flyteauth_core::pkce::s256_challenge;
use flyteauth_server::opaque;
use flyteauth_server::state::AppState;
use flyteauth_server::users::{self, NewAccount};
use flyteauth_store::{NewApp, NewCode, NewRefreshToken, UserRecord};

use crate::client::Connection;

/// The registered app of the `client_credentials` baseline (its secret is stored as a SHA-256 digest,
/// as for every app the server generates a secret for).
pub const CC_CLIENT_ID: &str = "bench-cc";
/// The public client of the person's grants (flyteadmin's built-in `flytectl`).
pub const PUBLIC_CLIENT_ID: &str = "flytectl";
/// One of `flytectl`'s registered redirect URIs, as the SDKs use it.
pub const REDIRECT_URI: &str = "http://localhost:53593/callback";
/// `redirect_uri`, form-encoded.
const REDIRECT_URI_FORM: &str = "http%3A%2F%2Flocalhost%3A53593%2Fcallback";
/// What the Flyte SDKs ask for: a refresh token (`offline`) and the API (`all`); no `openid`, so every
/// grant signs exactly one token.
pub const SCOPE: &str = "offline all";
/// The fixed PKCE verifier of every code (43..128 unreserved characters).
pub const VERIFIER: &str = "flyteauth-bench-pkce-verifier-0123456789abcdefghijklmnopqrstuvwxyz";
/// The person.
pub const USERNAME: &str = "bench-person";
const PASSWORD: &str = "a long benchmark passphrase 0123456789";

/// The store contents the grants benchmark builds on.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// `Authorization: Basic …` of [`CC_CLIENT_ID`].
    pub cc_basic: String,
    /// The person.
    pub user: UserRecord,
    /// What `/oauth2/authorize` would store for a login of `flytectl` with [`SCOPE`].
    pub request: AuthorizationRequest,
    code_lifetime: i64,
    refresh_lifetime: i64,
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Fixture {
    /// Registers the app and the person, and validates the authorization request of `flytectl`.
    pub async fn create(state: &AppState) -> anyhow::Result<Self> {
        let store = state.store.as_ref();
        let now = state.clock.unix_now();
        let secret = generate_secret();
        store
            .create_app(&NewApp {
                client_id: CC_CLIENT_ID.to_owned(),
                client_name: "client_credentials baseline".to_owned(),
                organization: String::new(),
                secret_hash: hash_generated_secret(&secret).encode(),
                grant_types: vec!["client_credentials".to_owned()],
                scopes: vec!["all".to_owned()],
                audience: Vec::new(),
                redirect_uris: Vec::new(),
                created_by: "flyteauth-bench".to_owned(),
                created_at: now,
            })
            .await
            .context("create the client_credentials app")?;
        let user = users::add(
            store,
            &NewAccount {
                username: USERNAME.to_owned(),
                email: "bench-person@example.com".to_owned(),
                display_name: "Bench Person".to_owned(),
                is_admin: false,
            },
            PASSWORD,
            now,
        )
        .await
        .context("create the person")?;

        let client = state
            .find_client(PUBLIC_CLIENT_ID)
            .await
            .map_err(|e| anyhow::anyhow!("look up {PUBLIC_CLIENT_ID}: {e:?}"))?
            .with_context(|| format!("no client {PUBLIC_CLIENT_ID}"))?;
        let params: HashMap<String, String> = [
            ("client_id", PUBLIC_CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("scope", SCOPE),
            ("state", "bench-state-0123456789"),
            ("code_challenge", &s256_challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let redirect_uri = authorize::check_redirect_uri(&client, Some(REDIRECT_URI))
            .map_err(|e| anyhow::anyhow!("redirect URI refused: {e}"))?;
        let request = authorize::validate(
            &client,
            &redirect_uri,
            &params,
            &state.accepted_audiences,
            &state.default_audience,
        )
        .map_err(|e| anyhow::anyhow!("authorization request refused: {:?}", e.error))?;
        if !request.grants_offline() || request.grants_openid() {
            bail!(
                "expected a grant with a refresh token and no ID token, got scopes {:?}",
                request.scopes
            );
        }
        let lifetimes = &state.config.auth.app_auth.self_auth_server;
        Ok(Self {
            cc_basic: format!(
                "Basic {}",
                STANDARD.encode(format!("{CC_CLIENT_ID}:{secret}"))
            ),
            user,
            request,
            code_lifetime: secs(lifetimes.authorization_code_lifespan),
            refresh_lifetime: secs(lifetimes.refresh_token_lifespan),
        })
    }

    /// The `client_credentials` request body (its client authenticates with [`Self::cc_basic`]).
    pub fn cc_body() -> String {
        "grant_type=client_credentials&scope=".to_owned()
    }

    /// Stores `n` fresh authorization codes (each of a login family of its own) and returns the token
    /// request body redeeming each.
    pub async fn codes(&self, state: &AppState, n: usize) -> anyhow::Result<Vec<String>> {
        let now = state.clock.unix_now();
        let mut bodies = Vec::with_capacity(n);
        for _ in 0..n {
            let code = opaque::new_token();
            state
                .store
                .put_code(&NewCode {
                    code_hash: opaque::digest(&code),
                    client_id: self.request.client_id.clone(),
                    redirect_uri: self.request.redirect_uri.clone(),
                    code_challenge: self.request.code_challenge.clone().unwrap_or_default(),
                    scopes: self.request.scopes.clone(),
                    audience: self.request.audience.clone(),
                    subject: self.user.subject.clone(),
                    username: self.user.username.clone(),
                    family_id: opaque::new_token(),
                    nonce: String::new(),
                    auth_time: now,
                    created_at: now,
                    expires_at: now.saturating_add(self.code_lifetime),
                })
                .await
                .context("put_code")?;
            bodies.push(code_body(&code));
        }
        Ok(bodies)
    }

    /// Stores `n` fresh refresh tokens, each the start of a family of its own, and returns the token
    /// request body rotating each.
    pub async fn refresh_tokens(&self, state: &AppState, n: usize) -> anyhow::Result<Vec<String>> {
        let now = state.clock.unix_now();
        let mut bodies = Vec::with_capacity(n);
        for _ in 0..n {
            let token = opaque::new_token();
            state
                .store
                .create_refresh_token(&NewRefreshToken {
                    token_hash: opaque::digest(&token),
                    family_id: opaque::new_token(),
                    client_id: self.request.client_id.clone(),
                    subject: self.user.subject.clone(),
                    username: self.user.username.clone(),
                    scopes: self.request.scopes.clone(),
                    audience: self.request.audience.clone(),
                    auth_time: now,
                    issued_at: now,
                    expires_at: now.saturating_add(self.refresh_lifetime),
                })
                .await
                .context("create_refresh_token")?;
            bodies.push(refresh_body(&token));
        }
        Ok(bodies)
    }
}

/// The token request of the PKCE code exchange (RFC 6749 §4.1.3, RFC 7636 §4.5) of `flytectl`.
pub fn code_body(code: &str) -> String {
    format!(
        "grant_type=authorization_code&code={code}&redirect_uri={REDIRECT_URI_FORM}\
         &code_verifier={VERIFIER}&client_id={PUBLIC_CLIENT_ID}"
    )
}

/// The refresh request (RFC 6749 §6) of `flytectl`.
pub fn refresh_body(token: &str) -> String {
    format!("grant_type=refresh_token&refresh_token={token}&client_id={PUBLIC_CLIENT_ID}")
}

/// The request headers of each grant, as `(name, value)`.
pub fn headers(basic: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("accept", "application/json".to_owned()),
    ];
    if let Some(basic) = basic {
        headers.push(("authorization", basic.to_owned()));
    }
    headers
}

/// What one token request answered, checked: 200, an RS256 access token, no ID token, and a refresh
/// token exactly when `expect_refresh`.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<String>,
}

/// Sends `body` to `/oauth2/token` once and checks the answer.
pub fn exchange_once(
    addr: SocketAddr,
    basic: Option<&str>,
    body: &str,
    expect_refresh: bool,
) -> anyhow::Result<Answer> {
    let headers = headers(basic);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut conn = Connection::open(addr)?;
    let response = conn.request("POST", "/oauth2/token", &headers, body.as_bytes())?;
    if response.status != 200 {
        bail!(
            "token request answered {}: {}",
            response.status,
            response.text()
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&response.body).context("token response is not JSON")?;
    let access_token = json["access_token"]
        .as_str()
        .context("token response has no access_token")?
        .to_owned();
    let header = jsonwebtoken::decode_header(&access_token).context("access token header")?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        bail!("access token is signed with {:?}, not RS256", header.alg);
    }
    if !json["id_token"].is_null() {
        bail!("an ID token was issued: the grant would sign two tokens");
    }
    let refresh_token = json["refresh_token"].as_str().map(str::to_owned);
    if refresh_token.is_some() != expect_refresh {
        bail!("refresh token expected: {expect_refresh}; answer: {json}");
    }
    Ok(Answer {
        access_token,
        refresh_token,
    })
}

/// The `client_credentials` request of the peer benchmark, sent to both servers: the scope named, since
/// oidc-provider grants a machine client only the scopes it asks for (flyteauth grants the app's scopes either
/// way).
pub const PEER_BODY: &str = "grant_type=client_credentials&scope=all";

/// Sends `body` to the token endpoint at `path` once and returns the access token of a 200 answer with
/// `token_type` Bearer (whichever server it is: the peer benchmark checks the token itself).
pub fn exchange_at(
    addr: SocketAddr,
    path: &str,
    basic: Option<&str>,
    body: &str,
) -> anyhow::Result<String> {
    let headers = headers(basic);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut conn = Connection::open(addr)?;
    let response = conn.request("POST", path, &headers, body.as_bytes())?;
    if response.status != 200 {
        bail!("{path} answered {}: {}", response.status, response.text());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&response.body).context("token response is not JSON")?;
    if !json["token_type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
    {
        bail!("{path} answered a token of type {}", json["token_type"]);
    }
    json["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("token response has no access_token")
}

/// Fails unless `GET /me` with `token` answers 200 with `subject`.
pub fn check_me(addr: SocketAddr, token: &str, subject: &str) -> anyhow::Result<()> {
    let bearer = format!("Bearer {token}");
    let response = crate::client::get(addr, "/me", &[("authorization", &bearer)])?;
    if response.status != 200 {
        bail!("GET /me answered {}: {}", response.status, response.text());
    }
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).context("/me body is not JSON")?;
    if body["subject"] != subject {
        bail!("GET /me returned an unexpected identity: {body}");
    }
    Ok(())
}

/// One request of each grant, checked, before anything is timed: each answers 200 with one RS256 access
/// token; the code and refresh grants also hand out a (rotated) refresh token, and their access tokens
/// are the person's; a code is refused the second time.
pub fn check_grants(
    addr: SocketAddr,
    fixture: &Fixture,
    codes: &[String],
    refresh: &[String],
) -> anyhow::Result<()> {
    let (Some(code), Some(refresh)) = (codes.first(), refresh.first()) else {
        bail!("check_grants needs one code and one refresh token");
    };
    let cc = exchange_once(addr, Some(&fixture.cc_basic), &Fixture::cc_body(), false)
        .context("client_credentials")?;
    check_me(addr, &cc.access_token, CC_CLIENT_ID)?;
    let by_code = exchange_once(addr, None, code, true).context("authorization_code")?;
    check_me(addr, &by_code.access_token, &fixture.user.subject)?;
    let by_refresh = exchange_once(addr, None, refresh, true).context("refresh_token")?;
    check_me(addr, &by_refresh.access_token, &fixture.user.subject)?;
    // The refresh token the code grant issued rotates too.
    let issued = by_code.refresh_token.unwrap_or_default();
    exchange_once(addr, None, &refresh_body(&issued), true)
        .context("refresh of a code grant's token")?;
    // Single use: a replayed code is refused (and revokes what it issued). A replayed refresh token is
    // accepted within the configured reuse grace, so it is not tried here.
    if exchange_once(addr, None, code, true).is_ok() {
        bail!("an authorization code was accepted twice");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteauth_core::grant::TokenRequest;

    fn parse(body: &str) -> anyhow::Result<TokenRequest> {
        let params =
            flyteauth_server::form::parse(body.as_bytes()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        TokenRequest::parse(&params).map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    #[test]
    fn bodies_are_the_grants_they_name() -> anyhow::Result<()> {
        let code = opaque::new_token();
        match parse(&code_body(&code))? {
            TokenRequest::AuthorizationCode {
                code: parsed,
                redirect_uri,
                code_verifier,
            } => {
                assert_eq!(parsed, code);
                assert_eq!(redirect_uri.as_deref(), Some(REDIRECT_URI));
                assert_eq!(code_verifier.as_deref(), Some(VERIFIER));
            }
            other => bail!("not a code grant: {other:?}"),
        }
        let token = opaque::new_token();
        match parse(&refresh_body(&token))? {
            TokenRequest::RefreshToken { refresh_token, .. } => assert_eq!(refresh_token, token),
            other => bail!("not a refresh grant: {other:?}"),
        }
        assert!(matches!(
            parse(&Fixture::cc_body())?,
            TokenRequest::ClientCredentials { .. }
        ));
        Ok(())
    }

    /// The whole set-up against a real in-process server: the app, the person, one pre-created code
    /// and refresh token, each grant answered once (what the benchmark checks before timing).
    #[test]
    fn pre_created_credentials_are_redeemed_by_the_real_endpoint() -> anyhow::Result<()> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let server = runtime.block_on(crate::inproc::start(|_| axum::Router::new()))?;
        let state = server.state.clone();
        let fixture = runtime.block_on(Fixture::create(&state))?;
        let codes = runtime.block_on(fixture.codes(&state, 2))?;
        let refresh = runtime.block_on(fixture.refresh_tokens(&state, 2))?;
        assert_ne!(codes[0], codes[1]);
        assert_ne!(refresh[0], refresh[1]);
        check_grants(server.addr, &fixture, &codes, &refresh)?;
        // The second of each is still fresh.
        exchange_once(server.addr, None, &codes[1], true)?;
        exchange_once(server.addr, None, &refresh[1], true)?;
        server.stop(&runtime)
    }
}
