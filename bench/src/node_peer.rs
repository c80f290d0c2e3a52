//! node oidc-provider as a child process: the peer of the issuance benchmark (`bench/peer/server.mjs`).
//!
//! The package is pinned by `bench/peer/package-lock.json`; `npm ci` installs it into `bench/peer/node_modules`
//! when that is missing. The server runs with `NODE_ENV=production`, listens on 127.0.0.1 only, and is killed
//! when its guard drops (or by the watchdog).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client;
use crate::process::ChildGuard;

/// The peer's client.
pub const CLIENT_ID: &str = "bench-peer";
/// Its token endpoint (oidc-provider's default route).
pub const TOKEN_PATH: &str = "/token";

/// `bench/peer` of this checkout.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peer")
}

/// The installed oidc-provider's version, if it is installed.
pub fn installed_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_owned)
}

/// `node --version`.
pub fn node_version() -> anyhow::Result<String> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .context("cannot run node (the peer benchmark needs Node.js 18 or later)")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `npm ci` in `dir` unless oidc-provider is installed there already; returns its version.
pub fn ensure_installed(dir: &Path) -> anyhow::Result<String> {
    if let Some(version) = installed_version(dir) {
        return Ok(version);
    }
    eprintln!("installing bench/peer with npm ci (package-lock.json)");
    let mut child = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run npm (the peer benchmark installs oidc-provider with npm ci)")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("npm ci did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        bail!("npm ci in {} failed: {status}", dir.display());
    }
    installed_version(dir).context("npm ci did not install oidc-provider")
}

/// A running peer.
pub struct Peer {
    /// Kills it.
    pub guard: ChildGuard,
    /// Its process id (node itself: `taskset` execs it).
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its issuer (the `iss` of its tokens).
    pub issuer: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

/// What the peer is configured with.
#[derive(Debug, Clone)]
pub struct PeerOptions<'a> {
    /// `bench/peer`, with oidc-provider installed.
    pub dir: &'a Path,
    /// The private key (PEM) it signs with: RSA for RS256, EC P-256 for ES256.
    pub key_file: &'a Path,
    /// The JWS algorithm of its access tokens: `RS256` or `ES256`.
    pub alg: &'a str,
    /// [`CLIENT_ID`]'s secret.
    pub secret: &'a str,
    /// The resource (the `aud` of its access tokens).
    pub resource: &'a str,
    /// The CPU it runs on (`taskset -c`), or anywhere.
    pub cpu: Option<usize>,
    /// Where its output goes.
    pub log: &'a Path,
    /// Killed after this long at the latest.
    pub limit: Duration,
}

/// Starts `node server.mjs PORT` and waits until its discovery document answers.
pub fn start(options: &PeerOptions<'_>) -> anyhow::Result<Peer> {
    let port = crate::fixture::free_port()?;
    let mut command = match options.cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string(), "node"]);
            command
        }
        None => Command::new("node"),
    };
    let log = std::fs::File::create(options.log)
        .with_context(|| format!("create {}", options.log.display()))?;
    let child = command
        .arg("server.mjs")
        .arg(port.to_string())
        .current_dir(options.dir)
        .env("NODE_ENV", "production")
        .env_remove("DEBUG")
        .env("PEER_KEY_FILE", options.key_file)
        .env("PEER_CLIENT_ID", CLIENT_ID)
        .env("PEER_CLIENT_SECRET", options.secret)
        .env("PEER_RESOURCE", options.resource)
        .env("PEER_ALG", options.alg)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start node server.mjs")?;
    let pid = child.id();
    let guard = ChildGuard::new(child);
    let watchdog_guard = guard.clone();
    crate::watchdog(options.limit, move || watchdog_guard.kill());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = client::wait_until_up(
        addr,
        "/.well-known/openid-configuration",
        Duration::from_secs(30),
    ) {
        let text = std::fs::read_to_string(options.log).unwrap_or_default();
        return Err(e.context(format!("node server.mjs log:\n{text}")));
    }
    Ok(Peer {
        guard,
        pid,
        addr,
        issuer: format!("http://{addr}"),
        log: options.log.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::ServerKey;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    /// The peer issues RS256 and ES256 JWT access tokens signed with the key it was given. Needs node and an
    /// installed `bench/peer` (`npm ci` there; `scripts/test-all` does it): without them it fails, never skips.
    #[test]
    fn the_peer_issues_jwts_with_the_given_key() -> anyhow::Result<()> {
        use flyteauth_core::keys::SigningAlgorithm;
        let dir = default_dir();
        node_version().context("node is needed by this test (apt-get install nodejs)")?;
        installed_version(&dir)
            .context("bench/peer/node_modules is missing: run `npm ci` in bench/peer")?;
        for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256] {
            let tmp = tempfile::tempdir()?;
            flyteauth_core::secrets::write_fresh_set_for(&tmp.path().join("secrets"), algorithm)?;
            let key_file = tmp
                .path()
                .join("secrets")
                .join(flyteauth_core::secrets::TOKEN_RSA_KEY);
            let key = ServerKey::from_file(&key_file)?;
            let secret = flyteauth_core::clients::generate_secret();
            let peer = start(&PeerOptions {
                dir: &dir,
                key_file: &key_file,
                alg: algorithm.as_str(),
                secret: &secret,
                resource: "https://api.bench.invalid",
                cpu: None,
                log: &tmp.path().join("peer.log"),
                limit: Duration::from_secs(120),
            })?;
            let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{secret}")));
            let token = crate::grant_fixture::exchange_at(
                peer.addr,
                TOKEN_PATH,
                Some(&basic),
                crate::grant_fixture::PEER_BODY,
            )?;
            // verify_jwt insists on the key's own algorithm.
            let (header, claims) = key.verify_jwt(&token)?;
            assert_eq!(header["alg"], algorithm.as_str());
            assert_eq!(header["typ"], "at+jwt");
            assert_eq!(claims["client_id"], CLIENT_ID);
            assert_eq!(claims["aud"], "https://api.bench.invalid");
            assert_eq!(claims["iss"], peer.issuer.as_str());
            peer.guard.kill();
        }
        Ok(())
    }
}
