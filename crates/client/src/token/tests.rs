#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::connect::test_server::{Canned, TestServer};

fn jwt(payload: serde_json::Value) -> Secret {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    Secret::new(format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(payload.to_string().as_bytes()),
        b64(b"sig")
    ))
}

async fn client(server: &TestServer) -> TokenClient {
    TokenClient::new(
        crate::connect::test_server::http(),
        server.url("/oauth2/token"),
    )
}

#[test]
fn jwt_expiry_reads_exp_without_verifying() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    assert_eq!(
        jwt_expiry(&jwt(json!({"exp": 1_900_000_000u64, "sub": "a"}))),
        Some(at)
    );
    assert_eq!(jwt_expiry(&jwt(json!({"exp": 1_900_000_000.5}))), Some(at));
    assert_eq!(jwt_expiry(&jwt(json!({"sub": "a"}))), None);
    assert_eq!(jwt_expiry(&jwt(json!({"exp": "soon"}))), None);
    assert_eq!(jwt_expiry(&jwt(json!({"exp": -5}))), None);
    assert_eq!(jwt_expiry(&Secret::new("opaque-token")), None);
    assert_eq!(jwt_expiry(&Secret::new("a.b.c.d")), None);
    assert_eq!(jwt_expiry(&Secret::new("a.!!!.c")), None);
    // Padding some encoders leave is tolerated.
    let padded = {
        let payload = base64::engine::general_purpose::URL_SAFE.encode(br#"{"exp":100}"#);
        Secret::new(format!("h.{payload}.s"))
    };
    assert_eq!(
        jwt_expiry(&padded),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100))
    );
}

#[test]
fn needs_refresh_counts_the_window() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
    let window = Duration::from_secs(60);
    let tokens = |expires_at| Tokens {
        access_token: Secret::new("t"),
        refresh_token: None,
        expires_at,
    };
    assert!(!tokens(Some(now + Duration::from_secs(61))).needs_refresh(window, now));
    assert!(tokens(Some(now + Duration::from_secs(60))).needs_refresh(window, now));
    assert!(tokens(Some(now - Duration::from_secs(1))).needs_refresh(window, now));
    assert!(!tokens(None).needs_refresh(window, now));
    let empty = Tokens {
        access_token: Secret::new(""),
        refresh_token: Some(Secret::new("r")),
        expires_at: None,
    };
    assert!(empty.needs_refresh(window, now));
    let cached = Tokens::from_cached(jwt(json!({"exp": 10_030})), None);
    assert!(cached.needs_refresh(window, now));
}

#[test]
fn basic_authorization_form_encodes_both_parts() {
    // The example of the flyte SDK notes: `my-app:s3cr%2Bt%2F%3Dx+y`.
    assert_eq!(
        basic_authorization("my-app", &Secret::new("s3cr+t/=x y")).expose(),
        "Basic bXktYXBwOnMzY3IlMkJ0JTJGJTNEeCt5"
    );
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(
            basic_authorization("a:b", &Secret::new("c"))
                .expose()
                .trim_start_matches("Basic "),
        )
        .unwrap();
    assert_eq!(decoded, b"a%3Ab:c");
}

