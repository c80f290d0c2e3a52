//! An OpenID provider double on 127.0.0.1 for the federation attack tests: discovery, JWKS, authorize, token,
//! userinfo and end-session endpoints whose answers the test bends through [`FakeIdp`] (a wrong `state`, an ID
//! token for another audience, signed with `none` or an unknown key, a failing token endpoint, …), and which
//! records every request so a test can check what the server sent (PKCE, the client secret, logout hints).
//!
//! It checks what a strict provider checks (client authentication, the code, its redirect URI, the PKCE verifier)
//! so a server that skips a step fails here as it would against a real one.
//!
//! It is also the external authorization server of the External-mode tests: it mints access tokens
//! ([`FakeIdp::user_access_token`], [`FakeIdp::app_access_token`], bent by an [`AccessTokenFlaw`]), rotates its
//! key ([`FakeIdp::rotate_key`]), announces a device authorization endpoint, and serves its metadata at
//! `/.well-known/openid-configuration` and, when asked ([`FakeIdp::set_oauth_metadata`]), at
//! `/.well-known/oauth-authorization-server`.

use crate::{StartOptions, TestServer};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use flyteauth_core::keys::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The client id the server is registered with at the provider.
pub const CLIENT_ID: &str = "flyteauth";
/// Its secret (the `oidc_client_secret` secret); has characters RFC 6749 §2.3.1 form-encodes in Basic credentials.
pub const CLIENT_SECRET: &str = "idp-s3cret+/=~x";
/// Size of the bulky claim of [`IdTokenAnswer::Oversized`].
pub const OVERSIZED_CLAIM_BYTES: usize = 20 * 1024;

/// How `/authorize` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizeAnswer {
    /// A code and the `state` it was given.
    #[default]
    Code,
    /// A code, but a `state` that keeps the first 8 characters of the real one and changes the rest (so a
    /// server that finds the login cookie by the prefix still has to compare the whole state).
    WrongState,
    /// `error=access_denied` (the person refused, or policy said no).
    AccessDenied,
}

/// What the ID token of `/token` looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdTokenAnswer {
    /// Valid: RS256 with the published key, right issuer, audience, nonce and expiry.
    #[default]
    Good,
    /// Another `nonce` than the one of the authorization request.
    WrongNonce,
    /// `aud` is another client.
    OtherAudience,
    /// `alg: none`, unsigned (`header.payload.`).
    AlgNone,
    /// RS256 with a key (and `kid`) the JWKS does not publish.
    UnknownKey,
    /// HS256 with the client secret as the MAC key (the provider only advertises RS256).
    Hs256ClientSecret,
    /// `exp` ten minutes in the past.
    Expired,
    /// `iss` is another provider.
    WrongIssuer,
    /// Valid, with a 20 KB claim ([`OVERSIZED_CLAIM_BYTES`]).
    Oversized,
    /// Valid, with 300 groups of 40 characters (about 12 KB) in the token and at userinfo.
    ManyGroups,
}

/// How `/token` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenAnswer {
    /// Checks the request and issues tokens.
    #[default]
    Normal,
    /// 500 with a text body.
    ServerError,
    /// 400 `invalid_grant` (as for an expired or already used code).
    InvalidGrant,
}

/// The person the provider signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpUser {
    pub sub: String,
    pub email: String,
    pub name: String,
    pub preferred_username: String,
    pub groups: Vec<String>,
}

impl Default for IdpUser {
    fn default() -> Self {
        Self {
            sub: "00u1ab2CDEfgh3IJK4x7".to_owned(),
            email: "dana@corp.example".to_owned(),
            name: "Dana Federated".to_owned(),
            preferred_username: "dana".to_owned(),
            groups: vec!["flyte-admins".to_owned(), "data-eng".to_owned()],
        }
    }
}

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string.
    pub query: String,
}

/// One `/authorize` request: every query parameter, by name.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub params: BTreeMap<String, String>,
}

