#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;
use crate::flows::testing::{self, Endpoint, Recorder, Script};

fn authorization(expires_in: u64, interval: u64) -> Script {
    vec![testing::json(
        200,
        json!({
            "device_code": "dev-code-1",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://idp.example/device",
            "verification_uri_complete": "https://idp.example/device?user_code=ABCD-EFGH",
            "expires_in": expires_in,
            "interval": interval,
        }),
    )]
}

fn oauth(error: &str) -> (u16, String) {
    testing::json(400, json!({ "error": error }))
}

fn tokens() -> (u16, String) {
    testing::json(
        200,
        json!({ "access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600, "token_type": "Bearer" }),
    )
}

/// Runs a login against `endpoint` (device endpoint `/device`, token endpoint `/token`).
async fn run_login(
    endpoint: &Endpoint,
    timeout: Duration,
    ui: &Recorder,
    interrupt: impl Future<Output = ()>,
) -> Result<Tokens, ClientError> {
    let client = testing::token_client(endpoint.url("/token"));
    let device_endpoint = endpoint.url("/device");
    let scopes = vec!["offline".to_owned(), "all".to_owned()];
    let login = DeviceLogin {
        token_client: &client,
        device_endpoint: &device_endpoint,
        client_id: "flytectl",
        scopes: &scopes,
        audience: None,
        timeout,
    };
    login_with(login, ui, interrupt).await
}

fn poll_times(endpoint: &Endpoint) -> Vec<u64> {
    endpoint
        .received("/token")
        .iter()
        .map(|r| r.at.as_secs())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn polls_after_the_interval_slows_down_and_survives_outages() {
    let endpoint = Endpoint::start(vec![
        ("/device", authorization(600, 5)),
        (
            "/token",
            vec![
                oauth("authorization_pending"),
                oauth("slow_down"),
                (503, "upstream unavailable".into()),
                (429, String::new()),
                tokens(),
            ],
        ),
    ])
    .await;
    let ui = Recorder::default();
    let tokens = run_login(
        &endpoint,
        Duration::from_secs(600),
        &ui,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(tokens.access_token.expose(), "at-1");
    assert_eq!(
        tokens.refresh_token.as_ref().map(|t| t.expose()),
        Some("rt-1")
    );

    // First poll one interval in, then 5 s, then 10 s after the slow_down (outages do not reset it).
    assert_eq!(poll_times(&endpoint), [5, 10, 20, 30, 40]);
    let poll = &endpoint.received("/token")[0].form;
    assert_eq!(
        poll["grant_type"],
        "urn:ietf:params:oauth:grant-type:device_code"
    );
    assert_eq!(poll["device_code"], "dev-code-1");
    assert_eq!(poll["client_id"], "flytectl");
    let asked = &endpoint.received("/device")[0].form;
    assert_eq!(asked["scope"], "offline all");

    let events = ui.events();
    assert_eq!(
        events[0],
        "code https://idp.example/device https://idp.example/device?user_code=ABCD-EFGH ABCD-EFGH 600"
    );
    assert_eq!(events[1], "waiting-device 600");
    assert!(
        events.contains(&"waiting-device 599".to_owned()),
        "{events:?}"
    );
    assert!(events.contains(&"slow-down 10".to_owned()), "{events:?}");
    assert_eq!(events.last().unwrap(), "logged-in");
}

#[tokio::test(start_paused = true)]
async fn the_code_expires() {
    let endpoint = Endpoint::start(vec![
        ("/device", authorization(12, 5)),
        ("/token", vec![oauth("authorization_pending")]),
    ])
    .await;
    let ui = Recorder::default();
    let err = run_login(
        &endpoint,
        Duration::from_secs(600),
        &ui,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::DeviceCodeExpired), "{err:?}");
    // A last poll at the deadline rather than none.
    assert_eq!(poll_times(&endpoint), [5, 10, 12]);
    assert!(!ui.events().contains(&"logged-in".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn the_configured_timeout_cuts_a_long_code_short() {
    let endpoint = Endpoint::start(vec![
        ("/device", authorization(600, 5)),
        ("/token", vec![oauth("authorization_pending")]),
    ])
    .await;
    let err = run_login(
        &endpoint,
        Duration::from_secs(7),
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::DeviceCodeExpired), "{err:?}");
    assert_eq!(poll_times(&endpoint), [5, 7]);
}

#[tokio::test(start_paused = true)]
async fn the_server_says_expired() {
    let endpoint = Endpoint::start(vec![
        ("/device", authorization(600, 5)),
        ("/token", vec![oauth("expired_token")]),
    ])
    .await;
    let err = run_login(
        &endpoint,
        Duration::from_secs(600),
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::DeviceCodeExpired), "{err:?}");
    assert_eq!(poll_times(&endpoint), [5]);
}

#[tokio::test(start_paused = true)]
async fn denial() {
    let endpoint = Endpoint::start(vec![
        ("/device", authorization(600, 5)),
        (
            "/token",
            vec![oauth("authorization_pending"), oauth("access_denied")],
        ),
    ])
    .await;
    let err = run_login(
        &endpoint,
        Duration::from_secs(600),
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::LoginDenied { error, .. } if error == "access_denied"),
        "{err:?}"
    );
    assert_eq!(poll_times(&endpoint), [5, 10]);
}

#[tokio::test(start_paused = true)]
async fn other_oauth_errors_stop_at_once() {
    let endpoint = Endpoint::start(vec![
        ("/device", authorization(600, 5)),
        ("/token", vec![oauth("invalid_client")]),
    ])
    .await;
    let err = run_login(
        &endpoint,
        Duration::from_secs(600),
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::OAuth { error, .. } if error == "invalid_client"),
        "{err:?}"
    );
    assert_eq!(poll_times(&endpoint), [5]);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_token_endpoint_is_retried_until_the_deadline() {
    let endpoint = Endpoint::start(vec![("/device", authorization(11, 5))]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let token_url =
        url::Url::parse(&format!("http://{}/token", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let client = testing::token_client(token_url);
    let device_endpoint = endpoint.url("/device");
    let login = DeviceLogin {
        token_client: &client,
        device_endpoint: &device_endpoint,
        client_id: "flytectl",
        scopes: &[],
        audience: None,
        timeout: Duration::from_secs(600),
    };
    let started = Instant::now();
    let err = login_with(login, &Recorder::default(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DeviceCodeExpired), "{err:?}");
    assert_eq!(started.elapsed().as_secs(), 11);
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_interrupts() {
    let endpoint = Endpoint::start(vec![
        ("/device", authorization(600, 5)),
        ("/token", vec![oauth("authorization_pending")]),
    ])
    .await;
    let interrupt = tokio::time::sleep(Duration::from_secs(7));
    let err = run_login(
        &endpoint,
        Duration::from_secs(600),
        &Recorder::default(),
        interrupt,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Interrupted), "{err:?}");
    assert_eq!(poll_times(&endpoint), [5]);
}

#[test]
fn transient_errors() {
    let oauth = |error: &str| ClientError::OAuth {
        endpoint: "e".into(),
        error: error.into(),
        description: None,
    };
    assert!(is_transient(&oauth("http 502")));
    assert!(is_transient(&oauth("http 429")));
    assert!(is_transient(&oauth("temporarily_unavailable")));
    assert!(is_transient(&ClientError::Unreachable {
        url: "u".into(),
        reason: "refused".into()
    }));
    assert!(!is_transient(&oauth("http 400")));
    assert!(!is_transient(&oauth("invalid_grant")));
    assert!(!is_transient(&ClientError::DeviceCodeExpired));
}
