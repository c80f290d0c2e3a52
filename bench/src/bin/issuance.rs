//! `client_credentials` issuance against the RSA signature it cannot do without.
//!
//! Every token the endpoint issues costs one RSA-2048 signature. How close the endpoint comes to the rate of a
//! bare signing loop, on the same core with the same key, says how much everything else (HTTP, client
//! authentication, the store, the audit event, logging, claims, encoding) costs on top.
//!
//! - Issuance: the in-process server of the `grants` benchmark (`flyteauth_bench::inproc`, 1 worker thread;
//!   `scripts/bench` runs this process under `taskset -c 0` and wrk under `taskset -c 1`), app `bench-cc` with
//!   a generated secret (kept as a SHA-256 digest), HTTP Basic, `grant_type=client_credentials&scope=`: wrk
//!   against `POST /oauth2/token`.
//! - Baseline: `aws_lc_rs::signature::RsaKeyPair::sign` (`RSA_PKCS1_SHA256`) in a loop on this process's
//!   main thread (the same pinned core) while the server is idle, with the server's own signing key (read
//!   from the key file the server loaded, checked against the key it publishes), over the signing input of a
//!   token the endpoint issued (so the hashed input has a real token's size).
//!
//! Rounds alternate which of the two goes first. Target: issuance req/s ≥ 0.75 × signatures per second (the
//! median of the per-round ratios).
//!
//! Options: `--workers N` (1), `--rounds N` (5), `--sign-seconds S` (3), `--duration S` per wrk run (5),
//! `--connections N` (16), `--warmup S` (2), `--wrk-cpu N` (unpinned); `--serve-only S` only serves for that
//! long and prints a wrk command line (for `perf record -p`).

use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use flyteauth_bench::grant_fixture::{self, CC_CLIENT_ID, Fixture};
use flyteauth_bench::signing::{ServerKey, SignRun};
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::wrk::{self, Load, LoadCpu, POST_SCRIPT, Summary, WrkRun};
use flyteauth_bench::{arg, inproc};
use flyteauth_server::state::AppState;
use flyteauth_server::telemetry;

const TARGET_RATIO: f64 = 0.75;
const PATH: &str = "/oauth2/token";

