//! `flyteauth serve`: load the configuration, its secrets and the store, then serve until SIGTERM.

use crate::embedded::{self, DefaultClient, EmbeddedError};
use crate::state::{AppState, StateError};
use crate::users::{self, FirstAdmin};
use crate::{app, listener, tls};
use flyteauth_core::clock::{Clock, SystemClock};
use flyteauth_core::config::{Config, ConfigError};
use flyteauth_core::secrets::{AuthSecrets, SecretError, SecretSource, TOKEN_RSA_KEY};
use flyteauth_store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What `flyteauth serve` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// A flyteadmin-compatible configuration file; none means the embedded default.
    pub config_file: Option<PathBuf>,
    /// The data directory (embedded default: database, secrets, default client, TLS files).
    pub data_dir: Option<PathBuf>,
    /// Overrides the listen address and port.
    pub listen: Option<SocketAddr>,
    /// Serve TLS with a locally generated CA and certificate.
    pub self_signed_tls: bool,
}

/// Why the server could not start. Each message names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The configuration file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret is missing or malformed.
    #[error("{0}")]
    Secrets(#[from] SecretError),
    /// The embedded default could not be prepared.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] flyteauth_store::StoreError),
    /// The configuration does not describe a servable state.
    #[error(transparent)]
    State(#[from] StateError),
    /// TLS material could not be loaded or generated.
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// A feature the configuration asks for does not exist yet.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The first administrator account could not be created.
    #[error("first administrator account: {0}")]
    FirstAdmin(#[from] users::UserCommandError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The listener failed while serving.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// The configuration and data directory `serve` runs with, after defaults and overrides.
#[derive(Debug)]
pub struct Prepared {
    /// The effective configuration.
    pub config: Config,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// `true` when no configuration file was given.
    pub embedded: bool,
    /// Warnings to log once the logger is up.
    pub warnings: Vec<String>,
    /// The CA a client must trust when serving a self-signed certificate.
    pub ca_file: Option<PathBuf>,
}

/// Resolves configuration, data directory, listen address and TLS files without serving.
pub fn prepare(options: &ServeOptions) -> Result<Prepared, StartupError> {
    let (mut config, warnings, embedded) = match &options.config_file {
        Some(file) => {
            let loaded = Config::from_file(file)?;
            (loaded.config, loaded.warnings, false)
        }
        None => {
            let dir = embedded::data_dir(options.data_dir.as_deref())?;
            (Config::embedded_default(&dir), Vec::new(), true)
        }
    };
    let data_dir = match (&options.data_dir, &config.flyteauth.data_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => embedded::data_dir(None)?,
    };
    let mut listen = config.listen_addr(!embedded);
    if let Some(addr) = options.listen {
        listen = addr;
        config.server.http_port = addr.port();
    }
    let mut ca_file = None;
    if options.self_signed_tls {
        let dir = data_dir.join("tls");
        embedded::ensure_private_dir(&data_dir)?;
        let paths = tls::write_self_signed(&dir, &tls::default_hosts())?;
        config.server.security.secure = true;
        config.server.security.ssl.certificate_file = Some(paths.server_cert);
        config.server.security.ssl.key_file = Some(paths.server_key);
        ca_file = Some(paths.ca_cert);
    }
    if embedded {
        // The embedded default's public URLs follow the actual port and scheme.
        let scheme = if config.server.security.secure {
            "https"
        } else {
            "http"
        };
        let port = config.server.http_port;
        config.auth.authorized_uris = ["localhost", "127.0.0.1"]
            .iter()
            .filter_map(|host| url::Url::parse(&format!("{scheme}://{host}:{port}")).ok())
            .collect();
    }
    config.validate()?;
    Ok(Prepared {
        config,
        data_dir,
        listen,
        embedded,
        warnings,
        ca_file,
    })
}

/// What [`check_startup`] read from the files the configuration names.
#[derive(Debug)]
pub struct Checked {
    /// The secrets, decoded and length-checked.
    pub secrets: AuthSecrets,
    /// The TLS configuration from `server.security.ssl`, when `server.security.secure` is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The start-up checks without side effects, which `serve` runs before it opens the database: the secrets, the
/// database URL, and the TLS certificate and key. Reads the files the configuration names; creates, binds and
/// connects to nothing.
pub fn check_startup(config: &Config, data_dir: &Path) -> Result<Checked, StartupError> {
    let secrets = AuthSecrets::load(&SecretSource::from_config(&config.secrets), config)?;
    config.database.url(data_dir)?;
    let tls = if config.server.security.secure {
        let ssl = &config.server.security.ssl;
        match (&ssl.certificate_file, &ssl.key_file) {
            (Some(cert), Some(key)) => Some(tls::load_server_config(cert, key)?),
            _ => {
                return Err(StartupError::Unsupported(
                    "server.security.secure needs server.security.ssl.certificateFile and keyFile",
                ));
            }
        }
    } else {
        None
    };
    Ok(Checked { secrets, tls })
}

/// Everything `serve` checks before it binds its port, without its side effects: for `flyteauth config check`,
/// so that a configuration it accepts also starts. [`check_startup`], then the state `serve` builds (static
/// clients, header names, cookie keys, federation and external server settings) over a throwaway in-memory
/// store instead of the configured database.
pub async fn check(prepared: &Prepared) -> Result<(), StartupError> {
    let Checked { secrets, .. } = check_startup(&prepared.config, &prepared.data_dir)?;
    let store = flyteauth_store::connect("sqlite::memory:").await?;
    AppState::new(
        prepared.config.clone(),
        secrets,
        store,
        Arc::new(SystemClock),
    )?;
    Ok(())
}

/// Generates the embedded default's secret set on first start.
fn ensure_embedded_secrets(source: &SecretSource, dir: &Path) -> Result<(), StartupError> {
    if source.read(TOKEN_RSA_KEY)?.is_none() {
        embedded::ensure_private_dir(dir.parent().unwrap_or(dir))?;
        let written = flyteauth_core::secrets::write_fresh_set(dir)?;
        tracing::info!(dir = %dir.display(), files = written.len(), "generated a fresh secret set");
    }
    Ok(())
}

/// Opens (and migrates) the database `prepared` names, as `serve` would: for operator commands.
pub async fn open_store(prepared: &Prepared) -> Result<Arc<dyn Store>, StartupError> {
    connect_store(&prepared.config, &prepared.data_dir).await
}

async fn connect_store(config: &Config, data_dir: &Path) -> Result<Arc<dyn Store>, StartupError> {
    let database_url = config.database.url(data_dir)?;
    if database_url.starts_with("sqlite:") {
        embedded::ensure_private_dir(data_dir)?;
    }
    Ok(flyteauth_store::connect(&database_url).await?)
}

/// A server ready to accept connections: state built, store open, TLS loaded.
#[derive(Debug)]
pub struct Server {
    /// The shared state (exposed for tests and embedding).
    pub state: AppState,
    /// Where the configuration asks to listen.
    pub listen: SocketAddr,
    /// Where the operations listener (`flyteauth.metricsListenAddress`) is bound, if configured.
    pub metrics_listen: Option<SocketAddr>,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: listener::ServeOptions,
    metrics_tcp: Option<tokio::net::TcpListener>,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(prepared: Prepared) -> Result<(), StartupError> {
    let server = build(prepared).await?;
    let tcp = tokio::net::TcpListener::bind(server.listen)
        .await
        .map_err(|source| StartupError::Bind {
            addr: server.listen,
            source,
        })?;
    server.serve(tcp, listener::shutdown_signal()).await
}

impl Server {
    /// Serves on `tcp` until `shutdown` resolves, then drains in-flight requests.
    pub async fn serve(
        self,
        tcp: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let local = tcp.local_addr().map_err(StartupError::Serve)?;
        tracing::info!(listen = %local, public_url = %self.state.metadata.issuer, "flyteauth serving {scheme}, gRPC and Connect");
        // Dropped, and so stopped, when serving ends or this future is dropped.
        let _pruning = self
            .state
            .config
            .flyteauth
            .audit
            .retention_period()
            .map(|retention| {
                AbortOnDrop(tokio::spawn(prune_audit_trail(
                    self.state.store.clone(),
                    self.state.clock.clone(),
                    retention,
                )))
            });
        // Refreshes the external authorization server's documents while serving; stopped with the server.
        let _refreshing = self
            .state
            .external
            .clone()
            .map(|authority| AbortOnDrop(tokio::spawn(authority.run())));
        let operations = self.metrics_tcp.map(|metrics_tcp| {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let service = app::operations_service(self.state.clone());
            let task = tokio::spawn(listener::serve(
                metrics_tcp,
                None,
                service,
                async move {
                    let _ = stopped.await;
                },
                self.options,
            ));
            (stop, task)
        });
        let state = self.state.clone();
        let service = app::service(self.state);
        let served = listener::serve(tcp, self.tls, service, shutdown, self.options).await;
        // Every answered request's event is committed already (each waited for it); this covers what background
        // work (the aggregated failure counts) queued last, before the process may exit.
        if let Err(e) = state.audit.flush().await {
            tracing::warn!(error = %e, "audit events queued at shutdown may not be written");
        }
        if let Some((stop, task)) = operations {
            // Probes and scrapes keep answering while the public port drains, then stop too.
            let _ = stop.send(());
            match task.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "the operations listener failed"),
                Err(e) => tracing::warn!(error = %e, "the operations listener task failed"),
                Ok(Ok(())) => {}
            }
        }
        served.map_err(StartupError::Serve)?;
        tracing::info!("flyteauth stopped");
        Ok(())
    }
}

/// Loads secrets, opens the store, prepares the embedded default and builds the state.
pub async fn build(prepared: Prepared) -> Result<Server, StartupError> {
    if let Err(e) = crate::metrics::install() {
        tracing::warn!(error = %e, "metrics are unavailable");
    }
    for warning in &prepared.warnings {
        tracing::warn!("{warning}");
    }
    let Prepared {
        config,
        data_dir,
        listen,
        embedded,
        ca_file,
        ..
    } = prepared;
    let source = SecretSource::from_config(&config.secrets);
    if embedded {
        ensure_embedded_secrets(&source, source.secrets_prefix())?;
    }
    let Checked {
        secrets,
        tls: tls_config,
    } = check_startup(&config, &data_dir)?;
    let store = connect_store(&config, &data_dir).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let public_url = config.public_url().to_string();
    let public_url = public_url.trim_end_matches('/').to_owned();
    if embedded {
        match embedded::ensure_default_client(store.as_ref(), &data_dir, clock.unix_now()).await? {
            DefaultClient::Created { secret_file } => {
                // Printed once, on the terminal of whoever started the server; it names the file, never the secret.
                println!(
                    "{}",
                    embedded::usage_banner(&public_url, &secret_file, ca_file.as_deref())
                );
            }
            DefaultClient::Existing { secret_file } => {
                tracing::info!(client_id = embedded::DEFAULT_CLIENT_ID, secret_file = %secret_file.display(), "default client");
            }
        }
    }
    let first_admin = &config.flyteauth.first_admin;
    if embedded || first_admin.password_file.is_some() {
        match users::ensure_first_admin(
            store.as_ref(),
            &first_admin.username,
            first_admin.password_file.as_deref(),
            clock.unix_now(),
        )
        .await?
        {
            FirstAdmin::Generated { username, password } => {
                // Printed once, like the default client's banner; stored only as an argon2 hash.
                println!(
                    "\nflyteauth created the administrator account '{username}' with the password\n\n    {password}\n\n  \
                     It is shown only now. Sign in at {public_url}/login; change it with\n  \
                     flyteauth users set-password {username} --password-stdin\n"
                );
            }
            FirstAdmin::FromFile { username } => {
                tracing::info!(username, "created the first administrator account");
            }
            FirstAdmin::NotNeeded => {}
        }
    }
    if let Some(ca) = &ca_file {
        tracing::info!(ca = %ca.display(), "clients must trust this CA (SSL_CERT_FILE, admin.caCertFilePath)");
    }
    let options = serve_options(&config);
    let metrics_listen_addr = config.flyteauth.metrics_listen_address;
    let metrics_tcp = match metrics_listen_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartupError::Bind { addr, source })?,
        ),
        None => None,
    };
    let metrics_listen = metrics_tcp.as_ref().and_then(|l| l.local_addr().ok());
    let state = AppState::new(config, secrets, store, clock)?;
    if let Some(authority) = &state.external {
        // Bounded by retryAttempts × retryDelay: past that the server starts anyway, not ready.
        authority.start().await;
    }
    let seq = crate::revocation_mirror::load(&state).await?;
    tokio::spawn(crate::revocation_mirror::run(state.clone(), seq));
    Ok(Server {
        state,
        listen,
        metrics_listen,
        tls: tls_config,
        options,
        metrics_tcp,
    })
}