impl AuthorizeRequest {
    /// The value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// How the client authenticated at `/token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// No credentials.
    None,
    /// `client_secret_basic`; `secret_ok` says whether the secret matched (form-decoded, or as sent).
    Basic { client_id: String, secret_ok: bool },
    /// `client_secret_post`.
    Post { client_id: String, secret_ok: bool },
}

/// One `/token` request and what the provider made of it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The form parameters, by name.
    pub params: BTreeMap<String, String>,
    pub client_auth: ClientAuth,
    /// Whether S256(`code_verifier`) equals the `code_challenge` of the code's authorization request (`None` when
    /// the code is unknown).
    pub pkce_verified: Option<bool>,
    /// Whether `redirect_uri` equals the one of the code's authorization request (`None` when the code is unknown).
    pub redirect_uri_matched: Option<bool>,
    /// The status answered.
    pub status: u16,
}

/// What a code stands for.
#[derive(Debug, Clone)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
    used: bool,
}

/// What is wrong with an access token the provider mints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessTokenFlaw {
    /// Nothing: RS256 with the current published key and its `kid`.
    #[default]
    None,
    /// `iss` is another server.
    WrongIssuer,
    /// `aud` is another API.
    WrongAudience,
    /// `exp` ten minutes in the past.
    Expired,
    /// `alg: none`, unsigned.
    AlgNone,
    /// HS256 with the provider's public key (its SPKI PEM) as the MAC key, under the published `kid`: the
    /// classic key-confusion attack on validators that take the algorithm from the token.
    Hs256PublicKey,
    /// RS256 with a key (and `kid`) the JWKS does not publish.
    UnknownKey,
}

/// The client id of the user tokens [`FakeIdp::user_access_token`] mints (an interactive CLI client).
pub const USER_TOKEN_CLIENT_ID: &str = "flytectl-okta";

#[derive(Debug, Default)]
struct Inner {
    /// Whether `/.well-known/oauth-authorization-server` answers (else 404, as at Okta's org server).
    oauth_metadata: bool,
    /// Whether the provider has moved to its second key (published first; the old one stays published).
    rotated: bool,
    authorize: AuthorizeAnswer,
    id_token: IdTokenAnswer,
    token: TokenAnswer,
    end_session: bool,
    user: IdpUser,
    codes: HashMap<String, IssuedCode>,
    access_tokens: HashMap<String, String>,
    requests: Vec<Recorded>,
    authorize_requests: Vec<AuthorizeRequest>,
    token_requests: Vec<TokenRequest>,
    userinfo_requests: Vec<Option<String>>,
    end_session_requests: Vec<BTreeMap<String, String>>,
    issued_id_tokens: Vec<String>,
}

struct Shared {
    base: String,
    client_id: String,
    client_secret: String,
    inner: Mutex<Inner>,
}

type Idp = Arc<Shared>;

/// The provider's keys: the published one and one it never publishes. Generated once per test binary (RSA key
/// generation is slow in debug builds).
fn keys() -> &'static (SigningKey, SigningKey) {
    static KEYS: OnceLock<(SigningKey, SigningKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (published, _) = SigningKey::generate().unwrap();
        let (unknown, _) = SigningKey::generate().unwrap();
        assert_ne!(published.kid(), unknown.kid());
        (published, unknown)
    })
}

/// The key the provider moves to on [`FakeIdp::rotate_key`]; generated on first use.
fn rotated_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap().0)
}

