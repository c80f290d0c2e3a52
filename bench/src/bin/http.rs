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

use std::time::Duration;

use anyhow::bail;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::wrk::{self, Load, LoadCpu, Summary, WrkRun};
use flyteauth_bench::{arg, client, fixture, inproc};
use flyteauth_server::telemetry;

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
    let load_cpu = LoadCpu::from_arg(wrk_cpu);
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
    let server = runtime.block_on(inproc::start(|_| bench_routes()))?;
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
        server.abandon();
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
    let headers = [bearer];
    let load = |url: &str, seconds: u64| -> anyhow::Result<WrkRun> {
        wrk::run(
            load_cpu,
            &Load {
                url,
                headers: &headers,
                script: None,
                connections,
                seconds,
            },
        )
    };
    for (_, url) in &routes {
        load(url, warmup)?;
    }

    let mut results: Vec<Vec<WrkRun>> = vec![Vec::new(); routes.len()];
    for round in 0..rounds {
        // Rotate which route goes first, so none always gets the calmer part of a round.
        let mut line = format!("round {}:", round + 1);
        for k in 0..routes.len() {
            let index = (round + k) % routes.len();
            results[index].push(load(&routes[index].1, seconds)?);
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

    server.stop(&runtime)?;

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
