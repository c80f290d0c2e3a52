//! External authorization server mode (`auth.appAuth.authServerType: External`), against the fake identity provider
//! as the external server: flyteauth advertises the provider's endpoints (device endpoint included) on every wire
//! form; the provider's tokens — people's and apps' — call IdentityService and `/me`; tokens with a wrong issuer or
//! audience, expired, unsigned, HMAC-"signed" with the public key or signed by an unknown key are refused; a key
//! rotation is picked up on first use; an outage of the provider keeps issued tokens working and makes `/readyz`
//! say degraded; a flood of tokens naming unknown keys costs the provider a handful of JWKS fetches; and the
//! configuration check refuses an External configuration without a URL as `serve` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_proto::flyteidl::service as v1;
use flyteauth_proto::flyteidl2::auth as v2;
use flyteauth_tests::fake_idp::{self, AccessTokenFlaw, FakeIdp, USER_TOKEN_CLIENT_ID};
use flyteauth_tests::*;
use serde_json::Value;
use std::time::Duration;

/// The API audience the provider's tokens are minted for (an Okta authorization server's `api://default`).
const AUDIENCE: &str = "api://flyte";
/// The client id of the app tokens.
const APP_CLIENT: &str = "0oa-propeller";

/// `auth.appAuth:` of an External configuration pointing at `base`; `extra` are more lines of
/// `externalAuthServer:` (six-space indent).
fn external_section(base: &str, extra: &str) -> String {
    format!(
        "  appAuth:\n    authServerType: External\n    externalAuthServer:\n      baseUrl: {base}\n      \
         allowedAudience: [{AUDIENCE}]\n      retryAttempts: 2\n      retryDelay: 100ms\n{extra}"
    )
}

/// A server in External mode whose external authorization server is at `base`.
async fn external_server_at(base: &str, extra: &str) -> TestServer {
    let section = external_section(base, extra);
    let edit = move |yaml: String| {
        assert!(
            yaml.contains("  appAuth:\n"),
            "harness configuration changed"
        );
        yaml.replacen("  appAuth:\n", &section, 1)
    };
    TestServer::start_on(&StartOptions {
        edit_config: Some(&edit),
        ..StartOptions::default()
    })
    .await
}

async fn external_server(idp: &FakeIdp) -> TestServer {
    external_server_at(&idp.base, "").await
}

/// `GET /me` with `token`.
async fn me(server: &TestServer, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url("/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Connect `IdentityService.UserInfo` (Flyte 2, JSON) with `token` in `authorization`.
async fn connect_user_info(server: &TestServer, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/flyteidl2.auth.IdentityService/UserInfo"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body("{}")
        .send()
        .await
        .unwrap()
}

/// gRPC `IdentityService.UserInfo` (Flyte 1) with `token` in `flyte-authorization`.
async fn grpc_user_info(
    server: &TestServer,
    token: &str,
) -> Result<v1::UserInfoResponse, tonic::Status> {
    let mut client =
        v1::identity_service_client::IdentityServiceClient::new(grpc_channel(server).await);
    let mut request = tonic::Request::new(v1::UserInfoRequest {});
    request.metadata_mut().insert(
        "flyte-authorization",
        format!("Bearer {token}").parse().unwrap(),
    );
    client.user_info(request).await.map(|r| r.into_inner())
}

/// A field of a proto3 JSON message, under its JSON name or its proto name.
fn field<'a>(message: &'a Value, proto_name: &str) -> &'a Value {
    let mut camel = String::new();
    let mut upper = false;
    for c in proto_name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            camel.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            camel.push(c);
        }
    }
    match message.get(&camel) {
        Some(v) => v,
        None => &message[proto_name],
    }
}