/// A DER length.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// The SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`) of an RSA public key, as an IdP publishes it.
pub fn public_key_pem(key: &flyteauth_core::keys::VerifyingKey) -> String {
    let rsa_public_key = der(
        0x30,
        &[der_uint(key.modulus()), der_uint(key.exponent())].concat(),
    );
    // rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let bit_string = der(0x03, &[&[0u8][..], &rsa_public_key].concat());
    let spki = der(0x30, &[algorithm, bit_string].concat());
    let b64 = STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn random() -> String {
    flyteauth_core::clients::generate_secret()
}

/// A running fake provider; stops listening when dropped or [`FakeIdp::stop`]ped.
pub struct FakeIdp {
    /// Its base URL and issuer, `http://127.0.0.1:<port>` (no trailing slash).
    pub base: String,
    pub addr: SocketAddr,
    shared: Idp,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeIdp {
    /// Starts a provider that knows the client [`CLIENT_ID`] with [`CLIENT_SECRET`].
    pub async fn start() -> Self {
        Self::start_for(CLIENT_ID, CLIENT_SECRET).await
    }

    /// Starts a provider that knows the client `client_id` with `client_secret`.
    pub async fn start_for(client_id: &str, client_secret: &str) -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(tcp, client_id, client_secret).await
    }

    /// Starts a provider (knowing [`CLIENT_ID`]) at `base`, a `http://127.0.0.1:<port>` URL such as
    /// [`closed_base_url`] returned: for a server that started while the provider was down.
    pub async fn start_at(base: &str) -> Self {
        let addr: SocketAddr = base
            .strip_prefix("http://")
            .expect("an http://127.0.0.1:<port> URL")
            .parse()
            .unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::start_on(tcp, CLIENT_ID, CLIENT_SECRET).await
    }

    async fn start_on(tcp: tokio::net::TcpListener, client_id: &str, client_secret: &str) -> Self {
        let _ = keys();
        let addr = tcp.local_addr().unwrap();
        let base = format!("http://127.0.0.1:{}", addr.port());
        let shared = Arc::new(Shared {
            base: base.clone(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            inner: Mutex::new(Inner {
                end_session: true,
                ..Inner::default()
            }),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route(
                "/.well-known/oauth-authorization-server",
                get(oauth_metadata),
            )
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", axum::routing::post(token))
            .route("/userinfo", get(userinfo).post(userinfo))
            .route("/end_session", get(end_session).post(end_session))
            .layer(middleware::from_fn_with_state(shared.clone(), record))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(tcp, app).await;
        });
        Self {
            base,
            addr,
            shared,
            task: Some(task),
        }
    }

    /// Stops listening: afterwards connections to [`FakeIdp::base`] are refused. (Every answer carries
    /// `Connection: close`, so no kept-alive connection outlives this.)
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        // The port must refuse connections from now on.
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the fake identity provider still accepts connections after stop");
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    /// How `/authorize` answers from now on.
    pub fn set_authorize(&self, answer: AuthorizeAnswer) {
        self.inner().authorize = answer;
    }

    /// What ID token `/token` issues from now on.
    pub fn set_id_token(&self, answer: IdTokenAnswer) {
        self.inner().id_token = answer;
    }

    /// How `/token` answers from now on.
    pub fn set_token(&self, answer: TokenAnswer) {
        self.inner().token = answer;
    }

    /// Whether discovery advertises `end_session_endpoint` (yes by default).
    pub fn set_end_session(&self, offered: bool) {
        self.inner().end_session = offered;
    }

    /// The person signed in from now on.
    pub fn set_user(&self, user: IdpUser) {
        self.inner().user = user;
    }

    /// The person signed in.
    pub fn user(&self) -> IdpUser {
        self.inner().user.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner().requests.clone()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.inner()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Every `/authorize` request, in order.
    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        self.inner().authorize_requests.clone()
    }

    /// Every `/token` request, in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.inner().token_requests.clone()
    }

    /// The bearer token of every `/userinfo` request (`None`: no bearer token).
    pub fn userinfo_requests(&self) -> Vec<Option<String>> {
        self.inner().userinfo_requests.clone()
    }

    /// Every `/end_session` request's parameters, in order.
    pub fn end_session_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.inner().end_session_requests.clone()
    }

    /// Every ID token issued, in order.
    pub fn issued_id_tokens(&self) -> Vec<String> {
        self.inner().issued_id_tokens.clone()
    }

    /// Whether `/.well-known/oauth-authorization-server` answers with the metadata (else 404; the default).
    pub fn set_oauth_metadata(&self, served: bool) {
        self.inner().oauth_metadata = served;
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.count("/jwks")
    }

    /// How many times a metadata document was fetched (either well-known path, 404s included).
    pub fn metadata_fetches(&self) -> usize {
        self.count("/.well-known/openid-configuration")
            + self.count("/.well-known/oauth-authorization-server")
    }

    /// Moves to a new signing key: it is published first and signs from now on; the old key stays published.
    pub fn rotate_key(&self) {
        let _ = rotated_key();
        self.inner().rotated = true;
    }

    /// The key id access tokens are signed with now.
    pub fn current_kid(&self) -> String {
        current_key(&self.inner()).kid().to_owned()
    }

    /// An access token for the person signed in ([`FakeIdp::user`]), as Okta mints it for an interactive client:
    /// `sub` the person, `cid` [`USER_TOKEN_CLIENT_ID`], `scp` `[all, offline]`, profile claims, for `audience`.
    pub fn user_access_token(&self, audience: &str, flaw: AccessTokenFlaw) -> String {
        let user = self.user();
        let claims = json!({
            "sub": user.sub,
            "cid": USER_TOKEN_CLIENT_ID,
            "uid": "00u1ab2CDEfgh3IJK4x7",
            "scp": ["all", "offline"],
            "aud": audience,
            "email": user.email,
            "name": user.name,
            "preferred_username": user.preferred_username,
            "groups": user.groups,
        });
        self.sign_access_token(claims, flaw)
    }

    /// An access token of the client-credentials grant for `client_id`: `sub` and `cid` the client, `scp`
    /// `[all]`, for `audience`.
    pub fn app_access_token(
        &self,
        client_id: &str,
        audience: &str,
        flaw: AccessTokenFlaw,
    ) -> String {
        let claims = json!({
            "sub": client_id,
            "cid": client_id,
            "scp": ["all"],
            "aud": audience,
        });
        self.sign_access_token(claims, flaw)
    }

    /// Signs `claims` (an object) as an access token of this provider after adding `iss`, `iat`, `exp` (an hour)
    /// and `jti` where absent, bent by `flaw`.
    pub fn sign_access_token(&self, mut claims: Value, flaw: AccessTokenFlaw) -> String {
        let now = now();
        let object = claims.as_object_mut().unwrap();
        object.entry("iss").or_insert_with(|| json!(self.base));
        object.entry("iat").or_insert_with(|| json!(now));
        object.entry("exp").or_insert_with(|| json!(now + 3600));
        object
            .entry("jti")
            .or_insert_with(|| json!(format!("AT.{}", random())));
        object.insert("ver".into(), json!(1));
        match flaw {
            AccessTokenFlaw::WrongIssuer => {
                object.insert("iss".into(), json!("https://other-idp.example"));
            }
            AccessTokenFlaw::WrongAudience => {
                object.insert("aud".into(), json!("api://someone-else"));
            }
            AccessTokenFlaw::Expired => {
                object.insert("iat".into(), json!(now - 4200));
                object.insert("exp".into(), json!(now - 600));
            }
            _ => {}
        }
        let current: &'static SigningKey = current_key(&self.inner());
        match flaw {
            AccessTokenFlaw::AlgNone => {
                let header = URL_SAFE_NO_PAD.encode(format!(
                    r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
                    current.kid()
                ));
                let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
                format!("{header}.{payload}.")
            }
            AccessTokenFlaw::Hs256PublicKey => {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.kid = Some(current.kid().to_owned());
                let pem = public_key_pem(current.public());
                jsonwebtoken::encode(
                    &header,
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()),
                )
                .unwrap()
            }
            _ => {
                let key = if flaw == AccessTokenFlaw::UnknownKey {
                    &keys().1
                } else {
                    current
                };
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = Some(key.kid().to_owned());
                jsonwebtoken::encode(&header, &claims, key.encoding_key()).unwrap()
            }
        }
    }

    /// The body of `auth.userAuth:` that federates to this provider (see [`user_auth_yaml`]).
    pub fn user_auth_yaml(&self, extra: &str) -> String {
        user_auth_yaml(&self.base, extra)
    }

    /// Starts a flyteauth server federating to this provider; `flyteauth_extra` as for
    /// [`TestServer::start_with`], `user_auth_extra` more lines of `auth.userAuth:` (indented by four spaces).
    pub async fn start_server(&self, flyteauth_extra: &str, user_auth_extra: &str) -> TestServer {
        server_for(&self.base, flyteauth_extra, user_auth_extra).await
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The body of `auth.userAuth:` (four-space indent) federating to the provider at `base` as [`CLIENT_ID`], with
/// `extra` (e.g. `"    idpQueryParameter: idp\n"`) after it.
pub fn user_auth_yaml(base: &str, extra: &str) -> String {
    format!(
        "    openId:\n      baseUrl: {base}\n      clientId: {CLIENT_ID}\n      scopes: [openid, profile, email]\n{extra}"
    )
}

/// Starts a flyteauth server federating to the provider at `base` (which may be down), with the
/// `oidc_client_secret` secret [`CLIENT_SECRET`].
pub async fn server_for(base: &str, flyteauth_extra: &str, user_auth_extra: &str) -> TestServer {
    let user_auth = user_auth_yaml(base, user_auth_extra);
    TestServer::start_on(&StartOptions {
        flyteauth_extra,
        user_auth: &user_auth,
        secret_files: &[("oidc_client_secret", CLIENT_SECRET)],
        ..StartOptions::default()
    })
    .await
}

/// A base URL on 127.0.0.1 where nothing listens (a port that was just free).
pub async fn closed_base_url() -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    drop(tcp);
    format!("http://127.0.0.1:{port}")
}

