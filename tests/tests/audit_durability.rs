//! The audit trail keeps up with the tokens it vouches for.
//!
//! * The `flyteauth` binary, on a SQLite file, serves client-credentials tokens to eight clients as fast as they
//!   can ask; it is killed with SIGKILL while their requests are in flight. Every token a client received must
//!   have its `token.issued` event in the database afterwards: an event is committed before its token is sent.
//! * When the trail cannot be written, the token endpoint withholds the token and answers 503
//!   `temporarily_unavailable`, and recovers once the database does.
//!
//! Bounded: the load runs for [`MIN_LOAD`] (longer only until [`MIN_TOKENS`] were received, at most
//! [`MAX_LOAD`]); everything listens on 127.0.0.1; the server process is killed when the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flyteauth_store::{AuditFilter, NewApp};
use flyteauth_tests::{APP_ID, APP_SECRET, TestServer, config_yaml, flyteauth_bin, sdk_basic};
use serde_json::Value;
use sqlx::{Connection as _, Executor as _};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent clients.
const CLIENTS: usize = 8;
/// How long they ask before the kill, at least.
const MIN_LOAD: Duration = Duration::from_secs(2);
/// Tokens received before the kill, at least: the check must not pass on a handful.
const MIN_TOKENS: usize = 300;
/// The longest the load may take to reach [`MIN_TOKENS`].
const MAX_LOAD: Duration = Duration::from_secs(60);
/// The app the clients are; its generated secret is checked with one SHA-256, so secrets cost nothing.
const CLIENT_ID: &str = "durable-bot";

/// The server process; killed when dropped, so a failing test leaves nothing running.
struct ServerProcess {
    child: std::process::Child,
    base: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `jti` of a JWT, read from its payload.
fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().expect("a jti").to_owned()
}

/// Asks for tokens until the server stops answering; returns the `jti` of every token received.
async fn ask_until_gone(base: String, secret: String, received: Arc<Mutex<Vec<String>>>) -> usize {
    let client = reqwest::Client::new();
    let mut failures = 0;
    loop {
        let response = client
            .post(format!("{base}/oauth2/token"))
            .header("authorization", sdk_basic(CLIENT_ID, &secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        let Ok(response) = response else {
            // The server is gone (or going): this request was in flight or could not connect.
            return failures;
        };
        if response.status() != 200 {
            failures += 1;
            continue;
        }
        let Ok(body) = response.json::<Value>().await else {
            return failures;
        };
        let token = body["access_token"].as_str().expect("an access token");
        received.lock().unwrap().push(jti_of(token));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_token_received_before_a_sigkill_has_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let port = flyteauth_tests::cli::free_port();
    flyteauth_core::secrets::write_fresh_set(&dir.path().join("secrets")).unwrap();
    let config = dir.path().join("flyteauth.yaml");
    std::fs::write(&config, config_yaml(port, dir.path())).unwrap();
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("flyteauth.db").display()
    );

    // The app exists before the server starts, as it would after `flyteauth apps create`.
    let secret = flyteauth_core::clients::generate_secret();
    {
        let store = flyteauth_store::connect(&database).await.unwrap();
        store
            .create_app(&NewApp {
                client_id: CLIENT_ID.into(),
                client_name: CLIENT_ID.into(),
                organization: String::new(),
                secret_hash: flyteauth_core::clients::hash_generated_secret(&secret).encode(),
                grant_types: vec!["client_credentials".into()],
                scopes: vec!["all".into()],
                audience: vec![],
                redirect_uris: vec![],
                created_by: "test".into(),
                created_at: 1,
            })
            .await
            .unwrap();
    }

    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(flyteauth_bin())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("FLYTEAUTH_CONFIG")
        .env_remove("FLYTEAUTH_DATA_DIR")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = ServerProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    loop {
        if let Ok(response) = reqwest::get(format!("{}/healthz", server.base)).await
            && response.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let received = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(ask_until_gone(
                server.base.clone(),
                secret.clone(),
                received.clone(),
            ))
        })
        .collect();
    let load = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let count = received.lock().unwrap().len();
        if load.elapsed() >= MIN_LOAD && count >= MIN_TOKENS {
            break;
        }
        assert!(
            load.elapsed() < MAX_LOAD,
            "only {count} tokens in {MAX_LOAD:?}"
        );
        assert!(
            clients.iter().all(|c| !c.is_finished()),
            "a client stopped before the kill"
        );
    }
    // Eight clients are asking right now: some of their requests are being answered as the process dies.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let killed_after = load.elapsed();
    let mut refused = 0;
    for client in clients {
        refused += tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("a client did not notice the kill")
            .unwrap();
    }
    assert_eq!(refused, 0, "token requests refused under load");

    let received = received.lock().unwrap().clone();
    let store = flyteauth_store::connect(&database).await.unwrap();
    let events = store
        .list_audit(
            &AuditFilter {
                kind: Some("token.issued".into()),
                since: None,
            },
            u32::MAX,
        )
        .await
        .unwrap();
    let recorded: HashSet<&str> = events
        .iter()
        .filter_map(|e| e.detail["jti"].as_str())
        .collect();
    let missing: Vec<&String> = received
        .iter()
        .filter(|jti| !recorded.contains(jti.as_str()))
        .collect();
    eprintln!(
        "killed after {killed_after:?}: {} tokens received, {} token.issued events recorded",
        received.len(),
        recorded.len()
    );
    assert!(received.len() >= MIN_TOKENS, "{}", received.len());
    assert_eq!(
        received.iter().collect::<HashSet<_>>().len(),
        received.len(),
        "a jti was handed out twice"
    );
    assert!(
        missing.is_empty(),
        "{} of {} received tokens have no token.issued event, e.g. {:?}",
        missing.len(),
        received.len(),
        missing.first()
    );
}

/// `POST /oauth2/token` for the harness's [`APP_ID`]: status, body and `Retry-After`.
async fn token_answer(server: &TestServer) -> (u16, Value, Option<String>) {
    let response = flyteauth_tests::token_request(server, APP_ID, APP_SECRET, "").await;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap();
    (status, body, retry_after)
}

#[tokio::test]
async fn a_token_whose_event_cannot_be_written_is_withheld() {
    let server = TestServer::start().await;
    let (status, _, _) = token_answer(&server).await;
    assert_eq!(status, 200);

    // The trail's table goes away behind the server's back: every write of an event fails.
    let file = server.dir.path().join("flyteauth.db");
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    db.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
        .await
        .unwrap();
    let asked = Instant::now();
    let (status, body, retry_after) = token_answer(&server).await;
    let waited = asked.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(retry_after.is_some());
    // The bounded wait: the writer's five seconds, not the client's timeout.
    assert!(waited >= Duration::from_secs(4), "{waited:?}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flyteauth_audit_write_failures_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_default();
    assert!(failures >= 1.0, "{metrics}");

    // Back: the writer's retries get through, tokens are handed out again, and the withheld token's event is
    // written after all (the trail may name a token nobody received, never the other way round).
    db.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        .await
        .unwrap();
    let back = Instant::now();
    loop {
        let (status, body, _) = token_answer(&server).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(back.elapsed() < Duration::from_secs(20), "no recovery");
    }
    let issued = server
        .state
        .store
        .list_audit(
            &AuditFilter {
                kind: Some("token.issued".into()),
                since: None,
            },
            100,
        )
        .await
        .unwrap();
    assert!(issued.len() >= 3, "{issued:?}");
    db.close().await.unwrap();
    server.stop().await;
}
