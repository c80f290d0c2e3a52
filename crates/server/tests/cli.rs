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

/// Writes a fresh secret set into `<dir>/secrets` and returns that directory.
fn secrets_in(dir: &Path) -> std::path::PathBuf {
    let secrets = dir.join("secrets");
    let out = flyteauth(&["secrets", "init", "--dir", secrets.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    secrets
}

/// The last line of stderr: the one-line error of a failed command.
fn last_line(o: &Output) -> String {
    stderr(o)
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    use base64::Engine;
    let hash = base64::engine::general_purpose::STANDARD.encode(bcrypt::hash("s3cret", 4).unwrap());
    let secrets = secrets_in(dir.path());
    std::fs::write(
        &file,
        r#"
logger: {level: 5}
secrets:
  secrets-prefix: SECRETS
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
        .replace("HASH", &hash)
        .replace("SECRETS", secrets.to_str().unwrap()),
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
fn a_missing_config_file_prints_its_os_error_once_not_twice() {
    let commands: [&[&str]; 2] = [
        &["serve", "--config", "/nonexistent/flyteauth.yaml"],
        &["config", "check", "/nonexistent/flyteauth.yaml"],
    ];
    for args in commands {
        let out = flyteauth(args);
        assert_one_line_failure(&out, "/nonexistent/flyteauth.yaml");
        let err = stderr(&out);
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{args:?}: {err}"
        );
    }
}

#[test]
fn config_check_reports_a_yaml_syntax_error_at_its_line_not_as_a_type_error_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    let cases = [
        // An over-indented key on line 7.
        (
            "server:\n  httpPort: 9000\nauth:\n  appAuth:\n    authServerType: Self\n  authorizedUris: \
             [https://flyte.example.com]\n   userAuth: {}\n",
            "YAML syntax error at line 7, column 4: ",
        ),
        // A quote opened on line 7 and never closed; the parser notices on line 8.
        (
            "server:\n  httpPort: 9000\nauth:\n  authorizedUris:\n    - https://flyte.example.com\n  appAuth:\n    \
             authServerType: \"Self\n  userAuth:\n    openId: {}\n",
            "YAML syntax error at line 7, column 21: this quote is never closed",
        ),
    ];
    for (yaml, expected) in cases {
        std::fs::write(&file, yaml).unwrap();
        let out = flyteauth(&["config", "check", file.to_str().unwrap()]);
        assert_one_line_failure(&out, expected);
        assert!(!stderr(&out).contains("at `auth"), "{}", stderr(&out));
    }
}

#[test]
fn config_check_refuses_what_serve_refuses_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets_in(dir.path());
    let values = |secrets: &Path, security: &str| {
        format!(
            "server:\n  httpPort: {}\n{security}secrets:\n  secrets-prefix: {}\ndatabase:\n  sqlite:\n    file: \
             {}/db.sqlite\nflyteauth:\n  listenAddress: 127.0.0.1\n",
            free_port(),
            secrets.display(),
            dir.path().display()
        )
    };
    let tls = format!(
        "  security:\n    secure: true\n    ssl:\n      certificateFile: {}\n      keyFile: {}\n",
        dir.path().join("missing-cert.pem").display(),
        dir.path().join("missing-key.pem").display()
    );
    let cases = [
        (
            "a TLS certificate file that does not exist",
            values(&secrets, &tls),
            "missing-cert.pem",
        ),
        (
            "a secrets directory without the secrets",
            values(&dir.path().join("none"), ""),
            "cookie_hash_key",
        ),
    ];
    let file = dir.path().join("values.yaml");
    for (what, yaml, needle) in cases {
        std::fs::write(&file, &yaml).unwrap();
        let checked = flyteauth(&["config", "check", file.to_str().unwrap()]);
        assert_one_line_failure(&checked, needle);
        assert!(checked.stdout.is_empty(), "{what}");
        let mut serve = Command::new(BIN);
        serve
            .args(["serve", "--config", file.to_str().unwrap()])
            .env_remove("FLYTEAUTH_CONFIG");
        let served = run_bounded(serve, None);
        assert!(!served.status.success(), "{what}: serve started");
        assert_eq!(last_line(&checked), last_line(&served), "{what}");
    }
    assert!(
        !dir.path().join("db.sqlite").exists(),
        "neither opened the database"
    );
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

// ---------------------------------------------------------------------------------------------------------
// Local accounts: `flyteauth users …`, the first administrator account, and signing in through `/login`.
// ---------------------------------------------------------------------------------------------------------

const ADMIN_BANNER: &str = "flyteauth created the administrator account 'admin' with the password";

/// Runs `command` with `stdin` (none: an empty standard input), bounded in time; a hung child is killed.
fn run_bounded(mut command: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The child may refuse its arguments before reading anything; a broken pipe is its answer, not ours.
        let _ = pipe.write_all(text.as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `flyteauth users --data-dir DATA ARGS`, with `stdin`. (The flag goes first so that ARGS may end in `-- NAME`.)
fn users(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(["users", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .env_remove("FLYTEAUTH_CONFIG")
        .env_remove("FLYTEAUTH_DATA_DIR");
    run_bounded(command, stdin)
}

/// Like [`users`], but the command must succeed.
fn users_ok(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = users(data, args, stdin);
    assert!(
        out.status.success(),
        "users {args:?} failed with {}: {}",
        out.status,
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The command failed with exit status 1 and exactly one line on stderr, `flyteauth: …` containing `needle`.
fn assert_one_line_failure(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("flyteauth: "), "{err:?}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

/// One row of `users list`.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    name: String,
    status: String,
    admin: String,
    email: String,
}

/// The rows of `users list` (its header skipped).
fn list_users(data: &Path) -> Vec<Row> {
    let stdout = users_ok(data, &["list"], None);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["name", "subject", "status", "admin", "email"],
        "{stdout}"
    );
    lines
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!((4..=5).contains(&cols.len()), "{line:?}");
            Row {
                name: cols[0].to_owned(),
                status: cols[2].to_owned(),
                admin: cols[3].to_owned(),
                email: cols.get(4).copied().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// A `serve` child that is killed if the test fails before stopping it.
struct Running {
    child: Option<Child>,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// Starts `command` with its stdout read line by line in the background.
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// The next line of stdout, waiting at most until `deadline`.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(wait).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads stdout until the first-admin banner and returns the password printed under it.
    fn admin_password(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let Some(line) = self.next_line(deadline) else {
                panic!(
                    "no admin banner within 30 s; stdout so far: {:?}",
                    self.seen
                );
            };
            if line.contains(ADMIN_BANNER) {
                break;
            }
        }
        loop {
            let Some(line) = self.next_line(deadline) else {
                panic!("no password under the banner: {:?}", self.seen);
            };
            if !line.trim().is_empty() {
                assert!(
                    line.starts_with("    ") && !line.trim().contains(' '),
                    "the password is alone on an indented line: {line:?}"
                );
                return line.trim().to_owned();
            }
        }
    }

    /// SIGTERM, then the exit status and everything the server printed on stdout.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().unwrap();
        let (status, _) = terminate(child);
        // The pipe closed when the process exited; drain what the reader thread still holds.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(_line) = self.next_line(deadline) {}
        (status, self.seen.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client that shows redirects instead of following them.
fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of cookie `name` among the response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::blocking::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// The `value` of the hidden input `name` of an HTML form.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs in through the real login page as a browser does: GET /login for the CSRF token and cookie, then POST
/// the form with its hidden fields.
fn login(
    client: &reqwest::blocking::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::blocking::Response {
    login_to(client, base, username, password, None)
}

/// Like [`login`]; with `Some(return_to)` the page is asked for with `?return_to=` and the form must echo it.
fn login_to(
    client: &reqwest::blocking::Client,
    base: &str,
    username: &str,
    password: &str,
    return_to: Option<&str>,
) -> reqwest::blocking::Response {
    let url = match return_to {
        Some(target) => format!("{base}/login?{}", form_encode(&[("return_to", target)])),
        None => format!("{base}/login"),
    };
    let page = client.get(url).send().unwrap();
    assert_eq!(page.status(), 200);
    let csrf_cookie = set_cookie(&page, "flyteauth_csrf").expect("a flyteauth_csrf cookie");
    let html = page.text().unwrap();
    let csrf_token = hidden_input(&html, "csrf_token").expect("a csrf_token field");
    assert_eq!(
        csrf_token, csrf_cookie,
        "double-submit: the field echoes the cookie"
    );
    let form_return_to = hidden_input(&html, "return_to").expect("a return_to field");
    assert_eq!(form_return_to, return_to.unwrap_or_default());
    client
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("flyteauth_csrf={csrf_cookie}"))
        .body(form_encode(&[
            ("username", username),
            ("password", password),
            ("csrf_token", &csrf_token),
            ("return_to", &form_return_to),
        ]))
        .send()
        .unwrap()
}

/// The sign-in succeeded: a 200 "Signed in" page naming `username`, and a session cookie.
fn assert_signed_in(response: reqwest::blocking::Response, username: &str) {
    let status = response.status();
    let session = set_cookie(&response, "flyteauth_session");
    let html = response.text().unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Signed in"), "{html}");
    assert!(
        html.contains(&format!("You are signed in as {username}.")),
        "{html}"
    );
    assert!(
        session.is_some_and(|s| !s.is_empty()),
        "a flyteauth_session cookie"
    );
}

/// The sign-in was refused with the login form again, status 401 and no session.
fn assert_refused(response: reqwest::blocking::Response) {
    let status = response.status();
    let session = set_cookie(&response, "flyteauth_session");
    let html = response.text().unwrap();
    assert_eq!(status, 401, "{html}");
    assert!(html.contains("Wrong user name or password."), "{html}");
    assert!(session.is_none(), "no session after a refused sign-in");
}

#[test]
fn users_add_and_list_refuse_duplicates_argv_passwords_short_passwords_and_hostile_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let password = "correct horse battery staple";

    let out = users_ok(
        &data,
        &[
            "add",
            "Bob",
            "--email",
            "bob@example.com",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(out.contains("created user bob"), "{out}");
    assert_eq!(
        list_users(&data),
        [Row {
            name: "bob".into(),
            status: "active".into(),
            admin: "no".into(),
            email: "bob@example.com".into(),
        }]
    );
    assert_eq!(mode(&data), 0o700, "the data directory is private");

    // The same name again, in any case: one line naming the user, nothing added.
    for name in ["bob", "BOB", " bob "] {
        let out = users(&data, &["add", name, "--password-stdin"], Some(password));
        assert_one_line_failure(&out, "a user named \"bob\" already exists");
    }

    // There is no way to put a password on the command line.
    for args in [
        &["add", "carol", "--password", "x"][..],
        &["add", "carol", "--password", "correct horse battery staple"][..],
        &[
            "set-password",
            "bob",
            "--password",
            "correct horse battery staple",
        ][..],
    ] {
        let out = users(&data, args, None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "clap usage error: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("unexpected argument '--password'"),
            "{}",
            stderr(&out)
        );
    }
    // Nor no password at all, nor both sources at once.
    let out = users(&data, &["add", "carol"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let out = users(
        &data,
        &[
            "add",
            "carol",
            "--password-stdin",
            "--password-file",
            file.to_str().unwrap(),
        ],
        Some(password),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Unacceptable passwords: one line each.
    let out = users(
        &data,
        &["add", "carol", "--password-stdin"],
        Some("short\n"),
    );
    assert_one_line_failure(&out, "the password must be at least 12 characters long");
    let out = users(
        &data,
        &["add", "carol", "--password-stdin"],
        Some(&"x".repeat(1025)),
    );
    assert_one_line_failure(&out, "the password must be at most 1024 characters long");
    let out = users(
        &data,
        &["add", "carol", "--password-stdin"],
        Some("tab\tin the middle of it\n"),
    );
    assert_one_line_failure(&out, "control characters");
    let out = users(&data, &["add", "carol", "--password-stdin"], Some(""));
    assert_one_line_failure(&out, "cannot read the password from standard input");
    let out = users(&data, &["add", "carol", "--password-stdin"], Some("\n"));
    assert_one_line_failure(&out, "cannot read the password from standard input");
    let missing = dir.path().join("no-such-password-file");
    let out = users(
        &data,
        &["add", "carol", "--password-file", missing.to_str().unwrap()],
        None,
    );
    assert_one_line_failure(&out, missing.to_str().unwrap());

    // Hostile names: one line, exit 1, no panic, nothing added.
    for (name, needle) in [
        (
            "bob'; DROP TABLE users;--",
            "the user name may only contain",
        ),
        ("bob\nadmin", "the user name may only contain"),
        (
            "bob\r\nflyteauth: created user admin",
            "the user name may only contain",
        ),
        ("bob smith", "the user name may only contain"),
        ("-bob", "the user name must start with a letter or a digit"),
        (".bob", "the user name must start with a letter or a digit"),
        ("", "the user name must not be empty"),
        ("   ", "the user name must not be empty"),
        (&"a".repeat(65), "at most 64 characters"),
        ("bøb", "the user name may only contain"),
    ] {
        // `--` lets a name that looks like a flag through clap, so the name rule is what refuses it.
        let out = users(
            &data,
            &["add", "--password-stdin", "--", name],
            Some(password),
        );
        assert_one_line_failure(&out, needle);
        let err = stderr(&out);
        assert!(
            !err.contains("DROP TABLE"),
            "the hostile text is not echoed: {err}"
        );
    }
    // Without `--`, a name that looks like a flag is clap's usage error.
    let out = users(&data, &["add", "-rf", "--password-stdin"], Some(password));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(list_users(&data).len(), 1, "nothing was added");

    // A name at the limit and every allowed character are fine; the password file's first line is the password.
    let long = "a".repeat(64);
    users_ok(
        &data,
        &["add", &long, "--password-file", file.to_str().unwrap()],
        None,
    );
    users_ok(
        &data,
        &[
            "add",
            "Ada.Lovelace_1@example-host.com",
            "--admin",
            "--password-stdin",
        ],
        Some(password),
    );
    let rows = list_users(&data);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [long.as_str(), "ada.lovelace_1@example-host.com", "bob"]
    );
    assert_eq!(rows[1].admin, "yes");
    assert!(rows.iter().all(|r| r.status == "active"), "{rows:?}");
}

#[test]
fn users_disable_enable_and_set_password_need_an_existing_user() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let password = "correct horse battery staple";
    let file = dir.path().join("new-password");
    std::fs::write(&file, "another long password\nsecond line is ignored\n").unwrap();
    let file = file.to_str().unwrap();

    // On an empty installation, and for a name that normalizes to a missing one.
    for name in ["nobody", "NoBody"] {
        let out = users(&data, &["disable", name], None);
        assert_one_line_failure(&out, "there is no user named \"nobody\"");
        let out = users(&data, &["enable", name], None);
        assert_one_line_failure(&out, "there is no user named \"nobody\"");
        let out = users(
            &data,
            &["set-password", name, "--password-stdin"],
            Some(password),
        );
        assert_one_line_failure(&out, "there is no user named \"nobody\"");
        let out = users(
            &data,
            &["set-password", name, "--password-file", file],
            None,
        );
        assert_one_line_failure(&out, "there is no user named \"nobody\"");
    }
    // A hostile name is refused as a name, not looked up.
    let out = users(&data, &["disable", "x' OR '1'='1"], None);
    assert_one_line_failure(&out, "the user name may only contain");

    users_ok(&data, &["add", "dave", "--password-stdin"], Some(password));
    users_ok(&data, &["add", "erin", "--password-stdin"], Some(password));
    let status = |data: &Path| -> Vec<(String, String)> {
        list_users(data)
            .into_iter()
            .map(|r| (r.name, r.status))
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());

    let out = users_ok(&data, &["disable", "Dave"], None);
    assert!(out.contains("disabled user dave"), "{out}");
    assert_eq!(
        status(&data),
        [pair("dave", "disabled"), pair("erin", "active")]
    );
    // Disabling twice is harmless.
    users_ok(&data, &["disable", "dave"], None);
    assert_eq!(
        status(&data),
        [pair("dave", "disabled"), pair("erin", "active")]
    );

    let out = users_ok(&data, &["enable", "dave"], None);
    assert!(out.contains("enabled user dave"), "{out}");
    assert_eq!(
        status(&data),
        [pair("dave", "active"), pair("erin", "active")]
    );

    let out = users_ok(
        &data,
        &["set-password", "DAVE", "--password-file", file],
        None,
    );
    assert!(out.contains("changed the password of user dave"), "{out}");
    users_ok(
        &data,
        &["set-password", "erin", "--password-stdin"],
        Some("a third long password\n"),
    );
    // set-password checks the new password like add does.
    let out = users(
        &data,
        &["set-password", "dave", "--password-stdin"],
        Some("short"),
    );
    assert_one_line_failure(&out, "at least 12 characters");
    assert_eq!(
        status(&data),
        [pair("dave", "active"), pair("erin", "active")]
    );
}

#[test]
fn embedded_default_prints_the_admin_password_once_and_it_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client();

    let mut server = Running::start(serve_command(&data, port, &[]));
    let password = server.admin_password();
    assert!(password.len() >= 12, "{password:?}");
    wait_healthy(server.child(), &format!("{base}/healthz"), &client);

    assert_refused(login(&client, &base, "admin", &format!("{password}x")));
    assert_refused(login(&client, &base, "admin", "not the password at all"));
    assert_refused(login(&client, &base, "nobody", &password));
    assert_signed_in(login(&client, &base, "admin", &password), "admin");
    // The name is case-insensitive, like the commands.
    assert_signed_in(login(&client, &base, "Admin", &password), "admin");
    // With a place to continue to, the sign-in sends the browser there with its session.
    let redirected = login_to(&client, &base, "admin", &password, Some("/"));
    assert_eq!(redirected.status(), 303);
    assert_eq!(redirected.headers()["location"], "/");
    assert!(set_cookie(&redirected, "flyteauth_session").is_some_and(|s| !s.is_empty()));

    // A form without the matching CSRF cookie is refused even with the right password.
    let page = client.get(format!("{base}/login")).send().unwrap();
    let token = hidden_input(&page.text().unwrap(), "csrf_token").unwrap();
    let forged = client
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("username", "admin"),
            ("password", &password),
            ("csrf_token", &token),
            ("return_to", "/"),
        ]))
        .send()
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(set_cookie(&forged, "flyteauth_session").is_none());

    let (status, stdout) = server.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert_eq!(
        stdout.matches(&password).count(),
        1,
        "the password is printed exactly once: {stdout}"
    );

    // Second start on the same data directory: no banner, same single admin, same password.
    let mut server = Running::start(serve_command(&data, port, &[]));
    wait_healthy(server.child(), &format!("{base}/healthz"), &client);
    assert_signed_in(login(&client, &base, "admin", &password), "admin");
    let (status, stdout) = server.stop();
    assert!(status.success(), "{status}");
    assert!(
        !stdout.contains("administrator account"),
        "printed only once: {stdout}"
    );
    assert!(!stdout.contains(&password), "{stdout}");
    assert_eq!(
        list_users(&data),
        [Row {
            name: "admin".into(),
            status: "active".into(),
            admin: "yes".into(),
            email: String::new(),
        }]
    );
}

#[test]
fn users_commands_work_on_the_database_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client();
    let password = "carol's long password";

    let mut server = Running::start(serve_command(&data, port, &[]));
    let admin_password = server.admin_password();
    wait_healthy(server.child(), &format!("{base}/healthz"), &client);

    // Before the account exists the server refuses it.
    assert_refused(login(&client, &base, "carol", password));
    let out = users_ok(&data, &["add", "carol", "--password-stdin"], Some(password));
    assert!(out.contains("created user carol"), "{out}");
    assert_signed_in(login(&client, &base, "carol", password), "carol");

    let rows = list_users(&data);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["admin", "carol"]);

    // Disabling takes effect on the running server at the next sign-in; enabling restores it.
    users_ok(&data, &["disable", "carol"], None);
    assert_refused(login(&client, &base, "carol", password));
    users_ok(&data, &["enable", "carol"], None);
    assert_signed_in(login(&client, &base, "carol", password), "carol");

    // A new password replaces the old one at once.
    let new_password = "carol's newer password";
    users_ok(
        &data,
        &["set-password", "carol", "--password-stdin"],
        Some(new_password),
    );
    assert_refused(login(&client, &base, "carol", password));
    assert_signed_in(login(&client, &base, "carol", new_password), "carol");

    // Several commands at once, while the server answers sign-ins.
    let adders: Vec<_> = (0..4)
        .map(|i| {
            let data = data.clone();
            std::thread::spawn(move || {
                users(
                    &data,
                    &["add", &format!("user{i}"), "--password-stdin"],
                    Some("a long enough password"),
                )
            })
        })
        .collect();
    assert_signed_in(login(&client, &base, "admin", &admin_password), "admin");
    for adder in adders {
        let out = adder.join().unwrap();
        assert!(
            out.status.success(),
            "concurrent add failed: {}",
            stderr(&out)
        );
    }
    assert_signed_in(
        login(&client, &base, "user3", "a long enough password"),
        "user3",
    );
    assert_eq!(list_users(&data).len(), 6);

    let (status, _) = server.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn a_config_file_first_admin_takes_its_password_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let out = flyteauth(&["secrets", "init", "--dir", secrets.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let password_file = dir.path().join("admin-password");
    let password = "the operator's chosen password";
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let port = free_port();
    let config = dir.path().join("values.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  httpPort: {port}\nsecrets:\n  secrets-prefix: {secrets}\ndatabase:\n  sqlite:\n    file: {dir}/db.sqlite\nflyteauth:\n  listenAddress: 127.0.0.1\n  firstAdmin:\n    username: Root\n    passwordFile: {pw}\n",
            secrets = secrets.display(),
            dir = dir.path().display(),
            pw = password_file.display(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config", config])
        .env_remove("FLYTEAUTH_CONFIG");
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client();

    let mut server = Running::start(command);
    wait_healthy(server.child(), &format!("{base}/healthz"), &client);
    assert_signed_in(login(&client, &base, "root", password), "root");
    let (status, stdout) = server.stop();
    assert!(status.success(), "{status}");
    assert!(!stdout.contains(password), "{stdout}");
    assert!(!stdout.contains("administrator account"), "{stdout}");

    // The commands reach the same database through the same --config.
    let mut list = Command::new(BIN);
    list.args(["users", "list", "--config", config])
        .env_remove("FLYTEAUTH_CONFIG");
    let out = run_bounded(list, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(
        (rows[0][0], rows[0][2], rows[0][3]),
        ("root", "active", "yes")
    );
}
