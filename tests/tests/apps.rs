//! The apps service (`cloudidl.identity.AppsService`) as people, apps and operators meet it: Create, Get,
//! Update, Delete and List over Connect (binary and JSON) and gRPC; whose apps a caller sees; what a client id
//! may be; paging; anonymous callers; the secret an app signs in with, its rotation and its revocation on a
//! second replica; and the audit trail of all of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flyteauth_core::clock::ManualClock;
use flyteauth_core::identity::PrincipalKind;
use flyteauth_core::keys::{KeyRing, SigningKey};
use flyteauth_core::token::{AccessTokenRequest, TokenIssuer};
use flyteauth_proto::cloudidl::common::ListRequest;
use flyteauth_proto::cloudidl::identity as pb;
use flyteauth_store::AppUpdate;
use flyteauth_tests::browser::{Browser, pkce_pair, sdk_authorize_path, url_encode};
use flyteauth_tests::{
    APP_ID, APP_SECRET, LIMITED_ID, LIMITED_SECRET, PostgresDatabase, StartOptions, TestServer,
    WEB_APP_ID, WEB_APP_SECRET, grpc_channel, gzip, token_request,
};
use pb::apps_service_client::AppsServiceClient;
use prost::Message;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

const PASSWORD: &str = "correct horse battery staple";
const REDIRECT: &str = "http://localhost:53593/callback";
const SERVICE: &str = "/cloudidl.identity.AppsService";
/// How long a revocation may take to reach another replica.
const REPLICA_DEADLINE: Duration = Duration::from_secs(5);
/// How often the tests ask whether it has.
const POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------------------
// Calling the service over each wire form
// ---------------------------------------------------------------------------------------------------------

/// The wire forms the service is served over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Connect unary, `application/proto`, gzip-compressed, token in `flyte-authorization` (the flyte SDK).
    ConnectProto,
    /// Connect unary, `application/json`, token in `authorization`.
    ConnectJson,
    /// gRPC over h2c, token in `authorization` metadata.
    Grpc,
}

const TRANSPORTS: [Transport; 3] = [
    Transport::ConnectProto,
    Transport::ConnectJson,
    Transport::Grpc,
];

impl Transport {
    fn slug(self) -> &'static str {
        match self {
            Self::ConnectProto => "proto",
            Self::ConnectJson => "json",
            Self::Grpc => "grpc",
        }
    }
}

/// An error answer, whatever the transport: the Connect code name (`not_found`, …) and the message.
#[derive(Debug, Clone)]
struct RpcError {
    code: String,
    message: String,
}

/// A successful answer and its bytes as they came over the wire (the body; for gRPC the re-encoded message).
struct Reply<T> {
    message: T,
    raw: Vec<u8>,
}

/// One method of the service: its name, its JSON forms and its gRPC stub.
trait Method: Message + std::fmt::Debug + Default + Clone + Send + 'static {
    type Response: Message + std::fmt::Debug + Default + Send + 'static;
    const NAME: &'static str;
    fn to_json(&self) -> Vec<u8>;
    fn response_from_json(bytes: &[u8]) -> Self::Response;
    fn grpc(
        client: AppsServiceClient<Channel>,
        request: tonic::Request<Self>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send;
}

macro_rules! method {
    ($req:ty => $resp:ty, $name:literal, $stub:ident) => {
        impl Method for $req {
            type Response = $resp;
            const NAME: &'static str = $name;
            fn to_json(&self) -> Vec<u8> {
                serde_json::to_vec(self).unwrap()
            }
            fn response_from_json(bytes: &[u8]) -> $resp {
                serde_json::from_slice(bytes).unwrap_or_else(|e| {
                    panic!(
                        "{} answered JSON that is not a {}: {e}: {}",
                        $name,
                        stringify!($resp),
                        String::from_utf8_lossy(bytes)
                    )
                })
            }
            async fn grpc(
                mut client: AppsServiceClient<Channel>,
                request: tonic::Request<Self>,
            ) -> Result<tonic::Response<$resp>, tonic::Status> {
                client.$stub(request).await
            }
        }
    };
}

method!(pb::CreateAppRequest => pb::CreateAppResponse, "Create", create);
method!(pb::GetAppRequest => pb::GetAppResponse, "Get", get);
method!(pb::UpdateAppRequest => pb::UpdateAppResponse, "Update", update);
method!(pb::DeleteAppRequest => pb::DeleteAppResponse, "Delete", delete);
method!(pb::ListAppsRequest => pb::ListAppsResponse, "List", list);

/// The Connect code name of a gRPC status code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status the Connect protocol gives an error code (only the codes these tests expect).
fn connect_http_status(code: &str) -> Option<u16> {
    match code {
        "invalid_argument" => Some(400),
        "unauthenticated" => Some(401),
        "permission_denied" => Some(403),
        "not_found" => Some(404),
        "already_exists" => Some(409),
        _ => None,
    }
}

