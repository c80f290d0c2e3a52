//! The device authorization grant (RFC 8628) as the Flyte SDKs and a person meet it: the device asks for codes
//! and polls, the person signs in at the activation page and approves or denies; the polling rules, the code
//! format, guessing limits, CSRF, metadata, and two replicas sharing one PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_tests::browser::{Browser, Page, url_encode};
use flyteauth_tests::{PostgresDatabase, StartOptions, TestServer};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "correct horse battery staple";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const INVALID_CODE: &str = "That code is not valid";

/// What `POST /oauth2/device/code` answered.
struct Codes {
    device_code: String,
    user_code: String,
    verification_uri_complete: String,
}

/// Asks for codes exactly as flytekit does (`audience` present and empty).
async fn device_codes(server: &TestServer) -> Codes {
    let response = device_request(server, "client_id=flytectl&scope=offline+all&audience=").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    Codes {
        device_code: body["device_code"].as_str().unwrap().to_owned(),
        user_code: body["user_code"].as_str().unwrap().to_owned(),
        verification_uri_complete: body["verification_uri_complete"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

async fn device_request(server: &TestServer, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/oauth2/device/code"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn post_token(server: &TestServer, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// One poll of the token endpoint, with the parameters flytekit sends along.
async fn poll(server: &TestServer, device_code: &str) -> reqwest::Response {
    post_token(
        server,
        &format!(
            "grant_type={}&client_id=flytectl&device_code={}&scope=offline+all&audience=",
            url_encode(DEVICE_GRANT),
            url_encode(device_code)
        ),
    )
    .await
}

/// The status and `error` of an RFC 6749 §5.2 JSON error answer.
async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let ct = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned())
}

async fn poll_error(server: &TestServer, device_code: &str) -> (u16, String) {
    error_of(poll(server, device_code).await).await
}

async fn me(server: &TestServer, token: &str) -> Value {
    let response = reqwest::Client::new()
        .get(server.url("/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn server_with_alice(flyteauth_extra: &str) -> TestServer {
    let server = TestServer::start_with(flyteauth_extra).await;
    server.add_user("alice", PASSWORD).await;
    server
}

/// Signs `browser` in as alice through the login page.
async fn sign_in(browser: &mut Browser) {
    let login = browser.get("/login").await;
    assert_eq!(login.status, 200, "{}", login.body);
    let after = browser.submit_login(&login, "alice", PASSWORD).await;
    // Without a page to return to, the login answers with a "signed in" page.
    assert_eq!(after.status, 200, "{}", after.body);
    assert!(after.body.contains("signed in as alice"), "{}", after.body);
}

/// Opens `path_or_url` (an activation link), signing in as alice through the login page if sent there, and
/// returns the page the person lands on.
async fn open_activation(browser: &mut Browser, path_or_url: &str) -> Page {
    let first = browser.get(path_or_url).await;
    let location = first.location.clone().unwrap_or_default();
    if first.status != 303 || !location.starts_with("/login") {
        return first;
    }
    let login = browser.get(&location).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let after = browser.submit_login(&login, "alice", PASSWORD).await;
    assert_eq!(after.status, 303, "{}", after.body);
    let back = after.location.clone().unwrap();
    assert!(back.starts_with("/activate"), "{back}");
    browser.get(&back).await
}

/// Opens the activation link and sends `decision` (`approve` or `deny`) from the confirm page.
async fn decide(browser: &mut Browser, codes: &Codes, decision: &str) -> Page {
    let confirm = open_activation(browser, &codes.verification_uri_complete).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let csrf = confirm.input("csrf_token").expect("a CSRF field");
    let user_code = confirm.input("user_code").expect("the code in the form");
    browser
        .post_form(
            "/activate",
            &[
                ("csrf_token", &csrf),
                ("user_code", &user_code),
                ("decision", decision),
            ],
        )
        .await
}

fn is_user_code(code: &str) -> bool {
    const ALPHABET: &str = "BCDFGHJKLMNPQRSTVWXZ";
    let bytes = code.as_bytes();
    bytes.len() == 9
        && bytes[4] == b'-'
        && code
            .chars()
            .enumerate()
            .all(|(i, c)| i == 4 || ALPHABET.contains(c))
}

/// A well-formed user code other than `code`.
fn other_code(code: &str, seed: usize) -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    (0..ALPHABET.len())
        .map(|i| {
            let c = char::from(ALPHABET[(seed + i) % ALPHABET.len()]);
            format!("{c}{c}{c}{c}-{c}{c}{c}{c}")
        })
        .find(|candidate| candidate != code)
        .unwrap()
}

/// Waits until the wall clock is early in a second, so that requests made right after fall within one second of
/// the server's (second-granular) clock.
async fn start_of_a_second() {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    if millis > 50 {
        tokio::time::sleep(Duration::from_millis(u64::from(1_020 - millis))).await;
    }
}

fn assert_html(page: &Page, status: u16) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
}

#[tokio::test]
async fn the_flytekit_flow_signs_the_person_in_once() {
    let server = server_with_alice("  device:\n    interval: 1s\n").await;
    let response = device_request(&server, "client_id=flytectl&scope=offline+all&audience=").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let user_code = body["user_code"].as_str().unwrap();
    assert!(is_user_code(user_code), "{user_code}");
    let base = &server.state.metadata.issuer;
    assert_eq!(body["verification_uri"], format!("{base}/activate"));
    let complete = body["verification_uri_complete"].as_str().unwrap();
    assert!(
        complete.starts_with(&format!("{base}/activate?")),
        "{complete}"
    );
    assert!(complete.contains(user_code), "{complete}");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["interval"], 1);
    let device_code = body["device_code"].as_str().unwrap();
    assert!(device_code.len() >= 32, "{device_code}");
    let codes = Codes {
        device_code: device_code.to_owned(),
        user_code: user_code.to_owned(),
        verification_uri_complete: complete.to_owned(),
    };

    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "authorization_pending".to_owned())
    );
    let polled = std::time::Instant::now();

    let mut browser = Browser::new(&server);
    let confirm = open_activation(&mut browser, &codes.verification_uri_complete).await;
    assert_html(&confirm, 200);
    assert!(confirm.body.contains(&codes.user_code), "{}", confirm.body);
    assert!(confirm.body.contains("flytectl"), "{}", confirm.body);
    assert!(confirm.body.contains("alice"), "{}", confirm.body);
    let done = browser
        .post_form(
            "/activate",
            &[
                ("csrf_token", &confirm.input("csrf_token").unwrap()),
                ("user_code", &confirm.input("user_code").unwrap()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_html(&done, 200);
    assert!(done.body.contains("terminal"), "{}", done.body);

    // One interval after the previous poll (the server counts whole seconds).
    tokio::time::sleep(Duration::from_millis(1_100).saturating_sub(polled.elapsed())).await;
    let response = poll(&server, &codes.device_code).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() > 0);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("offline was granted");

    let info = me(&server, access).await;
    assert_eq!(info["name"], "Alice Example");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["additional_claims"]["identity_type"], "user");

    // Tokens are issued exactly once.
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "invalid_grant".to_owned())
    );

    let response = post_token(
        &server,
        &format!(
            "grant_type=refresh_token&client_id=flytectl&refresh_token={}",
            url_encode(refresh)
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, refresh, "the refresh token rotates");
    let info = me(&server, rotated["access_token"].as_str().unwrap()).await;
    assert_eq!(info["name"], "Alice Example");
    server.stop().await;
}

