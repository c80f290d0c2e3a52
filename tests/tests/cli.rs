//! The `flyte` binary against a real flyteauth, as a person and a script meet it: every auth mode (PKCE with a
//! scripted person as the browser, device flow with a scripted approval, client secret from a file and from a
//! variable, API key, external command), the token cache and its refresh, a revoked login, logout, the exit
//! codes of failures, hand-over to the Python `flyte`, and config files. No run may print a secret or a token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use flyteauth_tests::browser::url_encode;
use flyteauth_tests::cli::{
    CliHome, Run, Running, ServerSetup, approve_device, flyte_bin, free_port, start_server,
};
use flyteauth_tests::{APP_ID, APP_SECRET, TestServer};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The keyring service / cache key of `server`: `host:port`.
fn service(server: &TestServer) -> String {
    format!("127.0.0.1:{}", server.addr.port())
}

/// A server whose public client redirects to a port of this test, with alice's account.
async fn server_with_alice(setup: ServerSetup<'_>) -> (TestServer, flyteauth_store::UserRecord) {
    let server = start_server(&setup).await;
    let alice = server
        .add_user("alice", flyteauth_tests::cli::PASSWORD)
        .await;
    (server, alice)
}

/// An API key as the `flyte` SDK reads it: base64 of `host:client_id:client_secret:org`.
fn api_key(host: &str, client_id: &str, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{host}:{client_id}:{secret}:None"))
}

/// Every string anywhere in `value`.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The values of every key called `key` anywhere in `value`.
fn values_of<'a>(value: &'a Value, key: &str) -> Vec<&'a Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(|v| values_of(v, key)).collect(),
        Value::Object(map) => {
            let mut found: Vec<&Value> = map.get(key).into_iter().collect();
            found.extend(map.values().flat_map(|v| values_of(v, key)));
            found
        }
        _ => Vec::new(),
    }
}

/// Asserts the `Signed in to SERVICE as NAME (SUBJECT)` line of `flyte login`.
fn assert_signed_in(run: &Run, service: &str, name: &str, subject: &str) {
    let expected = format!("Signed in to {service} as {name} ({subject})");
    assert!(
        run.stdout.lines().any(|l| l.trim() == expected),
        "{}: expected the line {expected:?} on stdout, got:\n{}\n--- stderr\n{}",
        run.what,
        run.stdout,
        run.stderr
    );
}

/// Asserts that `whoami -o json` printed `subject` (and, if given, `preferred_username`).
fn assert_whoami(run: &Run, subject: &str, preferred_username: Option<&str>) {
    run.ok();
    let info = run.json();
    assert_eq!(info["subject"], subject, "{}", run.stdout);
    if let Some(name) = preferred_username {
        assert_eq!(info["preferred_username"], name, "{}", run.stdout);
    }
}

/// Logs alice in with PKCE (the scripted person as `BROWSER`); returns the run and the cached tokens.
async fn pkce_login(
    home: &mut CliHome,
    server: &TestServer,
    alice: &flyteauth_store::UserRecord,
) -> (Run, String, String) {
    home.use_person_browser("alice");
    let run = home.run(&["login", "-v"]).await;
    run.ok();
    assert_signed_in(&run, &service(server), "alice", &alice.subject);
    // Regression: `-v` logs carried colour codes into pipes.
    assert!(
        run.stderr.contains("DEBUG") && !run.stderr.contains('\u{1b}'),
        "-v logs to a pipe must be plain text:\n{}",
        run.stderr
    );
    let (access, refresh) = home.cached_tokens(&service(server)).unwrap_or_else(|| {
        panic!(
            "no cache entry for {} after login: {}",
            service(server),
            home.cache()
        )
    });
    let refresh = refresh.expect("a PKCE login caches a refresh token");
    run.assert_no_secret(&[("access token", &access), ("refresh token", &refresh)]);
    home.use_recording_browser();
    (run, access, refresh)
}