/// Records the request and closes the connection after the answer.
async fn record(State(idp): State<Idp>, request: Request, next: Next) -> Response {
    idp.inner.lock().unwrap().requests.push(Recorded {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or_default().to_owned(),
    });
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn form_pairs(text: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// The key access tokens are signed with now.
fn current_key(inner: &Inner) -> &'static SigningKey {
    if inner.rotated {
        rotated_key()
    } else {
        &keys().0
    }
}

async fn oauth_metadata(State(idp): State<Idp>) -> Response {
    if !idp.inner.lock().unwrap().oauth_metadata {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    discovery(State(idp)).await.into_response()
}

async fn discovery(State(idp): State<Idp>) -> Json<Value> {
    let base = &idp.base;
    let mut doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "grant_types_supported": ["authorization_code"],
        "device_authorization_endpoint": format!("{base}/device/authorize"),
        "scopes_supported": ["openid", "profile", "email", "groups"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "name",
            "preferred_username", "groups"],
    });
    if idp.inner.lock().unwrap().end_session {
        doc["end_session_endpoint"] = json!(format!("{base}/end_session"));
    }
    Json(doc)
}

async fn jwks(State(idp): State<Idp>) -> Json<Value> {
    let published = keys().0.public().jwk();
    if idp.inner.lock().unwrap().rotated {
        Json(json!({"keys": [rotated_key().public().jwk(), published]}))
    } else {
        Json(json!({"keys": [published]}))
    }
}

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", query.finish())
}

