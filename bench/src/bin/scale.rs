//! Does flyteauth stay fast with many applications and many live tokens?
//!
//! Two in-process servers (`flyteauth_bench::inproc`, SQLite, on one tokio runtime with `--workers` worker
//! threads; `scripts/bench` runs this process under `taskset -c 0` and wrk under `taskset -c 1`): `small` with
//! 10 apps in its store, `large` with 10,000, created through the store API before anything is timed. The
//! app that loads both is `bench-cc` of the `grants` benchmark (generated secret, SHA-256 digest). Only one
//! server is loaded at a time; the other has no connection.
//!
//! - (a) issuance: wrk `POST /oauth2/token` (`client_credentials`, HTTP Basic) against each, interleaved
//!   rounds; target large / small ≥ 0.80;
//! - (b) validation: wrk `GET /me` with `bench-cc`'s bearer token against each; target ≥ 0.80;
//! - (c) memo churn, on `large`: 100,000 distinct valid tokens (1,000 of its apps × 100 tokens, minted in
//!   process with the server's own `TokenIssuer`, with the audience and scopes of a token the endpoint
//!   issued), each presented once to `/me` (warm-up; every answer must be 200), then wrk `/me` over all of
//!   them in a random order (a Lua script with every request formatted in advance) against wrk `/me` with one
//!   of them repeated (the same script, a file of one token), interleaved; target churn / one ≥ 0.80. VmRSS
//!   of this process is reported before the first presentation and after the churn load (the difference is
//!   what the server's memo and buffers took; the absolute figure includes this benchmark's own token lists);
//! - (d) one client cannot flush the memo: the app `scale-flooder` presents 100,000 distinct tokens of its own,
//!   once each. Before and after, a sample of 10,000 of the others' tokens (different samples, so the first
//!   does not refresh the second) is presented once each, and the server's CPU time per request (its runtime
//!   threads only) places each sample between a certain hit (one token, repeated) and a certain miss (the
//!   flood's own first sightings): the share of the sample answered from the memo. Target: ≥ 0.80 after the
//!   flood. The memo's size (`TokenValidator::remembered`) is reported before and after.
//!
//! Options: `--workers N` (1), `--rounds N` (5), `--duration S` per wrk run (5), `--warmup S` (2),
//! `--connections N` (16), `--wrk-cpu N` (unpinned), `--apps N` (10000), `--small-apps N` (10),
//! `--churn-apps N` (1000), `--tokens-per-app N` (100), `--flood N` (100000), `--sample N` (10000),
//! `--clients N` (4, connections of the single-pass client).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use flyteauth_bench::client::Connection;
use flyteauth_bench::grant_fixture::{self, CC_CLIENT_ID, Fixture};
use flyteauth_bench::process::memory;
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::wrk::{
    self, BEARER_CYCLE_SCRIPT, CpuSource, Load, LoadCpu, POST_SCRIPT, Summary, WrkRun,
};
use flyteauth_bench::{arg, cpu, inproc};
use flyteauth_core::clients::{generate_secret, hash_generated_secret};
use flyteauth_core::identity::PrincipalKind;
use flyteauth_core::token::AccessTokenRequest;
use flyteauth_server::state::AppState;
use flyteauth_server::telemetry;
use flyteauth_store::NewApp;
use rand::seq::SliceRandom;

const TARGET_RATIO: f64 = 0.80;
/// The server's runtime threads (the CPU time charged to it when this process also runs clients).
const SERVER_THREADS: &str = "bench-server";
const FLOODER: &str = "scale-flooder";

/// The id of the `n`-th app created besides `bench-cc` (the first `--churn-apps` of them carry the churn).
fn app_id(n: usize) -> String {
    format!("scale-app-{n:05}")
}

/// Creates `ids` as registered `client_credentials` apps, each with a fresh generated secret.
async fn create_apps(state: &AppState, ids: &[String]) -> anyhow::Result<()> {
    let now = state.clock.unix_now();
    for id in ids {
        state
            .store
            .create_app(&NewApp {
                client_id: id.clone(),
                client_name: format!("scale benchmark {id}"),
                organization: String::new(),
                secret_hash: hash_generated_secret(&generate_secret()).encode(),
                grant_types: vec!["client_credentials".to_owned()],
                scopes: vec!["all".to_owned()],
                audience: Vec::new(),
                redirect_uris: Vec::new(),
                created_by: "flyteauth-bench".to_owned(),
                created_at: now,
            })
            .await
            .with_context(|| format!("create app {id}"))?;
    }
    Ok(())
}

