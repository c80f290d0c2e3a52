#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flyteauth_proto::flyteidl2::auth::{GetOAuth2MetadataResponse, GetPublicClientConfigResponse};
use serde_json::json;
use tonic::service::Interceptor as _;

use super::*;
use crate::cache::CacheOptions;
use crate::config::{AuthType, Endpoint, Settings};
use crate::connect::test_server::{Canned, TestServer, epoch_in, jwt};
use crate::flows::PlainUi;
use crate::metadata::{GET_OAUTH2_METADATA, GET_PUBLIC_CLIENT_CONFIG};

/// A control plane whose token endpoint hands out JWTs numbered 1, 2, … living `lifetime` seconds.
async fn server(lifetime: i64) -> TestServer {
    let server = TestServer::start().await;
    let base = server.base().as_str().trim_end_matches('/').to_owned();
    server.proto(
        GET_OAUTH2_METADATA,
        GetOAuth2MetadataResponse {
            token_endpoint: format!("{base}/token"),
            ..Default::default()
        },
    );
    server.proto(
        GET_PUBLIC_CLIENT_CONFIG,
        GetPublicClientConfigResponse::default(),
    );
    let counter = AtomicUsize::new(0);
    server.route("/token", move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let token = jwt(
            json!({"sub": format!("svc-{n}"), "identity_type": "app", "exp": epoch_in(lifetime)}),
        );
        Canned::json(
            200,
            json!({"access_token": token.expose(), "expires_in": lifetime}),
        )
    });
    server
}

async fn session(server: &TestServer) -> Arc<Session> {
    let settings = Settings {
        endpoint: Some(Endpoint::parse(server.base().authority()).unwrap()),
        insecure: true,
        auth_type: AuthType::ClientSecret,
        client_id: Some("svc".into()),
        client_secret: Some(Secret::new("s")),
        proxy_command: vec!["echo".into(), "proxy-tok".into()],
        ..Settings::default()
    };
    Arc::new(
        Session::new(
            settings,
            Arc::new(PlainUi),
            CacheOptions {
                disable_keyring: true,
                file: None,
            },
        )
        .await
        .unwrap(),
    )
}

fn headers(interceptor: &mut AuthInterceptor) -> MetadataMap {
    interceptor
        .call(tonic::Request::new(()))
        .unwrap()
        .metadata()
        .clone()
}

fn subject_of(metadata: &MetadataMap) -> String {
    let bearer = metadata.get("authorization").unwrap().to_str().unwrap();
    let token = Secret::new(bearer.trim_start_matches("Bearer "));
    jwt_claims(&token).unwrap()["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn identity_headers_as_the_server_writes_them() {
    let trusted = TrustedIdentityClaims {
        enabled: true,
        ..TrustedIdentityClaims::default()
    };
    let token = jwt(json!({"sub": "00u1abcd", "identity_type": "user"}));
    assert_eq!(
        identity_headers(&trusted, &token),
        vec![
            ("x-user-subject", "00u1abcd".to_owned()),
            ("x-user-claim-identitytype", r#""user""#.to_owned())
        ]
    );
    let odd = jwt(json!({"sub": "Zoë \"z\"\n", "identity_type": "app"}));
    assert_eq!(
        identity_headers(&trusted, &odd)[0],
        ("x-user-subject", r#""Zo\u00eb \"z\"\n""#.to_owned())
    );
    let spaced = jwt(json!({"sub": " padded"}));
    assert_eq!(
        identity_headers(&trusted, &spaced),
        vec![("x-user-subject", r#"" padded""#.to_owned())]
    );
    let custom = TrustedIdentityClaims {
        enabled: true,
        external_identity_claim: "client_id".into(),
        external_identity_type_claim: "kind".into(),
    };
    let token = jwt(json!({"sub": "x", "client_id": "ci", "kind": "app"}));
    assert_eq!(
        identity_headers(&custom, &token),
        vec![
            ("x-user-subject", "ci".to_owned()),
            ("x-user-claim-identitytype", r#""app""#.to_owned())
        ]
    );
    assert!(identity_headers(&trusted, &Secret::new("opaque")).is_empty());
}

#[tokio::test]
async fn injects_the_token_proxy_and_trusted_identity() {
    let server = server(3600).await;
    let trusted = TrustedIdentityClaims {
        enabled: true,
        ..TrustedIdentityClaims::default()
    };
    let mut interceptor = AuthInterceptor::new(session(&server).await, trusted)
        .await
        .unwrap();
    let metadata = headers(&mut interceptor);
    assert_eq!(subject_of(&metadata), "svc-1");
    assert_eq!(
        metadata.get("proxy-authorization").unwrap(),
        "Bearer proxy-tok"
    );
    assert_eq!(metadata.get("x-user-subject").unwrap(), "svc-1");
    assert_eq!(
        metadata.get("x-user-claim-identitytype").unwrap(),
        r#""app""#
    );
    let mut plain = AuthInterceptor::new(session(&server).await, TrustedIdentityClaims::default())
        .await
        .unwrap();
    assert!(headers(&mut plain).get("x-user-subject").is_none());
}

#[tokio::test]
async fn call_with_retry_renews_once_after_unauthenticated() {
    let server = server(3600).await;
    let mut interceptor =
        AuthInterceptor::new(session(&server).await, TrustedIdentityClaims::default())
            .await
            .unwrap();
    let calls = AtomicUsize::new(0);
    let result = interceptor
        .call_with_retry(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(tonic::Status::unauthenticated("expired"))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(result, 1);
    assert_eq!(subject_of(&headers(&mut interceptor)), "svc-2");
    // Other errors are not retried, and a second rejection is the caller's.
    let calls = AtomicUsize::new(0);
    let err = interceptor
        .call_with_retry(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(tonic::Status::unauthenticated("still no")) }
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), calls.load(Ordering::SeqCst)),
        (tonic::Code::Unauthenticated, 2)
    );
    let calls = AtomicUsize::new(0);
    let err = interceptor
        .call_with_retry(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(tonic::Status::not_found("x")) }
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), calls.load(Ordering::SeqCst)),
        (tonic::Code::NotFound, 1)
    );
}

#[tokio::test]
async fn renews_in_the_background_before_expiry() {
    // 61 s of life with the default 60 s window: due in about a second.
    let server = server(61).await;
    let mut interceptor =
        AuthInterceptor::new(session(&server).await, TrustedIdentityClaims::default())
            .await
            .unwrap();
    assert_eq!(subject_of(&headers(&mut interceptor)), "svc-1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while subject_of(&headers(&mut interceptor)) == "svc-1" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no background renewal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(subject_of(&headers(&mut interceptor)), "svc-2");
    // Dropping the last interceptor stops the renewals.
    drop(interceptor);
    let before = server.requests_to("/token").len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.requests_to("/token").len(), before);
}
