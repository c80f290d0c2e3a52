//! `POST /oauth2/token`: the authorization_code and refresh_token grants against client_credentials on
//! the same server, in the same run.
//!
//! All three grants sign exactly one RS256 access token; what differs is the store. Per request,
//! client_credentials (a registered app, its secret stored as a SHA-256 digest) reads the app and
//! appends an audit event; authorization_code redeems a single-use code (a conditional update),
//! reads the person, creates a refresh token with its family (one transaction) and appends an audit
//! event; refresh_token reads the token and the person, rotates the token (one transaction: mark used,
//! insert the successor) and appends an audit event.
//!
//! The server is the one of the `http` benchmark (`flyteauth_bench::inproc`: built as `flyteauth serve`
//! builds it, SQLite, the production listener and service), on a tokio runtime with `--workers` worker
//! threads. Codes and refresh tokens are single-use, so every timed request needs a fresh one: before
//! each run the benchmark writes enough of them straight into the server's store (`put_code`,
//! `create_refresh_token`; see `flyteauth_bench::grant_fixture`), untimed, and wrk sends one per
//! request, in order, through a Lua script. client_credentials goes through the same script (with its
//! one body reused), so the load generator does the same work for every grant. One request of each
//! grant is checked before anything is timed. wrk closes its connections at the end of a run with
//! requests in flight; the OAuth routes run each request to completion on its own task, so that does
//! not cancel a request inside a store transaction.
//!
//! Target: req/s of each person's grant ≥ 0.5 × req/s of client_credentials (the median of the
//! per-round ratios).
//!
//! Options: `--workers N` (1), `--rounds N` (5), `--duration SECS` per wrk run (5),
//! `--connections N` (16), `--warmup SECS` per grant (2), `--wrk-cpu N` (unpinned),
//! `--spare F` (2.0): credentials created per run = F × the fastest rate seen so far × the run's
//! duration, plus 500.
//!
//! `scripts/bench` sends this binary's stderr (the server's log) to a file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use flyteauth_bench::grant_fixture::{self, Fixture};
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::wrk::{self, Load, LoadCpu, Summary, WrkRun};
use flyteauth_bench::{arg, inproc};
use flyteauth_server::state::AppState;
use flyteauth_server::telemetry;

const TARGET_RATIO: f64 = 0.5;

/// Sends the request bodies of a file (`-- FILE`, one per line) in order, one per request. Codes and
/// refresh tokens are single-use, so bodies are never reused unless `cycle` is given (the one
/// client_credentials body); running out is reported on stderr, and the replays that follow fail the
/// run.
const SCRIPT: &str = r#"wrk.method = "POST"
local bodies = {}
local count = 0
local sent = 0
local cycle = false
local warned = false

function init(args)
  for line in io.lines(args[1]) do
    count = count + 1
    bodies[count] = line
  end
  cycle = args[2] == "cycle"
end

function request()
  sent = sent + 1
  if sent > count and not cycle and not warned then
    warned = true
    io.stderr:write("bench: the pre-created request bodies ran out; raise --spare\n")
  end
  return wrk.format(nil, nil, nil, bodies[((sent - 1) % count) + 1])
end
"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Grant {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
}

impl Grant {
    const ALL: [Grant; 3] = [
        Grant::ClientCredentials,
        Grant::AuthorizationCode,
        Grant::RefreshToken,
    ];

    fn name(self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Grant::ClientCredentials => "cc",
            Grant::AuthorizationCode => "code",
            Grant::RefreshToken => "refresh",
        }
    }
}

/// How many single-use credentials a run of `seconds` needs, from the fastest rate seen so far.
fn capacity(rate: f64, seconds: u64, spare: f64) -> usize {
    let expected = rate.max(1.0) * seconds as f64 * spare.max(1.0);
    // Saturating float-to-int conversion; the rate is bounded by what one core serves.
    expected.ceil() as usize + 500
}

struct Bench<'a> {
    runtime: &'a tokio::runtime::Runtime,
    state: &'a AppState,
    fixture: &'a Fixture,
    url: String,
    dir: &'a Path,
    load_cpu: LoadCpu,
    connections: u32,
    spare: f64,
    /// The fastest rate seen so far, for sizing the next run's credentials.
    fastest: f64,
    /// Credentials created, and the time that took.
    created: usize,
    create_time: Duration,
}