/// How many apps the store of `state` holds, page by page.
async fn count_apps(state: &AppState) -> anyhow::Result<usize> {
    const PAGE: u32 = 1_000;
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let page = state
            .store
            .list_apps(after.as_deref(), PAGE)
            .await
            .context("list apps")?;
        count += page.len();
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.client_id.clone()),
            _ => return Ok(count),
        }
    }
}

/// One server with its apps.
struct Side {
    name: &'static str,
    server: inproc::Running,
    fixture: Fixture,
    token: String,
    apps: usize,
}

/// What the token endpoint puts in an app's token besides who it is: minted tokens copy it.
#[derive(Debug, Clone)]
struct Template {
    audience: Vec<String>,
    scopes: Vec<String>,
}

impl Template {
    fn of(token: &str) -> anyhow::Result<Self> {
        use base64::Engine as _;
        let claims = token.split('.').nth(1).context("not a JWT")?;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims)?,
        )?;
        let strings = |v: &serde_json::Value| -> Vec<String> {
            match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let audience = strings(&claims["aud"]);
        let mut scopes = strings(&claims["scp"]);
        if scopes.is_empty() {
            scopes = claims["scope"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        }
        if audience.is_empty() {
            bail!("the issued token has no audience: {claims}");
        }
        Ok(Self { audience, scopes })
    }
}