#[tokio::test]
async fn polling_too_fast_slows_the_device_down() {
    let server = server_with_alice("  device:\n    interval: 1s\n").await;
    let codes = device_codes(&server).await;
    start_of_a_second().await;
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "authorization_pending".to_owned())
    );
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "slow_down".to_owned())
    );
    // The interval is now 1 + 5 s, counted from the slowed-down poll; waiting for it is enough.
    tokio::time::sleep(Duration::from_millis(6_100)).await;
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "authorization_pending".to_owned())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_denial_reaches_the_device() {
    let server = server_with_alice("").await;
    let codes = device_codes(&server).await;
    let mut browser = Browser::new(&server);
    let done = decide(&mut browser, &codes, "deny").await;
    assert_html(&done, 200);
    assert!(done.body.contains("denied"), "{}", done.body);
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "access_denied".to_owned())
    );
    // The code is used up: opening it again says so instead of offering another decision.
    let again = browser.get(&codes.verification_uri_complete).await;
    assert_html(&again, 200);
    assert!(again.input("csrf_token").is_none(), "{}", again.body);
    server.stop().await;
}

#[tokio::test]
async fn an_expired_code_is_refused_to_device_and_person() {
    let server = server_with_alice("  device:\n    codeLifetime: 1s\n    interval: 1s\n").await;
    let response = device_request(&server, "client_id=flytectl&scope=offline+all&audience=").await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 1);
    let codes = Codes {
        device_code: body["device_code"].as_str().unwrap().to_owned(),
        user_code: body["user_code"].as_str().unwrap().to_owned(),
        verification_uri_complete: body["verification_uri_complete"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let mut browser = Browser::new(&server);
    sign_in(&mut browser).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "expired_token".to_owned())
    );
    let page = browser.get(&codes.verification_uri_complete).await;
    assert_html(&page, 400);
    assert!(page.body.contains(INVALID_CODE), "{}", page.body);
    assert!(page.input("csrf_token").is_none(), "{}", page.body);
    server.stop().await;
}

