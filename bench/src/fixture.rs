//! The configuration the benchmarks serve with: a flyteadmin-style file with one confidential
//! static client, SQLite and file secrets in a temporary directory, listening on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::client::Connection;

/// The benchmark's confidential client.
pub const CLIENT_ID: &str = "bench-app";
/// Its secret (alphanumeric, so Basic credentials need no percent-encoding).
pub const CLIENT_SECRET: &str = "benchSecret0123456789";

/// The configuration for a server on `port` keeping its state in `dir` (secrets in
/// `dir/secrets`, which the caller creates).
pub fn config_yaml(port: u16, dir: &Path) -> anyhow::Result<String> {
    // Cost 10: what a deployment would plausibly use; it only affects the one token request.
    config_yaml_with(port, dir, 10, "")
}

/// [`config_yaml`] with the client's secret hashed at bcrypt `cost`, and `flyteauth_extra` appended to the
/// `flyteauth:` section (lines indented by two spaces).
pub fn config_yaml_with(
    port: u16,
    dir: &Path,
    cost: u32,
    flyteauth_extra: &str,
) -> anyhow::Result<String> {
    let hash = bcrypt::hash(CLIENT_SECRET, cost).context("bcrypt")?;
    Ok(format!(
        r#"server:
  httpPort: {port}
auth:
  authorizedUris:
    - http://127.0.0.1:{port}
  appAuth:
    selfAuthServer:
      staticClients:
        {CLIENT_ID}:
          id: {CLIENT_ID}
          client_secret: {secret}
          grant_types: [client_credentials]
          scopes: [all, read]
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
        secret = STANDARD.encode(hash),
        dir = dir.display(),
    ))
}

/// Writes [`config_yaml`] to `dir/flyteauth.yaml` and returns its path.
pub fn write_config(port: u16, dir: &Path) -> anyhow::Result<PathBuf> {
    let file = dir.join("flyteauth.yaml");
    std::fs::write(&file, config_yaml(port, dir)?)
        .with_context(|| format!("write {}", file.display()))?;
    Ok(file)
}

/// A free TCP port on 127.0.0.1 (for a child process that binds it itself).
pub fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?.port())
}

/// A client-credentials token of [`CLIENT_ID`], requested as the Flyte SDKs do.
pub fn fetch_token(addr: SocketAddr) -> anyhow::Result<String> {
    let mut conn = Connection::open(addr)?;
    let request = token_request(&conn, CLIENT_ID, CLIENT_SECRET);
    let response = conn.send_raw(&request)?;
    if response.status != 200 {
        bail!(
            "token request answered {}: {}",
            response.status,
            response.text()
        );
    }
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).context("token response is not JSON")?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("token response has no access_token")
}

/// The bytes of a `client_credentials` request on `conn` as the Flyte SDKs send it (Basic credentials, empty
/// scope).
pub fn token_request(conn: &Connection, client_id: &str, secret: &str) -> Vec<u8> {
    let basic = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
    conn.build(
        "POST",
        "/oauth2/token",
        &[
            ("authorization", &basic),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ],
        b"grant_type=client_credentials&scope=",
    )
}

/// Fails unless `GET /me` with `token` answers 200 with our client as the subject.
pub fn check_me(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let bearer = format!("Bearer {token}");
    let response = crate::client::get(addr, "/me", &[("authorization", &bearer)])?;
    if response.status != 200 {
        bail!("GET /me answered {}: {}", response.status, response.text());
    }
    let body: serde_json::Value =
        serde_json::from_slice(&response.body).context("/me body is not JSON")?;
    if body["subject"] != CLIENT_ID {
        bail!("GET /me returned an unexpected identity: {body}");
    }
    Ok(())
}