fn html(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<!doctype html><title>fake idp</title><p>{text}</p>"),
    )
        .into_response()
}

async fn authorize(State(idp): State<Idp>, request: Request) -> Response {
    let params = form_pairs(request.uri().query().unwrap_or_default());
    let mut inner = idp.inner.lock().unwrap();
    inner.authorize_requests.push(AuthorizeRequest {
        params: params.clone(),
    });
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let redirect_uri = get("redirect_uri");
    if get("client_id") != idp.client_id || redirect_uri.is_empty() {
        // A real provider shows an error page rather than redirecting to an unverified URI.
        return html(StatusCode::BAD_REQUEST, "unknown client or redirect_uri");
    }
    let state = get("state");
    match inner.authorize {
        AuthorizeAnswer::AccessDenied => see_other(&with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The user denied access"),
                ("state", &state),
            ],
        )),
        answer => {
            let code = random();
            inner.codes.insert(
                code.clone(),
                IssuedCode {
                    client_id: get("client_id"),
                    redirect_uri: redirect_uri.clone(),
                    nonce: get("nonce"),
                    code_challenge: get("code_challenge"),
                    code_challenge_method: get("code_challenge_method"),
                    used: false,
                },
            );
            let state = if answer == AuthorizeAnswer::WrongState {
                let keep: String = state.chars().take(8).collect();
                format!("{keep}tampered{}", &random()[..12])
            } else {
                state
            };
            see_other(&with_query(
                &redirect_uri,
                &[("code", &code), ("state", &state)],
            ))
        }
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": format!("fake idp: {error}")})),
    )
        .into_response()
}

