//! `POST /oauth2/token`, `GET /oauth2/jwks` and discovery, black-box.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_tests::*;
use serde_json::Value;

async fn json(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    let value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}"));
    (status, headers, value)
}

fn post(server: &TestServer) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
}

#[tokio::test]
async fn client_credentials_with_sdk_style_basic_auth() {
    let server = TestServer::start().await;
    let (status, headers, body) =
        json(token_request(&server, APP_ID, APP_SECRET, "scope=").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body.get("refresh_token").is_none());
    server.stop().await;
}

#[tokio::test]
async fn scopes_the_sdks_send_by_default_are_granted_without_offline() {
    let server = TestServer::start().await;
    let (status, _, body) =
        json(token_request(&server, APP_ID, APP_SECRET, "scope=all+offline").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "all");
    server.stop().await;
}

#[tokio::test]
async fn client_secret_post_is_accepted() {
    let server = TestServer::start().await;
    let body = format!(
        "grant_type=client_credentials&client_id={LIMITED_ID}&client_secret={LIMITED_SECRET}"
    );
    let (status, _, body) = json(post(&server).body(body).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read");
    server.stop().await;
}

#[tokio::test]
async fn wrong_secret_and_unknown_client_look_the_same() {
    let server = TestServer::start().await;
    let (s1, h1, b1) = json(token_request(&server, APP_ID, "wrong", "").await).await;
    let (s2, h2, b2) = json(token_request(&server, "nobody", "wrong", "").await).await;
    for (status, headers, body) in [(s1, h1, b1), (s2, h2, b2)] {
        assert_eq!(status, 401);
        assert_eq!(body["error"], "invalid_client");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn oauth_errors_are_rfc6749_json() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, u16, &str)> = vec![
        ("", 400, "invalid_request"),
        ("grant_type=", 400, "invalid_request"),
        (
            "grant_type=password&username=a&password=b",
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=x&client_id=flytectl",
            400,
            "invalid_grant",
        ),
        (
            "grant_type=client_credentials&grant_type=client_credentials",
            400,
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&scope=%ff%fe",
            400,
            "invalid_request",
        ),
        ("grant_type=client_credentials", 401, "invalid_client"),
    ];
    for (body, want_status, want_error) in cases {
        let (status, headers, value) = json(post(&server).body(body).send().await.unwrap()).await;
        assert_eq!(status, want_status, "{body}: {value}");
        assert_eq!(value["error"], want_error, "{body}");
        assert_eq!(headers["cache-control"], "no-store", "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn scope_and_audience_are_checked() {
    let server = TestServer::start().await;
    let (status, _, body) =
        json(token_request(&server, LIMITED_ID, LIMITED_SECRET, "scope=all").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, _, body) = json(
        token_request(
            &server,
            APP_ID,
            APP_SECRET,
            "audience=https%3A%2F%2Felsewhere.example",
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let audience = format!(
        "audience={}",
        server.base.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, _, body) = json(token_request(&server, APP_ID, APP_SECRET, &audience).await).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_never_get_a_500() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    // Wrong media type.
    let r = client
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/json")
        .body("{\"grant_type\":\"client_credentials\"}")
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Oversized body.
    let big = format!("grant_type=client_credentials&pad={}", "a".repeat(200_000));
    let (status, _, body) = json(post(&server).body(big).send().await.unwrap()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "invalid_request");
    // Raw non-UTF-8 bytes.
    let (status, _, body) = json(
        post(&server)
            .body(b"grant_type=\xff\xfe".to_vec())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Garbage Basic credentials.
    let r = post(&server)
        .header("authorization", "Basic %%%not-base64")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Wrong method.
    let r = client
        .get(server.url("/oauth2/token"))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = json(r).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(body["error"], "invalid_request");
    server.stop().await;
}

#[tokio::test]
async fn discovery_advertises_only_what_is_implemented() {
    let server = TestServer::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (status, _, doc) = json(reqwest::get(server.url(path)).await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], server.base);
        assert_eq!(doc["token_endpoint"], server.url("/oauth2/token"));
        assert_eq!(doc["jwks_uri"], server.url("/oauth2/jwks"));
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!([
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:device_code"
            ])
        );
        assert_eq!(
            doc["authorization_endpoint"],
            server.url("/oauth2/authorize")
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            doc["device_authorization_endpoint"],
            server.url("/oauth2/device/code")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn jwks_publishes_the_signing_key_with_thumbprint_kid() {
    let server = TestServer::start().await;
    let (status, _, jwks) = json(reqwest::get(server.url("/oauth2/jwks")).await.unwrap()).await;
    assert_eq!(status, 200);
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    let token = server.app_token().await;
    let header = token.split('.').next().unwrap();
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(header["typ"], "at+jwt");
    server.stop().await;
}