#[test]
fn oauth_error_parsing() {
    let endpoint = url::Url::parse("https://idp.example/token?x=1").unwrap();
    match oauth_error(
        &endpoint,
        400,
        br#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#,
    ) {
        ClientError::OAuth {
            endpoint,
            error,
            description,
        } => {
            assert_eq!(endpoint, "https://idp.example/token");
            assert_eq!(error, "invalid_grant");
            assert_eq!(description.as_deref(), Some("refresh token revoked"));
        }
        other => panic!("{other}"),
    }
    let e = oauth_error(&endpoint, 401, br#"{"error":"invalid_client"}"#);
    assert!(e.is_authentication());
    assert_eq!(
        e.to_string(),
        "https://idp.example/token refused the request: invalid_client"
    );
    let e = oauth_error(&endpoint, 502, b"<html>bad gateway</html>");
    assert_eq!(
        e.to_string(),
        "https://idp.example/token refused the request: http 502"
    );
    let e = oauth_error(&endpoint, 400, br#"{"error":"","error_description":"x"}"#);
    assert!(e.to_string().ends_with("http 400"), "{e}");
}

#[tokio::test]
async fn client_credentials_request_and_answer() {
    let server = TestServer::start().await;
    server.route("/oauth2/token", |_| {
        Canned::json(
            200,
            json!({"access_token": "at", "token_type": "Bearer", "expires_in": 3600}),
        )
    });
    let before = SystemTime::now();
    let tokens = client(&server)
        .await
        .client_credentials(
            "ci",
            &Secret::new("s e"),
            &["all".into(), "offline".into()],
            Some("aud"),
        )
        .await
        .unwrap();
    assert_eq!(tokens.access_token.expose(), "at");
    assert_eq!(tokens.refresh_token, None);
    let at = tokens.expires_at.unwrap();
    assert!(
        at >= before + Duration::from_secs(3600)
            && at <= SystemTime::now() + Duration::from_secs(3600)
    );
    let seen = &server.requests()[0];
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some(basic_authorization("ci", &Secret::new("s e")).expose())
    );
    assert_eq!(seen.header("accept").as_deref(), Some("application/json"));
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        seen.form(),
        [
            ("grant_type", "client_credentials"),
            ("scope", "all offline"),
            ("audience", "aud")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[tokio::test]
async fn empty_scopes_and_no_audience_are_left_out() {
    let server = TestServer::start().await;
    let token = jwt(json!({"exp": 2_000_000_000u64}));
    let answer = json!({"access_token": token.expose()});
    server.route("/oauth2/token", move |_| Canned::json(200, answer.clone()));
    let tokens = client(&server)
        .await
        .client_credentials("ci", &Secret::new("s"), &[], None)
        .await
        .unwrap();
    // No expires_in: the JWT's exp.
    assert_eq!(
        tokens.expires_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
    );
    assert_eq!(
        server.requests()[0].form(),
        [("grant_type".to_owned(), "client_credentials".to_owned())]
    );
}

#[tokio::test]
async fn refresh_and_code_exchange_forms() {
    let server = TestServer::start().await;
    server.route("/oauth2/token", |seen| {
        match seen.form_value("grant_type").as_deref() {
            Some("refresh_token")
                if seen.form_value("refresh_token").as_deref() == Some("good") =>
            {
                Canned::json(
                    200,
                    json!({"access_token": "new", "refresh_token": "rotated", "expires_in": "60"}),
                )
            }
            Some("refresh_token") => Canned::json(
                400,
                json!({"error": "invalid_grant", "error_description": "revoked"}),
            ),
            Some("authorization_code") => {
                Canned::json(200, json!({"access_token": "a", "refresh_token": "r"}))
            }
            _ => Canned::json(400, json!({"error": "unsupported_grant_type"})),
        }
    });
    let c = client(&server).await;
    let t = c.refresh("flytectl", &Secret::new("good")).await.unwrap();
    assert_eq!(
        (
            t.access_token.expose(),
            t.refresh_token.as_ref().unwrap().expose()
        ),
        ("new", "rotated")
    );
    assert!(t.expires_at.is_some());
    let err = c
        .refresh("flytectl", &Secret::new("bad"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::OAuth { error, .. } if error == "invalid_grant"),
        "{err}"
    );
    let refresh = &server.requests()[0];
    assert_eq!(refresh.form_value("client_id").as_deref(), Some("flytectl"));
    assert_eq!(refresh.header("authorization"), None);
    let t = c
        .exchange_code(
            "flytectl",
            &Secret::new("code"),
            "http://localhost:53593/callback",
            &Secret::new("verifier"),
        )
        .await
        .unwrap();
    assert_eq!(t.expires_at, None);
    let exchange = server.requests().pop().unwrap();
    assert_eq!(
        exchange.form(),
        [
            ("grant_type", "authorization_code"),
            ("code", "code"),
            ("redirect_uri", "http://localhost:53593/callback"),
            ("client_id", "flytectl"),
            ("code_verifier", "verifier"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[tokio::test]
async fn success_without_an_access_token_is_a_protocol_error() {
    let server = TestServer::start().await;
    server.route("/oauth2/token", |_| {
        Canned::json(200, json!({"token_type": "Bearer"}))
    });
    let err = client(&server)
        .await
        .refresh("c", &Secret::new("r"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Protocol { .. }), "{err}");
}

#[tokio::test]
async fn device_authorize_and_poll() {
    let server = TestServer::start().await;
    server.route("/oauth2/device", |_| {
        Canned::json(200, json!({"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "https://cp.example/device?x=1", "expires_in": 600}))
    });
    server.sequence(
        "/oauth2/token",
        vec![
            Canned::json(400, json!({"error": "authorization_pending"})),
            Canned::json(400, json!({"error": "slow_down"})),
            Canned::text(503, "busy"),
            Canned::json(
                200,
                json!({"access_token": "at", "refresh_token": "rt", "expires_in": 10}),
            ),
        ],
    );
    let c = client(&server).await;
    let device = server.url("/oauth2/device");
    let auth = c
        .device_authorize(&device, "flytectl", &["offline".into()], None)
        .await
        .unwrap();
    assert_eq!(auth.device_code.expose(), "dc");
    assert_eq!(
        auth.verification_uri_complete,
        "https://cp.example/device?x=1&user_code=ABCD-EFGH"
    );
    assert_eq!(auth.interval, Duration::from_secs(5));
    assert_eq!(auth.expires_in, Duration::from_secs(600));
    assert_eq!(
        server.requests()[0].form(),
        [("client_id", "flytectl"), ("scope", "offline")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert!(matches!(
        c.device_poll("flytectl", &auth.device_code).await.unwrap(),
        DevicePoll::Pending
    ));
    assert!(matches!(
        c.device_poll("flytectl", &auth.device_code).await.unwrap(),
        DevicePoll::SlowDown
    ));
    assert!(matches!(
        c.device_poll("flytectl", &auth.device_code).await.unwrap(),
        DevicePoll::Pending
    ));
    match c.device_poll("flytectl", &auth.device_code).await.unwrap() {
        DevicePoll::Done(t) => assert_eq!(t.refresh_token.unwrap().expose(), "rt"),
        other => panic!("{other:?}"),
    }
    let poll = server.requests_to("/oauth2/token").pop().unwrap();
    assert_eq!(
        poll.form(),
        [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", "dc"),
            ("client_id", "flytectl")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[tokio::test]
async fn device_poll_final_errors() {
    let server = TestServer::start().await;
    server.sequence(
        "/oauth2/token",
        vec![
            Canned::json(400, json!({"error": "expired_token"})),
            Canned::json(
                400,
                json!({"error": "access_denied", "error_description": "no"}),
            ),
            Canned::json(400, json!({"error": "invalid_client"})),
        ],
    );
    let c = client(&server).await;
    let code = Secret::new("dc");
    assert!(matches!(
        c.device_poll("c", &code).await.unwrap_err(),
        ClientError::DeviceCodeExpired
    ));
    assert!(
        matches!(c.device_poll("c", &code).await.unwrap_err(), ClientError::LoginDenied { error, .. } if error == "access_denied")
    );
    assert!(
        matches!(c.device_poll("c", &code).await.unwrap_err(), ClientError::OAuth { error, .. } if error == "invalid_client")
    );
}

#[tokio::test]
async fn device_answer_variants() {
    let endpoint = url::Url::parse("https://idp.example/device").unwrap();
    let a = parse_device_authorization(
        &endpoint,
        br#"{"device_code":"d","user_code":"U","verification_url":"https://g.co/device","verification_uri_complete":"https://g.co/device?c=U","expires_in":"300","interval":2}"#,
    )
    .unwrap();
    assert_eq!(a.verification_uri, "https://g.co/device");
    assert_eq!(a.verification_uri_complete, "https://g.co/device?c=U");
    assert_eq!(a.interval, Duration::from_secs(2));
    let err = parse_device_authorization(
        &endpoint,
        br#"{"device_code":"d","user_code":"U","expires_in":1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("verification_uri"), "{err}");
}

#[tokio::test]
async fn revoke_posts_the_token() {
    let server = TestServer::start().await;
    server.route("/oauth2/revoke", |_| Canned::text(200, ""));
    let c = client(&server).await;
    c.revoke(
        &server.url("/oauth2/revoke"),
        "flytectl",
        &Secret::new("rt"),
    )
    .await
    .unwrap();
    assert_eq!(
        server.requests()[0].form(),
        [
            ("token", "rt"),
            ("token_type_hint", "refresh_token"),
            ("client_id", "flytectl")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    let err = c
        .revoke(&server.url("/nowhere"), "flytectl", &Secret::new("rt"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("http 404"), "{err}");
}