/// The listener's limits and timeouts as `server.readHeaderTimeoutSeconds` and `flyteauth.connections` set them.
pub fn serve_options(config: &Config) -> listener::ServeOptions {
    let c = &config.flyteauth.connections;
    // flyteadmin reads 0 as "no timeout"; an unbounded head would let one idle client hold a connection slot
    // forever, so 0 keeps the default instead (cutting every client off after one second would be worse still).
    let read_header_timeout = match config.server.read_header_timeout_seconds {
        0 => listener::ServeOptions::default().read_header_timeout,
        seconds => Duration::from_secs(seconds),
    };
    listener::ServeOptions {
        read_header_timeout,
        tls_handshake_timeout: c.tls_handshake_timeout,
        max_connections: Some(c.max_connections),
        http2_keep_alive_interval: c.keep_alive_interval(),
        http2_keep_alive_timeout: c.http2_keep_alive_timeout,
        http2_max_concurrent_streams: c.http2_max_concurrent_streams,
        max_header_bytes: c.max_header_bytes,
        request_body_timeout: Some(c.request_body_timeout),
        ..listener::ServeOptions::default()
    }
}

/// How often audit events past their retention are deleted.
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Audit events deleted per statement: short statements leave the table writable for new events meanwhile.
const AUDIT_PRUNE_BATCH: u32 = 1000;

