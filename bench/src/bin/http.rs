//! `GET /me` with a valid bearer token against an empty handler on the same server stack.
//!
//! One in-process server built the way `flyteauth serve` builds it (configuration file, file
//! secrets, SQLite store, `serve::build`), served by the production listener
//! (`listener::serve`: protocol detection, per-connection tasks) and the production service
//! (`app::service_with`: the tonic routes and the HTTP router with all their middleware), plus one
//! route that exists only here: `GET /bench/empty`, an empty 200 behind the same metrics
//! middleware. wrk drives both paths with identical settings and identical request headers (the
//! empty route also receives the bearer token, and ignores it), alternating routes over several
//! rounds. The server runs on a tokio multi-thread runtime with `--workers` worker threads
//! (default 1, so wrk's single thread and the server each have one of the two cores).
//!
//! Target: req/s of `/me` ≥ 0.70 × req/s of `/bench/empty`.
//!
//! Options: `--workers N` (1), `--rounds N` (5), `--duration SECS` per wrk run (5),
//! `--connections N` (16), `--warmup SECS` per route (2); `--serve-only SECS` just serves for that
//! long and prints a wrk command line (for profiling with `perf record -p`).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::{arg, client, cpu, fixture};
use flyteauth_server::serve::{self, ServeOptions};
use flyteauth_server::{app, listener, telemetry};
use tokio::sync::oneshot;

const TARGET_RATIO: f64 = 0.70;
const EMPTY_PATH: &str = "/bench/empty";

/// The extra route: nothing but a 200, wrapped in the same middleware as every real route.
fn bench_routes() -> Router {
    async fn empty() -> StatusCode {
        StatusCode::OK
    }
    // Mounted inside the production router, so it runs behind the same middleware as `/me`.
    Router::new().route(EMPTY_PATH, get(empty))
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Builds and starts the server on the current runtime.
async fn start() -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    flyteauth_core::secrets::write_fresh_set(&dir.path().join("secrets"))?;
    let config_file = fixture::write_config(addr.port(), dir.path())?;
    let prepared = serve::prepare(&ServeOptions {
        config_file: Some(config_file),
        ..ServeOptions::default()
    })?;
    let read_header_timeout =
        Duration::from_secs(prepared.config.server.read_header_timeout_seconds.max(1));
    let server = serve::build(prepared).await?;

    // The production service plus the bench route, behind the same middleware.
    let service = app::service_with(server.state, bench_routes());
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
        stop,
        task,
        _dir: dir,
    })
}

/// What one wrk run reported.
#[derive(Debug, Clone, Copy)]
struct WrkRun {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    /// CPU time of this process (the server; wrk is a separate process) per request.
    cpu_us: f64,
}

fn parse_duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        "m" => 60_000_000.0,
        _ => return None,
    };
    Some(value * scale)
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkRun> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = parse_duration_us(rest);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = parse_duration_us(rest);
        } else if line.contains("requests in") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if line.starts_with("Non-2xx or 3xx responses") {
            bail!("wrk saw error responses: {line}");
        } else if line.starts_with("Socket errors") {
            bail!("wrk saw socket errors: {line}");
        }
    }
    Ok(WrkRun {
        rps: rps.context("no Requests/sec in wrk output")?,
        p50_us: p50.context("no 50% latency in wrk output")?,
        p99_us: p99.context("no 99% latency in wrk output")?,
        requests: requests.context("no request count in wrk output")?,
        cpu_us: f64::NAN,
    })
}

/// Where the load generator runs: its own CPU (`taskset -c N wrk …`) or wherever the scheduler puts it.
#[derive(Clone, Copy)]
struct LoadCpu(Option<usize>);

impl LoadCpu {
    fn command(self) -> Command {
        match self.0 {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.args(["-c", &cpu.to_string(), "wrk"]);
                command
            }
            None => Command::new("wrk"),
        }
    }
}

