//! A thousand slow-loris connections do not stop a normal client from getting a token.
//!
//! The server runs as the `flyteauth` binary (its memory is then its own) with its default connection limits. From
//! 127.0.0.1, 1,000 connections each send part of a request and then one more byte every 300 ms: half of them
//! trickle a request head that never ends, half send a complete `POST /oauth2/token` head and trickle its body.
//! While all of them are held open, a normal client asks for client-credentials tokens. Bounded: the loris phase
//! lasts [`HOLD`], every socket is closed at the end, and the server process is killed when the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use flyteauth_tests::{APP_ID, APP_SECRET, config_yaml, flyteauth_bin, sdk_basic};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Slow connections: half trickle a head, half a body.
const LORIS: usize = 1000;
/// How long they are held open (well under the default 32 s header and 30 s body timeouts, so none is cut off).
const HOLD: Duration = Duration::from_secs(8);
/// One byte per connection this often.
const TRICKLE: Duration = Duration::from_millis(300);
/// Token requests measured without and with the loris.
const SAMPLES: usize = 20;
/// The slowest token request accepted while the loris hold their connections.
const TOKEN_BOUND: Duration = Duration::from_secs(5);
/// The most the server's resident memory may grow per slow connection.
const RSS_PER_CONNECTION_BOUND: u64 = 64 * 1024;

/// The server process; killed when dropped, so a failing test leaves nothing running.
struct ServerProcess {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts `flyteauth serve` on the harness configuration (defaults for every connection limit) and waits until
    /// `/healthz` answers.
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = flyteauth_tests::cli::free_port();
        flyteauth_core::secrets::write_fresh_set(&dir.path().join("secrets")).unwrap();
        let config = dir.path().join("flyteauth.yaml");
        std::fs::write(&config, config_yaml(port, dir.path())).unwrap();
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
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(format!("{}/healthz", server.base)).await
                && response.status() == 200
            {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// A line of `/proc/<pid>/status`, in kB (e.g. `VmRSS`).
    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }
}

/// Latencies of `SAMPLES` token requests, each on a new connection as a new client would make it.
async fn token_latencies(server: &ServerProcess) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut latencies = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let request = client
            .post(format!("{}/oauth2/token", server.base))
            .header("authorization", sdk_basic(APP_ID, APP_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send();
        let response = tokio::time::timeout(TOKEN_BOUND, request)
            .await
            .expect("a normal client did not get a token in time")
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["access_token"].is_string(), "{body}");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

/// One slow connection: `opening` at once, then a byte every [`TRICKLE`] until `stop`. Counts itself in `open` while
/// connected; counts in `cut` if the server closed it first.
async fn loris(
    addr: String,
    opening: String,
    offset: Duration,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
) {
    let Ok(mut tcp) = TcpStream::connect(&addr).await else {
        cut.fetch_add(1, Ordering::SeqCst);
        return;
    };
    open.fetch_add(1, Ordering::SeqCst);
    let mut alive = tcp.write_all(opening.as_bytes()).await.is_ok();
    // Spread the writes of a thousand connections over the interval.
    tokio::time::sleep(offset).await;
    while alive {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(TRICKLE) => {
                alive = tcp.write_all(b"a").await.is_ok();
            }
        }
    }
    if !alive {
        cut.fetch_add(1, Ordering::SeqCst);
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_loris_connections_do_not_stop_a_normal_client_getting_a_token() {
    let test_started = Instant::now();
    let server = ServerProcess::start().await;
    let addr = server.addr();

    // Warm up (first connections, lazily built state), then the baseline.
    token_latencies(&server).await;
    let quiet = token_latencies(&server).await;
    let rss_before = server.status_kb("VmRSS");
    let fds_before = server.open_fds();

    let (stop, stopped) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicUsize::new(0));
    let head = format!("POST /oauth2/token HTTP/1.1\r\nHost: {addr}\r\nX-Loris: ");
    // Under the token endpoint's body limit, so the server waits for it instead of refusing at once.
    let body_head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\ngrant_type=",
        sdk_basic(APP_ID, APP_SECRET)
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..LORIS {
        let opening = if i % 2 == 0 { &head } else { &body_head };
        let offset = TRICKLE * u32::try_from(i % 100).unwrap() / 100;
        tasks.spawn(loris(
            addr.clone(),
            opening.clone(),
            offset,
            stopped.clone(),
            Arc::clone(&open),
            Arc::clone(&cut),
        ));
    }
    let loris_started = Instant::now();
    while open.load(Ordering::SeqCst) + cut.load(Ordering::SeqCst) < LORIS {
        assert!(
            loris_started.elapsed() < Duration::from_secs(10),
            "only {} slow connections opened",
            open.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let every connection trickle a few bytes before measuring.
    tokio::time::sleep(TRICKLE * 3).await;
    let held_by_server = server.open_fds().saturating_sub(fds_before);
    let loaded = token_latencies(&server).await;
    let remaining = HOLD.saturating_sub(loris_started.elapsed());
    tokio::time::sleep(remaining).await;
    let rss_peak = server.status_kb("VmRSS");
    let still_open = open.load(Ordering::SeqCst);
    let cut_early = cut.load(Ordering::SeqCst);

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .expect("the slow connections did not close");
    let after = token_latencies(&server).await;

    let growth_kb = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "slow loris: {LORIS} connections ({} trickling a head, {} a body, a byte every {TRICKLE:?}), \
         {held_by_server} held by the server, {still_open} still open after {HOLD:?}, {cut_early} cut early",
        LORIS.div_ceil(2),
        LORIS / 2
    );
    eprintln!(
        "token latency over {SAMPLES} requests, median / max: without loris {:?} / {:?}, with {LORIS} loris {:?} / {:?}, \
         after {:?} / {:?}",
        median(&quiet),
        quiet[SAMPLES - 1],
        median(&loaded),
        loaded[SAMPLES - 1],
        median(&after),
        after[SAMPLES - 1]
    );
    eprintln!(
        "server RSS: {} KiB before, {} KiB with the loris (+{growth_kb} KiB, {} bytes per connection); test took {:?}",
        rss_before,
        rss_peak,
        growth_kb * 1024 / LORIS as u64,
        test_started.elapsed()
    );

    assert_eq!(cut_early, 0, "the defaults cut slow connections early");
    assert_eq!(still_open, LORIS);
    assert!(
        held_by_server >= LORIS * 95 / 100,
        "the server held only {held_by_server} of the slow connections: the test did not load it"
    );
    assert!(loaded[SAMPLES - 1] < TOKEN_BOUND);
    assert!(
        growth_kb * 1024 < RSS_PER_CONNECTION_BOUND * LORIS as u64,
        "the server grew by {growth_kb} KiB for {LORIS} slow connections"
    );
}
