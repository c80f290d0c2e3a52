//! Failed authentications slow down per source address and per (client id or account, source address), never
//! per client alone; secret checks are bounded; repeated failures are one audit row. Distinct loopback
//! addresses (127.0.0.x) stand for distinct machines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use flyteauth_store::AuditFilter;
use flyteauth_tests::browser::{Browser, url_encode};
use flyteauth_tests::{APP_ID, APP_SECRET, LIMITED_ID, LIMITED_SECRET, TestServer};
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

fn from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn basic(id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", url_encode(id), url_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A client_credentials request as the Flyte SDKs send it; returns (status, Retry-After, body).
async fn token(
    http: &reqwest::Client,
    server: &TestServer,
    id: &str,
    secret: &str,
    extra_headers: &[(&str, &str)],
) -> (u16, Option<u64>, Value) {
    let mut request = http
        .post(server.url("/oauth2/token"))
        .header("authorization", basic(id, secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials");
    for (name, value) in extra_headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

async fn failures_of(server: &TestServer, client_id: &str) -> Vec<flyteauth_store::AuditEvent> {
    let filter = AuditFilter {
        kind: Some("client.authentication_failed".into()),
        since: None,
    };
    server
        .state
        .store
        .list_audit(&filter, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.client_id == client_id)
        .collect()
}

#[tokio::test]
async fn a_flood_of_wrong_secrets_gets_429_and_the_client_still_works_from_elsewhere() {
    let server = TestServer::start().await;
    let attacker = from("127.0.0.2");
    let legitimate = from("127.0.0.1");
    // The default allows 10 failures of one client from one address at once.
    for i in 0..10 {
        let (status, _, body) = token(&attacker, &server, APP_ID, "wrong", &[]).await;
        assert_eq!(status, 401, "failure {i} is an ordinary 401: {body}");
    }
    for _ in 0..5 {
        let (status, retry_after, body) = token(&attacker, &server, APP_ID, "wrong", &[]).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("try again in"),
            "{body}"
        );
        let retry_after = retry_after.expect("a Retry-After header");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    // Even the right secret waits from the flooding address: the limit is checked before the secret.
    let (status, _, _) = token(&attacker, &server, APP_ID, APP_SECRET, &[]).await;
    assert_eq!(status, 429);
    // Everyone else is unaffected: the client from another machine, and another client from the same one.
    let (status, _, body) = token(&legitimate, &server, APP_ID, APP_SECRET, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    let (status, _, body) = token(&attacker, &server, LIMITED_ID, LIMITED_SECRET, &[]).await;
    assert_eq!(status, 200, "{body}");
    let limited = flyteauth_server::metrics::render();
    assert!(
        limited.contains(
            r#"flyteauth_rate_limited_total{kind="client_auth",reason="client_and_address"}"#
        ),
        "{limited}"
    );
    server.stop().await;
}

#[tokio::test]
async fn one_address_guessing_many_client_ids_hits_the_address_limit() {
    let server = TestServer::start_with(
        "  rateLimits:\n    failuresPerAddress: {count: 5, period: 1m, burst: 5}\n",
    )
    .await;
    let guesser = from("127.0.0.3");
    for i in 0..5 {
        let (status, _, _) = token(&guesser, &server, &format!("guess-{i}"), "x", &[]).await;
        assert_eq!(status, 401);
    }
    let (status, retry_after, body) = token(&guesser, &server, "guess-new", "x", &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some());
    let (status, _, _) = token(&from("127.0.0.1"), &server, "guess-new", "x", &[]).await;
    assert_eq!(status, 401, "another address is not limited");
    server.stop().await;
}

#[tokio::test]
async fn limits_switched_off_answer_every_failure_with_401() {
    let server = TestServer::start_with("  rateLimits:\n    enabled: false\n").await;
    let attacker = from("127.0.0.4");
    for _ in 0..30 {
        let (status, _, _) = token(&attacker, &server, APP_ID, "wrong", &[]).await;
        assert_eq!(status, 401);
    }
    server.stop().await;
}

#[tokio::test]
async fn repeated_failures_of_one_caller_are_one_audit_row_with_a_count() {
    let server = TestServer::start_with("  rateLimits:\n    auditWindow: 3s\n").await;
    let caller = from("127.0.0.5");
    let started = std::time::Instant::now();
    for _ in 0..8 {
        let (status, _, _) = token(&caller, &server, "no-such-app", "x", &[]).await;
        assert_eq!(status, 401);
    }
    let within_one_window = started.elapsed() < Duration::from_secs(3);
    // The first failure is written at once; the others are counted.
    let rows = failures_of(&server, "no-such-app").await;
    assert!(!rows.is_empty(), "the first failure is written at once");
    assert_eq!(rows[0].remote_addr, "127.0.0.5");
    // Every failure is accounted for once the window has ended: plain rows count one, aggregated rows their
    // count.
    let represented = |rows: &[flyteauth_store::AuditEvent]| -> u64 {
        rows.iter()
            .map(|e| e.detail["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let rows = failures_of(&server, "no-such-app").await;
        if represented(&rows) >= 8 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(represented(&rows), 8, "{rows:?}");
    let aggregated: Vec<_> = rows
        .iter()
        .filter(|e| e.detail["aggregated"] == true)
        .collect();
    assert!(!aggregated.is_empty(), "{rows:?}");
    assert!(
        aggregated
            .iter()
            .all(|e| e.detail["via"] == "basic" && e.outcome == "failure")
    );
    if within_one_window {
        assert_eq!(rows.len(), 2, "one row at once, one count: {rows:?}");
        assert_eq!(aggregated[0].detail["count"], 7);
    }
    server.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_one_limited() {
    let server = TestServer::start_with("  trustedProxies: [127.0.0.1]\n").await;
    let proxy = from("127.0.0.1");
    let flood = [("x-forwarded-for", "198.51.100.7")];
    for _ in 0..10 {
        let (status, _, _) = token(&proxy, &server, APP_ID, "wrong", &flood).await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = token(&proxy, &server, APP_ID, "wrong", &flood).await;
    assert_eq!(status, 429, "198.51.100.7 is limited");
    // The proxy itself, and other clients behind it, are not.
    let other = [("x-forwarded-for", "203.0.113.9, 198.51.100.8")];
    let (status, _, body) = token(&proxy, &server, APP_ID, APP_SECRET, &other).await;
    assert_eq!(status, 200, "{body}");
    // The audit trail names the client, not the proxy.
    let rows = failures_of(&server, APP_ID).await;
    assert!(
        rows.iter().all(|e| e.remote_addr == "198.51.100.7"),
        "{rows:?}"
    );
    // A peer that is not a trusted proxy cannot choose its address by sending the header.
    let forger = from("127.0.0.6");
    for _ in 0..10 {
        let spoof = [("x-forwarded-for", "192.0.2.55")];
        let (status, _, _) = token(&forger, &server, LIMITED_ID, "wrong", &spoof).await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = token(&forger, &server, LIMITED_ID, "wrong", &[]).await;
    assert_eq!(status, 429, "the forger is keyed by its own address");
    server.stop().await;
}

#[tokio::test]
async fn too_many_failed_sign_ins_from_one_address_get_an_html_429_page() {
    let server = TestServer::start().await;
    server.add_user("ada", "correct horse battery").await;
    let mut browser = Browser::from_address(&server, "127.0.0.7".parse().unwrap());
    // Unknown accounts, so no account lockout interferes: the (account, address) limit of 10 applies.
    for i in 0..10 {
        let form = browser.get("/login").await;
        let page = browser.submit_login(&form, "nobody", "wrong").await;
        assert_ne!(page.status, 429, "attempt {i}");
    }
    let form = browser.get("/login").await;
    let page = browser.submit_login(&form, "nobody", "wrong").await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(page.body.contains("Too many"), "{}", page.body);
    assert!(page.headers.get("retry-after").is_some());
    // The same person's account from the same browser is a different (account, address) key.
    let form = browser.get("/login").await;
    let page = browser
        .submit_login(&form, "ada", "correct horse battery")
        .await;
    assert!(
        page.status == 200 || page.status == 303,
        "{} {}",
        page.status,
        page.body
    );
    server.stop().await;
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_at_once_and_recovers() {
    // One bcrypt at a time and no queue: concurrent checks beyond the first are refused, not queued.
    let server =
        TestServer::start_with("  hashing:\n    maxConcurrent: 1\n    maxQueued: 0\n").await;
    let mut calls = Vec::new();
    for i in 0..48 {
        // Distinct client ids and addresses, so no rate limit gets involved; unknown ids cost a dummy bcrypt.
        let http = from(&format!("127.0.1.{}", i + 1));
        let server_url = server.url("/oauth2/token");
        calls.push(tokio::spawn(async move {
            let response = http
                .post(server_url)
                .header("authorization", basic(&format!("unknown-{i}"), "x"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body)
        }));
    }
    let mut busy = 0;
    for call in calls {
        let (status, retry_after, body) = call.await.unwrap();
        match status {
            401 => assert_eq!(body["error"], "invalid_client"),
            503 => {
                busy += 1;
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                assert_eq!(retry_after.unwrap(), "1");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        busy > 0,
        "48 concurrent checks on one slot must refuse some"
    );
    let metrics = flyteauth_server::metrics::render();
    assert!(
        metrics.contains("flyteauth_hashing_refused_total"),
        "{metrics}"
    );
    let (status, _, _) = token(&from("127.0.0.1"), &server, APP_ID, APP_SECRET, &[]).await;
    assert_eq!(status, 200, "the bound recovers");
    server.stop().await;
}
