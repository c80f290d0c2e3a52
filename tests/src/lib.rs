//! Harness for black-box tests: a real flyteauth server on 127.0.0.1 with its own data
//! directory, secrets, SQLite database and static clients, stopped when the handle drops.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod browser;
pub mod cli;
pub mod fake_idp;

use base64::Engine;
use flyteauth_server::serve::{self, ServeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::oneshot;

/// The confidential client with scope `all`.
pub const APP_ID: &str = "test-app";
/// Its secret; contains characters the Flyte SDKs percent-encode in Basic credentials.
pub const APP_SECRET: &str = "s3cr+t/=x y";
/// A confidential client without scope `all`.
pub const LIMITED_ID: &str = "limited-app";
/// Its secret.
pub const LIMITED_SECRET: &str = "limited-secret";

/// A running server.
pub struct TestServer {
    /// The server's shared state (its store, clock and validator), for setting up accounts.
    pub state: flyteauth_server::state::AppState,
    pub addr: SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn bcrypt_b64(secret: &str) -> String {
    let hash = bcrypt::hash(secret, 4).unwrap();
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// A confidential client that may also log people in (authorization code), for introspection tests.
pub const WEB_APP_ID: &str = "web-app";
/// Its secret.
pub const WEB_APP_SECRET: &str = "web-app-secret";
/// Its registered redirect URI.
pub const WEB_APP_REDIRECT: &str = "https://app.example.com/callback";

/// The configuration the harness writes; `flyteauth_extra` is appended to its `flyteauth:` section
/// (each line indented by two spaces).
pub fn config_yaml(port: u16, dir: &std::path::Path) -> String {
    config_yaml_with(port, dir, "")
}

/// [`config_yaml`] with extra lines in the `flyteauth:` section.
pub fn config_yaml_with(port: u16, dir: &std::path::Path, flyteauth_extra: &str) -> String {
    config_yaml_full(port, dir, flyteauth_extra, "")
}

/// [`config_yaml_with`], plus `user_auth` as the body of `auth.userAuth:` (each line indented by four spaces,
/// e.g. `"    idpQueryParameter: idp\n"`); no `userAuth:` key at all when it is empty.
pub fn config_yaml_full(
    port: u16,
    dir: &std::path::Path,
    flyteauth_extra: &str,
    user_auth: &str,
) -> String {
    let user_auth = if user_auth.is_empty() {
        String::new()
    } else {
        format!("  userAuth:\n{user_auth}")
    };
    format!(
        r#"server:
  httpPort: {port}
auth:
  authorizedUris:
    - http://127.0.0.1:{port}
{user_auth}  appAuth:
    selfAuthServer:
      staticClients:
        {APP_ID}:
          id: {APP_ID}
          client_secret: {app}
          grant_types: [client_credentials]
          scopes: [all, read]
          public: false
        {LIMITED_ID}:
          id: {LIMITED_ID}
          client_secret: {limited}
          grant_types: [client_credentials]
          scopes: [read]
          public: false
        {WEB_APP_ID}:
          id: {WEB_APP_ID}
          client_secret: {web}
          grant_types: [authorization_code, refresh_token, client_credentials]
          redirect_uris: [{WEB_APP_REDIRECT}]
          scopes: [all, offline]
          public: false
database:
  sqlite:
    file: {dir}/flyteauth.db
secrets:
  secrets-prefix: {dir}/secrets
flyteauth:
  listenAddress: 127.0.0.1
  dataDir: {dir}
{flyteauth_extra}"#,
        web = bcrypt_b64(WEB_APP_SECRET),
        app = bcrypt_b64(APP_SECRET),
        limited = bcrypt_b64(LIMITED_SECRET),
        dir = dir.display(),
    )
}

impl TestServer {
    /// Starts a server with the harness configuration.
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts a server with `flyteauth_extra` added to the `flyteauth:` section, e.g.
    /// `"  refreshTokenReuseGrace: 0s\n"`.
    pub async fn start_with(flyteauth_extra: &str) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        flyteauth_core::secrets::write_fresh_set(&dir.path().join("secrets")).unwrap();
        let config_file = dir.path().join("flyteauth.yaml");
        std::fs::write(
            &config_file,
            config_yaml_with(addr.port(), dir.path(), flyteauth_extra),
        )
        .unwrap();
        let prepared = serve::prepare(&ServeOptions {
            config_file: Some(config_file),
            ..ServeOptions::default()
        })
        .unwrap();
        let server = serve::build(prepared).await.unwrap();
        let state = server.state.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(tcp, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            state,
            addr,
            base: format!("http://127.0.0.1:{}", addr.port()),
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The directory holding the server's secrets.
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// The configuration file the server was started with; `flyteauth --config` on it reaches the same store.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("flyteauth.yaml")
    }

    /// Runs the `flyteauth` binary ([`flyteauth_bin`]) on this server's configuration: `group` (e.g. `apps`)
    /// with `--config <file>`, then `args`. Bounded to 60 s; runs off the async threads, so the server keeps
    /// answering meanwhile.
    pub async fn cli(&self, group: &str, args: &[&str]) -> std::process::Output {
        let mut command = std::process::Command::new(flyteauth_bin());
        command
            .arg(group)
            .arg("--config")
            .arg(self.config_file())
            .args(args)
            .env_remove("FLYTEAUTH_CONFIG")
            .env_remove("FLYTEAUTH_DATA_DIR")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        tokio::task::spawn_blocking(move || {
            let what = format!("{command:?}");
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{what} did not finish within 60 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap()
    }

    /// A client-credentials token for `client_id`, as the Flyte SDKs request it.
    pub async fn token_for(&self, client_id: &str, secret: &str) -> String {
        let response = token_request(self, client_id, secret, "scope=").await;
        assert_eq!(response.status(), 200, "token request failed");
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a local account `name` with `password` (display name "<Name> Example", e-mail
    /// `<name>@example.com`).
    pub async fn add_user(&self, name: &str, password: &str) -> flyteauth_store::UserRecord {
        let mut display = name.to_owned();
        if let Some(first) = display.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let account = flyteauth_server::users::NewAccount {
            username: name.to_owned(),
            email: format!("{name}@example.com"),
            display_name: format!("{display} Example"),
            is_admin: false,
        };
        let now = flyteauth_core::clock::Clock::unix_now(self.state.clock.as_ref());
        flyteauth_server::users::add(self.state.store.as_ref(), &account, password, now)
            .await
            .unwrap()
    }

    /// A token of [`APP_ID`].
    pub async fn app_token(&self) -> String {
        self.token_for(APP_ID, APP_SECRET).await
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), task)
                .await
                .expect("server did not stop within 10 s")
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Environment variable naming the `flyteauth` binary the CLI tests run; `scripts/test-all` sets it.
pub const BIN_VAR: &str = "FLYTEAUTH_BIN";

/// The `flyteauth` binary: [`BIN_VAR`], else the workspace's `target/debug/flyteauth`. Panics when neither
/// exists (build it with `cargo build -p flyteauth-server --bin flyteauth`): these tests are never skipped.
pub fn flyteauth_bin() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = match std::env::var_os(BIN_VAR) {
        // Tests run in the package directory; a relative path is meant from the workspace root.
        Some(path) if !path.is_empty() => workspace.join(path),
        _ => workspace.join("target/debug/flyteauth"),
    };
    assert!(
        path.is_file(),
        "the flyteauth binary is not at {} (set {BIN_VAR}, or run `cargo build -p flyteauth-server --bin flyteauth` first)",
        path.display()
    );
    path
}

/// Basic credentials exactly as the Flyte SDKs build them (secret `quote_plus`-encoded first).
pub fn sdk_basic(client_id: &str, secret: &str) -> String {
    let mut encoded = String::new();
    for b in secret.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                encoded.push(b as char)
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{encoded}"))
    )
}

/// POSTs a client-credentials token request with SDK-style Basic auth and `body` appended.
pub async fn token_request(
    server: &TestServer,
    client_id: &str,
    secret: &str,
    extra: &str,
) -> reqwest::Response {
    let body = if extra.is_empty() {
        "grant_type=client_credentials".to_owned()
    } else {
        format!("grant_type=client_credentials&{extra}")
    };
    reqwest::Client::new()
        .post(server.url("/oauth2/token"))
        .header("authorization", sdk_basic(client_id, secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A tonic channel to the server (h2c prior knowledge, as grpcio does).
pub async fn grpc_channel(server: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(server.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// gzip-compresses a Connect request body, as the flyte SDK always does.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Environment variable naming the PostgreSQL server (a superuser URL without password) that
/// [`PostgresDatabase::create`] makes databases on; `scripts/test-all` sets it.
pub const POSTGRES_URL_VAR: &str = "FLYTEAUTH_TEST_POSTGRES_URL";

/// A fresh, empty PostgreSQL database for servers started with [`TestServer::start_on`].
pub struct PostgresDatabase {
    server_url: String,
    pub host: String,
    pub port: u16,
    pub name: String,
}

impl PostgresDatabase {
    /// Creates a database with a unique name on the server named by [`POSTGRES_URL_VAR`]; panics when the
    /// variable is unset (these tests are never skipped silently).
    pub async fn create() -> Self {
        use sqlx::{Connection, Executor};
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let server_url = match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => panic!(
                "{POSTGRES_URL_VAR} is not set, so this PostgreSQL test cannot run.\n\
                 Start a throwaway server and point the tests at it:\n\
                 \n    export {POSTGRES_URL_VAR}=$(scripts/pg-throwaway start /tmp/flyteauth-pg 55432)\n\
                 \x20   cargo nextest run -p flyteauth-tests\n\
                 \x20   scripts/pg-throwaway stop /tmp/flyteauth-pg\n"
            ),
        };
        let url = reqwest::Url::parse(&server_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is not a URL: {e}"));
        let host = url
            .host_str()
            .unwrap_or_else(|| panic!("{POSTGRES_URL_VAR} names no host"))
            .to_owned();
        let port = url.port().unwrap_or(5432);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "flyteauth_it_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::postgres::PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let _ = admin.close().await;
        Self {
            server_url,
            host,
            port,
            name,
        }
    }

    /// The `database:` section of a server configuration that uses this database.
    pub fn config_section(&self) -> String {
        format!(
            "database:\n  postgres:\n    host: {}\n    port: {}\n    dbname: {}\n    username: postgres\n    options: sslmode=disable\n",
            self.host, self.port, self.name
        )
    }

    /// Drops the database (servers using it must have stopped).
    pub async fn drop_database(self) {
        use sqlx::{Connection, Executor};
        let mut admin = sqlx::postgres::PgConnection::connect(&self.server_url)
            .await
            .unwrap();
        admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name).as_str())
            .await
            .unwrap_or_else(|e| panic!("dropping test database {}: {e}", self.name));
        let _ = admin.close().await;
    }
}

/// How [`TestServer::start_on`] starts a server; the default is what [`TestServer::start`] does.
#[derive(Default)]
pub struct StartOptions<'a> {
    /// Lines added to the `flyteauth:` section, as for [`TestServer::start_with`].
    pub flyteauth_extra: &'a str,
    /// Use this PostgreSQL database instead of a SQLite file in the data directory.
    pub postgres: Option<&'a PostgresDatabase>,
    /// Use this existing secrets directory (e.g. another instance's [`TestServer::secrets_dir`]) instead of a
    /// fresh one, so both instances sign and verify with the same keys.
    pub secrets_dir: Option<PathBuf>,
    /// The public URL (first authorized URI, hence issuer and audience) instead of the server's own address:
    /// replicas behind one load balancer share it, e.g. another instance's `base`.
    pub public_url: Option<String>,
    /// The body of `auth.userAuth:`, each line indented by four spaces (see [`config_yaml_full`]), e.g. the
    /// `openId:` section of [`fake_idp::FakeIdp::user_auth_yaml`].
    pub user_auth: &'a str,
    /// Files written into the secrets directory before the server starts, as (name, content), e.g.
    /// `("oidc_client_secret", "…")`.
    pub secret_files: &'a [(&'a str, &'a str)],
    /// A last edit of the generated YAML, for settings no other option reaches (e.g. `server.security`).
    pub edit_config: Option<&'a (dyn Fn(String) -> String + Sync)>,
}

impl TestServer {
    /// Starts a server as `options` say: another database, or the secrets of another instance.
    pub async fn start_on(options: &StartOptions<'_>) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let own_secrets = dir.path().join("secrets");
        let secrets = match &options.secrets_dir {
            Some(shared) => shared.clone(),
            None => {
                flyteauth_core::secrets::write_fresh_set(&own_secrets).unwrap();
                own_secrets
            }
        };
        for (name, content) in options.secret_files {
            std::fs::write(secrets.join(name), content).unwrap();
        }
        let mut yaml = config_yaml_full(
            addr.port(),
            dir.path(),
            options.flyteauth_extra,
            options.user_auth,
        );
        if let Some(db) = options.postgres {
            let sqlite = format!(
                "database:\n  sqlite:\n    file: {}/flyteauth.db\n",
                dir.path().display()
            );
            assert!(yaml.contains(&sqlite), "harness configuration changed");
            yaml = yaml.replace(&sqlite, &db.config_section());
        }
        if let Some(public) = &options.public_url {
            let own = format!("authorizedUris:\n    - http://127.0.0.1:{}\n", addr.port());
            assert!(yaml.contains(&own), "harness configuration changed");
            yaml = yaml.replace(&own, &format!("authorizedUris:\n    - {public}\n"));
        }
        let prefix = format!("secrets-prefix: {}/secrets\n", dir.path().display());
        assert!(yaml.contains(&prefix), "harness configuration changed");
        yaml = yaml.replace(&prefix, &format!("secrets-prefix: {}\n", secrets.display()));
        if let Some(edit) = options.edit_config {
            yaml = edit(yaml);
        }
        let config_file = dir.path().join("flyteauth.yaml");
        std::fs::write(&config_file, yaml).unwrap();
        let prepared = serve::prepare(&ServeOptions {
            config_file: Some(config_file),
            ..ServeOptions::default()
        })
        .unwrap();
        let server = serve::build(prepared).await.unwrap();
        let state = server.state.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(tcp, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            state,
            addr,
            base: format!("http://127.0.0.1:{}", addr.port()),
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }
}