#[tokio::test]
async fn pkce_login_with_a_scripted_person_then_whoami_uses_the_cache() {
    let port = free_port();
    let (server, alice) = server_with_alice(ServerSetup {
        redirect_port: port,
        ..ServerSetup::default()
    })
    .await;
    let mut home = CliHome::new();
    home.write_config(&server, "");
    let (login, access, refresh) = pkce_login(&mut home, &server, &alice).await;

    // The browser was opened once, on the server's authorize endpoint, with the advertised redirect URI.
    let calls = home.browser_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].starts_with(&server.url("/oauth2/authorize?")),
        "{}",
        calls[0]
    );
    let opened = url::Url::parse(&calls[0]).unwrap();
    let query: std::collections::HashMap<String, String> =
        opened.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("redirect_uri").map(String::as_str),
        Some(format!("http://localhost:{port}/callback").as_str()),
        "{}",
        calls[0]
    );
    assert_eq!(query.get("client_id").map(String::as_str), Some("flytectl"));
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(
        login
            .stderr
            .contains("Opening your browser to sign in. If it does not open, visit: "),
        "{}",
        login.stderr
    );
    assert!(
        home.person_log().contains("RESULT: ok"),
        "{}",
        home.person_log()
    );

    // The cache file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.cache_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "cache file mode {mode:o}");

    // The next command uses the cache: no browser.
    let whoami = home.run(&["whoami", "-o", "json", "-v"]).await;
    assert_whoami(&whoami, &alice.subject, Some("alice"));
    let tokens = home.cached_tokens(&service(&server)).unwrap();
    whoami.assert_no_secret(&[
        ("access token", &access),
        ("refresh token", &refresh),
        ("cached access token", &tokens.0),
        (
            "cached refresh token",
            tokens.1.as_deref().unwrap_or_default(),
        ),
    ]);
    assert_eq!(home.browser_calls().len(), 1, "whoami opened the browser");

    // The table form.
    let table = home.run(&["whoami"]).await;
    table.ok();
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.trim() == format!("subject: {}", alice.subject)),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.trim() == "preferred_username: alice"),
        "{}",
        table.stdout
    );
    assert_eq!(home.browser_calls().len(), 1, "whoami opened the browser");

    // API keys as alice: listing works; minting one refuses, in one line, a server whose URL is not https.
    let listed = home.run(&["get", "api-key", "-o", "json", "-v"]).await;
    listed.ok();
    listed.json();
    listed.assert_no_secret(&[("access token", &tokens.0)]);
    let minted = home.run(&["create", "api-key", "--name", "ci"]).await;
    minted.expect_code(1);
    assert!(
        minted.one_stderr_line().contains("https"),
        "{}",
        minted.stderr
    );
    assert!(minted.stdout.is_empty(), "{}", minted.stdout);
    assert_eq!(home.browser_calls().len(), 1, "api-key opened the browser");

    // Logout removes the entry; a second logout says so.
    let logout = home.run(&["logout", "-v"]).await;
    logout.ok();
    logout.assert_no_secret(&[("access token", &tokens.0)]);
    assert!(
        logout
            .stdout
            .lines()
            .any(|l| l.trim() == format!("Signed out of {}", service(&server))),
        "{}",
        logout.stdout
    );
    assert!(
        home.cached_tokens(&service(&server)).is_none(),
        "{}",
        home.cache()
    );
    // The logout also ended the login at the server: its refresh token is dead.
    let refreshed = reqwest::Client::new()
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(format!(
            "grant_type=refresh_token&client_id=flytectl&refresh_token={}",
            url_encode(tokens.1.as_deref().unwrap())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 400);
    let body: Value = refreshed.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let again = home.run(&["logout"]).await;
    again.ok();
    assert!(
        again
            .stdout
            .lines()
            .any(|l| l.trim() == format!("Not signed in to {}", service(&server))),
        "{}",
        again.stdout
    );
    assert_eq!(home.browser_calls().len(), 1, "logout opened the browser");
    server.stop().await;
}

