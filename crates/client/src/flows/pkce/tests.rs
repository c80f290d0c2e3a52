#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use url::Url;

use super::listener::{self, Expected};
use super::*;
use crate::flows::testing::{self, Endpoint, Recorder};

/// `GET target` on `port` as a browser would send it; the status and the page.
async fn get(port: u16, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\nAccept: text/html\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response)
}

async fn free_listener() -> (tokio::net::TcpListener, Url) {
    let listener = listener::bind(&Url::parse("http://localhost:0/callback").unwrap())
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    (
        listener,
        Url::parse(&format!("http://localhost:{port}/callback")).unwrap(),
    )
}

fn expected<'a>(redirect_uri: &'a Url, state: &'a str) -> Expected<'a> {
    Expected {
        redirect_uri,
        state,
        signed_in_to: "idp.example",
    }
}

#[tokio::test]
async fn wrong_paths_get_404_and_the_wait_goes_on() {
    let (listener, redirect) = free_listener().await;
    let port = redirect.port().unwrap();
    let browser = tokio::spawn(async move {
        let (status, _) = get(port, "/favicon.ico").await;
        assert_eq!(status, 404);
        let (status, page) = get(port, "/callback?code=the-code&state=s-1").await;
        assert_eq!(status, 200);
        assert!(
            page.contains("Signed in to idp.example. You can close this tab."),
            "{page}"
        );
    });
    let code = listener::wait_for_callback(
        listener,
        &expected(&redirect, "s-1"),
        Duration::from_secs(30),
        &Recorder::default(),
    )
    .await
    .unwrap();
    assert_eq!(code.expose(), "the-code");
    browser.await.unwrap();
}

#[tokio::test]
async fn wrong_or_missing_state_gets_400_and_the_wait_goes_on() {
    let (listener, redirect) = free_listener().await;
    let port = redirect.port().unwrap();
    let browser = tokio::spawn(async move {
        assert_eq!(get(port, "/callback?code=stolen&state=other").await.0, 400);
        assert_eq!(get(port, "/callback?code=stolen").await.0, 400);
        assert_eq!(get(port, "/callback/?state=s-1&code=right").await.0, 200);
    });
    let code = listener::wait_for_callback(
        listener,
        &expected(&redirect, "s-1"),
        Duration::from_secs(30),
        &Recorder::default(),
    )
    .await
    .unwrap();
    assert_eq!(code.expose(), "right");
    browser.await.unwrap();
}

#[tokio::test]
async fn a_silent_spare_connection_does_not_hold_up_the_callback() {
    let (listener, redirect) = free_listener().await;
    let port = redirect.port().unwrap();
    let browser = tokio::spawn(async move {
        let spare = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(get(port, "/callback?state=s-1&code=c").await.0, 200);
        drop(spare);
    });
    let code = listener::wait_for_callback(
        listener,
        &expected(&redirect, "s-1"),
        Duration::from_secs(30),
        &Recorder::default(),
    )
    .await
    .unwrap();
    assert_eq!(code.expose(), "c");
    browser.await.unwrap();
}

#[tokio::test]
async fn an_error_callback_is_a_denial() {
    let (listener, redirect) = free_listener().await;
    let port = redirect.port().unwrap();
    let browser = tokio::spawn(async move {
        let (status, page) = get(
            port,
            "/callback?state=s-1&error=access_denied&error_description=No+thanks",
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            page.contains("The sign-in was refused: access_denied (No thanks)."),
            "{page}"
        );
    });
    let err = listener::wait_for_callback(
        listener,
        &expected(&redirect, "s-1"),
        Duration::from_secs(30),
        &Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::LoginDenied { error, description } if error == "access_denied" && description.as_deref() == Some("No thanks")),
        "{err:?}"
    );
    browser.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn nobody_comes_back() {
    let (listener, redirect) = free_listener().await;
    let ui = Recorder::default();
    let err = listener::wait_for_callback(
        listener,
        &expected(&redirect, "s-1"),
        Duration::from_secs(12),
        &ui,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::LoginTimedOut { redirect_uri, timeout } if *redirect_uri == redirect.to_string() && timeout.as_secs() == 12),
        "{err:?}"
    );
    assert_eq!(ui.events(), ["waiting-browser 7", "waiting-browser 2"]);
}

#[tokio::test]
async fn a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let redirect = Url::parse(&format!("http://localhost:{port}/callback")).unwrap();
    let err = listener::bind(&redirect).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::CallbackPortInUse { address, .. } if *address == format!("localhost:{port}")),
        "{err:?}"
    );
}

#[tokio::test]
async fn localhost_is_bound_as_127_0_0_1_and_https_is_refused() {
    let (listener, _) = free_listener().await;
    assert_eq!(
        listener.local_addr().unwrap().ip(),
        std::net::Ipv4Addr::LOCALHOST
    );
    let err = listener::bind(&Url::parse("https://localhost:53593/callback").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unsupported(_)), "{err:?}");
}

#[test]
fn verifier_and_state() {
    let verifier = random_token(VERIFIER_BYTES);
    let state = random_token(STATE_BYTES);
    assert_eq!(verifier.len(), 86);
    assert_eq!(state.len(), 43);
    let url_safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    assert!(url_safe(&verifier) && url_safe(&state));
    assert_ne!(random_token(STATE_BYTES), state);
}