/// Decodes an `application/x-www-form-urlencoded` component (RFC 6749 §2.3.1 encodes Basic credentials so).
fn form_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn client_auth(idp: &Shared, headers: &HeaderMap, params: &BTreeMap<String, String>) -> ClientAuth {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(pair) = basic {
        let (id, secret) = pair.split_once(':').unwrap_or((&pair, ""));
        // Form-decoded per the RFC; as sent, as many providers also accept.
        let secret_ok = form_decode(secret) == idp.client_secret || secret == idp.client_secret;
        return ClientAuth::Basic {
            client_id: form_decode(id),
            secret_ok,
        };
    }
    match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => ClientAuth::Post {
            client_id: id.clone(),
            secret_ok: *secret == idp.client_secret,
        },
        _ => ClientAuth::None,
    }
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn token(State(idp): State<Idp>, headers: HeaderMap, body: String) -> Response {
    let params = form_pairs(&body);
    let auth = client_auth(&idp, &headers, &params);
    let mut inner = idp.inner.lock().unwrap();
    let code = params.get("code").cloned().unwrap_or_default();
    let issued = inner.codes.get(&code).cloned();
    let mut request = TokenRequest {
        params: params.clone(),
        client_auth: auth.clone(),
        pkce_verified: issued.as_ref().map(|c| {
            c.code_challenge_method == "S256"
                && !c.code_challenge.is_empty()
                && params
                    .get("code_verifier")
                    .is_some_and(|v| s256(v) == c.code_challenge)
        }),
        redirect_uri_matched: issued
            .as_ref()
            .map(|c| params.get("redirect_uri") == Some(&c.redirect_uri)),
        status: 200,
    };
    let answer = (|| {
        match inner.token {
            TokenAnswer::ServerError => return Err((StatusCode::INTERNAL_SERVER_ERROR, "")),
            TokenAnswer::InvalidGrant => return Err((StatusCode::BAD_REQUEST, "invalid_grant")),
            TokenAnswer::Normal => {}
        }
        let client_ok = matches!(&auth,
            ClientAuth::Basic { client_id, secret_ok: true } if *client_id == idp.client_id);
        if !client_ok {
            return Err((StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        if params.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return Err((StatusCode::BAD_REQUEST, "unsupported_grant_type"));
        }
        let invalid_grant = (StatusCode::BAD_REQUEST, "invalid_grant");
        let Some(issued) = issued.clone() else {
            return Err(invalid_grant);
        };
        if issued.used
            || issued.client_id != idp.client_id
            || request.redirect_uri_matched != Some(true)
            || request.pkce_verified != Some(true)
        {
            return Err(invalid_grant);
        }
        Ok(issued)
    })();
    let issued = match answer {
        Ok(issued) => issued,
        Err((status, error)) => {
            if let Some(c) = inner.codes.get_mut(&code) {
                // A code is single-use even when its exchange fails.
                c.used = true;
            }
            request.status = status.as_u16();
            inner.token_requests.push(request);
            if error.is_empty() {
                return (status, "internal error").into_response();
            }
            return oauth_error(status, error);
        }
    };
    if let Some(c) = inner.codes.get_mut(&code) {
        c.used = true;
    }
    let access_token = random();
    let sub = inner.user.sub.clone();
    inner.access_tokens.insert(access_token.clone(), sub);
    let id_token = id_token(&idp, &inner, &issued.nonce);
    inner.issued_id_tokens.push(id_token.clone());
    inner.token_requests.push(request);
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "openid profile email",
            "id_token": id_token,
        })),
    )
        .into_response()
}