#[tokio::test]
async fn device_flow_with_a_scripted_approval() {
    let (server, alice) = server_with_alice(ServerSetup {
        redirect_port: free_port(),
        flyteauth_extra: "  device:\n    interval: 1s\n",
        ..ServerSetup::default()
    })
    .await;
    let home = CliHome::new();
    home.write_config(&server, "");
    let mut login = Running::start(&home, &["login", "--auth-type", "headless", "-v"]);
    let url = login
        .wait_for_line("To sign in, open ", Duration::from_secs(30))
        .await;
    let url = url.trim().to_owned();
    assert!(url.starts_with(&server.url("/")), "{url}");
    assert!(url.contains("user_code="), "{url}");
    let (approved, log) = approve_device(&home, &url, "alice").await;
    assert!(approved, "the scripted person could not approve:\n{log}");
    let run = login.finish(Duration::from_secs(60)).await;
    run.ok();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("and confirm the code ")),
        "{}",
        run.stderr
    );
    assert_signed_in(&run, &service(&server), "alice", &alice.subject);
    assert!(
        home.browser_calls().is_empty(),
        "{:?}",
        home.browser_calls()
    );

    let (access, refresh) = home.cached_tokens(&service(&server)).unwrap();
    let refresh = refresh.expect("a device login caches a refresh token");
    run.assert_no_secret(&[("access token", &access), ("refresh token", &refresh)]);

    let whoami = home.run(&["whoami", "-o", "json", "-v"]).await;
    assert_whoami(&whoami, &alice.subject, Some("alice"));
    whoami.assert_no_secret(&[("access token", &access), ("refresh token", &refresh)]);
    assert!(
        home.browser_calls().is_empty(),
        "{:?}",
        home.browser_calls()
    );
    server.stop().await;
}

#[tokio::test]
async fn client_secret_from_a_file() {
    let server = start_server(&ServerSetup::default()).await;
    let home = CliHome::new();
    let secret_file = home.path("app-secret");
    // Written as an editor would, with a final newline, which is not part of the secret.
    std::fs::write(&secret_file, format!("{APP_SECRET}\n")).unwrap();
    home.write_config(
        &server,
        &format!(
            "  authType: ClientSecret\n  clientId: {APP_ID}\n  clientSecretLocation: {}\n",
            secret_file.display()
        ),
    );
    let whoami = home.run(&["whoami", "-o", "json", "-v"]).await;
    assert_whoami(&whoami, APP_ID, None);
    whoami.assert_no_secret(&[("client secret", APP_SECRET)]);
    // Client-credentials tokens are kept in memory only.
    assert!(
        home.cached_tokens(&service(&server)).is_none(),
        "{}",
        home.cache()
    );
    assert!(home.browser_calls().is_empty());

    let login = home.run(&["login", "-v"]).await;
    login.ok();
    login.assert_no_secret(&[("client secret", APP_SECRET)]);
    let line = login
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("Signed in to {} as ", service(&server))))
        .unwrap_or_else(|| panic!("no Signed in line: {}", login.stdout));
    assert!(line.ends_with(&format!("({APP_ID})")), "{line}");

    // A wrong secret is an authentication failure: exit 3, one line, the secret not in it.
    let wrong = "not-the-secret-1234";
    std::fs::write(&secret_file, wrong).unwrap();
    let refused = home.run(&["whoami"]).await;
    refused.expect_code(3);
    assert!(
        refused.one_stderr_line().starts_with("error: "),
        "{}",
        refused.stderr
    );
    refused.assert_no_secret(&[("wrong secret", wrong)]);
    let verbose = home.run(&["whoami", "-v"]).await;
    verbose.expect_code(3);
    verbose.assert_no_secret(&[("wrong secret", wrong)]);

    // A missing secret file is a configuration error.
    std::fs::remove_file(&secret_file).unwrap();
    let missing = home.run(&["whoami"]).await;
    missing.expect_code(5);
    missing.one_stderr_line();
    server.stop().await;
}

#[tokio::test]
async fn client_secret_from_an_env_var_of_an_app_made_by_the_server_cli() {
    let server = start_server(&ServerSetup::default()).await;
    let out = server.cli("apps", &["create", "CLI Bot"]).await;
    assert!(
        out.status.success(),
        "flyteauth apps create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .trim()
            .to_owned()
    };
    let (client_id, secret) = (field("client_id"), field("client_secret"));
    let mut home = CliHome::new();
    // No authType: a set clientSecretEnvVar variable selects ClientSecret by itself.
    home.write_config(
        &server,
        &format!("  clientId: {client_id}\n  clientSecretEnvVar: CLI_BOT_SECRET\n"),
    );
    home.env.push(("CLI_BOT_SECRET".into(), secret.clone()));
    let whoami = home.run(&["whoami", "-o", "json", "-v"]).await;
    assert_whoami(&whoami, &client_id, None);
    whoami.assert_no_secret(&[("client secret", &secret)]);
    let table = home.run(&["whoami", "-vv"]).await;
    table.ok();
    table.assert_no_secret(&[("client secret", &secret)]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.trim() == format!("subject: {client_id}")),
        "{}",
        table.stdout
    );
    assert!(
        home.browser_calls().is_empty(),
        "{:?}",
        home.browser_calls()
    );

    // Deleting an API key off a terminal needs --yes.
    let delete = home.run(&["delete", "api-key", "some-app"]).await;
    delete.expect_code(2);
    assert!(
        delete
            .one_stderr_line()
            .contains("pass --yes to delete without a prompt"),
        "{}",
        delete.stderr
    );
    server.stop().await;
}