impl Bench<'_> {
    fn run(&mut self, grant: Grant, seconds: u64) -> anyhow::Result<WrkRun> {
        let n = capacity(self.fastest, seconds, self.spare);
        let started = Instant::now();
        let (bodies, basic, mode) = match grant {
            Grant::ClientCredentials => (
                vec![Fixture::cc_body()],
                Some(self.fixture.cc_basic.as_str()),
                "cycle",
            ),
            Grant::AuthorizationCode => (
                self.runtime.block_on(self.fixture.codes(self.state, n))?,
                None,
                "once",
            ),
            Grant::RefreshToken => (
                self.runtime
                    .block_on(self.fixture.refresh_tokens(self.state, n))?,
                None,
                "once",
            ),
        };
        if grant != Grant::ClientCredentials {
            self.created += bodies.len();
            self.create_time += started.elapsed();
        }
        let file = self.dir.join(format!("{}.bodies", grant.key()));
        std::fs::write(&file, bodies.join("\n") + "\n")
            .with_context(|| format!("write {}", file.display()))?;
        let headers: Vec<String> = grant_fixture::headers(basic)
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let script = self.dir.join("bodies.lua");
        let args = [file.display().to_string(), mode.to_owned()];
        let run = wrk::run(
            self.load_cpu,
            &Load {
                url: &self.url,
                headers: &headers,
                script: Some((&script, &args)),
                connections: self.connections,
                seconds,
            },
        )
        .with_context(|| grant.name())?;
        if mode == "once" && run.requests > bodies.len() as u64 {
            bail!(
                "{}: {} requests but only {} credentials",
                grant.name(),
                run.requests,
                bodies.len()
            );
        }
        self.fastest = self.fastest.max(run.rps);
        Ok(run)
    }
}