fn many_groups() -> Vec<String> {
    (0..300)
        .map(|i| format!("group-{i:03}-{}", "g".repeat(30)))
        .collect()
}

fn id_token(idp: &Shared, inner: &Inner, nonce: &str) -> String {
    let user = &inner.user;
    let now = now();
    let answer = inner.id_token;
    let mut claims = json!({
        "iss": if answer == IdTokenAnswer::WrongIssuer { "https://other-idp.example" } else { idp.base.as_str() },
        "sub": user.sub,
        "aud": if answer == IdTokenAnswer::OtherAudience { "someone-else" } else { idp.client_id.as_str() },
        "iat": if answer == IdTokenAnswer::Expired { now - 4200 } else { now },
        "exp": if answer == IdTokenAnswer::Expired { now - 600 } else { now + 3600 },
        "auth_time": now,
        "nonce": if answer == IdTokenAnswer::WrongNonce { "not-the-nonce-you-sent" } else { nonce },
        "email": user.email,
        "email_verified": true,
        "name": user.name,
        "preferred_username": user.preferred_username,
        "groups": if answer == IdTokenAnswer::ManyGroups { many_groups() } else { user.groups.clone() },
    });
    if answer == IdTokenAnswer::Oversized {
        claims["bulky"] = json!("x".repeat(OVERSIZED_CLAIM_BYTES));
    }
    let (published, unknown) = keys();
    match answer {
        IdTokenAnswer::AlgNone => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
            format!("{header}.{payload}.")
        }
        IdTokenAnswer::Hs256ClientSecret => {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(published.kid().to_owned());
            jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(idp.client_secret.as_bytes()),
            )
            .unwrap()
        }
        _ => {
            let key = if answer == IdTokenAnswer::UnknownKey {
                unknown
            } else {
                published
            };
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = Some(key.kid().to_owned());
            jsonwebtoken::encode(&header, &claims, key.encoding_key()).unwrap()
        }
    }
}

async fn userinfo(State(idp): State<Idp>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_owned);
    let mut inner = idp.inner.lock().unwrap();
    inner.userinfo_requests.push(bearer.clone());
    let known = bearer
        .as_ref()
        .and_then(|b| inner.access_tokens.get(b))
        .cloned();
    let Some(sub) = known else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    };
    let user = &inner.user;
    let groups = if inner.id_token == IdTokenAnswer::ManyGroups {
        many_groups()
    } else {
        user.groups.clone()
    };
    Json(json!({
        "sub": sub,
        "email": user.email,
        "email_verified": true,
        "name": user.name,
        "preferred_username": user.preferred_username,
        "groups": groups,
    }))
    .into_response()
}

async fn end_session(State(idp): State<Idp>, request: Request) -> Response {
    let mut params = form_pairs(request.uri().query().unwrap_or_default());
    if request.method() == axum::http::Method::POST {
        let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        params.extend(form_pairs(&String::from_utf8_lossy(&body)));
    }
    idp.inner
        .lock()
        .unwrap()
        .end_session_requests
        .push(params.clone());
    match params.get("post_logout_redirect_uri") {
        Some(target) => {
            let target = match params.get("state") {
                Some(state) => with_query(target, &[("state", state)]),
                None => target.clone(),
            };
            see_other(&target)
        }
        None => html(
            StatusCode::OK,
            "You are signed out of the identity provider.",
        ),
    }
}
