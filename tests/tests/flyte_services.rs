//! The Flyte services over every wire form: gRPC, Connect (proto and JSON) and HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_core::clock::ManualClock;
use flyteauth_core::identity::PrincipalKind;
use flyteauth_core::keys::{KeyRing, SigningKey};
use flyteauth_core::token::{AccessTokenRequest, TokenIssuer};
use flyteauth_proto::flyteidl::service as v1;
use flyteauth_proto::flyteidl2::auth as v2;
use flyteauth_tests::*;
use prost::Message;
use serde_json::Value;
use std::sync::Arc;
use tonic::Code;

fn with_bearer<T>(message: T, header: &'static str, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(header, format!("Bearer {token}").parse().unwrap());
    request
}

/// A token for [`APP_ID`] with scope `all`, minted outside the server with `key` at time `now`.
fn mint(server: &TestServer, key: SigningKey, now: time::OffsetDateTime) -> String {
    let issuer = TokenIssuer::new(
        Arc::new(KeyRing::new(key, None)),
        server.base.clone(),
        std::time::Duration::from_secs(60),
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

/// Signed with the server's own key but expired hours ago (well beyond the leeway).
fn expired_token(server: &TestServer) -> String {
    let pem = std::fs::read(server.secrets_dir().join("token_rsa_key.pem")).unwrap();
    let now = time::OffsetDateTime::now_utc() - time::Duration::hours(3);
    mint(server, SigningKey::from_pem(&pem).unwrap(), now)
}

/// Well-formed and current, but signed by a key the server does not know.
fn foreign_token(server: &TestServer) -> String {
    let (key, _) = SigningKey::generate().unwrap();
    mint(server, key, time::OffsetDateTime::now_utc())
}

#[tokio::test]
async fn grpc_metadata_is_anonymous_and_user_info_needs_a_token() {
    let server = TestServer::start().await;
    let channel = grpc_channel(&server).await;
    let mut meta =
        v1::auth_metadata_service_client::AuthMetadataServiceClient::new(channel.clone());
    let config = meta
        .get_public_client_config(v1::PublicClientAuthConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.authorization_metadata_key, "flyte-authorization");
    assert_eq!(config.client_id, "flytectl");
    let metadata = meta
        .get_o_auth2_metadata(v1::OAuth2MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.token_endpoint, server.url("/oauth2/token"));

    let mut identity = v1::identity_service_client::IdentityServiceClient::new(channel.clone());
    let err = identity
        .user_info(v1::UserInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    for bad in [
        "garbage",
        "a.b.c",
        &expired_token(&server),
        &foreign_token(&server),
    ] {
        let err = identity
            .user_info(with_bearer(v1::UserInfoRequest {}, "authorization", bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{bad}");
    }

    let token = server.app_token().await;
    for header in ["authorization", "flyte-authorization"] {
        let info = identity
            .user_info(with_bearer(v1::UserInfoRequest {}, header, &token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.subject, APP_ID);
        let claims = info.additional_claims.unwrap();
        assert!(claims.fields.contains_key("scp"));
    }

    let limited = server.token_for(LIMITED_ID, LIMITED_SECRET).await;
    let err = identity
        .user_info(with_bearer(
            v1::UserInfoRequest {},
            "authorization",
            &limited,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mut v2_identity = v2::identity_service_client::IdentityServiceClient::new(channel);
    let info = v2_identity
        .user_info(with_bearer(
            v2::UserInfoRequest {},
            "flyte-authorization",
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.subject, APP_ID);
    server.stop().await;
}

async fn connect_call(
    server: &TestServer,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/proto")
        .header("content-encoding", "gzip")
        .header("connect-protocol-version", "1")
        .body(gzip(&body));
    if let Some(token) = token {
        request = request.header("flyte-authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn connect_unary_calls_as_the_flyte_sdk_makes_them() {
    let server = TestServer::start().await;
    let response = connect_call(
        &server,
        "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig",
        v2::GetPublicClientConfigRequest {}.encode_to_vec(),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/proto");
    let config =
        v2::GetPublicClientConfigResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(config.authorization_metadata_key, "flyte-authorization");
    assert_eq!(config.redirect_uri, "http://localhost:53593/callback");

    let response = connect_call(
        &server,
        "/flyteidl2.auth.IdentityService/UserInfo",
        Vec::new(),
        None,
    )
    .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");

    let token = server.app_token().await;
    let response = connect_call(
        &server,
        "/flyteidl2.auth.IdentityService/UserInfo",
        Vec::new(),
        Some(&token),
    )
    .await;
    assert_eq!(response.status(), 200);
    let info = v2::UserInfoResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(info.subject, APP_ID);

    // proto3 JSON, uncompressed.
    let response = reqwest::Client::new()
        .post(server.url("/flyteidl2.auth.IdentityService/UserInfo"))
        .header("content-type", "application/json")
        .header("authorization", format!("bearer {token}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["subject"], APP_ID);
    server.stop().await;
}

#[tokio::test]
async fn connect_bad_input_gets_connect_errors() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let path = "/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata";
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            client
                .post(server.url(path))
                .header("content-type", "application/proto")
                .body(vec![0xff, 0xff, 0xff]),
            400,
            "invalid_argument",
        ),
        (
            client
                .post(server.url(path))
                .header("content-type", "application/proto")
                .header("content-encoding", "gzip")
                .body(b"not gzip".to_vec()),
            400,
            "invalid_argument",
        ),
        (
            client
                .post(server.url(path))
                .header("content-type", "application/json")
                .body(b"{\xff".to_vec()),
            400,
            "invalid_argument",
        ),
        (
            client
                .post(server.url(path))
                .header("content-type", "application/proto")
                .body(vec![0u8; 2 * 1024 * 1024]),
            429,
            "resource_exhausted",
        ),
        (
            client
                .post(server.url("/flyteidl2.auth.NoSuchService/Nothing"))
                .header("content-type", "application/proto")
                .body(Vec::new()),
            404,
            "unimplemented",
        ),
    ];
    for (request, want_status, want_code) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), want_status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], want_code, "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn me_over_http() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let response = client.get(server.url("/me")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let expired = expired_token(&server);
    let response = client
        .get(server.url("/me"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let token = server.app_token().await;
    let response = client
        .get(server.url("/me"))
        .header("flyte-authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-user-subject"], APP_ID);
    let body: Value = response.json().await.unwrap();
    for field in [
        "subject",
        "name",
        "preferred_username",
        "given_name",
        "family_name",
        "email",
        "picture",
        "additional_claims",
    ] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(body["subject"], APP_ID);

    let limited = server.token_for(LIMITED_ID, LIMITED_SECRET).await;
    let response = client
        .get(server.url("/me"))
        .bearer_auth(&limited)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn probes_metrics_and_flyte_client_config() {
    let server = TestServer::start().await;
    for path in ["/healthz", "/readyz", "/healthcheck"] {
        assert_eq!(
            reqwest::get(server.url(path)).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let config: Value = reqwest::get(server.url("/config/v1/flyte_client"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["authorization_metadata_key"], "flyte-authorization");
    assert_eq!(config["scopes"], serde_json::json!(["all", "offline"]));
    let _ = token_request(&server, APP_ID, "wrong", "").await;
    server.app_token().await;
    let _ = reqwest::Client::new()
        .get(server.url("/me"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flyteauth_tokens_issued_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flyteauth_token_validation_failures_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flyteauth_http_requests_total"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("wrong"),
        "metrics must not echo credentials"
    );
    let unknown = reqwest::get(server.url("/nope")).await.unwrap();
    assert_eq!(unknown.status(), 404);
    server.stop().await;
}
