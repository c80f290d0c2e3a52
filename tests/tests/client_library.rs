//! The client library as a Rust service uses it, against a real server: settings with a client secret, a
//! [`Session`], the tonic [`AuthInterceptor`] on a gRPC channel and the Connect helper, renewal after the token
//! expired, and the trusted identity headers taken from the service's own token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use flyteauth_client::cache::CacheOptions;
use flyteauth_client::config::{AuthType, Endpoint, SecretOrigin, Settings};
use flyteauth_client::flows::PlainUi;
use flyteauth_client::interceptor::{AuthInterceptor, TrustedIdentityClaims};
use flyteauth_client::session::Session;
use flyteauth_client::{ClientError, Secret};
use flyteauth_proto::flyteidl::service::UserInfoRequest;
use flyteauth_proto::flyteidl::service::identity_service_client::IdentityServiceClient;
use flyteauth_proto::flyteidl2::auth as v2;
use flyteauth_tests::cli::{ServerSetup, free_port, start_server};
use flyteauth_tests::{APP_ID, APP_SECRET, TestServer, grpc_channel};
use tonic::service::Interceptor as _;

/// The settings of a service that signs in as the harness app with its secret.
fn service_settings(server: &TestServer, secret: &str) -> Settings {
    Settings {
        endpoint: Some(Endpoint::parse(&format!("127.0.0.1:{}", server.addr.port())).unwrap()),
        insecure: true,
        auth_type: AuthType::ClientSecret,
        client_id: Some(APP_ID.to_owned()),
        client_secret: Some(Secret::new(secret)),
        client_secret_origin: Some(SecretOrigin::Inline),
        token_refresh_window: Duration::from_secs(1),
        disable_keyring: true,
        ..Settings::default()
    }
}

async fn session(server: &TestServer, secret: &str) -> Arc<Session> {
    let dir = server.dir.path().join("client-cache");
    let cache = CacheOptions {
        disable_keyring: true,
        file: Some(dir.join("tokens.json")),
    };
    Arc::new(
        Session::new(service_settings(server, secret), Arc::new(PlainUi), cache)
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn a_service_calls_user_info_over_grpc_with_the_interceptor() {
    let server = TestServer::start().await;
    let interceptor = AuthInterceptor::new(
        session(&server, APP_SECRET).await,
        TrustedIdentityClaims::default(),
    )
    .await
    .unwrap();
    let client =
        IdentityServiceClient::with_interceptor(grpc_channel(&server).await, interceptor.clone());
    let reply = interceptor
        .call_with_retry(|| {
            let mut client = client.clone();
            async move { client.user_info(UserInfoRequest {}).await }
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.subject, APP_ID);
    server.stop().await;
}

#[tokio::test]
async fn the_connect_helper_calls_the_flyte2_identity_service() {
    let server = TestServer::start().await;
    let session = session(&server, APP_SECRET).await;
    let reply: v2::UserInfoResponse = session
        .call(
            "flyteidl2.auth.IdentityService/UserInfo",
            &v2::UserInfoRequest {},
        )
        .await
        .unwrap();
    assert_eq!(reply.subject, APP_ID);
    server.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_replaced_and_the_call_goes_through() {
    let server = start_server(&ServerSetup {
        redirect_port: free_port(),
        access_token_lifespan: Some("2s"),
        ..ServerSetup::default()
    })
    .await;
    let session = session(&server, APP_SECRET).await;
    let interceptor = AuthInterceptor::new(session.clone(), TrustedIdentityClaims::default())
        .await
        .unwrap();
    let first = session.access_token().await.unwrap();
    let client =
        IdentityServiceClient::with_interceptor(grpc_channel(&server).await, interceptor.clone());
    // Past the lifespan (and any leeway the validator allows): the first token is refused by now.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for _ in 0..2 {
        let reply = interceptor
            .call_with_retry(|| {
                let mut client = client.clone();
                async move { client.user_info(UserInfoRequest {}).await }
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.subject, APP_ID);
    }
    let connect: v2::UserInfoResponse = session
        .call(
            "flyteidl2.auth.IdentityService/UserInfo",
            &v2::UserInfoRequest {},
        )
        .await
        .unwrap();
    assert_eq!(connect.subject, APP_ID);
    assert_ne!(
        session.access_token().await.unwrap(),
        first,
        "the expired token is still handed out"
    );
    server.stop().await;
}

#[tokio::test]
async fn trusted_identity_headers_carry_the_service_s_own_subject() {
    let server = TestServer::start().await;
    let trusted = TrustedIdentityClaims {
        enabled: true,
        ..TrustedIdentityClaims::default()
    };
    let mut interceptor = AuthInterceptor::new(session(&server, APP_SECRET).await, trusted)
        .await
        .unwrap();
    let request = interceptor.call(tonic::Request::new(())).unwrap();
    let metadata = request.metadata();
    assert_eq!(metadata.get("x-user-subject").unwrap(), APP_ID);
    assert_eq!(
        metadata.get("x-user-claim-identitytype").unwrap(),
        "\"app\""
    );
    let authorization = metadata.get("authorization").unwrap().to_str().unwrap();
    assert!(
        authorization.starts_with("Bearer ey"),
        "no bearer JWT: {}",
        &authorization[..10.min(authorization.len())]
    );

    // Off by default: no identity headers, only the token.
    let mut plain = AuthInterceptor::new(
        session(&server, APP_SECRET).await,
        TrustedIdentityClaims::default(),
    )
    .await
    .unwrap();
    let request = plain.call(tonic::Request::new(())).unwrap();
    assert!(request.metadata().get("x-user-subject").is_none());
    assert!(request.metadata().get("authorization").is_some());
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_an_authentication_error_in_one_line() {
    let server = TestServer::start().await;
    let wrong = "not-the-secret";
    let error = AuthInterceptor::new(
        session(&server, wrong).await,
        TrustedIdentityClaims::default(),
    )
    .await
    .unwrap_err();
    assert!(error.is_authentication(), "{error:?}");
    assert!(
        matches!(error, ClientError::OAuth { ref error, .. } if error == "invalid_client"),
        "{error:?}"
    );
    let line = error.to_string();
    assert!(!line.contains('\n') && !line.contains(wrong), "{line}");
    server.stop().await;
}