fn main() -> anyhow::Result<()> {
    flyteauth_bench::watchdog(Duration::from_secs(900), || {});
    let workers: usize = arg("--workers", 1)?;
    let rounds: usize = arg("--rounds", 5)?;
    let seconds: u64 = arg("--duration", 5)?;
    let connections: u32 = arg("--connections", 16)?;
    let warmup: u64 = arg("--warmup", 2)?;
    let wrk_cpu: i64 = arg("--wrk-cpu", -1)?;
    let spare: f64 = arg("--spare", 2.0)?;
    let path = "/oauth2/token";
    if rounds == 0 || seconds == 0 {
        bail!("--rounds and --duration must be at least 1");
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

    // One request of each grant, checked, before anything is timed.
    let codes = runtime.block_on(fixture.codes(&state, 1))?;
    let refresh = runtime.block_on(fixture.refresh_tokens(&state, 1))?;
    grant_fixture::check_grants(addr, &fixture, &codes, &refresh)?;

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bodies.lua"), SCRIPT)?;
    let mut bench = Bench {
        runtime: &runtime,
        state: &state,
        fixture: &fixture,
        url: format!("http://{addr}{path}"),
        dir: dir.path(),
        load_cpu: LoadCpu::from_arg(wrk_cpu),
        connections,
        spare,
        fastest: 0.0,
        created: 0,
        create_time: Duration::ZERO,
    };
    println!(
        "server: in-process, tokio multi-thread runtime with {workers} worker thread(s), {addr}, SQLite; \
         wrk: 1 thread, {connections} connections, {seconds} s per run, {rounds} rounds, POST {path}; \
         client_credentials by app {} (SHA-256 secret), authorization_code and refresh_token by {} \
         (public, PKCE S256), scope {:?}, one RS256 access token per request",
        grant_fixture::CC_CLIENT_ID,
        grant_fixture::PUBLIC_CLIENT_ID,
        fixture.request.scopes.join(" "),
    );
    // client_credentials first: its rate sizes the first runs of the others.
    for grant in Grant::ALL {
        bench.run(grant, warmup)?;
    }

    let mut results: Vec<Vec<WrkRun>> = vec![Vec::new(); Grant::ALL.len()];
    for round in 0..rounds {
        // Rotate which grant goes first, so none always gets the calmer part of a round.
        for k in 0..Grant::ALL.len() {
            let index = (round + k) % Grant::ALL.len();
            results[index].push(bench.run(Grant::ALL[index], seconds)?);
        }
        let mut line = format!("round {}:", round + 1);
        for (grant, runs) in Grant::ALL.iter().zip(&results) {
            let r = runs[round];
            line.push_str(&format!(
                "  {} {:.0} req/s (p50 {:.0} us, p99 {:.0} us, {:.0} us CPU/req)",
                grant.key(),
                r.rps,
                r.p50_us,
                r.p99_us,
                r.cpu_us
            ));
        }
        line.push_str(&format!(
            "  code/cc {:.3}  refresh/cc {:.3}",
            results[1][round].rps / results[0][round].rps,
            results[2][round].rps / results[0][round].rps
        ));
        println!("{line}");
    }
    let created = bench.created;
    let create_us = bench.create_time.as_secs_f64() * 1e6 / created.max(1) as f64;
    drop(bench);
    server.stop(&runtime)?;

    let medians: Vec<Summary> = results.iter().map(|runs| Summary::of(runs)).collect();
    // Each round runs the three grants back to back: the median of the per-round ratios is immune to
    // the machine changing speed between rounds.
    let ratios = |index: usize| -> Vec<f64> {
        results[index]
            .iter()
            .zip(&results[0])
            .map(|(g, cc)| g.rps / cc.rps)
            .collect()
    };
    let (code_ratios, refresh_ratios) = (ratios(1), ratios(2));
    let (code_ratio, refresh_ratio) = (median(&code_ratios), median(&refresh_ratios));
    let (code_lo, code_hi) = range(&code_ratios);
    let (refresh_lo, refresh_hi) = range(&refresh_ratios);
    let met = code_ratio >= TARGET_RATIO && refresh_ratio >= TARGET_RATIO;
    let total: u64 = results.iter().flatten().map(|r| r.requests).sum();
    println!();
    for (grant, m) in Grant::ALL.iter().zip(&medians) {
        println!(
            "median {:<20} {:>7.0} req/s  p50 {:.0} us  p99 {:.0} us  server CPU {:.0} us/req{}",
            grant.name(),
            m.rps,
            m.p50_us,
            m.p99_us,
            m.cpu_us,
            if *grant == Grant::ClientCredentials {
                "  (baseline)"
            } else {
                ""
            }
        );
    }
    println!(
        "authorization_code / client_credentials {code_ratio:.3}  (per-round {code_lo:.3}..{code_hi:.3}; target >= {TARGET_RATIO}) {}",
        verdict(code_ratio >= TARGET_RATIO)
    );
    println!(
        "refresh_token / client_credentials      {refresh_ratio:.3}  (per-round {refresh_lo:.3}..{refresh_hi:.3}; target >= {TARGET_RATIO}) {}",
        verdict(refresh_ratio >= TARGET_RATIO)
    );
    println!(
        "requests served in measured rounds: {total}, all 2xx; {created} codes and refresh tokens \
         pre-created, {create_us:.0} us each (untimed)"
    );
    let (cc, code, refresh) = (medians[0], medians[1], medians[2]);
    println!("RESULT grants.path {path}");
    println!("RESULT grants.workers {workers}");
    println!("RESULT grants.connections {connections}");
    println!("RESULT grants.duration_s {seconds}");
    println!("RESULT grants.rounds {rounds}");
    for (grant, m) in Grant::ALL.iter().zip(&medians) {
        let key = grant.key();
        println!("RESULT grants.{key}_rps {:.0}", m.rps);
        println!("RESULT grants.{key}_p50_us {:.0}", m.p50_us);
        println!("RESULT grants.{key}_p99_us {:.0}", m.p99_us);
        println!("RESULT grants.{key}_cpu_us {:.0}", m.cpu_us);
    }
    println!("RESULT grants.code_ratio {code_ratio:.3}");
    println!("RESULT grants.code_ratio_range {code_lo:.3}..{code_hi:.3}");
    println!("RESULT grants.refresh_ratio {refresh_ratio:.3}");
    println!("RESULT grants.refresh_ratio_range {refresh_lo:.3}..{refresh_hi:.3}");
    println!(
        "RESULT grants.code_cpu_ratio {:.3}",
        cc.cpu_us / code.cpu_us
    );
    println!(
        "RESULT grants.refresh_cpu_ratio {:.3}",
        cc.cpu_us / refresh.cpu_us
    );
    println!("RESULT grants.created {created}");
    println!("RESULT grants.create_us {create_us:.0}");
    println!("RESULT grants.verdict {}", verdict(met));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_covers_the_run_with_room_to_spare() {
        assert_eq!(capacity(1000.0, 5, 2.0), 10_500);
        // Nothing measured yet: still a usable list.
        assert_eq!(capacity(0.0, 2, 2.0), 504);
        // A spare factor below 1 is never used.
        assert_eq!(capacity(100.0, 1, 0.5), 600);
    }
}