#[tokio::test]
async fn user_codes_are_forgiving_in_form_and_strict_in_content() {
    let server = server_with_alice("").await;
    let codes = device_codes(&server).await;
    let mut browser = Browser::new(&server);
    sign_in(&mut browser).await;

    // Lower case, with or without the dash, with surrounding blanks.
    let plain = codes.user_code.replace('-', "");
    for typed in [
        plain.to_lowercase(),
        codes.user_code.to_lowercase(),
        format!(" {plain} "),
    ] {
        let page = browser
            .get(&format!("/activate?user_code={}", url_encode(&typed)))
            .await;
        assert_html(&page, 200);
        assert_eq!(
            page.input("user_code").as_deref(),
            Some(codes.user_code.as_str()),
            "{typed}: {}",
            page.body
        );
        assert!(page.input("csrf_token").is_some(), "{}", page.body);
    }

    // Without a code: the form to type one.
    let page = browser.get("/activate").await;
    assert_html(&page, 200);
    assert!(page.body.contains("name=\"user_code\""), "{}", page.body);
    let page = browser.get("/activate?user_code=").await;
    assert_html(&page, 200);

    // Wrong and malformed codes: the form again with a message (each counts as a wrong attempt; fewer than
    // the default 10 are made here).
    for typed in [
        "AAAA-AAAA".to_owned(),
        "BCDF-GHJ".to_owned(),
        "'; DROP TABLE device_codes; --".to_owned(),
        "<script>alert(1)</script>".to_owned(),
        other_code(&codes.user_code, 0),
        format!("{plain}B"),
    ] {
        let page = browser
            .get(&format!("/activate?user_code={}", url_encode(&typed)))
            .await;
        assert_html(&page, 400);
        assert!(page.body.contains(INVALID_CODE), "{typed}: {}", page.body);
        assert!(!page.body.contains("<script>"), "{}", page.body);
        assert!(page.input("csrf_token").is_none(), "{}", page.body);
    }

    // An empty code in the approval form.
    let confirm = browser.get(&codes.verification_uri_complete).await;
    let csrf = confirm.input("csrf_token").unwrap();
    for user_code in ["", "AAAA-AAAA"] {
        let page = browser
            .post_form(
                "/activate",
                &[
                    ("csrf_token", &csrf),
                    ("user_code", user_code),
                    ("decision", "approve"),
                ],
            )
            .await;
        assert_html(&page, 400);
        assert!(page.body.contains(INVALID_CODE), "{}", page.body);
    }
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "authorization_pending".to_owned())
    );
    server.stop().await;
}

/// GETs the activation page for `typed` from `browser`.
async fn try_code(browser: &mut Browser, typed: &str) -> Page {
    browser
        .get(&format!("/activate?user_code={}", url_encode(typed)))
        .await
}

fn assert_too_many(page: &Page) {
    assert_html(page, 429);
    assert!(page.body.contains("Too many wrong codes"), "{}", page.body);
    assert!(
        page.headers.contains_key("retry-after"),
        "{:?}",
        page.headers
    );
    assert!(page.input("csrf_token").is_none(), "{}", page.body);
}

const LOOPBACK_1: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LOOPBACK_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOOPBACK_3: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

#[tokio::test]
async fn wrong_codes_are_limited_per_session_and_per_address() {
    // Both limits count wrong codes against `maxCodeAttempts` within `attemptWindow` (15 minutes).
    let server = server_with_alice("  device:\n    maxCodeAttempts: 3\n").await;
    let codes = device_codes(&server).await;
    let right = codes.user_code.clone();

    // Session A, from 127.0.0.1: three wrong codes, then even the right one is refused.
    let mut a = Browser::from_address(&server, LOOPBACK_1);
    sign_in(&mut a).await;
    for seed in 0..3 {
        let page = try_code(&mut a, &other_code(&right, seed)).await;
        assert_html(&page, 400);
    }
    assert_too_many(&try_code(&mut a, &right).await);

    // The same session from another address is still refused: the session limit.
    let mut a_elsewhere = a.moved_to(LOOPBACK_2);
    assert_too_many(&try_code(&mut a_elsewhere, &right).await);

    // A new session from 127.0.0.1 is refused at once: the address has used up its attempts too.
    let mut b = Browser::from_address(&server, LOOPBACK_1);
    sign_in(&mut b).await;
    assert_too_many(&try_code(&mut b, &right).await);

    // A new session from 127.0.0.2 is not limited (A's attempts there were refused, not counted).
    let mut c = Browser::from_address(&server, LOOPBACK_2);
    sign_in(&mut c).await;
    let page = try_code(&mut c, &right).await;
    assert_html(&page, 200);
    assert!(page.input("csrf_token").is_some(), "{}", page.body);

    // From 127.0.0.3, two sessions share the address's attempts: two wrong codes in D and one in E use them
    // up, so both are refused although neither reached the limit on its own.
    let mut d = Browser::from_address(&server, LOOPBACK_3);
    let mut e = Browser::from_address(&server, LOOPBACK_3);
    sign_in(&mut d).await;
    sign_in(&mut e).await;
    for seed in 3..5 {
        assert_html(&try_code(&mut d, &other_code(&right, seed)).await, 400);
    }
    assert_html(&try_code(&mut e, &right).await, 200);
    assert_html(&try_code(&mut e, &other_code(&right, 5)).await, 400);
    assert_too_many(&try_code(&mut e, &right).await);
    assert_too_many(&try_code(&mut d, &right).await);

    // Refused attempts decided nothing.
    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "authorization_pending".to_owned())
    );
    server.stop().await;
}