#[test]
fn authorize_url_keeps_the_endpoint_query() {
    let client = testing::token_client(Url::parse("http://127.0.0.1:1/token").unwrap());
    let endpoint = Url::parse("https://idp.example/oauth2/authorize?tenant=t1").unwrap();
    let redirect = Url::parse("http://localhost:53593/callback").unwrap();
    let scopes = vec!["offline".to_owned(), "all".to_owned()];
    let mut login = PkceLogin {
        token_client: &client,
        authorization_endpoint: &endpoint,
        client_id: "flytectl",
        redirect_uri: &redirect,
        scopes: &scopes,
        audience: Some("aud-1"),
        timeout: Duration::from_secs(120),
    };
    let url = authorize_url(&login, "st", "ch");
    assert_eq!(url.host_str(), Some("idp.example"));
    assert_eq!(url.path(), "/oauth2/authorize");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let expected: Vec<(String, String)> = [
        ("tenant", "t1"),
        ("client_id", "flytectl"),
        ("response_type", "code"),
        ("scope", "offline all"),
        ("redirect_uri", "http://localhost:53593/callback"),
        ("state", "st"),
        ("code_challenge", "ch"),
        ("code_challenge_method", "S256"),
        ("audience", "aud-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(pairs, expected);

    login.scopes = &[];
    login.audience = None;
    let keys: Vec<String> = authorize_url(&login, "st", "ch")
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert!(
        !keys.iter().any(|k| k == "scope" || k == "audience"),
        "{keys:?}"
    );
}

/// A port that was free a moment ago, for a login that binds it itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct LoginSetup {
    endpoint: Endpoint,
    client: TokenClient,
    authorization_endpoint: Url,
    redirect: Url,
}

impl LoginSetup {
    async fn new(token_answers: Vec<(u16, String)>) -> Self {
        let endpoint = Endpoint::start(vec![("/token", token_answers)]).await;
        let client = testing::token_client(endpoint.url("/token"));
        let authorization_endpoint = Url::parse("https://idp.example/authorize").unwrap();
        let redirect = Url::parse(&format!("http://localhost:{}/callback", free_port())).unwrap();
        Self {
            endpoint,
            client,
            authorization_endpoint,
            redirect,
        }
    }

    fn login(&self) -> PkceLogin<'_> {
        PkceLogin {
            token_client: &self.client,
            authorization_endpoint: &self.authorization_endpoint,
            client_id: "flytectl",
            redirect_uri: &self.redirect,
            scopes: &[],
            audience: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A browser that, like the scripted person, returns at once and visits afterwards: first a stray path, then
/// the callback the identity provider would send it to.
fn scripted_browser(
    url: &str,
    seen: std::sync::Arc<std::sync::Mutex<HashMap<String, String>>>,
) -> Opened {
    let query: HashMap<String, String> = Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    *seen.lock().unwrap() = query.clone();
    let redirect = Url::parse(&query["redirect_uri"]).unwrap();
    let port = redirect.port().unwrap();
    let state = query["state"].clone();
    tokio::spawn(async move {
        assert_eq!(get(port, "/favicon.ico").await.0, 404);
        let (status, _) = get(port, &format!("/callback?code=code-1&state={state}")).await;
        assert_eq!(status, 200);
    });
    Opened::Started("scripted".into())
}

#[tokio::test]
async fn the_whole_login() {
    let setup = LoginSetup::new(vec![testing::json(
        200,
        json!({ "access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600, "token_type": "Bearer" }),
    )])
    .await;
    let seen = std::sync::Arc::default();
    let ui = Recorder::default();
    let tokens = login_with(
        setup.login(),
        &ui,
        |url| scripted_browser(url, std::sync::Arc::clone(&seen)),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(tokens.access_token.expose(), "at-1");
    assert_eq!(
        tokens.refresh_token.as_ref().map(|t| t.expose()),
        Some("rt-1")
    );

    let exchange = &setup.endpoint.received("/token")[0].form;
    assert_eq!(exchange["grant_type"], "authorization_code");
    assert_eq!(exchange["code"], "code-1");
    assert_eq!(exchange["client_id"], "flytectl");
    assert_eq!(exchange["redirect_uri"], setup.redirect.as_str());
    let seen = seen.lock().unwrap();
    assert_eq!(
        flyteauth_types::pkce::s256_challenge(&exchange["code_verifier"]),
        seen["code_challenge"]
    );
    assert_eq!(seen["redirect_uri"], setup.redirect.as_str());

    let events = ui.events();
    assert!(
        events[0].starts_with("opened https://idp.example/authorize?client_id=flytectl&"),
        "{events:?}"
    );
    assert_eq!(events.last().unwrap(), "logged-in");
}

#[tokio::test]
async fn a_refused_code() {
    let setup = LoginSetup::new(vec![testing::json(
        400,
        json!({ "error": "invalid_grant" }),
    )])
    .await;
    let seen = std::sync::Arc::default();
    let err = login_with(
        setup.login(),
        &Recorder::default(),
        |url| scripted_browser(url, std::sync::Arc::clone(&seen)),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::OAuth { error, .. } if error == "invalid_grant"),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_browser_and_ctrl_c() {
    let setup = LoginSetup::new(vec![]).await;
    let ui = Recorder::default();
    let interrupt = tokio::time::sleep(Duration::from_millis(50));
    let err = login_with(
        setup.login(),
        &ui,
        |_| Opened::Unavailable("no display".into()),
        interrupt,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Interrupted), "{err:?}");
    let events = ui.events();
    assert!(
        events[0].starts_with("unavailable https://idp.example/authorize?"),
        "{events:?}"
    );
    assert!(events[0].ends_with("(no display)"), "{events:?}");
}
