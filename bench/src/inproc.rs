//! The in-process server of the HTTP benchmarks, built as `flyteauth serve` builds it.
//!
//! Configuration file ([`crate::fixture`]), file secrets, SQLite store, `serve::build`, the production
//! listener (`listener::serve`: protocol detection, per-connection tasks) and the production service
//! (`app::service_with`: the gRPC routes and the HTTP router with all their middleware), plus whatever
//! extra routes the benchmark mounts inside that router.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use axum::Router;
use flyteauth_core::keys::SigningAlgorithm;
use flyteauth_server::serve::{self, ServeOptions};
use flyteauth_server::state::AppState;
use flyteauth_server::{app, listener};
use tokio::sync::oneshot;

use crate::fixture;

/// A running server; stop it with [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Its shared state: store, configuration, issuer.
    pub state: AppState,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Builds and starts the server on the current runtime, with the routes `extra` makes (from the
/// server's state) mounted inside the production router, behind the same middleware as every real
/// route.
pub async fn start(extra: impl FnOnce(&AppState) -> Router) -> anyhow::Result<Running> {
    start_signing(SigningAlgorithm::Rs256, extra).await
}

/// [`start`] with tokens signed under `algorithm` (`flyteauth.signingAlgorithm`, with a fresh key of its kind).
pub async fn start_signing(
    algorithm: SigningAlgorithm,
    extra: impl FnOnce(&AppState) -> Router,
) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    flyteauth_core::secrets::write_fresh_set_for(&dir.path().join("secrets"), algorithm)?;
    let config_file = dir.path().join("flyteauth.yaml");
    let yaml = fixture::config_yaml_with(
        addr.port(),
        dir.path(),
        10,
        &format!("  signingAlgorithm: {}\n", algorithm.as_str()),
    )?;
    std::fs::write(&config_file, yaml)?;
    let prepared = serve::prepare(&ServeOptions {
        config_file: Some(config_file),
        ..ServeOptions::default()
    })?;
    let read_header_timeout =
        Duration::from_secs(prepared.config.server.read_header_timeout_seconds.max(1));
    let server = serve::build(prepared).await?;
    let state = server.state.clone();

    let extra = extra(&state);
    let service = app::service_with(server.state, extra);
    let options = listener::ServeOptions {
        read_header_timeout,
        ..listener::ServeOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener::serve(
        tcp,
        None,
        service,
        async move {
            let _ = stopped.await;
        },
        options,
    ));
    Ok(Running {
        addr,
        state,
        stop,
        task,
        _dir: dir,
    })
}

impl Running {
    /// Asks the server to stop and waits (at most 30 s) until it has drained.
    pub fn stop(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let stopped = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), self.task).await });
        match stopped {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => bail!("server failed: {e}"),
            Ok(Err(e)) => bail!("server task failed: {e}"),
            Err(_) => bail!("server did not stop within 30 s"),
        }
    }

    /// Asks the server to stop without waiting.
    pub fn abandon(self) {
        let _ = self.stop.send(());
    }
}