#[tokio::test]
async fn an_api_key_for_127_0_0_1_asks_https_on_port_443_and_fails_in_one_line() {
    assert!(
        std::net::TcpStream::connect("127.0.0.1:443").is_err(),
        "something listens on 127.0.0.1:443; this test needs the port closed"
    );
    let mut home = CliHome::new();
    home.pass_config = false;
    let key = api_key("127.0.0.1", APP_ID, APP_SECRET);
    let flag = home.run(&["--api-key", &key, "whoami"]).await;
    flag.expect_code(4);
    let line = flag.one_stderr_line();
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains("https://127.0.0.1"), "{line}");
    flag.assert_no_secret(&[("API key", &key), ("client secret", APP_SECRET)]);

    home.env.push(("FLYTE_API_KEY".into(), key.clone()));
    let env = home.run(&["whoami"]).await;
    env.expect_code(4);
    let line = env.one_stderr_line();
    assert!(line.contains("https://127.0.0.1"), "{line}");
    let verbose = home.run(&["whoami", "-vv"]).await;
    verbose.expect_code(4);
    verbose.assert_no_secret(&[("API key", &key), ("client secret", APP_SECRET)]);
    assert!(
        verbose.stderr.contains("https://127.0.0.1"),
        "{}",
        verbose.stderr
    );

    // A string that is not a key is a configuration error.
    let garbage = home.run(&["--api-key", "not-a-key", "whoami"]).await;
    garbage.expect_code(5);
    garbage.one_stderr_line();
}