/// POSTs a Connect unary call of `method` with `body`; JSON or (gzip-compressed) binary proto.
async fn connect_post(
    server: &TestServer,
    json: bool,
    method: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.url(&format!("{SERVICE}/{method}")))
        .header("connect-protocol-version", "1");
    request = if json {
        request
            .header("content-type", "application/json")
            .body(body)
    } else {
        request
            .header("content-type", "application/proto")
            .header("content-encoding", "gzip")
            .body(gzip(&body))
    };
    if let Some(token) = token {
        let header = if json {
            "authorization"
        } else {
            "flyte-authorization"
        };
        request = request.header(header, format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

/// Reads a Connect error answer: JSON `{"code", "message"}` with the HTTP status of its code.
async fn connect_error(response: reqwest::Response, what: &str) -> RpcError {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: a Connect error is JSON, got {status} {content_type:?}: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {text}"));
    let code = body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: error without a code: {text}"))
        .to_owned();
    if let Some(want) = connect_http_status(&code) {
        assert_eq!(status, want, "{what}: HTTP status of code {code}: {text}");
    }
    RpcError {
        code,
        message: body["message"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Calls `request` over `transport` with `token` (none: anonymous).
async fn call_raw<M: Method>(
    server: &TestServer,
    transport: Transport,
    token: Option<&str>,
    request: M,
) -> Result<Reply<M::Response>, RpcError> {
    let what = format!("{} over {transport:?}", M::NAME);
    match transport {
        Transport::ConnectProto | Transport::ConnectJson => {
            let json = transport == Transport::ConnectJson;
            let body = if json {
                request.to_json()
            } else {
                request.encode_to_vec()
            };
            let response = connect_post(server, json, M::NAME, body, token).await;
            if response.status() != 200 {
                return Err(connect_error(response, &what).await);
            }
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let raw = response.bytes().await.unwrap().to_vec();
            let message = if json {
                assert!(
                    content_type.starts_with("application/json"),
                    "{what}: {content_type}"
                );
                M::response_from_json(&raw)
            } else {
                assert_eq!(content_type, "application/proto", "{what}");
                M::Response::decode(raw.as_slice())
                    .unwrap_or_else(|e| panic!("{what}: not a {} message: {e}", M::NAME))
            };
            Ok(Reply { message, raw })
        }
        Transport::Grpc => {
            let client = AppsServiceClient::new(grpc_channel(server).await);
            let mut request = tonic::Request::new(request);
            if let Some(token) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            match M::grpc(client, request).await {
                Ok(response) => {
                    let message = response.into_inner();
                    let raw = message.encode_to_vec();
                    Ok(Reply { message, raw })
                }
                Err(status) => Err(RpcError {
                    code: code_name(status.code()).to_owned(),
                    message: status.message().to_owned(),
                }),
            }
        }
    }
}

/// [`call_raw`], the message only.
async fn call<M: Method>(
    server: &TestServer,
    transport: Transport,
    token: Option<&str>,
    request: M,
) -> Result<M::Response, RpcError> {
    call_raw(server, transport, token, request)
        .await
        .map(|reply| reply.message)
}

/// [`call`], which must succeed.
async fn ok<M: Method>(
    server: &TestServer,
    transport: Transport,
    token: &str,
    request: M,
) -> M::Response {
    call(server, transport, Some(token), request)
        .await
        .unwrap_or_else(|e| panic!("{} over {transport:?} failed: {e:?}", M::NAME))
}

/// [`call`], which must fail with `code`; returns the error.
async fn refused<M: Method>(
    server: &TestServer,
    transport: Transport,
    token: Option<&str>,
    request: M,
    code: &str,
) -> RpcError {
    let what = format!("{} over {transport:?} of {request:?}", M::NAME);
    match call(server, transport, token, request).await {
        Ok(answer) => panic!("{what}: expected {code}, got {answer:?}"),
        Err(e) => {
            assert_eq!(e.code, code, "{what}: {e:?}");
            e
        }
    }
}

fn create_request(client_id: &str) -> pb::CreateAppRequest {
    // What `flyte create api-key` sends, apart from the id.
    pb::CreateAppRequest {
        client_id: client_id.to_owned(),
        client_name: client_id.to_owned(),
        redirect_uris: vec!["http://localhost:8080/authorization-code/callback".into()],
        response_types: vec![pb::ResponseTypes::Code as i32],
        grant_types: vec![
            pb::GrantTypes::ClientCredentials as i32,
            pb::GrantTypes::AuthorizationCode as i32,
        ],
        token_endpoint_auth_method: pb::TokenEndpointAuthMethod::ClientSecretBasic as i32,
        consent_method: pb::ConsentMethod::Required as i32,
        ..Default::default()
    }
}

fn get_request(client_id: &str) -> pb::GetAppRequest {
    pb::GetAppRequest {
        client_id: client_id.to_owned(),
        ..Default::default()
    }
}

fn delete_request(client_id: &str) -> pb::DeleteAppRequest {
    pb::DeleteAppRequest {
        client_id: client_id.to_owned(),
        ..Default::default()
    }
}

fn update_request(client_id: &str, client_name: &str) -> pb::UpdateAppRequest {
    pb::UpdateAppRequest {
        client_id: client_id.to_owned(),
        client_name: client_name.to_owned(),
        grant_types: vec![pb::GrantTypes::ClientCredentials as i32],
        ..Default::default()
    }
}

fn list_request(organization: &str, limit: u32, token: &str) -> pb::ListAppsRequest {
    pb::ListAppsRequest {
        organization: organization.to_owned(),
        request: Some(ListRequest {
            limit,
            token: token.to_owned(),
            ..Default::default()
        }),
    }
}

/// Creates `client_id` as the holder of `token` and returns the secret.
async fn create_app(
    server: &TestServer,
    transport: Transport,
    token: &str,
    client_id: &str,
) -> String {
    let created = ok(server, transport, token, create_request(client_id)).await;
    let app = created.app.expect("Create answers the app");
    assert_eq!(app.client_id, client_id);
    assert_eq!(app.client_secret.len(), 43, "{app:?}");
    app.client_secret
}

/// Every client id the holder of `token` can list, following page tokens.
async fn list_all(
    server: &TestServer,
    transport: Transport,
    token: &str,
    organization: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    for _ in 0..50 {
        let page = ok(
            server,
            transport,
            token,
            list_request(organization, 0, &page_token),
        )
        .await;
        for app in &page.apps {
            assert!(app.client_secret.is_empty(), "List shows a secret: {app:?}");
        }
        ids.extend(page.apps.into_iter().map(|a| a.client_id));
        if page.token.is_empty() {
            return ids;
        }
        page_token = page.token;
    }
    panic!("List never ended");
}

// ---------------------------------------------------------------------------------------------------------
// People, apps and their tokens
// ---------------------------------------------------------------------------------------------------------

/// A person signed in through the login page with PKCE, as the flyte SDK does it.
struct Person {
    subject: String,
    token: String,
}

/// Signs `username` in on `server` (authorization code with PKCE, client `flytectl`, scope `offline all`).
async fn sign_in(server: &TestServer, username: &str, password: &str) -> Person {
    let mut browser = Browser::new(server);
    let (verifier, challenge) = pkce_pair();
    let path = sdk_authorize_path("flytectl", REDIRECT, "offline all", "apps", &challenge);
    let done = browser.authorize(&path, username, password).await;
    assert_eq!(
        done.status, 303,
        "{username} could not sign in: {}",
        done.body
    );
    let code = done.location_query()["code"].clone();
    let body = format!(
        "code={}&grant_type=authorization_code&code_verifier={}&client_id=flytectl&redirect_uri={}",
        url_encode(&code),
        url_encode(&verifier),
        url_encode(REDIRECT)
    );
    let response = reqwest::Client::new()
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "code exchange for {username}");
    let tokens: Value = response.json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let info = me(server, &token).await;
    assert_eq!(info["additional_claims"]["identity_type"], "user");
    Person {
        subject: info["subject"].as_str().unwrap().to_owned(),
        token,
    }
}

/// Adds the local account `username` and signs it in.
async fn person(server: &TestServer, username: &str) -> Person {
    let record = server.add_user(username, PASSWORD).await;
    let person = sign_in(server, username, PASSWORD).await;
    assert_eq!(person.subject, record.subject);
    person
}

async fn me_response(server: &TestServer, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url("/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// `/me` for `token`, which must be accepted.
async fn me(server: &TestServer, token: &str) -> Value {
    let response = me_response(server, token).await;
    assert_eq!(
        response.status(),
        200,
        "/me refused a token it should accept"
    );
    response.json().await.unwrap()
}

async fn me_status(server: &TestServer, token: &str) -> u16 {
    me_response(server, token).await.status().as_u16()
}

/// A client-credentials token for an app, which must be issued.
async fn app_token(server: &TestServer, client_id: &str, secret: &str) -> String {
    let response = token_request(server, client_id, secret, "").await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "token for {client_id}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["token_type"], "Bearer", "{text}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// The token endpoint refuses `client_id` with `secret` as an unknown or wrongly authenticated client.
async fn assert_no_token(server: &TestServer, client_id: &str, secret: &str, why: &str) {
    let response = token_request(server, client_id, secret, "").await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 401, "{why}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "invalid_client", "{why}: {text}");
}

/// Asks `/me` every 100 ms until `token` is refused; returns how long after `since` that was. Panics if it is
/// still accepted [`REPLICA_DEADLINE`] after `since`.
async fn refused_within_deadline(
    server: &TestServer,
    token: &str,
    since: Instant,
    what: &str,
) -> Duration {
    loop {
        let status = me_status(server, token).await;
        if status == 401 {
            return since.elapsed();
        }
        assert_eq!(status, 200, "{what}: /me answered {status}");
        assert!(
            since.elapsed() < REPLICA_DEADLINE,
            "{what}: the token is still accepted {:?} later",
            since.elapsed()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A token for [`APP_ID`] with scope `all`, minted outside the server with `key` at time `now`.
fn mint(server: &TestServer, key: SigningKey, now: time::OffsetDateTime) -> String {
    let issuer = TokenIssuer::new(
        Arc::new(KeyRing::new(key, None)),
        server.base.clone(),
        Duration::from_secs(60),
        Arc::new(ManualClock::new(now)),
    );
    issuer
        .issue(&AccessTokenRequest {
            subject: APP_ID.into(),
            client_id: APP_ID.into(),
            client_name: None,
            audience: vec![server.base.clone()],
            scopes: vec!["all".into()],
            user_info: None,
            kind: PrincipalKind::App,
            session_id: None,
        })
        .unwrap()
        .access_token
}

/// Signed with the server's own key, but expired hours ago.
fn expired_token(server: &TestServer) -> String {
    let pem = std::fs::read(server.secrets_dir().join("token_rsa_key.pem")).unwrap();
    let then = time::OffsetDateTime::now_utc() - time::Duration::hours(3);
    mint(server, SigningKey::from_pem(&pem).unwrap(), then)
}

/// Current and well-formed, but signed by a key the server does not know.
fn foreign_token(server: &TestServer) -> String {
    let (key, _) = SigningKey::generate().unwrap();
    mint(server, key, time::OffsetDateTime::now_utc())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn stdout_of(out: &std::process::Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed with {}: {stderr}",
        out.status
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The `name: value` line of the CLI's credential output.
fn credential_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} line in {stdout:?}"))
        .trim()
}

/// `yaml` with its SQLite database file replaced by `file`, so that another server opens the same database.
fn with_sqlite_file(yaml: String, file: &Path) -> String {
    let mut out = String::new();
    let mut replaced = 0;
    for line in yaml.lines() {
        if line.starts_with("    file: ") && line.ends_with("/flyteauth.db") {
            out.push_str(&format!("    file: {}\n", file.display()));
            replaced += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(replaced, 1, "harness configuration changed: {yaml}");
    out
}

// ---------------------------------------------------------------------------------------------------------
// Create, Get and List over every transport
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_shows_the_secret_once_over_every_transport_and_the_app_signs_in_with_it() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    let mut secrets = Vec::new();
    for transport in TRANSPORTS {
        let client_id = format!("ci-bot-{}", transport.slug());
        let created = call_raw(
            &server,
            transport,
            Some(&alice.token),
            create_request(&client_id),
        )
        .await
        .unwrap_or_else(|e| panic!("Create over {transport:?}: {e:?}"));
        let app = created.message.app.clone().expect("Create answers the app");
        assert_eq!(app.client_id, client_id, "{transport:?}");
        assert_eq!(app.client_name, client_id, "{transport:?}");
        let secret = app.client_secret.clone();
        assert_eq!(secret.len(), 43, "{transport:?}: {secret:?}");
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{transport:?}: base64url without padding: {secret:?}"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
        assert!(contains(&created.raw, secret.as_bytes()), "{transport:?}");
        assert!(
            app.grant_types
                .contains(&(pb::GrantTypes::ClientCredentials as i32)),
            "{transport:?}: {app:?}"
        );
        assert_eq!(
            app.token_endpoint_auth_method,
            pb::TokenEndpointAuthMethod::ClientSecretBasic as i32
        );
        assert!(app.client_id_issued_at.is_some(), "{app:?}");
        assert!(!secrets.contains(&secret), "secrets repeat");
        secrets.push(secret.clone());

        // Whoever reads it back, over whichever transport, sees no secret.
        for reader in TRANSPORTS {
            let got = call_raw(&server, reader, Some(&alice.token), get_request(&client_id))
                .await
                .unwrap_or_else(|e| panic!("Get over {reader:?}: {e:?}"));
            let read = got.message.app.expect("Get answers the app");
            assert_eq!(read.client_id, client_id, "{reader:?}");
            assert_eq!(read.client_name, client_id, "{reader:?}");
            assert!(
                read.client_secret.is_empty(),
                "Get over {reader:?}: {read:?}"
            );
            assert!(
                !contains(&got.raw, secret.as_bytes()),
                "Get over {reader:?} carries the secret"
            );
            let listed = call_raw(&server, reader, Some(&alice.token), list_request("", 0, ""))
                .await
                .unwrap_or_else(|e| panic!("List over {reader:?}: {e:?}"));
            assert!(
                listed.message.apps.iter().any(|a| a.client_id == client_id),
                "List over {reader:?}: {:?}",
                listed.message.apps
            );
            assert!(
                listed
                    .message
                    .apps
                    .iter()
                    .all(|a| a.client_secret.is_empty()),
                "List over {reader:?}: {:?}",
                listed.message.apps
            );
            assert!(
                !contains(&listed.raw, secret.as_bytes()),
                "List over {reader:?} carries the secret"
            );
        }

        // The secret is a working client credential (HTTP Basic, as the SDK sends it) and names the app.
        let token = app_token(&server, &client_id, &secret).await;
        let info = me(&server, &token).await;
        assert_eq!(info["subject"], client_id.as_str(), "{info}");
        assert_eq!(info["additional_claims"]["identity_type"], "app", "{info}");
        assert_no_token(&server, &client_id, "not-the-secret", "a wrong secret").await;
    }
    // A secret belongs to its app only.
    assert_no_token(&server, "ci-bot-proto", &secrets[1], "another app's secret").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// Ownership
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn people_see_only_their_own_apps_and_admins_see_all() {
    let files = tempfile::tempdir().unwrap();
    let database = files.path().join("shared.db");
    let password_file = files.path().join("root-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let first_admin = format!(
        "  firstAdmin:\n    username: root\n    passwordFile: {}\n",
        password_file.display()
    );
    let point_at_database = |yaml: String| with_sqlite_file(yaml, &database);

    // Subjects are made when accounts are: carol's exists before the server that lists it as an admin starts.
    let first = TestServer::start_on(&StartOptions {
        flyteauth_extra: &first_admin,
        edit_config: Some(&point_at_database),
        ..StartOptions::default()
    })
    .await;
    let carol_subject = first.add_user("carol", PASSWORD).await.subject;
    first.stop().await;

    let extra =
        format!("{first_admin}  admins:\n    - {carol_subject}\n    - Dave\n    - {WEB_APP_ID}\n");
    let server = TestServer::start_on(&StartOptions {
        flyteauth_extra: &extra,
        edit_config: Some(&point_at_database),
        ..StartOptions::default()
    })
    .await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let dave = person(&server, "dave").await;
    let carol = sign_in(&server, "carol", PASSWORD).await;
    assert_eq!(carol.subject, carol_subject);
    let root = sign_in(&server, "root", PASSWORD).await;

    let alice_secret =
        create_app(&server, Transport::ConnectProto, &alice.token, "alice-bot").await;
    let acme = pb::CreateAppRequest {
        organization: "acme".into(),
        ..create_request("alice-acme-bot")
    };
    let acme_secret = ok(&server, Transport::Grpc, &alice.token, acme)
        .await
        .app
        .unwrap()
        .client_secret;
    let alice_app_token = app_token(&server, "alice-bot", &alice_secret).await;

    // To bob, alice's apps do not exist: the same answer as for an id nobody has.
    for transport in TRANSPORTS {
        let hidden = refused(
            &server,
            transport,
            Some(&bob.token),
            get_request("alice-bot"),
            "not_found",
        )
        .await;
        let absent = refused(
            &server,
            transport,
            Some(&bob.token),
            get_request("nobody-bot"),
            "not_found",
        )
        .await;
        assert_eq!(
            hidden.message.replace("alice-bot", "ID"),
            absent.message.replace("nobody-bot", "ID"),
            "{transport:?}: not-yours and not-there must read alike"
        );
        refused(
            &server,
            transport,
            Some(&bob.token),
            update_request("alice-bot", "bob was here"),
            "not_found",
        )
        .await;
        refused(
            &server,
            transport,
            Some(&bob.token),
            delete_request("alice-bot"),
            "not_found",
        )
        .await;
        refused(
            &server,
            transport,
            Some(&bob.token),
            delete_request("alice-acme-bot"),
            "not_found",
        )
        .await;
        let bobs = list_all(&server, transport, &bob.token, "").await;
        assert!(bobs.is_empty(), "{transport:?}: bob lists {bobs:?}");
        let bobs = list_all(&server, transport, &bob.token, "acme").await;
        assert!(bobs.is_empty(), "{transport:?}: bob lists {bobs:?}");
    }
    // Bob's attempts changed nothing: the name is alice's and her app still signs in.
    let app = ok(
        &server,
        Transport::ConnectJson,
        &alice.token,
        get_request("alice-bot"),
    )
    .await
    .app
    .unwrap();
    assert_eq!(app.client_name, "alice-bot");
    assert_eq!(me_status(&server, &alice_app_token).await, 200);
    app_token(&server, "alice-bot", &alice_secret).await;

    create_app(&server, Transport::ConnectJson, &bob.token, "bob-bot").await;
    for transport in TRANSPORTS {
        assert_eq!(
            list_all(&server, transport, &bob.token, "").await,
            ["bob-bot"],
            "{transport:?}"
        );
        assert_eq!(
            list_all(&server, transport, &alice.token, "").await,
            ["alice-acme-bot", "alice-bot"],
            "{transport:?}"
        );
        refused(
            &server,
            transport,
            Some(&alice.token),
            get_request("bob-bot"),
            "not_found",
        )
        .await;
    }

    // The organization must match when one is named.
    let in_acme = |client_id: &str, organization: &str| pb::GetAppRequest {
        organization: organization.to_owned(),
        client_id: client_id.to_owned(),
    };
    let got = ok(
        &server,
        Transport::Grpc,
        &alice.token,
        in_acme("alice-acme-bot", "acme"),
    )
    .await;
    assert_eq!(got.app.unwrap().organization, "acme");
    for (client_id, organization) in [("alice-acme-bot", "globex"), ("alice-bot", "acme")] {
        refused(
            &server,
            Transport::ConnectProto,
            Some(&alice.token),
            in_acme(client_id, organization),
            "not_found",
        )
        .await;
    }

    // The owner may rename; the answer has no secret.
    let renamed = ok(
        &server,
        Transport::ConnectProto,
        &alice.token,
        update_request("alice-bot", "Alice's bot"),
    )
    .await
    .app
    .unwrap();
    assert_eq!(renamed.client_name, "Alice's bot");
    assert!(renamed.client_secret.is_empty(), "{renamed:?}");
    let app = ok(
        &server,
        Transport::Grpc,
        &alice.token,
        get_request("alice-bot"),
    )
    .await
    .app
    .unwrap();
    assert_eq!(app.client_name, "Alice's bot");

    // The first admin sees everything and deletes alice's app; its token dies with it.
    for transport in TRANSPORTS {
        assert_eq!(
            list_all(&server, transport, &root.token, "").await,
            ["alice-acme-bot", "alice-bot", "bob-bot"],
            "{transport:?}"
        );
        let app = ok(&server, transport, &root.token, get_request("alice-bot"))
            .await
            .app
            .unwrap();
        assert!(app.client_secret.is_empty());
    }
    ok(
        &server,
        Transport::ConnectJson,
        &root.token,
        delete_request("alice-bot"),
    )
    .await;
    refused(
        &server,
        Transport::ConnectJson,
        Some(&alice.token),
        get_request("alice-bot"),
        "not_found",
    )
    .await;
    assert_eq!(me_status(&server, &alice_app_token).await, 401);
    assert_no_token(&server, "alice-bot", &alice_secret, "a deleted app").await;

    // A subject listed in flyteauth.admins: sees all, deletes bob's app.
    assert_eq!(
        list_all(&server, Transport::Grpc, &carol.token, "").await,
        ["alice-acme-bot", "bob-bot"]
    );
    ok(
        &server,
        Transport::Grpc,
        &carol.token,
        delete_request("bob-bot"),
    )
    .await;
    assert!(
        list_all(&server, Transport::ConnectProto, &bob.token, "")
            .await
            .is_empty()
    );

    // A user name listed (as "Dave"): sees all and may change other people's apps.
    assert_eq!(
        list_all(&server, Transport::ConnectProto, &dave.token, "").await,
        ["alice-acme-bot"]
    );
    let changed = ok(
        &server,
        Transport::ConnectProto,
        &dave.token,
        update_request("alice-acme-bot", "Renamed by dave"),
    )
    .await;
    assert_eq!(changed.app.unwrap().client_name, "Renamed by dave");

    // Apps may not manage apps, whatever their scope, unless listed as admins.
    let static_app = server.token_for(APP_ID, APP_SECRET).await;
    let created_app = app_token(&server, "alice-acme-bot", &acme_secret).await;
    let limited = server.token_for(LIMITED_ID, LIMITED_SECRET).await;
    for transport in TRANSPORTS {
        for token in [&static_app, &created_app, &limited] {
            let t = Some(token.as_str());
            refused(
                &server,
                transport,
                t,
                list_request("", 0, ""),
                "permission_denied",
            )
            .await;
            refused(
                &server,
                transport,
                t,
                create_request("app-made"),
                "permission_denied",
            )
            .await;
            refused(
                &server,
                transport,
                t,
                get_request("alice-acme-bot"),
                "permission_denied",
            )
            .await;
            refused(
                &server,
                transport,
                t,
                update_request("alice-acme-bot", "x"),
                "permission_denied",
            )
            .await;
            refused(
                &server,
                transport,
                t,
                delete_request("alice-acme-bot"),
                "permission_denied",
            )
            .await;
        }
    }
    assert_eq!(me_status(&server, &created_app).await, 200, "still there");
    let admin_app = server.token_for(WEB_APP_ID, WEB_APP_SECRET).await;
    assert_eq!(
        list_all(&server, Transport::Grpc, &admin_app, "").await,
        ["alice-acme-bot"]
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// What a client id may be
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_ids_are_unique_slugs_and_not_taken_by_tools_or_static_clients() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let longest = "a".repeat(64);
    let accepted = [
        "a",
        "9",
        "dup-bot",
        "a-b-c",
        "0x1f",
        longest.as_str(),
        "default-app",
    ];
    for client_id in accepted {
        create_app(&server, Transport::ConnectProto, &alice.token, client_id).await;
    }

    let too_long = "a".repeat(65);
    let malformed = [
        "Upper",
        "UPPER",
        "a:b",
        "",
        too_long.as_str(),
        "-x",
        "x-",
        "-",
        "café",
        "ünï",
        "a b",
        "a_b",
        "a.b",
        "a/b",
        "a\nb",
        "\u{0430}pp",
    ];
    for transport in TRANSPORTS {
        for token in [&alice.token, &bob.token] {
            let e = refused(
                &server,
                transport,
                Some(token.as_str()),
                create_request("dup-bot"),
                "already_exists",
            )
            .await;
            assert!(e.message.contains("dup-bot"), "{transport:?}: {e:?}");
        }
        for client_id in malformed {
            let e = refused(
                &server,
                transport,
                Some(&alice.token),
                create_request(client_id),
                "invalid_argument",
            )
            .await;
            assert!(
                e.message.contains("client_id"),
                "{transport:?} {client_id:?}: the message names the field: {e:?}"
            );
        }
        for client_id in ["flytectl", "flytepropeller", "flyte-cli"] {
            let e = refused(
                &server,
                transport,
                Some(&alice.token),
                create_request(client_id),
                "invalid_argument",
            )
            .await;
            assert!(e.message.contains("client_id"), "{client_id}: {e:?}");
        }
        // The token endpoint finds static clients first: an app by such an id could never sign in.
        for client_id in [APP_ID, LIMITED_ID, WEB_APP_ID] {
            let e = match call(
                &server,
                transport,
                Some(&alice.token),
                create_request(client_id),
            )
            .await
            {
                Ok(created) => panic!("{client_id} over {transport:?} was created: {created:?}"),
                Err(e) => e,
            };
            assert!(
                e.code == "already_exists" || e.code == "invalid_argument",
                "{client_id} over {transport:?}: {e:?}"
            );
            assert!(e.message.contains("client_id"), "{client_id}: {e:?}");
        }
    }
    // Other fields are named too.
    let bad_fields = [
        (
            pb::CreateAppRequest {
                client_name: "two\nlines".into(),
                ..create_request("named-bot")
            },
            "client_name",
        ),
        (
            pb::CreateAppRequest {
                redirect_uris: vec!["/relative".into()],
                ..create_request("named-bot")
            },
            "redirect_uris",
        ),
        (
            pb::CreateAppRequest {
                grant_types: vec![9],
                ..create_request("named-bot")
            },
            "grant_types",
        ),
        (
            pb::CreateAppRequest {
                organization: "a:b".into(),
                ..create_request("named-bot")
            },
            "organization",
        ),
    ];
    // Binary forms only: proto3 JSON has no way to write grant type 9.
    for (request, field) in bad_fields {
        for transport in [Transport::ConnectProto, Transport::Grpc] {
            let e = refused(
                &server,
                transport,
                Some(&alice.token),
                request.clone(),
                "invalid_argument",
            )
            .await;
            assert!(e.message.contains(field), "{field}: {e:?}");
        }
    }
    let e = refused(
        &server,
        Transport::Grpc,
        Some(&alice.token),
        get_request(""),
        "invalid_argument",
    )
    .await;
    assert!(e.message.contains("client_id"), "{e:?}");

    // Nothing refused was stored, and the static clients still sign in with their own secrets.
    let mut want: Vec<String> = accepted.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(
        list_all(&server, Transport::Grpc, &alice.token, "").await,
        want
    );
    assert!(
        list_all(&server, Transport::Grpc, &bob.token, "")
            .await
            .is_empty()
    );
    server.token_for(APP_ID, APP_SECRET).await;
    server.token_for(WEB_APP_ID, WEB_APP_SECRET).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// Paging and the organization filter
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_pages_through_the_callers_apps_in_client_id_order() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let ids = [
        "page-g", "page-c", "page-a", "page-e", "page-b", "page-f", "page-d",
    ];
    for (i, id) in ids.iter().enumerate() {
        create_app(&server, TRANSPORTS[i % 3], &alice.token, id).await;
    }
    // Bob's apps sort among alice's but are not hers.
    for id in ["page-bb", "page-0", "page-z"] {
        create_app(&server, Transport::ConnectProto, &bob.token, id).await;
    }
    let mut sorted: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    sorted.sort();

    for transport in TRANSPORTS {
        for (limit, want_sizes) in [(3, vec![3, 3, 1]), (7, vec![7]), (1, vec![1; 7])] {
            let mut sizes = Vec::new();
            let mut seen = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = ok(
                    &server,
                    transport,
                    &alice.token,
                    list_request("", limit, &page_token),
                )
                .await;
                sizes.push(page.apps.len());
                seen.extend(page.apps.into_iter().map(|a| a.client_id));
                if page.token.is_empty() {
                    break;
                }
                assert_ne!(
                    page.token, page_token,
                    "{transport:?}: the token must move on"
                );
                page_token = page.token;
                assert!(sizes.len() <= 10, "{transport:?} limit {limit}: {sizes:?}");
            }
            // A trailing empty page (the last full page could not know it was the last) is allowed.
            let mut trimmed = sizes.clone();
            if trimmed.len() > want_sizes.len() && trimmed.last() == Some(&0) {
                trimmed.pop();
            }
            assert_eq!(
                trimmed, want_sizes,
                "{transport:?} limit {limit}: page sizes {sizes:?}"
            );
            assert_eq!(seen, sorted, "{transport:?} limit {limit}");
        }
        // No limit: the default page (100) holds them all and says it is the last.
        let all = ok(&server, transport, &alice.token, list_request("", 0, "")).await;
        let all_ids: Vec<String> = all.apps.into_iter().map(|a| a.client_id).collect();
        assert_eq!(all_ids, sorted, "{transport:?}");
        assert!(all.token.is_empty(), "{transport:?}: {:?}", all.token);
        // No ListRequest at all, as a minimal client may send.
        let bare = ok(
            &server,
            transport,
            &alice.token,
            pb::ListAppsRequest::default(),
        )
        .await;
        assert_eq!(bare.apps.len(), 7, "{transport:?}");

        for garbage in ["garbage!", "%%%", "Tm90IEFuIElk", "not a token", "🙂"] {
            let e = refused(
                &server,
                transport,
                Some(&alice.token),
                list_request("", 3, garbage),
                "invalid_argument",
            )
            .await;
            assert!(e.message.contains("token"), "{garbage}: {e:?}");
        }
    }
    assert_eq!(
        list_all(&server, Transport::Grpc, &bob.token, "").await,
        ["page-0", "page-bb", "page-z"]
    );
    server.stop().await;
}

#[tokio::test]
async fn list_filters_by_organization() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    for (client_id, organization) in [
        ("org-acme-2", "acme"),
        ("org-globex-1", "globex"),
        ("org-none-1", ""),
        ("org-acme-1", "acme"),
        ("org-acme-3", "acme"),
    ] {
        let request = pb::CreateAppRequest {
            organization: organization.to_owned(),
            ..create_request(client_id)
        };
        let app = ok(&server, Transport::ConnectJson, &alice.token, request)
            .await
            .app
            .unwrap();
        assert_eq!(app.organization, organization);
        assert_eq!(app.profile.unwrap_or_default().apporg, organization);
    }
    for transport in TRANSPORTS {
        assert_eq!(
            list_all(&server, transport, &alice.token, "acme").await,
            ["org-acme-1", "org-acme-2", "org-acme-3"],
            "{transport:?}"
        );
        assert_eq!(
            list_all(&server, transport, &alice.token, "globex").await,
            ["org-globex-1"],
            "{transport:?}"
        );
        assert!(
            list_all(&server, transport, &alice.token, "initech")
                .await
                .is_empty(),
            "{transport:?}"
        );
        assert_eq!(
            list_all(&server, transport, &alice.token, "").await.len(),
            5,
            "{transport:?}: no organization lists all"
        );
        // Paging within an organization.
        let first = ok(
            &server,
            transport,
            &alice.token,
            list_request("acme", 2, ""),
        )
        .await;
        let first_ids: Vec<String> = first.apps.into_iter().map(|a| a.client_id).collect();
        assert_eq!(first_ids, ["org-acme-1", "org-acme-2"], "{transport:?}");
        assert!(!first.token.is_empty(), "{transport:?}");
        let second = ok(
            &server,
            transport,
            &alice.token,
            list_request("acme", 2, &first.token),
        )
        .await;
        let second_ids: Vec<String> = second.apps.into_iter().map(|a| a.client_id).collect();
        assert_eq!(second_ids, ["org-acme-3"], "{transport:?}");
        assert!(second.token.is_empty(), "{transport:?}");
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// Anonymous and badly authenticated callers
// ---------------------------------------------------------------------------------------------------------

/// The code of a call that must fail.
fn error_code<T: std::fmt::Debug>(result: Result<T, RpcError>, what: &str) -> String {
    match result {
        Ok(answer) => panic!("{what}: answered {answer:?}"),
        Err(e) => e.code,
    }
}

/// Every method of the service, with harmless arguments, answers UNAUTHENTICATED to `token`.
async fn every_method_refuses(server: &TestServer, token: Option<&str>, what: &str) {
    for transport in TRANSPORTS {
        let codes = [
            error_code(
                call(server, transport, token, create_request("anon-bot")).await,
                what,
            ),
            error_code(
                call(server, transport, token, get_request("victim-bot")).await,
                what,
            ),
            error_code(
                call(server, transport, token, update_request("victim-bot", "x")).await,
                what,
            ),
            error_code(
                call(server, transport, token, delete_request("victim-bot")).await,
                what,
            ),
            error_code(
                call(server, transport, token, list_request("", 0, "")).await,
                what,
            ),
        ];
        assert_eq!(
            codes, ["unauthenticated"; 5],
            "{what} over {transport:?}: Create, Get, Update, Delete, List"
        );
    }
}

#[tokio::test]
async fn anonymous_and_bad_tokens_are_unauthenticated() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    create_app(&server, Transport::ConnectProto, &alice.token, "victim-bot").await;

    every_method_refuses(&server, None, "no token").await;
    let expired = expired_token(&server);
    let foreign = foreign_token(&server);
    for (token, what) in [
        ("garbage", "garbage"),
        ("a.b.c", "three dots"),
        (expired.as_str(), "expired"),
        (foreign.as_str(), "foreign key"),
    ] {
        every_method_refuses(&server, Some(token), what).await;
    }

    // The Connect answer exactly: HTTP 401, JSON {"code":"unauthenticated"}, for both content types.
    for json in [false, true] {
        for method in ["Create", "Get", "Update", "Delete", "List"] {
            for token in [None, Some(expired.as_str())] {
                let body = if json { b"{}".to_vec() } else { Vec::new() };
                let response = connect_post(&server, json, method, body, token).await;
                assert_eq!(response.status(), 401, "{method} json={json}");
                assert!(
                    response.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("application/json"),
                    "{method} json={json}"
                );
                let body: Value = response.json().await.unwrap();
                assert_eq!(
                    body["code"], "unauthenticated",
                    "{method} json={json}: {body}"
                );
            }
        }
    }
    // A bare "Bearer" with nothing after it, and a Basic header, are no better.
    let basic = format!("Basic {}", URL_SAFE_NO_PAD.encode("a:b"));
    for header in ["Bearer", "Bearer ", basic.as_str()] {
        let response = reqwest::Client::new()
            .post(server.url(&format!("{SERVICE}/List")))
            .header("content-type", "application/json")
            .header("authorization", header)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthenticated", "{header:?}");
    }

    // Nothing the anonymous calls asked for happened.
    assert_eq!(
        list_all(&server, Transport::Grpc, &alice.token, "").await,
        ["victim-bot"]
    );
    create_app(&server, Transport::Grpc, &alice.token, "anon-bot").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// Deletion and rotation: tokens stop working, here at once and on another replica within 5 s
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_an_app_revokes_its_tokens_on_every_replica() {
    let db = PostgresDatabase::create().await;
    let a = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        ..StartOptions::default()
    })
    .await;
    let b = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        secrets_dir: Some(a.secrets_dir()),
        public_url: Some(a.base.clone()),
        ..StartOptions::default()
    })
    .await;
    let alice = person(&a, "alice").await;
    let client_id = "replicated-bot";

    // The app is deleted three times. Each re-creation under the same id follows the previous Delete's answer at
    // once, so the store already holds a revocation of this id, possibly from the same second: the new app's
    // tokens must survive it, and the next deletion must still reach the other replica.
    let rounds: [(&TestServer, &TestServer, &str); 3] = [
        (&a, &b, "created on A, deleted on A, B must follow"),
        (&a, &b, "re-created on B, deleted on A, B must follow"),
        (&b, &a, "re-created on A, deleted on B, A must follow"),
    ];
    let recreate_on = [&b, &a];
    let mut secret = create_app(&a, Transport::ConnectProto, &alice.token, client_id).await;
    for (round, (deleter, observer, what)) in rounds.into_iter().enumerate() {
        let token = app_token(deleter, client_id, &secret).await;
        let other_token = app_token(observer, client_id, &secret).await;
        for replica in [&a, &b] {
            for t in [&token, &other_token] {
                let info = me(replica, t).await;
                assert_eq!(info["subject"], client_id, "{what}");
            }
        }

        let started = Instant::now();
        ok(
            deleter,
            Transport::Grpc,
            &alice.token,
            delete_request(client_id),
        )
        .await;
        let answered = started.elapsed();
        for t in [&token, &other_token] {
            assert_eq!(
                me_status(deleter, t).await,
                401,
                "{what}: the deleting replica refuses the token at once"
            );
        }
        // The next app under this id, created and signed in right after the answer.
        let next = match recreate_on.get(round) {
            Some(creator) => {
                let next_secret =
                    create_app(creator, Transport::ConnectJson, &alice.token, client_id).await;
                let next_token = app_token(creator, client_id, &next_secret).await;
                assert_eq!(
                    me_status(creator, &next_token).await,
                    200,
                    "{what}: the re-created app's first token"
                );
                Some((next_secret, next_token))
            }
            None => None,
        };
        let reached = refused_within_deadline(observer, &token, started, what).await;
        refused_within_deadline(observer, &other_token, started, what).await;
        eprintln!(
            "round {round} ({what}): Delete answered after {answered:?}, other replica refused after {reached:?}"
        );
        for replica in [&a, &b] {
            assert_no_token(replica, client_id, &secret, what).await;
        }
        match next {
            Some((next_secret, next_token)) => {
                // After a mirror pass on both replicas the old revocation still does not catch the new app.
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                for replica in [&a, &b] {
                    assert_eq!(
                        me_status(replica, &next_token).await,
                        200,
                        "{what}: the re-created app's token must outlive the old app's revocation"
                    );
                }
                secret = next_secret;
            }
            None => {
                for replica in [&a, &b] {
                    refused(
                        replica,
                        Transport::ConnectJson,
                        Some(&alice.token),
                        get_request(client_id),
                        "not_found",
                    )
                    .await;
                }
            }
        }
    }
    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn rotating_a_secret_with_the_cli_reaches_both_replicas() {
    let db = PostgresDatabase::create().await;
    let a = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        ..StartOptions::default()
    })
    .await;
    let b = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        secrets_dir: Some(a.secrets_dir()),
        public_url: Some(a.base.clone()),
        ..StartOptions::default()
    })
    .await;
    let alice = person(&a, "alice").await;
    let old_secret = create_app(&a, Transport::ConnectJson, &alice.token, "rotated-bot").await;
    let old_token = app_token(&a, "rotated-bot", &old_secret).await;
    assert_eq!(me_status(&b, &old_token).await, 200);

    let started = Instant::now();
    let out = a.cli("apps", &["rotate-secret", "rotated-bot"]).await;
    let stdout = stdout_of(&out, "apps rotate-secret");
    assert_eq!(credential_line(&stdout, "client_id"), "rotated-bot");
    let new_secret = credential_line(&stdout, "client_secret").to_owned();
    assert_eq!(new_secret.len(), 43, "{stdout}");
    assert_ne!(new_secret, old_secret);
    assert!(!stdout.contains(&old_secret), "{stdout}");

    // Tokens of the new secret, fetched as soon as the command is done, are not caught by its revocation.
    let early = app_token(&a, "rotated-bot", &new_secret).await;
    for (replica, name) in [(&a, "A"), (&b, "B")] {
        let reached = refused_within_deadline(replica, &old_token, started, name).await;
        eprintln!("rotation reached {name} after {reached:?}");
        assert_no_token(replica, "rotated-bot", &old_secret, "the old secret").await;
        let new_token = app_token(replica, "rotated-bot", &new_secret).await;
        let info = me(replica, &new_token).await;
        assert_eq!(info["subject"], "rotated-bot");
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for replica in [&a, &b] {
        assert_eq!(
            me_status(replica, &early).await,
            200,
            "the new secret's first token"
        );
    }
    // The app is still alice's, and still shows no secret.
    let app = ok(
        &b,
        Transport::Grpc,
        &alice.token,
        get_request("rotated-bot"),
    )
    .await
    .app
    .unwrap();
    assert!(app.client_secret.is_empty());
    // And a rotation of an app that does not exist fails in one line.
    let out = a.cli("apps", &["rotate-secret", "no-such-bot"]).await;
    assert!(!out.status.success(), "rotating a missing app succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-bot"), "{stderr}");
    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn operator_cli_creates_rotates_and_deletes_apps_of_a_running_server() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    let secret = create_app(&server, Transport::ConnectProto, &alice.token, "alice-bot").await;
    let before = app_token(&server, "alice-bot", &secret).await;

    // Rotation on the SQLite database the running server uses.
    let started = Instant::now();
    let out = server.cli("apps", &["rotate-secret", "alice-bot"]).await;
    let stdout = stdout_of(&out, "apps rotate-secret");
    let rotated = credential_line(&stdout, "client_secret").to_owned();
    assert_eq!(rotated.len(), 43, "{stdout}");
    // The harness serves plain http on a port: no API key, and one line saying why.
    assert!(!stdout.contains("FLYTE_API_KEY="), "{stdout}");
    assert_eq!(stdout.trim_end().lines().count(), 3, "{stdout}");
    let after = app_token(&server, "alice-bot", &rotated).await;
    refused_within_deadline(&server, &before, started, "rotation by the CLI").await;
    assert_no_token(&server, "alice-bot", &secret, "the old secret").await;
    assert_eq!(me(&server, &after).await["subject"], "alice-bot");

    // An operator's app: signs in, is listed by the CLI, is not alice's, and dies with `apps delete`.
    let out = server.cli("apps", &["create", "Ops Bot"]).await;
    let stdout = stdout_of(&out, "apps create");
    assert_eq!(credential_line(&stdout, "client_id"), "ops-bot");
    let ops_secret = credential_line(&stdout, "client_secret").to_owned();
    let ops_token = app_token(&server, "ops-bot", &ops_secret).await;
    let out = server.cli("apps", &["list"]).await;
    let listing = stdout_of(&out, "apps list");
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("{id} not in {listing}"))
            .clone()
    };
    assert_eq!(row("alice-bot")[3], alice.subject, "{listing}");
    assert_eq!(row("ops-bot")[3], "operator", "{listing}");
    assert!(!listing.contains(&ops_secret) && !listing.contains(&rotated));
    assert_eq!(
        list_all(&server, Transport::ConnectJson, &alice.token, "").await,
        ["alice-bot"]
    );

    let started = Instant::now();
    let out = server.cli("apps", &["delete", "ops-bot"]).await;
    stdout_of(&out, "apps delete");
    refused_within_deadline(&server, &ops_token, started, "deletion by the CLI").await;
    assert_no_token(&server, "ops-bot", &ops_secret, "an app the CLI deleted").await;
    assert_eq!(
        me_status(&server, &after).await,
        200,
        "other apps are untouched"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------------------

/// One line of `flyteauth audit list`.
#[derive(Debug)]
struct AuditLine {
    kind: String,
    outcome: String,
    client_id: String,
    subject: String,
    remote_addr: String,
    detail: Value,
}

fn audit_lines(stdout: &str) -> Vec<AuditLine> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 7, "seven tab-separated fields: {line:?}");
            time::OffsetDateTime::parse(f[0], &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("time {:?} is not RFC 3339: {e}", f[0]));
            AuditLine {
                kind: f[1].to_owned(),
                outcome: f[2].to_owned(),
                client_id: f[3].to_owned(),
                subject: f[4].to_owned(),
                remote_addr: f[5].to_owned(),
                detail: serde_json::from_str(f[6])
                    .unwrap_or_else(|e| panic!("detail is not JSON ({e}): {line:?}")),
            }
        })
        .collect()
}

#[tokio::test]
async fn creating_rotating_and_deleting_apps_is_audited_without_secrets() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    let secret = create_app(&server, Transport::ConnectJson, &alice.token, "audited-bot").await;
    app_token(&server, "audited-bot", &secret).await;
    let wrong = "wr0ng-S3CRET-typed-by-someone";
    assert_no_token(&server, "audited-bot", wrong, "a wrong secret").await;
    let out = server.cli("apps", &["rotate-secret", "audited-bot"]).await;
    let rotated =
        credential_line(&stdout_of(&out, "apps rotate-secret"), "client_secret").to_owned();
    ok(
        &server,
        Transport::Grpc,
        &alice.token,
        delete_request("audited-bot"),
    )
    .await;

    let out = server
        .cli("audit", &["list", "--kind", "app.created"])
        .await;
    let created = audit_lines(&stdout_of(&out, "audit list --kind app.created"));
    assert!(
        created.iter().all(|l| l.kind == "app.created"),
        "{created:?}"
    );
    let line = created
        .iter()
        .find(|l| l.client_id == "audited-bot")
        .unwrap_or_else(|| panic!("no app.created for audited-bot: {created:?}"));
    assert_eq!(line.subject, alice.subject, "{line:?}");
    assert_eq!(line.outcome, "success", "{line:?}");
    assert_eq!(line.remote_addr, "127.0.0.1", "{line:?}");
    assert_eq!(line.detail["via"], "rpc", "{line:?}");

    let out = server
        .cli("audit", &["list", "--kind", "app.deleted"])
        .await;
    let deleted = audit_lines(&stdout_of(&out, "audit list --kind app.deleted"));
    let line = deleted
        .iter()
        .find(|l| l.client_id == "audited-bot")
        .unwrap_or_else(|| panic!("no app.deleted for audited-bot: {deleted:?}"));
    assert_eq!(line.kind, "app.deleted");
    assert_eq!(line.subject, alice.subject, "{line:?}");
    assert_eq!(line.outcome, "success", "{line:?}");
    assert_eq!(line.remote_addr, "127.0.0.1", "{line:?}");
    assert_eq!(line.detail["via"], "rpc", "{line:?}");

    let out = server.cli("audit", &["list", "--limit", "1000"]).await;
    let stdout = stdout_of(&out, "audit list");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = audit_lines(&stdout);
    let ours: Vec<&AuditLine> = all
        .iter()
        .filter(|l| l.client_id == "audited-bot")
        .collect();
    let kinds: Vec<&str> = ours.iter().map(|l| l.kind.as_str()).collect();
    let position = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    // Newest first.
    assert!(
        position("app.deleted") < position("app.secret_rotated"),
        "{kinds:?}"
    );
    assert!(
        position("app.secret_rotated") < position("app.created"),
        "{kinds:?}"
    );
    let rotation = ours[position("app.secret_rotated")];
    assert_eq!(rotation.subject, "operator", "{rotation:?}");
    assert_eq!(rotation.detail["via"], "cli", "{rotation:?}");
    // The token endpoint's name for it (the design calls it client.auth_failed).
    let failure = ours
        .iter()
        .find(|l| l.kind == "client.authentication_failed" || l.kind == "client.auth_failed")
        .unwrap_or_else(|| panic!("no failed client authentication of audited-bot in {kinds:?}"));
    assert_eq!(failure.outcome, "failure", "{failure:?}");

    for (what, text) in [("the stdout", &stdout), ("the stderr", &stderr)] {
        for (name, needle) in [
            ("the first secret", secret.clone()),
            ("the rotated secret", rotated.clone()),
            ("the wrong secret", wrong.to_owned()),
            (
                "the first secret's hash",
                flyteauth_core::clients::hash_generated_secret(&secret).encode(),
            ),
            (
                "the rotated secret's hash",
                flyteauth_core::clients::hash_generated_secret(&rotated).encode(),
            ),
        ] {
            assert!(
                !text.contains(&needle),
                "{name} is in {what} of audit list: {text}"
            );
            if let Some((_, hex)) = needle.split_once(':') {
                assert!(!text.contains(hex), "{name} is in {what} of audit list");
            }
        }
    }
    // Filters work on the same trail.
    let out = server
        .cli(
            "audit",
            &["list", "--kind", "app.secret_rotated", "--since", "1h"],
        )
        .await;
    let rotations = audit_lines(&stdout_of(&out, "audit list --since 1h"));
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    server.stop().await;
}

/// The scope the token endpoint grants `client_id` now (what it asks for by default: everything it has).
async fn granted_scope(server: &TestServer, client_id: &str, secret: &str) -> String {
    let response = token_request(server, client_id, secret, "").await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "token for {client_id}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    body["scope"].as_str().unwrap_or_default().to_owned()
}

/// The token endpoint holds apps in memory. A Delete through the service stops the app at once on the replica
/// that answered it; a change made straight in the store (as another replica or the CLI makes it) is seen within
/// the 2 s an entry is trusted; a new secret works at once, and a deletion in the store is seen within 2 s too.
#[tokio::test]
async fn the_token_endpoints_copy_of_an_app_follows_changes() {
    let server = TestServer::start().await;
    let alice = person(&server, "alice").await;
    let bound = Duration::from_millis(2_000 + 1_000);

    // Deleted through the service: refused at once, with its copy warm.
    let secret = create_app(&server, Transport::ConnectJson, &alice.token, "gone-bot").await;
    app_token(&server, "gone-bot", &secret).await;
    app_token(&server, "gone-bot", &secret).await;
    ok(
        &server,
        Transport::Grpc,
        &alice.token,
        delete_request("gone-bot"),
    )
    .await;
    assert_no_token(&server, "gone-bot", &secret, "deleted through the service").await;

    // Changed in the store: the new scopes are granted within the interval.
    let secret = create_app(&server, Transport::ConnectJson, &alice.token, "held-bot").await;
    assert_eq!(granted_scope(&server, "held-bot", &secret).await, "all");
    let now = flyteauth_core::clock::Clock::unix_now(server.state.clock.as_ref());
    let update = AppUpdate {
        scopes: Some(vec!["read".into()]),
        ..AppUpdate::at(now)
    };
    let changed = Instant::now();
    assert!(
        server
            .state
            .store
            .update_app("held-bot", &update)
            .await
            .unwrap()
            .is_some()
    );
    while granted_scope(&server, "held-bot", &secret).await != "read" {
        assert!(changed.elapsed() < bound, "the change was not seen");
        tokio::time::sleep(POLL).await;
    }
    eprintln!("store change seen after {:?}", changed.elapsed());

    // A new secret written in the store works at once, and the old one stops with it.
    let new_secret = flyteauth_core::clients::generate_secret();
    let update = AppUpdate {
        secret_hash: Some(flyteauth_core::clients::hash_generated_secret(&new_secret).encode()),
        ..AppUpdate::at(now)
    };
    server
        .state
        .store
        .update_app("held-bot", &update)
        .await
        .unwrap();
    app_token(&server, "held-bot", &new_secret).await;
    assert_no_token(&server, "held-bot", &secret, "the replaced secret").await;

    // Deleted in the store: refused within the interval.
    let deleted = Instant::now();
    assert!(server.state.store.delete_app("held-bot").await.unwrap());
    loop {
        let status = token_request(&server, "held-bot", &new_secret, "")
            .await
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(deleted.elapsed() < bound, "the deletion was not seen");
        tokio::time::sleep(POLL).await;
    }
    server.stop().await;
}