/// Lets the calling thread run on every CPU: this process is pinned to the server's core, but set-up work
/// (minting, the single-pass clients) can use the load generator's core while nothing is timed there. Best
/// effort: without `taskset` the thread just stays where it is.
fn widen_current_thread() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return;
    };
    // Every CPU the machine has online (`available_parallelism` would only count this process's mask).
    let Ok(online) = std::fs::read_to_string("/sys/devices/system/cpu/online") else {
        return;
    };
    let _ = std::process::Command::new("taskset")
        .args(["-p", "-c", online.trim(), &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// `per_app` distinct tokens of each of `apps`, signed by `state`'s issuer on two threads.
fn mint(
    state: &AppState,
    template: &Template,
    apps: &[String],
    per_app: usize,
) -> anyhow::Result<Vec<String>> {
    let threads = 2usize;
    // Split by token, not by app, so a single app's flood is minted on both threads too.
    let jobs: Vec<&String> = apps
        .iter()
        .flat_map(|id| std::iter::repeat_n(id, per_app))
        .collect();
    let chunk = jobs.len().div_ceil(threads).max(1);
    let results: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|ids| {
                scope.spawn(move || -> anyhow::Result<Vec<String>> {
                    widen_current_thread();
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let issued = state
                            .issuer
                            .issue(&AccessTokenRequest {
                                subject: (*id).clone(),
                                client_id: (*id).clone(),
                                client_name: Some(format!("scale benchmark {id}")),
                                audience: template.audience.clone(),
                                scopes: template.scopes.clone(),
                                user_info: None,
                                kind: PrincipalKind::App,
                                session_id: None,
                            })
                            .map_err(|e| anyhow::anyhow!("mint a token of {id}: {e}"))?;
                        out.push(issued.access_token);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a minting thread panicked")))
            })
            .collect()
    });
    let mut tokens = Vec::with_capacity(apps.len() * per_app);
    for r in results {
        tokens.extend(r?);
    }
    let distinct: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    if distinct.len() != tokens.len() {
        bail!(
            "minted {} tokens but only {} are distinct",
            tokens.len(),
            distinct.len()
        );
    }
    Ok(tokens)
}

/// What presenting a list of tokens once each cost the server.
#[derive(Debug, Clone, Copy)]
struct Pass {
    requests: u64,
    /// Server CPU (its runtime threads) per request, µs.
    cpu_us: f64,
    rps: f64,
}

/// Sends `GET /me` once with each of `tokens` over `clients` keep-alive connections (threads of their own,
/// free to run on any CPU); every answer must be 200.
fn present(addr: SocketAddr, tokens: &[String], clients: usize) -> anyhow::Result<Pass> {
    let failed = AtomicBool::new(false);
    let chunk = tokens.len().div_ceil(clients.max(1)).max(1);
    let before = cpu::snapshot_named(SERVER_THREADS)?;
    let started = Instant::now();
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let failed = &failed;
        let handles: Vec<_> = tokens
            .chunks(chunk)
            .map(|part| {
                std::thread::Builder::new()
                    .name("bench-client".to_owned())
                    .spawn_scoped(scope, move || -> anyhow::Result<u64> {
                        widen_current_thread();
                        let mut conn = Connection::open(addr)?;
                        let mut sent = 0u64;
                        for token in part {
                            if failed.load(Ordering::Relaxed) {
                                break;
                            }
                            let bearer = format!("Bearer {token}");
                            let request =
                                conn.build("GET", "/me", &[("authorization", &bearer)], b"");
                            let response = conn.send_raw(&request)?;
                            if response.status != 200 {
                                failed.store(true, Ordering::Relaxed);
                                bail!("GET /me answered {}: {}", response.status, response.text());
                            }
                            sent += 1;
                        }
                        Ok(sent)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked"))),
                Err(e) => Err(anyhow::anyhow!("start a client thread: {e}")),
            })
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_ns = cpu::snapshot_named(SERVER_THREADS)?.since(&before);
    let mut requests = 0;
    for r in results {
        requests += r?;
    }
    if requests != tokens.len() as u64 {
        bail!("{requests} of {} tokens presented", tokens.len());
    }
    Ok(Pass {
        requests,
        cpu_us: cpu_ns as f64 / 1e3 / requests.max(1) as f64,
        rps: requests as f64 / elapsed,
    })
}

/// The share of a pass's requests answered from the memo, from where its CPU per request lies between a
/// certain hit and a certain miss.
fn hit_share(pass: f64, hit: f64, miss: f64) -> f64 {
    // Also catches NaN figures: no spread between a hit and a miss, no answer.
    if miss.partial_cmp(&hit) != Some(std::cmp::Ordering::Greater) {
        return f64::NAN;
    }
    ((miss - pass) / (miss - hit)).clamp(0.0, 1.0)
}

/// Interleaved (small, large) pairs of one measurement; the per-round ratio is large / small.
struct Pairs {
    small: Vec<WrkRun>,
    large: Vec<WrkRun>,
}

impl Pairs {
    fn ratios(&self) -> Vec<f64> {
        self.large
            .iter()
            .zip(&self.small)
            .map(|(l, s)| l.rps / s.rps)
            .collect()
    }
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    flyteauth_bench::watchdog(Duration::from_secs(1500), || {});
    let workers: usize = arg("--workers", 1)?;
    let rounds: usize = arg("--rounds", 5)?;
    let seconds: u64 = arg("--duration", 5)?;
    let warmup: u64 = arg("--warmup", 2)?;
    let connections: u32 = arg("--connections", 16)?;
    let load_cpu = LoadCpu::from_arg(arg("--wrk-cpu", -1)?);
    let large_apps: usize = arg("--apps", 10_000)?;
    let small_apps: usize = arg("--small-apps", 10)?;
    let churn_apps: usize = arg("--churn-apps", 1_000)?;
    let per_app: usize = arg("--tokens-per-app", 100)?;
    let flood: usize = arg("--flood", 100_000)?;
    let sample: usize = arg("--sample", 10_000)?;
    let clients: usize = arg("--clients", 4)?;
    if rounds == 0 || seconds == 0 || small_apps == 0 || clients == 0 || per_app == 0 {
        bail!(
            "--rounds, --duration, --small-apps, --clients and --tokens-per-app must be at least 1"
        );
    }
    // bench-cc and the flooder are among the large store's apps.
    if churn_apps + 2 > large_apps {
        bail!("--churn-apps must leave room for bench-cc and the flooder within --apps");
    }
    if 2 * sample > churn_apps * per_app {
        bail!("two --sample sets must fit in the churn tokens");
    }

    // As `flyteauth serve` does: one crypto provider for the process, logging as configured.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    telemetry::init(telemetry::LogFormat::Plain)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()?;

    // The stores, untimed. bench-cc (created by the fixture) counts as one of each store's apps.
    let started = Instant::now();
    let mut sides = Vec::with_capacity(2);
    for (name, apps) in [("small", small_apps), ("large", large_apps)] {
        let server = runtime.block_on(inproc::start(|_: &AppState| Router::new()))?;
        let fixture = runtime.block_on(Fixture::create(&server.state))?;
        let mut ids: Vec<String> = (0..apps.saturating_sub(1)).map(app_id).collect();
        if name == "large" {
            // The flooder takes the last filler's place, so the count stays `apps`.
            ids.pop();
            ids.push(FLOODER.to_owned());
        }
        runtime.block_on(create_apps(&server.state, &ids))?;
        let listed = runtime.block_on(count_apps(&server.state))?;
        let token = grant_fixture::exchange_once(
            server.addr,
            Some(&fixture.cc_basic),
            &Fixture::cc_body(),
            false,
        )?
        .access_token;
        grant_fixture::check_me(server.addr, &token, CC_CLIENT_ID)?;
        if listed != apps {
            bail!("the {name} store lists {listed} apps, not {apps}");
        }
        sides.push(Side {
            name,
            server,
            fixture,
            token,
            apps,
        });
    }
    let setup_s = started.elapsed().as_secs_f64();
    let (small, large) = (&sides[0], &sides[1]);
    println!(
        "servers: in-process, one runtime with {workers} worker thread(s), SQLite; small {} ({} apps), large {} \
         ({} apps), stores filled in {setup_s:.1} s (untimed); wrk 1 thread, {connections} connections, \
         {seconds} s per run, {rounds} rounds",
        small.server.addr, small.apps, large.server.addr, large.apps
    );

    let tmp = tempfile::tempdir()?;
    let post = tmp.path().join("post.lua");
    std::fs::write(&post, POST_SCRIPT)?;
    let cycle = tmp.path().join("cycle.lua");
    std::fs::write(&cycle, BEARER_CYCLE_SCRIPT)?;
    let post_args = [Fixture::cc_body()];

    let issue = |side: &Side, seconds: u64| -> anyhow::Result<WrkRun> {
        let headers: Vec<String> = grant_fixture::headers(Some(&side.fixture.cc_basic))
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        wrk::run_measured(
            load_cpu,
            &Load {
                url: &format!("http://{}/oauth2/token", side.server.addr),
                headers: &headers,
                script: Some((&post, &post_args)),
                connections,
                seconds,
            },
            CpuSource::Named(SERVER_THREADS),
        )
        .with_context(|| format!("issuance on {}", side.name))
    };
    let validate = |side: &Side, seconds: u64| -> anyhow::Result<WrkRun> {
        wrk::run_measured(
            load_cpu,
            &Load {
                url: &format!("http://{}/me", side.server.addr),
                headers: &[format!("Authorization: Bearer {}", side.token)],
                script: None,
                connections,
                seconds,
            },
            CpuSource::Named(SERVER_THREADS),
        )
        .with_context(|| format!("validation on {}", side.name))
    };
    let interleave = |what: &str,
                      run: &dyn Fn(&Side, u64) -> anyhow::Result<WrkRun>|
     -> anyhow::Result<Pairs> {
        run(small, warmup)?;
        run(large, warmup)?;
        let mut pairs = Pairs {
            small: Vec::new(),
            large: Vec::new(),
        };
        for round in 0..rounds {
            // Alternate which store goes first.
            if round % 2 == 0 {
                pairs.small.push(run(small, seconds)?);
                pairs.large.push(run(large, seconds)?);
            } else {
                pairs.large.push(run(large, seconds)?);
                pairs.small.push(run(small, seconds)?);
            }
            let (s, l) = (pairs.small[round], pairs.large[round]);
            println!(
                "{what} round {}: {} apps {:.0} req/s ({:.1} us CPU/req)  {} apps {:.0} req/s ({:.1} us CPU/req)  \
                 ratio {:.3}",
                round + 1,
                small.apps,
                s.rps,
                s.cpu_us,
                large.apps,
                l.rps,
                l.cpu_us,
                l.rps / s.rps
            );
        }
        Ok(pairs)
    };
    let issuance = interleave("issuance", &issue)?;
    let validation = interleave("validation", &validate)?;

    // (c) memo churn on the large server.
    let state = &large.server.state;
    let template = Template::of(&large.token)?;
    let churn_ids: Vec<String> = (0..churn_apps).map(app_id).collect();
    let started = Instant::now();
    let mut churn = mint(state, &template, &churn_ids, per_app)?;
    let flood_tokens = mint(state, &template, &[FLOODER.to_owned()], flood)?;
    let mint_s = started.elapsed().as_secs_f64();
    println!(
        "minted {} churn tokens ({churn_apps} apps x {per_app}) and {} of {FLOODER} in {mint_s:.1} s (untimed)",
        churn.len(),
        flood_tokens.len()
    );
    let rss_before = memory(std::process::id())?.rss;
    let memo_start = state.validator.remembered();
    let warm = present(large.server.addr, &churn, clients).context("churn warm-up")?;
    let memo_warm = state.validator.remembered();
    let rss_warm = memory(std::process::id())?.rss;
    // What the memo (and whatever the server keeps per identity with it) took per token it remembered.
    let per_token = rss_warm.saturating_sub(rss_before) as f64
        / memo_warm.saturating_sub(memo_start).max(1) as f64;
    println!(
        "warm-up: {} tokens presented once each, {:.0} req/s, {:.1} us server CPU/req; memo {memo_start} -> \
         {memo_warm} tokens",
        warm.requests, warm.rps, warm.cpu_us
    );
    churn.shuffle(&mut rand::rng());
    let churn_file = tmp.path().join("churn.tokens");
    write_lines(&churn_file, &churn)?;
    let one_file = tmp.path().join("one.tokens");
    write_lines(&one_file, &churn[..1])?;
    let me_url = format!("http://{}/me", large.server.addr);
    let cycle_run = |file: &Path, seconds: u64| -> anyhow::Result<WrkRun> {
        let args = [file.display().to_string()];
        wrk::run_measured(
            load_cpu,
            &Load {
                url: &me_url,
                headers: &[],
                script: Some((&cycle, &args)),
                connections,
                seconds,
            },
            CpuSource::Named(SERVER_THREADS),
        )
        .context("GET /me over the churn tokens")
    };
    cycle_run(&churn_file, warmup)?;
    cycle_run(&one_file, warmup)?;
    let mut churned: Vec<WrkRun> = Vec::new();
    let mut single: Vec<WrkRun> = Vec::new();
    for round in 0..rounds {
        if round % 2 == 0 {
            churned.push(cycle_run(&churn_file, seconds)?);
            single.push(cycle_run(&one_file, seconds)?);
        } else {
            single.push(cycle_run(&one_file, seconds)?);
            churned.push(cycle_run(&churn_file, seconds)?);
        }
        let (c, o) = (churned[round], single[round]);
        println!(
            "churn round {}: {} tokens {:.0} req/s ({:.1} us CPU/req)  one token {:.0} req/s ({:.1} us CPU/req)  \
             ratio {:.3}",
            round + 1,
            churn.len(),
            c.rps,
            c.cpu_us,
            o.rps,
            o.cpu_us,
            c.rps / o.rps
        );
    }
    let rss_after = memory(std::process::id())?.rss;
    let memo_churn = state.validator.remembered();

    // (d) one client's flood. Two disjoint samples of the others' tokens: one before, one after.
    let (sample_before, rest) = churn.split_at(sample);
    let sample_after = &rest[..sample];
    let hit_tokens: Vec<String> = vec![churn[0].clone(); sample];
    let hit = present(large.server.addr, &hit_tokens, clients).context("one token repeated")?;
    let before = present(large.server.addr, sample_before, clients).context("sample before")?;
    let memo_before_flood = state.validator.remembered();
    let flooded = present(large.server.addr, &flood_tokens, clients).context("the flood")?;
    let memo_after_flood = state.validator.remembered();
    let after = present(large.server.addr, sample_after, clients).context("sample after")?;
    let share_before = hit_share(before.cpu_us, hit.cpu_us, flooded.cpu_us);
    let share_after = hit_share(after.cpu_us, hit.cpu_us, flooded.cpu_us);
    println!(
        "flood: server CPU per request: one token repeated {:.1} us (a hit), others' sample before {:.1} us, \
         {FLOODER}'s {} first sightings {:.1} us (a miss), others' sample after {:.1} us; memo {memo_before_flood} \
         -> {memo_after_flood} tokens; share of the others' sample answered from the memo: before {:.2}, after \
         {:.2}",
        hit.cpu_us,
        before.cpu_us,
        flooded.requests,
        flooded.cpu_us,
        after.cpu_us,
        share_before,
        share_after
    );

    drop(sides);
    let ratio_of = |pairs: &Pairs| {
        let r = pairs.ratios();
        (median(&r), range(&r))
    };
    let (issue_ratio, (issue_lo, issue_hi)) = ratio_of(&issuance);
    let (validate_ratio, (validate_lo, validate_hi)) = ratio_of(&validation);
    let churn_ratios: Vec<f64> = churned
        .iter()
        .zip(&single)
        .map(|(c, o)| c.rps / o.rps)
        .collect();
    let churn_ratio = median(&churn_ratios);
    let (churn_lo, churn_hi) = range(&churn_ratios);
    let flood_met = share_after >= TARGET_RATIO;
    println!();
    let summaries = [
        ("issuance", &issuance, issue_ratio, issue_lo, issue_hi),
        (
            "validation",
            &validation,
            validate_ratio,
            validate_lo,
            validate_hi,
        ),
    ];
    for (what, pairs, ratio, lo, hi) in &summaries {
        let (s, l) = (Summary::of(&pairs.small), Summary::of(&pairs.large));
        println!(
            "{what:<10} {} apps {:.0} req/s ({:.1} us CPU/req)  {} apps {:.0} req/s ({:.1} us CPU/req)  ratio \
             {ratio:.3} (per-round {lo:.3}..{hi:.3}; target >= {TARGET_RATIO}) {}",
            large_apps,
            l.rps,
            l.cpu_us,
            small_apps,
            s.rps,
            s.cpu_us,
            verdict(*ratio >= TARGET_RATIO)
        );
    }
    let (c, o) = (Summary::of(&churned), Summary::of(&single));
    println!(
        "memo churn {} tokens {:.0} req/s ({:.1} us CPU/req)  one token {:.0} req/s ({:.1} us CPU/req)  ratio \
         {churn_ratio:.3} (per-round {churn_lo:.3}..{churn_hi:.3}; target >= {TARGET_RATIO}) {}",
        churn.len(),
        c.rps,
        c.cpu_us,
        o.rps,
        o.cpu_us,
        verdict(churn_ratio >= TARGET_RATIO)
    );
    println!(
        "VmRSS {:.1} MB before the first presentation, {:.1} MB after it ({per_token:.0} bytes per remembered \
         token), {:.1} MB after the churn load (+{:.1} MB); memo {memo_churn} tokens",
        rss_before as f64 / 1e6,
        rss_warm as f64 / 1e6,
        rss_after as f64 / 1e6,
        rss_after.saturating_sub(rss_before) as f64 / 1e6
    );
    println!(
        "flood of {}: others' tokens from the memo after it {:.2} (target >= {TARGET_RATIO}) {}",
        flood_tokens.len(),
        share_after,
        verdict(flood_met)
    );

    println!("RESULT scale.workers {workers}");
    println!("RESULT scale.connections {connections}");
    println!("RESULT scale.duration_s {seconds}");
    println!("RESULT scale.rounds {rounds}");
    println!("RESULT scale.small_apps {small_apps}");
    println!("RESULT scale.large_apps {large_apps}");
    println!("RESULT scale.setup_s {setup_s:.1}");
    for (key, pairs, ratio, lo, hi) in [
        ("issue", &issuance, issue_ratio, issue_lo, issue_hi),
        (
            "validate",
            &validation,
            validate_ratio,
            validate_lo,
            validate_hi,
        ),
    ] {
        let (s, l) = (Summary::of(&pairs.small), Summary::of(&pairs.large));
        println!("RESULT scale.{key}_small_rps {:.0}", s.rps);
        println!("RESULT scale.{key}_large_rps {:.0}", l.rps);
        println!("RESULT scale.{key}_small_cpu_us {:.1}", s.cpu_us);
        println!("RESULT scale.{key}_large_cpu_us {:.1}", l.cpu_us);
        println!("RESULT scale.{key}_ratio {ratio:.3}");
        println!("RESULT scale.{key}_ratio_range {lo:.3}..{hi:.3}");
        println!(
            "RESULT scale.{key}_verdict {}",
            verdict(ratio >= TARGET_RATIO)
        );
    }
    println!("RESULT scale.churn_tokens {}", churn.len());
    println!("RESULT scale.churn_apps {churn_apps}");
    println!("RESULT scale.mint_s {mint_s:.1}");
    println!("RESULT scale.warm_rps {:.0}", warm.rps);
    println!("RESULT scale.warm_cpu_us {:.1}", warm.cpu_us);
    println!("RESULT scale.churn_rps {:.0}", c.rps);
    println!("RESULT scale.one_rps {:.0}", o.rps);
    println!("RESULT scale.churn_cpu_us {:.1}", c.cpu_us);
    println!("RESULT scale.one_cpu_us {:.1}", o.cpu_us);
    println!("RESULT scale.churn_ratio {churn_ratio:.3}");
    println!("RESULT scale.churn_ratio_range {churn_lo:.3}..{churn_hi:.3}");
    println!(
        "RESULT scale.churn_verdict {}",
        verdict(churn_ratio >= TARGET_RATIO)
    );
    println!("RESULT scale.memo_after_warmup {memo_warm}");
    println!("RESULT scale.memo_after_churn {memo_churn}");
    println!("RESULT scale.rss_before_mb {:.1}", rss_before as f64 / 1e6);
    println!("RESULT scale.rss_warm_mb {:.1}", rss_warm as f64 / 1e6);
    println!("RESULT scale.rss_per_token_bytes {per_token:.0}");
    println!("RESULT scale.rss_mb {:.1}", rss_after as f64 / 1e6);
    println!(
        "RESULT scale.rss_growth_mb {:.1}",
        rss_after.saturating_sub(rss_before) as f64 / 1e6
    );
    println!("RESULT scale.flood_tokens {}", flood_tokens.len());
    println!("RESULT scale.flood_sample {sample}");
    println!("RESULT scale.flood_hit_cpu_us {:.1}", hit.cpu_us);
    println!("RESULT scale.flood_miss_cpu_us {:.1}", flooded.cpu_us);
    println!("RESULT scale.flood_before_cpu_us {:.1}", before.cpu_us);
    println!("RESULT scale.flood_after_cpu_us {:.1}", after.cpu_us);
    println!("RESULT scale.flood_share_before {share_before:.2}");
    println!("RESULT scale.flood_share_after {share_after:.2}");
    println!("RESULT scale.memo_before_flood {memo_before_flood}");
    println!("RESULT scale.memo_after_flood {memo_after_flood}");
    println!("RESULT scale.flood_verdict {}", verdict(flood_met));
    let all = issue_ratio >= TARGET_RATIO
        && validate_ratio >= TARGET_RATIO
        && churn_ratio >= TARGET_RATIO
        && flood_met;
    println!("RESULT scale.verdict {}", verdict(all));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_share_places_a_pass_between_hit_and_miss() {
        assert_eq!(hit_share(10.0, 10.0, 30.0), 1.0);
        assert_eq!(hit_share(30.0, 10.0, 30.0), 0.0);
        assert!((hit_share(15.0, 10.0, 30.0) - 0.75).abs() < 1e-9);
        // Outside the two, clamped; no spread between them, no answer.
        assert_eq!(hit_share(5.0, 10.0, 30.0), 1.0);
        assert!(hit_share(10.0, 10.0, 10.0).is_nan());
    }

    /// The set-up of (c) and (d) against a real in-process server, small: apps created through the store,
    /// tokens minted with its issuer, each presented once and answered (then remembered).
    #[test]
    fn minted_tokens_of_created_apps_are_accepted() -> anyhow::Result<()> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(SERVER_THREADS)
            .enable_all()
            .build()?;
        let server = runtime.block_on(inproc::start(|_: &AppState| Router::new()))?;
        let state = server.state.clone();
        let fixture = runtime.block_on(Fixture::create(&state))?;
        let ids: Vec<String> = (0..3).map(app_id).collect();
        runtime.block_on(create_apps(&state, &ids))?;
        assert_eq!(runtime.block_on(count_apps(&state))?, 4);
        let token = grant_fixture::exchange_once(
            server.addr,
            Some(&fixture.cc_basic),
            &Fixture::cc_body(),
            false,
        )?
        .access_token;
        let template = Template::of(&token)?;
        let tokens = mint(&state, &template, &ids, 4)?;
        assert_eq!(tokens.len(), 12);
        let remembered = state.validator.remembered();
        let pass = present(server.addr, &tokens, 2)?;
        assert_eq!(pass.requests, 12);
        assert!(state.validator.remembered() >= remembered + 12);
        grant_fixture::check_me(server.addr, &tokens[0], &ids[0])?;
        server.stop(&runtime)
    }
}