fn main() -> anyhow::Result<()> {
    flyteauth_bench::watchdog(Duration::from_secs(600), || {});
    let workers: usize = arg("--workers", 1)?;
    let rounds: usize = arg("--rounds", 5)?;
    let sign_seconds: f64 = arg("--sign-seconds", 3.0)?;
    let seconds: u64 = arg("--duration", 5)?;
    let connections: u32 = arg("--connections", 16)?;
    let warmup: u64 = arg("--warmup", 2)?;
    let load_cpu = LoadCpu::from_arg(arg("--wrk-cpu", -1)?);
    let serve_only: u64 = arg("--serve-only", 0)?;
    if rounds == 0 || seconds == 0 || !(sign_seconds > 0.0 && sign_seconds < 60.0) {
        bail!("--rounds and --duration must be at least 1, --sign-seconds in (0, 60)");
    }

    // As `flyteauth serve` does: one crypto provider for the process, logging as configured.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    telemetry::init(telemetry::LogFormat::Plain)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let server = runtime.block_on(inproc::start(|_: &AppState| Router::new()))?;
    let addr = server.addr;
    let state = server.state.clone();
    let fixture = runtime.block_on(Fixture::create(&state))?;
    let key = ServerKey::of_server(&state)?;

    // One token, checked before anything is timed: it verifies with the key the baseline signs with, and `/me`
    // knows its client.
    let token =
        grant_fixture::exchange_once(addr, Some(&fixture.cc_basic), &Fixture::cc_body(), false)?
            .access_token;
    let (_, claims) = key.verify_jwt(&token).context("the issued token")?;
    if claims["sub"] != CC_CLIENT_ID {
        bail!("the issued token is for {}", claims["sub"]);
    }
    grant_fixture::check_me(addr, &token, CC_CLIENT_ID)?;
    let (signing_input, _) = token.rsplit_once('.').context("token has no signature")?;
    let signing_input = signing_input.as_bytes().to_vec();

    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    std::fs::write(&script, POST_SCRIPT)?;
    let headers: Vec<String> = grant_fixture::headers(Some(&fixture.cc_basic))
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let url = format!("http://{addr}{PATH}");
    let script_args = [Fixture::cc_body()];

    if serve_only > 0 {
        println!(
            "serving {url} for {serve_only} s (pid {}); load it with:",
            std::process::id()
        );
        let quoted: Vec<String> = headers.iter().map(|h| format!("-H '{h}'")).collect();
        println!(
            "wrk -t1 -c{connections} -d10s -s {} {} {url} -- '{}'",
            script.display(),
            quoted.join(" "),
            script_args[0]
        );
        std::thread::sleep(Duration::from_secs(serve_only));
        server.abandon();
        return Ok(());
    }

    let issue = |seconds: u64| -> anyhow::Result<WrkRun> {
        wrk::run(
            load_cpu,
            &Load {
                url: &url,
                headers: &headers,
                script: Some((&script, &script_args)),
                connections,
                seconds,
            },
        )
        .context("client_credentials issuance")
    };
    let sign = |seconds: f64| -> anyhow::Result<SignRun> {
        key.sign_loop(&signing_input, Duration::from_secs_f64(seconds))
    };

    println!(
        "server: in-process, {workers} worker thread(s), {addr}, SQLite; POST {PATH} client_credentials by app \
         {CC_CLIENT_ID} (SHA-256 secret, HTTP Basic); wrk 1 thread, {connections} connections, {seconds} s per \
         run; baseline: aws-lc-rs RsaKeyPair::sign RSA_PKCS1_SHA256, RSA-{} key of the server, {} s per run, \
         {}-byte signing input (token {} bytes); {rounds} rounds",
        key.bits,
        sign_seconds,
        signing_input.len(),
        token.len()
    );
    issue(warmup)?;
    sign(1.0)?;

    let mut issued: Vec<WrkRun> = Vec::with_capacity(rounds);
    let mut signed: Vec<SignRun> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Alternate which goes first, so neither always gets the calmer half of a round.
        if round % 2 == 0 {
            signed.push(sign(sign_seconds)?);
            issued.push(issue(seconds)?);
        } else {
            issued.push(issue(seconds)?);
            signed.push(sign(sign_seconds)?);
        }
        let (i, s) = (issued[round], signed[round]);
        println!(
            "round {}: issuance {:.0} req/s (p50 {:.0} us, p99 {:.0} us, {:.0} us server CPU/req)  sign {:.0}/s \
             ({:.1} us CPU/sign)  ratio {:.3}",
            round + 1,
            i.rps,
            i.p50_us,
            i.p99_us,
            i.cpu_us,
            s.per_s,
            s.cpu_us,
            i.rps / s.per_s
        );
    }
    server.stop(&runtime)?;

    // A round measures both back to back; the median of the per-round ratios is immune to the machine
    // changing speed between rounds.
    let ratios: Vec<f64> = issued
        .iter()
        .zip(&signed)
        .map(|(i, s)| i.rps / s.per_s)
        .collect();
    let ratio = median(&ratios);
    let (lo, hi) = range(&ratios);
    let m = Summary::of(&issued);
    let sign_per_s = median(&signed.iter().map(|s| s.per_s).collect::<Vec<_>>());
    let sign_us = median(&signed.iter().map(|s| s.cpu_us).collect::<Vec<_>>());
    let total: u64 = issued.iter().map(|r| r.requests).sum();
    println!();
    println!(
        "median issuance {:.0} req/s  p50 {:.0} us  p99 {:.0} us  server CPU {:.0} us/req",
        m.rps, m.p50_us, m.p99_us, m.cpu_us
    );
    println!(
        "median sign loop {sign_per_s:.0}/s  {sign_us:.1} us CPU/sign  (baseline); the rest of a request: \
         {:.0} us",
        m.cpu_us - sign_us
    );
    println!(
        "issuance / sign loop {ratio:.3}  (per-round {lo:.3}..{hi:.3}; target >= {TARGET_RATIO}) {}",
        verdict(ratio >= TARGET_RATIO)
    );
    println!("tokens issued in measured rounds: {total}, all 2xx");
    println!("RESULT issuance.workers {workers}");
    println!("RESULT issuance.connections {connections}");
    println!("RESULT issuance.duration_s {seconds}");
    println!("RESULT issuance.sign_seconds {sign_seconds}");
    println!("RESULT issuance.rounds {rounds}");
    println!("RESULT issuance.key_bits {}", key.bits);
    println!("RESULT issuance.token_bytes {}", token.len());
    println!(
        "RESULT issuance.signing_input_bytes {}",
        signing_input.len()
    );
    println!("RESULT issuance.rps {:.0}", m.rps);
    println!("RESULT issuance.p50_us {:.0}", m.p50_us);
    println!("RESULT issuance.p99_us {:.0}", m.p99_us);
    println!("RESULT issuance.cpu_us {:.0}", m.cpu_us);
    println!("RESULT issuance.sign_per_s {sign_per_s:.0}");
    println!("RESULT issuance.sign_us {sign_us:.1}");
    println!("RESULT issuance.rest_us {:.0}", m.cpu_us - sign_us);
    println!("RESULT issuance.cpu_ratio {:.3}", sign_us / m.cpu_us);
    println!("RESULT issuance.ratio {ratio:.3}");
    println!("RESULT issuance.ratio_range {lo:.3}..{hi:.3}");
    println!("RESULT issuance.target {TARGET_RATIO}");
    println!("RESULT issuance.verdict {}", verdict(ratio >= TARGET_RATIO));
    Ok(())
}