#[tokio::test]
async fn approval_needs_its_csrf_token() {
    let server = server_with_alice("").await;
    let codes = device_codes(&server).await;
    let mut browser = Browser::new(&server);
    let confirm = open_activation(&mut browser, &codes.verification_uri_complete).await;
    assert_html(&confirm, 200);
    let user_code = confirm.input("user_code").unwrap();
    let csrf = confirm.input("csrf_token").unwrap();
    let forged = format!("{}x", &csrf[..csrf.len() - 1]);

    let page = browser
        .post_form(
            "/activate",
            &[("user_code", &user_code), ("decision", "approve")],
        )
        .await;
    assert_html(&page, 403);
    for token in ["", "not-the-token", forged.as_str()] {
        let page = browser
            .post_form(
                "/activate",
                &[
                    ("csrf_token", token),
                    ("user_code", &user_code),
                    ("decision", "approve"),
                ],
            )
            .await;
        assert_html(&page, 403);
        assert!(page.body.contains("nothing was approved"), "{}", page.body);
    }
    // Another browser's valid token does not fit this browser's cookie.
    let mut other = Browser::new(&server);
    let other_confirm = open_activation(&mut other, &codes.verification_uri_complete).await;
    let page = browser
        .post_form(
            "/activate",
            &[
                ("csrf_token", &other_confirm.input("csrf_token").unwrap()),
                ("user_code", &user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_html(&page, 403);

    assert_eq!(
        poll_error(&server, &codes.device_code).await,
        (400, "authorization_pending".to_owned())
    );
    // The page's own token still works afterwards.
    let page = browser
        .post_form(
            "/activate",
            &[
                ("csrf_token", &csrf),
                ("user_code", &user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_html(&page, 200);
    server.stop().await;
}

/// A field of a proto3 JSON message by its proto name: printers may write the name itself (this server does,
/// as flyteadmin's gateway) or its lowerCamelCase JSON name, and parsers accept both.
fn proto_json_field<'a>(message: &'a Value, proto_name: &str) -> &'a Value {
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
    match (&message[proto_name], &message[camel.as_str()]) {
        (Value::Null, camel_cased) => camel_cased,
        (named, _) => named,
    }
}

#[tokio::test]
async fn metadata_advertises_the_device_endpoint() {
    let server = TestServer::start().await;
    let base = &server.state.metadata.issuer;
    let endpoint = format!("{base}/oauth2/device/code");
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
        assert_eq!(doc["device_authorization_endpoint"], endpoint, "{path}");
        assert!(
            doc["grant_types_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == DEVICE_GRANT),
            "{path}: {doc}"
        );
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
        assert_eq!(
            proto_json_field(&body, "device_authorization_endpoint"),
            &Value::from(endpoint.as_str()),
            "{path}: {body}"
        );
        assert!(
            proto_json_field(&body, "grant_types_supported")
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == DEVICE_GRANT),
            "{path}: {body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn replicas_on_one_postgres_database_share_device_codes() {
    let db = PostgresDatabase::create().await;
    let a = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        ..StartOptions::default()
    })
    .await;
    let b = TestServer::start_on(&StartOptions {
        postgres: Some(&db),
        secrets_dir: Some(a.secrets_dir()),
        // Replicas behind one address share the public URL, so tokens of either are valid at both.
        public_url: Some(a.base.clone()),
        ..StartOptions::default()
    })
    .await;
    a.add_user("alice", PASSWORD).await;

    let codes = device_codes(&a).await;
    let mut browser = Browser::new(&a);
    let done = decide(&mut browser, &codes, "approve").await;
    assert_html(&done, 200);

    let response = poll(&b, &codes.device_code).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    assert!(tokens["refresh_token"].is_string());
    for replica in [&a, &b] {
        let info = me(replica, tokens["access_token"].as_str().unwrap()).await;
        assert_eq!(info["name"], "Alice Example");
    }

    assert_eq!(
        poll_error(&a, &codes.device_code).await,
        (400, "invalid_grant".to_owned())
    );
    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}