fn wrk(
    load_cpu: LoadCpu,
    url: &str,
    bearer: &str,
    connections: u32,
    seconds: u64,
) -> anyhow::Result<WrkRun> {
    let cpu_before = cpu::snapshot()?;
    let mut child = load_cpu
        .command()
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["--latency", "--timeout", "5s", "-H", bearer, url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run wrk (apt-get install wrk)")?;
    let deadline = Instant::now() + Duration::from_secs(seconds + 15);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wrk did not finish within {seconds} s + 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let cpu_ns = cpu::snapshot()?.since(&cpu_before);
    let mut run = parse_wrk(&stdout).with_context(|| format!("wrk output:\n{stdout}"))?;
    run.cpu_us = cpu_ns as f64 / 1_000.0 / run.requests.max(1) as f64;
    Ok(run)
}

fn main() -> anyhow::Result<()> {
    flyteauth_bench::watchdog(Duration::from_secs(600), || {});
    let workers: usize = arg("--workers", 1)?;
    let rounds: usize = arg("--rounds", 5)?;
    let seconds: u64 = arg("--duration", 5)?;
    let connections: u32 = arg("--connections", 16)?;
    let warmup: u64 = arg("--warmup", 2)?;
    // With `--wrk-cpu N` (scripts/bench: the server under `taskset -c 0`, wrk on CPU 1) neither side
    // migrates or steals the other's core, so both routes are measured under the same conditions.
    let wrk_cpu: i64 = arg("--wrk-cpu", -1)?;
    let load_cpu = LoadCpu(usize::try_from(wrk_cpu).ok());
    let serve_only: u64 = arg("--serve-only", 0)?;

    // As `flyteauth serve` does: one crypto provider for the process, logging as configured
    // (`RUST_LOG`, default `info`; nothing on the `/me` path logs at that level).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    telemetry::init(telemetry::LogFormat::Plain)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let server = runtime.block_on(start())?;
    let addr = server.addr;

    let token = fixture::fetch_token(addr)?;
    fixture::check_me(addr, &token)?;
    let empty = client::get(addr, EMPTY_PATH, &[])?;
    if empty.status != 200 {
        bail!("{EMPTY_PATH} answered {}", empty.status);
    }

    let bearer = format!("Authorization: Bearer {token}");
    if serve_only > 0 {
        // For profiling: drive it by hand (wrk, perf record -p) while it runs.
        println!(
            "serving http://{addr} for {serve_only} s (pid {})",
            std::process::id()
        );
        println!("wrk -t1 -c{connections} -d10s -H '{bearer}' http://{addr}/me");
        std::thread::sleep(Duration::from_secs(serve_only));
        let _ = server.stop.send(());
        return Ok(());
    }
    let base = format!("http://{addr}");
    let routes = vec![
        ("/me", format!("{base}/me")),
        ("empty", format!("{base}{EMPTY_PATH}")),
    ];
    println!(
        "server: in-process, tokio multi-thread runtime with {workers} worker thread(s), {addr}; \
         wrk: 1 thread, {connections} connections, {seconds} s per run, {rounds} rounds; \
         the same {}-byte bearer token is sent to every route",
        token.len()
    );
    for (_, url) in &routes {
        wrk(load_cpu, url, &bearer, connections, warmup)?;
    }

    let mut results: Vec<Vec<WrkRun>> = vec![Vec::new(); routes.len()];
    for round in 0..rounds {
        // Rotate which route goes first, so none always gets the calmer part of a round.
        let mut line = format!("round {}:", round + 1);
        for k in 0..routes.len() {
            let index = (round + k) % routes.len();
            results[index].push(wrk(
                load_cpu,
                &routes[index].1,
                &bearer,
                connections,
                seconds,
            )?);
        }
        for (index, (name, _)) in routes.iter().enumerate() {
            let r = results[index][round];
            line.push_str(&format!(
                "  {name} {:.0} req/s (p50 {:.0} us, p99 {:.0} us, {:.1} us CPU/req)",
                r.rps, r.p50_us, r.p99_us, r.cpu_us
            ));
        }
        line.push_str(&format!(
            "  ratio {:.3}",
            results[0][round].rps / results[1][round].rps
        ));
        println!("{line}");
    }

    let _ = server.stop.send(());
    let stopped = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), server.task).await });
    match stopped {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => bail!("server failed: {e}"),
        Ok(Err(e)) => bail!("server task failed: {e}"),
        Err(_) => bail!("server did not stop within 30 s"),
    }

    let medians: Vec<Summary> = results.iter().map(|runs| Summary::of(runs)).collect();
    let (me, empty) = (medians[0], medians[1]);
    // Each round runs /me and empty back to back, so a round is a matched pair; the median of the
    // pairs' ratios is immune to the machine changing speed between rounds, a ratio of medians is not.
    let per_round: Vec<f64> = results[0]
        .iter()
        .zip(&results[1])
        .map(|(m, e)| m.rps / e.rps)
        .collect();
    let ratio = median(&per_round);
    let (lo, hi) = range(&per_round);
    let total: u64 = results.iter().flatten().map(|r| r.requests).sum();
    println!();
    for ((name, _), m) in routes.iter().zip(&medians) {
        println!(
            "median {name:<10} {:>8.0} req/s  p50 {:.0} us  p99 {:.0} us  server CPU {:.1} us/req{}",
            m.rps,
            m.p50_us,
            m.p99_us,
            m.cpu_us,
            if *name == "empty" { "  (baseline)" } else { "" }
        );
    }
    println!(
        "/me / empty    {ratio:.3}  (per-round {lo:.3}..{hi:.3}; target >= {TARGET_RATIO}) {}",
        verdict(ratio >= TARGET_RATIO)
    );
    println!(
        "server CPU per request: /me adds {:.1} us to the empty route's {:.1} us; CPU ratio empty/me {:.3}",
        me.cpu_us - empty.cpu_us,
        empty.cpu_us,
        empty.cpu_us / me.cpu_us
    );
    println!("requests served in measured rounds: {total}, all 2xx");
    println!("RESULT http.workers {workers}");
    println!("RESULT http.connections {connections}");
    println!("RESULT http.duration_s {seconds}");
    println!("RESULT http.rounds {rounds}");
    println!("RESULT http.me_rps {:.0}", me.rps);
    println!("RESULT http.empty_rps {:.0}", empty.rps);
    println!("RESULT http.me_p50_us {:.0}", me.p50_us);
    println!("RESULT http.me_p99_us {:.0}", me.p99_us);
    println!("RESULT http.empty_p50_us {:.0}", empty.p50_us);
    println!("RESULT http.empty_p99_us {:.0}", empty.p99_us);
    println!("RESULT http.me_cpu_us {:.1}", me.cpu_us);
    println!("RESULT http.empty_cpu_us {:.1}", empty.cpu_us);
    println!(
        "RESULT http.me_extra_cpu_us {:.1}",
        me.cpu_us - empty.cpu_us
    );
    println!("RESULT http.cpu_ratio {:.3}", empty.cpu_us / me.cpu_us);
    println!("RESULT http.ratio {ratio:.3}");
    println!("RESULT http.ratio_range {lo:.3}..{hi:.3}");
    println!("RESULT http.verdict {}", verdict(ratio >= TARGET_RATIO));
    Ok(())
}

/// Medians over the rounds of one route.
#[derive(Debug, Clone, Copy)]
struct Summary {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
}

impl Summary {
    fn of(runs: &[WrkRun]) -> Self {
        let m = |f: fn(&WrkRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Self {
            rps: m(|r| r.rps),
            p50_us: m(|r| r.p50_us),
            p99_us: m(|r| r.p99_us),
            cpu_us: m(|r| r.cpu_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:1/me\n  1 threads and 16 connections\n  \
                   Latency Distribution\n     50%  251.00us\n     75%  300.00us\n     90%  1.20ms\n     \
                   99%    2.50ms\n  123456 requests in 5.00s, 10.00MB read\nRequests/sec:  24691.20\n\
                   Transfer/sec:      2.00MB\n";
        let run = parse_wrk(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.rps, 24691.20);
        assert_eq!(run.p50_us, 251.0);
        assert_eq!(run.p99_us, 2500.0);
        assert_eq!(run.requests, 123456);
        assert!(parse_wrk("Non-2xx or 3xx responses: 5\nRequests/sec: 1\n").is_err());
    }
}