/// The most batches one pruning run deletes (a million events); a larger backlog waits for the next run.
const AUDIT_PRUNE_MAX_BATCHES: u32 = 1000;

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Deletes audit events older than `retention` now and then every [`AUDIT_PRUNE_INTERVAL`], until aborted.
async fn prune_audit_trail(store: Arc<dyn Store>, clock: Arc<dyn Clock>, retention: Duration) {
    let mut tick = tokio::time::interval(AUDIT_PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The first tick completes at once: pruning starts with the server.
        tick.tick().await;
        let before = clock
            .unix_now()
            .saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
        prune_audit_before(store.as_ref(), before).await;
    }
}

/// Deletes the audit events recorded before `before` (unix seconds) in bounded batches; returns how many.
/// A failing batch is logged and ends the run; the next run tries again.
pub async fn prune_audit_before(store: &dyn Store, before: i64) -> u64 {
    let mut deleted = 0u64;
    for _ in 0..AUDIT_PRUNE_MAX_BATCHES {
        match store.prune_audit(before, AUDIT_PRUNE_BATCH).await {
            Ok(n) => {
                deleted = deleted.saturating_add(n);
                if n < u64::from(AUDIT_PRUNE_BATCH) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not prune the audit trail; retrying in an hour");
                break;
            }
        }
        // Let requests at the database between batches.
        tokio::task::yield_now().await;
    }
    if deleted > 0 {
        tracing::info!(deleted, before, "pruned audit events past their retention");
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteauth_store::AuditEvent;

    #[test]
    fn serve_options_follow_the_configuration() {
        let yaml = "server:\n  readHeaderTimeoutSeconds: 7\nflyteauth:\n  connections:\n    maxConnections: 9\n    \
                    requestBodyTimeout: 3s\n    tlsHandshakeTimeout: 4s\n    maxHeaderBytes: 10000\n    \
                    http2MaxConcurrentStreams: 5\n    http2KeepAliveInterval: 0s\n    http2KeepAliveTimeout: 6s\n";
        let config = Config::from_yaml_str(yaml).unwrap().config;
        let opts = serve_options(&config);
        assert_eq!(opts.read_header_timeout, Duration::from_secs(7));
        assert_eq!(opts.max_connections, Some(9));
        assert_eq!(opts.request_body_timeout, Some(Duration::from_secs(3)));
        assert_eq!(opts.tls_handshake_timeout, Duration::from_secs(4));
        assert_eq!(opts.max_header_bytes, 10000);
        assert_eq!(opts.http2_max_concurrent_streams, 5);
        assert_eq!(opts.http2_keep_alive_interval, None);
        assert_eq!(opts.http2_keep_alive_timeout, Duration::from_secs(6));

        // flyteadmin's "no timeout" keeps the default bound rather than none.
        let config = Config::from_yaml_str("server:\n  readHeaderTimeoutSeconds: 0\n")
            .unwrap()
            .config;
        assert_eq!(
            serve_options(&config).read_header_timeout,
            Duration::from_secs(32)
        );
    }

    #[tokio::test]
    async fn pruning_deletes_only_events_past_retention() {
        let store = flyteauth_store::connect("sqlite::memory:").await.unwrap();
        for at in [10, 20, 30] {
            store
                .record(&AuditEvent {
                    at,
                    kind: "app.created".into(),
                    client_id: format!("app-{at}"),
                    subject: "operator".into(),
                    outcome: "success".into(),
                    remote_addr: String::new(),
                    detail: serde_json::json!({}),
                })
                .await
                .unwrap();
        }
        assert_eq!(prune_audit_before(store.as_ref(), 25).await, 2);
        assert_eq!(prune_audit_before(store.as_ref(), 25).await, 0);
        let left = store.recent(10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].at, 30);
    }
}