async fn readyz(server: &TestServer) -> (u16, Value) {
    let response = reqwest::get(server.url("/readyz")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn metadata_is_the_external_servers_on_every_wire_form() {
    let idp = FakeIdp::start().await;
    idp.set_oauth_metadata(true);
    let server = external_server(&idp).await;
    let base = &idp.base;
    // RFC 8414's path was asked first and answered; the OpenID one was not needed.
    assert_eq!(idp.count("/.well-known/oauth-authorization-server"), 1);
    assert_eq!(idp.count("/.well-known/openid-configuration"), 0);
    assert_eq!(idp.jwks_fetches(), 1);

    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let doc: Value = reqwest::get(server.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], base.as_str(), "{path}");
        assert_eq!(doc["authorization_endpoint"], format!("{base}/authorize"));
        assert_eq!(doc["token_endpoint"], format!("{base}/token"));
        assert_eq!(doc["jwks_uri"], format!("{base}/jwks"));
        assert_eq!(
            doc["device_authorization_endpoint"],
            format!("{base}/device/authorize")
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        // Whatever else the external document has is passed on; our built-in endpoints are not advertised.
        assert_eq!(doc["userinfo_endpoint"], format!("{base}/userinfo"));
        assert!(!doc.to_string().contains(&server.base), "{doc}");
    }

    for path in [
        "/flyteidl.service.AuthMetadataService/GetOAuth2Metadata",
        "/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata",
    ] {
        let response = reqwest::Client::new()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(field(&body, "issuer"), base.as_str(), "{path}: {body}");
        assert_eq!(
            field(&body, "token_endpoint"),
            &Value::from(format!("{base}/token"))
        );
        assert_eq!(
            field(&body, "device_authorization_endpoint"),
            &Value::from(format!("{base}/device/authorize")),
            "{path}: {body}"
        );
        assert_eq!(
            field(&body, "jwks_uri"),
            &Value::from(format!("{base}/jwks"))
        );
    }

    let channel = grpc_channel(&server).await;
    let mut v2_client =
        v2::auth_metadata_service_client::AuthMetadataServiceClient::new(channel.clone());
    let metadata = v2_client
        .get_o_auth2_metadata(v2::GetOAuth2MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.issuer, *base);
    assert_eq!(metadata.authorization_endpoint, format!("{base}/authorize"));
    assert_eq!(
        metadata.device_authorization_endpoint,
        format!("{base}/device/authorize")
    );
    let mut v1_client = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(channel);
    let metadata = v1_client
        .get_o_auth2_metadata(v1::OAuth2MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.token_endpoint, format!("{base}/token"));
    // The public client configuration is still ours (thirdPartyConfig.flyteClient).
    let config = v1_client
        .get_public_client_config(v1::PublicClientAuthConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.authorization_metadata_key, "flyte-authorization");

    let (status, body) = readyz(&server).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("ready")),
        "{body}"
    );
    // Served from the cache: the provider was not asked again.
    assert_eq!(idp.metadata_fetches(), 1);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"flyteauth_external_fetches_total{document="metadata",outcome="ok"}"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn openid_configuration_is_used_when_the_rfc_8414_document_is_missing() {
    let idp = FakeIdp::start().await;
    let server = external_server(&idp).await;
    assert_eq!(idp.count("/.well-known/oauth-authorization-server"), 1);
    assert_eq!(idp.count("/.well-known/openid-configuration"), 1);
    let doc: Value = reqwest::get(server.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["token_endpoint"], format!("{}/token", idp.base));
    let token = idp.app_access_token(APP_CLIENT, AUDIENCE, AccessTokenFlaw::None);
    assert_eq!(me(&server, &token).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn external_tokens_of_people_and_apps_are_accepted() {
    let idp = FakeIdp::start().await;
    let server = external_server(&idp).await;
    let user = idp.user();

    // A person's token for the API audience, over Connect.
    let token = idp.user_access_token(AUDIENCE, AccessTokenFlaw::None);
    let response = connect_user_info(&server, &token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["subject"], user.sub.as_str(), "{body}");
    assert_eq!(
        field(&body, "preferred_username"),
        user.preferred_username.as_str()
    );
    assert_eq!(body["email"], user.email.as_str());
    let claims = field(&body, "additional_claims");
    assert_eq!(claims["cid"], USER_TOKEN_CLIENT_ID, "{body}");

    // The same over /me, with the identity headers an ingress copies.
    let response = me(&server, &token).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-user-subject"], user.sub.as_str());
    assert!(
        headers["x-user-claim-identitytype"]
            .to_str()
            .unwrap()
            .contains("user")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["subject"], user.sub.as_str());
    assert_eq!(body["name"], user.name.as_str());

    // An app's token (client credentials) for the public URL, over /me, Connect and gRPC.
    let app = idp.app_access_token(
        APP_CLIENT,
        &format!("{}/", server.base),
        AccessTokenFlaw::None,
    );
    let response = me(&server, &app).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-user-subject"], APP_CLIENT);
    assert!(
        response.headers()["x-user-claim-identitytype"]
            .to_str()
            .unwrap()
            .contains("app")
    );
    let response = connect_user_info(&server, &app).await;
    assert_eq!(response.status(), 200);
    let info = grpc_user_info(&server, &app).await.unwrap();
    assert_eq!(info.subject, APP_CLIENT);
    let info = grpc_user_info(&server, &token).await.unwrap();
    assert_eq!(info.subject, user.sub);
    server.stop().await;
}

#[tokio::test]
async fn bad_external_tokens_are_refused_on_every_path() {
    let idp = FakeIdp::start().await;
    let server = external_server(&idp).await;
    let mut tokens: Vec<(String, String)> = [
        AccessTokenFlaw::WrongIssuer,
        AccessTokenFlaw::WrongAudience,
        AccessTokenFlaw::Expired,
        AccessTokenFlaw::AlgNone,
        AccessTokenFlaw::Hs256PublicKey,
        AccessTokenFlaw::UnknownKey,
    ]
    .into_iter()
    .flat_map(|flaw| {
        [
            (
                format!("user {flaw:?}"),
                idp.user_access_token(AUDIENCE, flaw),
            ),
            (
                format!("app {flaw:?}"),
                idp.app_access_token(APP_CLIENT, AUDIENCE, flaw),
            ),
        ]
    })
    .collect();
    // A token of the built-in server: still mounted, but not the authority in External mode.
    tokens.push(("built-in".into(), server.app_token().await));
    for (what, token) in &tokens {
        let response = me(&server, token).await;
        assert_eq!(response.status(), 401, "/me {what}");
        let response = connect_user_info(&server, token).await;
        assert_eq!(response.status(), 401, "Connect {what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthenticated", "Connect {what}");
        let status = grpc_user_info(&server, token).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "gRPC {what}");
    }
    // The good token still works after all that.
    let token = idp.user_access_token(AUDIENCE, AccessTokenFlaw::None);
    assert_eq!(me(&server, &token).await.status(), 200);
    // The unknown key caused one refetch, however many times it was presented.
    assert_eq!(idp.jwks_fetches(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_first_use() {
    let idp = FakeIdp::start().await;
    let server = external_server(&idp).await;
    let before = idp.user_access_token(AUDIENCE, AccessTokenFlaw::None);
    assert_eq!(me(&server, &before).await.status(), 200);
    assert_eq!(idp.jwks_fetches(), 1);

    let old_kid = idp.current_kid();
    idp.rotate_key();
    assert_ne!(idp.current_kid(), old_kid);
    let after = idp.user_access_token(AUDIENCE, AccessTokenFlaw::None);
    let response = me(&server, &after).await;
    assert_eq!(response.status(), 200, "the first token of the new key");
    assert_eq!(idp.jwks_fetches(), 2);
    // Both keys are published, so tokens of either keep working without further fetches.
    let another = idp.app_access_token(APP_CLIENT, AUDIENCE, AccessTokenFlaw::None);
    assert_eq!(connect_user_info(&server, &another).await.status(), 200);
    assert_eq!(me(&server, &before).await.status(), 200);
    assert_eq!(idp.jwks_fetches(), 2);
    server.stop().await;
}

/// A compact JWS that names the key `kid` and carries garbage for a signature.
fn garbage_token(kid: &str) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(&format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#)),
        b64(r#"{"sub":"mallory","aud":"api://flyte","exp":4102444800}"#),
        b64("not a signature")
    )
}

#[tokio::test]
async fn an_outage_of_the_provider_keeps_issued_tokens_working_and_degrades_readiness() {
    let mut idp = FakeIdp::start().await;
    let server = external_server(&idp).await;
    let used = idp.user_access_token(AUDIENCE, AccessTokenFlaw::None);
    let unused = idp.app_access_token(APP_CLIENT, AUDIENCE, AccessTokenFlaw::None);
    assert_eq!(me(&server, &used).await.status(), 200);
    idp.stop().await;

    // Answered from the memo, and verified for the first time with the cached keys.
    assert_eq!(me(&server, &used).await.status(), 200);
    assert_eq!(me(&server, &unused).await.status(), 200);
    let (status, body) = readyz(&server).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("ready")),
        "{body}"
    );

    // A token naming a key we do not have makes us try the provider, which is down.
    let response = me(&server, &garbage_token("kid-from-nowhere")).await;
    assert_eq!(response.status(), 401);
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let external = &body["external"];
    assert!(
        external["last_error"]
            .as_str()
            .unwrap()
            .starts_with("jwks:"),
        "{body}"
    );
    assert!(external["metadata_age_secs"].is_u64(), "{body}");
    assert!(external["keys_age_secs"].is_u64(), "{body}");
    // The error names what failed, not where.
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");

    // The last good copy keeps serving: tokens and metadata.
    assert_eq!(me(&server, &unused).await.status(), 200);
    let token = connect_user_info(&server, &used).await;
    assert_eq!(token.status(), 200);
    let doc = reqwest::get(server.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"flyteauth_external_fetches_total{document="jwks",outcome="error"}"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_key_ids_cost_the_provider_a_handful_of_fetches() {
    const TOKENS: usize = 10_000;
    const WORKERS: usize = 32;
    let idp = FakeIdp::start().await;
    let server = external_server(&idp).await;
    assert_eq!(idp.jwks_fetches(), 1);
    let client = reqwest::Client::new();
    let url = server.url("/me");
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let client = client.clone();
        let url = url.clone();
        workers.spawn(async move {
            let mut refused = 0usize;
            for i in (worker..TOKENS).step_by(WORKERS) {
                let kid = format!("kid-{i}-{}", flyteauth_core::clients::generate_secret());
                let response = client
                    .get(&url)
                    .bearer_auth(garbage_token(&kid))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 401);
                refused += 1;
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(done) = workers.join_next().await {
        refused += done.unwrap();
    }
    assert_eq!(refused, TOKENS);
    let fetches = idp.jwks_fetches();
    assert!(
        fetches <= 3,
        "{fetches} JWKS fetches for {TOKENS} garbage tokens"
    );
    // Good tokens are still served meanwhile.
    let token = idp.user_access_token(AUDIENCE, AccessTokenFlaw::None);
    assert_eq!(me(&server, &token).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_server_started_while_the_provider_is_down_becomes_ready_when_it_is_back() {
    let down = fake_idp::closed_base_url().await;
    let server = external_server_at(&down, "").await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert!(body["external"]["metadata_age_secs"].is_null(), "{body}");
    assert!(
        body["external"]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("metadata:"),
        "{body}"
    );
    let response = reqwest::get(server.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let response = reqwest::Client::new()
        .post(server.url("/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");

    // The background task tries again every 30 s.
    let idp = FakeIdp::start_at(&down).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let (status, body) = readyz(&server).await;
        if status == 200 {
            assert_eq!(body["status"], "ready", "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready 45 s after the provider came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let token = idp.user_access_token(AUDIENCE, AccessTokenFlaw::None);
    assert_eq!(me(&server, &token).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn config_check_refuses_external_without_a_url_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(8089, dir.path()).replacen(
        "  appAuth:\n",
        "  appAuth:\n    authServerType: External\n",
        1,
    );
    let file = dir.path().join("flyteauth.yaml");
    std::fs::write(&file, yaml).unwrap();

    let served = flyteauth_server::serve::prepare(&flyteauth_server::serve::ServeOptions {
        config_file: Some(file.clone()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        served.contains("auth.appAuth.externalAuthServer.baseUrl"),
        "{served}"
    );

    let output = std::process::Command::new(flyteauth_bin())
        .args(["config", "check"])
        .arg(&file)
        .env_remove("FLYTEAUTH_CONFIG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&served),
        "config check said {stderr:?}, serve said {served:?}"
    );
    assert!(output.stdout.is_empty());
}
