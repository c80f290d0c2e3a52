//! The `flyteauth` binary, black-box: exit codes, one-line errors, files and modes it writes,
//! the embedded default and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flyteauth");

fn flyteauth(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("FLYTEAUTH_CONFIG")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `flyteauth serve` on the embedded default with its own data directory and port, plus `extra` flags.
fn serve_command(data: &Path, port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env_remove("FLYTEAUTH_CONFIG");
    command
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Polls `url` until it answers 200 or the child exits; bounded.
fn wait_healthy(child: &mut Child, url: &str, client: &reqwest::blocking::Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited early with {status}");
        }
        if client
            .get(url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("server did not become healthy at {url}");
}

fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut out).unwrap();
            }
            return (status, out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not stop within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    use base64::Engine;
    let hash = base64::engine::general_purpose::STANDARD.encode(bcrypt::hash("s3cret", 4).unwrap());
    std::fs::write(
        &file,
        r#"
logger: {level: 5}
server:
  httpPort: 9000
auth:
  authorizedUris: [https://flyte.example.com]
  appAuth:
    selfAuthServer:
      staticClients:
        ci-bot:
          id: ci-bot
          client_secret: HASH
          grant_types: [client_credentials]
          scopes: [all]
database:
  postgres:
    host: db.internal
    password: hunter2
"#
        .replace("HASH", &hash),
    )
    .unwrap();
    let out = flyteauth(&["config", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("httpPort: 9000"), "{stdout}");
    assert!(
        stdout.contains("accessTokenLifespan"),
        "defaults filled in: {stdout}"
    );
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(!stdout.contains(&hash), "{stdout}");
}

#[test]
fn config_check_names_the_bad_key_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "auth:\n  appAuth:\n    selfAuthServer:\n      accessTokenLifespan: 3x\n",
    )
    .unwrap();
    let out = flyteauth(&["config", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("accessTokenLifespan"), "{err}");

    let out = flyteauth(&["config", "check", "/nonexistent/flyteauth.yaml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/flyteauth.yaml"));
}

#[test]
fn secrets_init_writes_private_files_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("secrets");
    let out = flyteauth(&["secrets", "init", "--dir", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "cookie_hash_key",
        "cookie_block_key",
        "claim_symmetric_key",
        "token_rsa_key.pem",
    ] {
        assert_eq!(mode(&target.join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(&target), 0o700);
    let pem = std::fs::read_to_string(target.join("token_rsa_key.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let again = flyteauth(&["secrets", "init", "--dir", target.to_str().unwrap()]);
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read_to_string(target.join("token_rsa_key.pem")).unwrap(),
        pem
    );
}

#[test]
fn serve_without_secrets_names_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(
        &file,
        format!(
            "server:\n  httpPort: {}\nsecrets:\n  secrets-prefix: {}/none\ndatabase:\n  sqlite:\n    file: {}/db.sqlite\nflyteauth:\n  listenAddress: 127.0.0.1\n",
            free_port(),
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", file.to_str().unwrap()])
        .env_remove("FLYTE_SECRET_token_rsa_key.pem")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("flyteauth: "), "{err}");
    assert!(
        last.contains("cookie_hash_key")
            || last.contains("token_rsa_key.pem")
            || last.contains("claim_symmetric_key")
            || last.contains("cookie_block_key"),
        "{err}"
    );
}

#[test]
fn embedded_default_serves_prints_usage_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let start = || {
        serve_command(&data, port, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    let mut child = start();
    wait_healthy(&mut child, &format!("{base}/healthz"), &client);
    let secret_file = data.join("default-app.secret");
    assert_eq!(mode(&secret_file), 0o600);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("secrets/token_rsa_key.pem")), 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let secret = secret.trim();
    let token: serde_json::Value = client
        .post(format!("{base}/oauth2/token"))
        .basic_auth("default-app", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let access = token["access_token"].as_str().expect("a token");
    let me: serde_json::Value = client
        .get(format!("{base}/me"))
        .bearer_auth(access)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(me["subject"], "default-app");
    let (status, stdout) = terminate(child);
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(stdout.contains("default-app"), "{stdout}");
    assert!(stdout.contains("curl"), "{stdout}");
    assert!(
        !stdout.contains(secret),
        "the banner must not print the secret"
    );

    // Second start: same client, no banner.
    let mut child = start();
    wait_healthy(&mut child, &format!("{base}/healthz"), &client);
    let (status, stdout) = terminate(child);
    assert!(status.success());
    assert!(!stdout.contains("curl"), "printed only once: {stdout}");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap().trim(),
        secret
    );
}

#[test]
fn self_signed_tls_serves_https_with_a_ca_clients_can_trust() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut child = serve_command(&data, port, &["--self-signed-tls"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ca_file = data.join("tls/ca.pem");
    while !ca_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    wait_healthy(
        &mut child,
        &format!("https://localhost:{port}/healthz"),
        &client,
    );
    let doc: serde_json::Value = client
        .get(format!(
            "https://localhost:{port}/.well-known/oauth-authorization-server"
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        doc["token_endpoint"],
        format!("https://localhost:{port}/oauth2/token")
    );
    let (status, _) = terminate(child);
    assert!(status.success());
}

#[test]
fn logs_never_contain_secrets_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("server.log");
    let port = free_port();
    let mut child = serve_command(&data, port, &["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&mut child, &format!("{base}/healthz"), &client);
    let secret = std::fs::read_to_string(data.join("default-app.secret")).unwrap();
    let secret = secret.trim().to_owned();
    let wrong = "wrong-secret-that-must-not-be-logged";
    let token_request = |password: &str| {
        client
            .post(format!("{base}/oauth2/token"))
            .basic_auth("default-app", Some(password))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .unwrap()
    };
    assert_eq!(token_request(wrong).status(), 401);
    let token: serde_json::Value = token_request(&secret).json().unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    let me = client
        .get(format!("{base}/me"))
        .bearer_auth(&access)
        .send()
        .unwrap();
    assert_eq!(me.status(), 200);
    let tampered = format!("{access}x");
    let me = client
        .get(format!("{base}/me"))
        .bearer_auth(&tampered)
        .send()
        .unwrap();
    assert_eq!(me.status(), 401);
    let (status, _) = terminate(child);
    assert!(status.success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("credential event"),
        "audit lines are logged: {log}"
    );
    for needle in [secret.as_str(), wrong, access.as_str()] {
        assert!(!log.contains(needle), "log leaks a credential");
    }
    let signature = access.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "log leaks a token signature");
}