#[tokio::test]
async fn an_api_key_through_an_endpoint_override_signs_in_and_a_wrong_secret_exits_3() {
    let server = start_server(&ServerSetup::default()).await;
    let mut home = CliHome::new();
    home.pass_config = false;
    let endpoint = service(&server);

    let key = api_key("127.0.0.1", APP_ID, APP_SECRET);
    home.env.push(("FLYTE_API_KEY".into(), key.clone()));
    let ok = home
        .run(&[
            "--endpoint",
            &endpoint,
            "--insecure",
            "whoami",
            "-o",
            "json",
            "-vv",
        ])
        .await;
    assert_whoami(&ok, APP_ID, None);
    ok.assert_no_secret(&[("API key", &key), ("client secret", APP_SECRET)]);

    let wrong_secret = "wrong-secret-5678";
    let wrong = api_key("127.0.0.1", APP_ID, wrong_secret);
    home.env.clear();
    let refused = home
        .run(&[
            "--api-key",
            &wrong,
            "--endpoint",
            &endpoint,
            "--insecure",
            "whoami",
        ])
        .await;
    refused.expect_code(3);
    assert!(
        refused.one_stderr_line().starts_with("error: "),
        "{}",
        refused.stderr
    );
    refused.assert_no_secret(&[("API key", &wrong), ("client secret", wrong_secret)]);
    let verbose = home
        .run(&[
            "--api-key",
            &wrong,
            "--endpoint",
            &endpoint,
            "--insecure",
            "whoami",
            "-v",
        ])
        .await;
    verbose.expect_code(3);
    verbose.assert_no_secret(&[("API key", &wrong), ("client secret", wrong_secret)]);
    assert!(
        home.browser_calls().is_empty(),
        "{:?}",
        home.browser_calls()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_external_command_prints_a_real_token() {
    let server = start_server(&ServerSetup::default()).await;
    let token = server.app_token().await;
    let home = CliHome::new();
    let token_file = home.path("token.txt");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    home.write_config(
        &server,
        &format!(
            "  authType: ExternalCommand\n  command: [\"cat\", \"{}\"]\n",
            token_file.display()
        ),
    );
    let whoami = home.run(&["whoami", "-o", "json", "-v"]).await;
    assert_whoami(&whoami, APP_ID, None);
    whoami.assert_no_secret(&[("access token", &token)]);
    // An external command's token is cached (access token only).
    let (cached, refresh) = home
        .cached_tokens(&service(&server))
        .unwrap_or_else(|| panic!("no cache entry: {}", home.cache()));
    assert_eq!(cached, token);
    assert_eq!(refresh, None);
    assert!(home.browser_calls().is_empty());

    // A command that fails is one line, exit 1 (not an authentication problem of the server's).
    let fails = CliHome::new();
    fails.write_config(
        &server,
        "  authType: ExternalCommand\n  command: [\"sh\", \"-c\", \"exit 9\"]\n",
    );
    let run = fails.run(&["whoami"]).await;
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.one_stderr_line().starts_with("error: "),
        "{}",
        run.stderr
    );
    server.stop().await;
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_without_the_browser() {
    let (server, alice) = server_with_alice(ServerSetup {
        redirect_port: free_port(),
        access_token_lifespan: Some("2s"),
        ..ServerSetup::default()
    })
    .await;
    let mut home = CliHome::new();
    home.write_config(&server, "  tokenRefreshWindow: 1s\n");
    let (_, access, refresh) = pkce_login(&mut home, &server, &alice).await;
    assert_eq!(home.browser_calls().len(), 1);
    // Past the access token's expiry (the server's clock counts whole seconds).
    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let whoami = home.run(&["whoami", "-o", "json", "-v"]).await;
    assert_whoami(&whoami, &alice.subject, Some("alice"));
    assert_eq!(
        home.browser_calls().len(),
        1,
        "the refresh opened the browser"
    );
    let (new_access, new_refresh) = home.cached_tokens(&service(&server)).unwrap();
    assert_ne!(
        new_access, access,
        "the cache still holds the expired access token"
    );
    let new_refresh = new_refresh.expect("the refreshed entry keeps a refresh token");
    whoami.assert_no_secret(&[
        ("old access token", &access),
        ("old refresh token", &refresh),
        ("new access token", &new_access),
        ("new refresh token", &new_refresh),
    ]);
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_refresh_token_asks_to_log_in_again_in_one_line() {
    let (server, alice) = server_with_alice(ServerSetup {
        redirect_port: free_port(),
        access_token_lifespan: Some("2s"),
        ..ServerSetup::default()
    })
    .await;
    let mut home = CliHome::new();
    home.write_config(&server, "  tokenRefreshWindow: 1s\n");
    let (_, access, refresh) = pkce_login(&mut home, &server, &alice).await;

    let response = reqwest::Client::new()
        .post(server.url("/oauth2/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&token_type_hint=refresh_token&client_id=flytectl",
            url_encode(&refresh)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let whoami = home.run(&["whoami"]).await;
    whoami.expect_code(3);
    let line = whoami.one_stderr_line();
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains("please log in again"), "{line}");
    whoami.assert_no_secret(&[("access token", &access), ("refresh token", &refresh)]);
    assert_eq!(
        home.browser_calls().len(),
        1,
        "the failed refresh opened the browser"
    );
    // The dead login is forgotten, so the next command starts a fresh one.
    assert!(
        home.cached_tokens(&service(&server)).is_none(),
        "{}",
        home.cache()
    );
    server.stop().await;
}

#[tokio::test]
async fn logout_removes_only_its_own_cache_entry() {
    let server = start_server(&ServerSetup::default()).await;
    let home = CliHome::new();
    home.write_config(&server, "");
    let other = "flyte.example.com";
    let cache = serde_json::json!({
        service(&server): {"access_token": "cached-access-abc", "refresh_token": "cached-refresh-def"},
        other: {"access_token": "other-access", "refresh_token": null},
    });
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(home.cache_file())
            .unwrap();
        file.write_all(cache.to_string().as_bytes()).unwrap();
    }
    let run = home.run(&["logout", "-v"]).await;
    run.ok();
    run.assert_no_secret(&[
        ("access token", "cached-access-abc"),
        ("refresh token", "cached-refresh-def"),
    ]);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.trim() == format!("Signed out of {}", service(&server))),
        "{}",
        run.stdout
    );
    assert!(
        home.cached_tokens(&service(&server)).is_none(),
        "{}",
        home.cache()
    );
    assert_eq!(
        home.cached_tokens(other),
        Some(("other-access".to_owned(), None)),
        "{}",
        home.cache()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_endpoint_exits_4_in_one_line() {
    let home = CliHome::new();
    let port = free_port();
    home.write_config_for(&format!("127.0.0.1:{port}"), "");
    let run = home.run(&["whoami"]).await;
    run.expect_code(4);
    let line = run.one_stderr_line();
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(
        home.browser_calls().is_empty(),
        "{:?}",
        home.browser_calls()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[tokio::test]
async fn a_config_without_an_endpoint_exits_5() {
    let home = CliHome::new();
    std::fs::write(home.config_file(), "admin:\n  insecure: true\n").unwrap();
    let run = home.run(&["whoami"]).await;
    run.expect_code(5);
    let line = run.one_stderr_line();
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains("endpoint"), "{line}");

    // Nothing at all: no file in any default place, no variable.
    let mut bare = CliHome::new();
    bare.pass_config = false;
    let run = bare.run(&["whoami"]).await;
    run.expect_code(5);
    run.one_stderr_line();

    // A file named with -c that does not exist is a configuration error too.
    let run = bare.run(&["-c", "/nonexistent/flyte.yaml", "whoami"]).await;
    run.expect_code(5);
    assert!(
        run.one_stderr_line().contains("/nonexistent/flyte.yaml"),
        "{}",
        run.stderr
    );
}

const NEEDS_SDK: &str = "error: 'flyte run' needs the Python flyte SDK (pip install flyte); put its flyte on PATH after this one";

#[tokio::test]
async fn an_unknown_command_without_another_flyte_exits_127_in_one_line() {
    let mut home = CliHome::new();
    home.pass_config = false;
    let run = home.run(&["run", "hello.py", "main"]).await;
    run.expect_code(127);
    assert_eq!(run.one_stderr_line(), NEEDS_SDK);

    // A second copy of this very executable on PATH is not "another flyte".
    let own = home.path("own-bin");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::symlink(flyte_bin(), own.join("flyte")).unwrap();
    let mut command = home.command(&["run", "hello.py"]);
    command.env(
        "PATH",
        format!("{}:{}", own.display(), flyteauth_tests::cli::clean_path()),
    );
    let run = home.run_command(command, &["run", "hello.py"]).await;
    run.expect_code(127);
    assert_eq!(run.one_stderr_line(), NEEDS_SDK);

    // An unknown subject of a known verb is handed over too.
    let run = home.run(&["get", "project"]).await;
    run.expect_code(127);
    assert!(
        run.one_stderr_line().contains("needs the Python flyte SDK"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn an_unknown_command_is_handed_to_the_next_flyte_on_path() {
    use std::os::unix::fs::PermissionsExt;
    let mut home = CliHome::new();
    home.pass_config = false;
    let own = home.path("own-bin");
    let python = home.path("python-bin");
    std::fs::create_dir(&own).unwrap();
    std::fs::create_dir(&python).unwrap();
    std::os::unix::fs::symlink(flyte_bin(), own.join("flyte")).unwrap();
    let fake = python.join("flyte");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"args: $*\"\necho \"handed over: $FLYTE_RS_HANDED_OVER\"\necho \"marker: $HANDOVER_MARKER\"\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:{}",
        own.display(),
        python.display(),
        flyteauth_tests::cli::clean_path()
    );
    home.env.push(("PATH".into(), path));
    home.env.push(("HANDOVER_MARKER".into(), "kept".into()));
    let args = ["run", "--remote", "hello.py", "main"];
    let run = home.run(&args).await;
    run.expect_code(7);
    assert_eq!(
        run.stdout, "args: run --remote hello.py main\nhanded over: 1\nmarker: kept\n",
        "stderr: {}",
        run.stderr
    );

    // Already handed over once: no loop.
    home.env.push(("FLYTE_RS_HANDED_OVER".into(), "1".into()));
    let run = home.run(&args).await;
    run.expect_code(127);
    assert_eq!(run.one_stderr_line(), NEEDS_SDK);
}

#[tokio::test]
async fn create_config_writes_a_file_that_get_config_reads_back() {
    let mut home = CliHome::new();
    home.pass_config = false;
    let secret_path = home.path("secret-file");
    let secret_location = secret_path.to_str().unwrap();
    let created = home
        .run(&[
            "create",
            "config",
            "--endpoint",
            "127.0.0.1:30080",
            "--insecure",
            "--auth-type",
            "client-secret",
            "--client-id",
            "my-app",
            "--client-secret-location",
            secret_location,
            "-p",
            "flytesnacks",
            "-d",
            "development",
        ])
        .await;
    created.ok();
    let line = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Config file written to "))
        .unwrap_or_else(|| panic!("no 'Config file written to' line: {}", created.stdout));
    assert!(line.trim().ends_with(".flyte/config.yaml"), "{line}");
    let written = home.work_dir().join(".flyte/config.yaml");
    assert!(written.is_file(), "{} was not written", written.display());

    // Found by discovery from the working directory.
    std::fs::write(&secret_path, "top-secret-value\n").unwrap();
    let got = home.run(&["get", "config", "-o", "json", "-v"]).await;
    got.ok();
    got.assert_no_secret(&[("client secret", "top-secret-value")]);
    let config = got.json();
    let config_file = config["config_file"]
        .as_str()
        .unwrap_or_else(|| panic!("no config_file: {config}"));
    assert!(
        Path::new(config_file).ends_with(".flyte/config.yaml"),
        "{config_file}"
    );
    let all = strings(&config);
    assert!(
        all.iter().any(|s| s.contains("127.0.0.1:30080")),
        "endpoint missing: {config}"
    );
    assert!(
        all.iter().any(|s| s == "my-app"),
        "client id missing: {config}"
    );
    assert!(
        values_of(&config, "insecure").contains(&&Value::Bool(true)),
        "insecure missing: {config}"
    );
    assert!(
        all.iter().any(|s| s.contains("flytesnacks")),
        "project missing: {config}"
    );

    // Not overwritten without --force.
    let again = home
        .run(&["create", "config", "--endpoint", "other.example.com"])
        .await;
    again.expect_code(1);
    again.one_stderr_line();
    assert!(
        std::fs::read_to_string(&written)
            .unwrap()
            .contains("127.0.0.1:30080"),
        "the file was overwritten"
    );
    let forced = home
        .run(&[
            "create",
            "config",
            "--endpoint",
            "other.example.com",
            "--force",
        ])
        .await;
    forced.ok();
    let got = home.run(&["get", "config", "-o", "json"]).await;
    got.ok();
    assert!(
        strings(&got.json())
            .iter()
            .any(|s| s.contains("other.example.com")),
        "{}",
        got.stdout
    );

    // Anywhere with -o, read back with -c.
    let elsewhere = home.path("elsewhere.yaml");
    let elsewhere = elsewhere.to_str().unwrap();
    let created = home
        .run(&[
            "create",
            "config",
            "--endpoint",
            "dns:///flyte.example.org:8089",
            "-o",
            elsewhere,
        ])
        .await;
    created.ok();
    assert!(
        created
            .stdout
            .contains(&format!("Config file written to {elsewhere}")),
        "{}",
        created.stdout
    );
    let got = home
        .run(&["-c", elsewhere, "get", "config", "-o", "json"])
        .await;
    got.ok();
    let config = got.json();
    assert_eq!(config["config_file"], elsewhere, "{config}");
    assert!(
        strings(&config)
            .iter()
            .any(|s| s.contains("flyte.example.org:8089")),
        "{config}"
    );
}

#[tokio::test]
async fn help_version_and_completions_are_the_cli_s_own() {
    let mut home = CliHome::new();
    home.pass_config = false;
    let version = home.run(&["--version"]).await;
    version.ok();
    assert!(version.stdout.starts_with("flyte "), "{}", version.stdout);
    let help = home.run(&["--help"]).await;
    help.ok();
    for command in [
        "login",
        "logout",
        "whoami",
        "create",
        "get",
        "delete",
        "completion",
    ] {
        assert!(
            help.stdout.contains(command),
            "{command} missing:\n{}",
            help.stdout
        );
    }
    let bash = home.run(&["completion", "bash"]).await;
    bash.ok();
    assert!(bash.stdout.contains("flyte"), "{}", bash.stdout);
    // A bad flag value is a usage error.
    let usage = home.run(&["--auth-type", "nonsense", "whoami"]).await;
    usage.expect_code(2);
}
