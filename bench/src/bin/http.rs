//! `GET /me` with a valid bearer token, and with a browser session cookie, each against an empty handler
//! on the same server stack.
//!
//! One in-process server built the way `flyteauth serve` builds it (configuration file, file
//! secrets, SQLite store, `serve::build`), served by the production listener
//! (`listener::serve`: protocol detection, per-connection tasks) and the production service
//! (`app::service_with`: the tonic routes and the HTTP router with all their middleware), plus one
//! route that exists only here: `GET /bench/empty`, an empty 200 behind the same metrics
//! middleware. wrk drives four runs per round with identical settings: `/me` with the bearer token
//! and `/bench/empty` with the same header (it ignores it), then `/me` with only the session cookie
//! of a person signed in through the login form and `/bench/empty` with the same `Cookie` header.
//! The server runs on a tokio multi-thread runtime with `--workers` worker threads (default 1, so
//! wrk's single thread and the server each have one of the two cores).
//!
//! Targets: req/s of `/me` ≥ 0.90 × req/s of `/bench/empty` with the bearer token (answered from the memo of
//! verified tokens, with its `/me` answer rendered once per remembered identity), ≥ 0.70 × with the session
//! cookie (opened and checked on every request).
//!
//! Options: `--workers N` (1), `--rounds N` (5), `--duration SECS` per wrk run (5),
//! `--connections N` (16), `--warmup SECS` per route (2), both under 55 s so that no cookie run
//! reaches the cookie's 60 s refresh; `--serve-only SECS` just serves for that long and prints wrk
//! command lines (for profiling with `perf record -p`; after 60 s `/me` refreshes the printed
//! cookie on every request).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use flyteauth_bench::browser::{self, MeAnswer, SESSION_COOKIE, TOUCH_AFTER_SECS};
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::wrk::{self, Load, LoadCpu, Summary, WrkRun};
use flyteauth_bench::{arg, client, fixture, inproc};
use flyteauth_server::telemetry;

/// `/me` with a bearer token against the empty route.
const BEARER_TARGET: f64 = 0.90;
/// `/me` with a session cookie against the empty route.
const COOKIE_TARGET: f64 = 0.70;
const EMPTY_PATH: &str = "/bench/empty";

/// The extra route: nothing but a 200, wrapped in the same middleware as every real route.
fn bench_routes() -> Router {
    async fn empty() -> StatusCode {
        StatusCode::OK
    }
    // Mounted inside the production router, so it runs behind the same middleware as `/me`.
    Router::new().route(EMPTY_PATH, get(empty))
}

/// What a route's requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Cookie: flyteauth_session=<sealed session>`, and no bearer token.
    Cookie,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    name: &'static str,
    path: &'static str,
    credential: Credential,
}

/// Measured in this order on even rounds and in reverse on odd ones, so each `/me` run has its
/// baseline right next to it and no route always gets the calmer part of a round.
const ROUTES: [Route; 4] = [
    Route {
        name: "/me",
        path: "/me",
        credential: Credential::Bearer,
    },
    Route {
        name: "empty",
        path: EMPTY_PATH,
        credential: Credential::Bearer,
    },
    Route {
        name: "/me cookie",
        path: "/me",
        credential: Credential::Cookie,
    },
    Route {
        name: "empty cookie",
        path: EMPTY_PATH,
        credential: Credential::Cookie,
    },
];

/// The (`/me`, baseline) pairs of [`ROUTES`]: their credential's name, the prefix of their `RESULT`
/// keys, their indices and their target.
const PAIRS: [(&str, &str, usize, usize, f64); 2] = [
    ("bearer", "", 0, 1, BEARER_TARGET),
    ("cookie", "cookie_", 2, 3, COOKIE_TARGET),
];

/// The person whose session the cookie runs carry.
struct Person {
    addr: SocketAddr,
    subject: String,
    cookie_bytes: usize,
}

impl Person {
    /// A session cookie fresh from the login form: its idle clock starts now, so `/me` does not
    /// refresh it during a run shorter than `TOUCH_AFTER_SECS` (a browser would keep the
    /// refreshed cookie, so a refresh on every request is not what an ingress sees).
    fn fresh_cookie(&self) -> anyhow::Result<String> {
        browser::sign_in(self.addr, browser::USERNAME, browser::PASSWORD)
    }

    /// Fails if `/me` no longer answers for the cookie, or if it was due for a refresh (then part
    /// of the run just measured re-sealed a cookie on every request).
    fn check_after_run(&self, cookie: &str) -> anyhow::Result<()> {
        match browser::check_me(self.addr, cookie, &self.subject)? {
            MeAnswer::Current => Ok(()),
            MeAnswer::Refreshed => bail!(
                "the session cookie fell due for its {TOUCH_AFTER_SECS} s refresh during the run; \
                 use a shorter --duration"
            ),
        }
    }
}

/// One (`/me`, baseline) comparison over the rounds.
struct Pair {
    me: Summary,
    empty: Summary,
    ratio: f64,
    lo: f64,
    hi: f64,
    target: f64,
}

impl Pair {
    fn of(me: &[WrkRun], empty: &[WrkRun], target: f64) -> Self {
        // Each round runs /me and its baseline back to back, so a round is a matched pair; the median
        // of the pairs' ratios is immune to the machine changing speed between rounds, a ratio of
        // medians is not.
        let per_round: Vec<f64> = me.iter().zip(empty).map(|(m, e)| m.rps / e.rps).collect();
        let (lo, hi) = range(&per_round);
        Self {
            me: Summary::of(me),
            empty: Summary::of(empty),
            ratio: median(&per_round),
            lo,
            hi,
            target,
        }
    }

    fn verdict(&self) -> &'static str {
        verdict(self.ratio >= self.target)
    }

    fn print_results(&self, prefix: &str) {
        let (me, empty) = (self.me, self.empty);
        println!("RESULT http.{prefix}me_rps {:.0}", me.rps);
        println!("RESULT http.{prefix}empty_rps {:.0}", empty.rps);
        println!("RESULT http.{prefix}me_p50_us {:.0}", me.p50_us);
        println!("RESULT http.{prefix}me_p99_us {:.0}", me.p99_us);
        println!("RESULT http.{prefix}empty_p50_us {:.0}", empty.p50_us);
        println!("RESULT http.{prefix}empty_p99_us {:.0}", empty.p99_us);
        println!("RESULT http.{prefix}me_cpu_us {:.1}", me.cpu_us);
        println!("RESULT http.{prefix}empty_cpu_us {:.1}", empty.cpu_us);
        println!(
            "RESULT http.{prefix}me_extra_cpu_us {:.1}",
            me.cpu_us - empty.cpu_us
        );
        println!(
            "RESULT http.{prefix}cpu_ratio {:.3}",
            empty.cpu_us / me.cpu_us
        );
        println!("RESULT http.{prefix}ratio {:.3}", self.ratio);
        println!(
            "RESULT http.{prefix}ratio_range {:.3}..{:.3}",
            self.lo, self.hi
        );
        println!("RESULT http.{prefix}target {}", self.target);
        println!("RESULT http.{prefix}verdict {}", self.verdict());
    }
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
    // A cookie run starts right after its sign-in; leave a few seconds for wrk to start and stop.
    let longest = i64::try_from(seconds.max(warmup)).unwrap_or(i64::MAX);
    if longest.saturating_add(5) >= TOUCH_AFTER_SECS {
        bail!(
            "--duration and --warmup must stay below {} s: a longer run would outlast the session \
             cookie's {TOUCH_AFTER_SECS} s refresh",
            TOUCH_AFTER_SECS - 5
        );
    }

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
    let user = runtime.block_on(browser::create_person(&server.state))?;
    let started = Instant::now();
    let cookie = browser::sign_in(addr, browser::USERNAME, browser::PASSWORD)?;
    let sign_in_ms = started.elapsed().as_secs_f64() * 1e3;
    if browser::check_me(addr, &cookie, &user.subject)? != MeAnswer::Current {
        bail!("GET /me refreshed a session cookie that was just issued");
    }
    let person = Person {
        addr,
        subject: user.subject.clone(),
        cookie_bytes: cookie.len(),
    };
    let bearer = format!("Authorization: Bearer {token}");
    let cookie_header = |value: &str| format!("Cookie: {SESSION_COOKIE}={value}");
    let credentials = [
        ("authorization", format!("Bearer {token}")),
        ("cookie", format!("{SESSION_COOKIE}={cookie}")),
    ];
    for (name, value) in &credentials {
        let empty = client::get(addr, EMPTY_PATH, &[(name, value)])?;
        if empty.status != 200 {
            bail!("{EMPTY_PATH} with {name} answered {}", empty.status);
        }
    }

    if serve_only > 0 {
        // For profiling: drive it by hand (wrk, perf record -p) while it runs. The cookie is refreshed
        // by `/me` (one re-seal per request) once it is older than TOUCH_AFTER_SECS.
        println!(
            "serving http://{addr} for {serve_only} s (pid {})",
            std::process::id()
        );
        println!("wrk -t1 -c{connections} -d10s -H '{bearer}' http://{addr}/me");
        println!(
            "wrk -t1 -c{connections} -d10s -H '{}' http://{addr}/me",
            cookie_header(&cookie)
        );
        std::thread::sleep(Duration::from_secs(serve_only));
        server.abandon();
        return Ok(());
    }
    let base = format!("http://{addr}");
    println!(
        "server: in-process, tokio multi-thread runtime with {workers} worker thread(s), {addr}; \
         wrk: 1 thread, {connections} connections, {seconds} s per run, {rounds} rounds; \
         the bearer runs send the same {}-byte bearer token to both routes, the cookie runs the \
         same {}-byte session cookie (no bearer token), from a sign-in through the login form \
         right before each run (one sign-in: {sign_in_ms:.0} ms)",
        token.len(),
        person.cookie_bytes,
    );
    // One run of `route`: a cookie run gets a fresh session and checks afterwards that `/me` did not
    // fall due to refresh it.
    let load = |route: &Route, seconds: u64| -> anyhow::Result<WrkRun> {
        let (headers, cookie) = match route.credential {
            Credential::Bearer => (vec![bearer.clone()], None),
            Credential::Cookie => {
                let value = person.fresh_cookie()?;
                (vec![cookie_header(&value)], Some(value))
            }
        };
        let url = format!("{base}{}", route.path);
        let run = wrk::run(
            load_cpu,
            &Load {
                url: &url,
                headers: &headers,
                script: None,
                connections,
                seconds,
            },
        )?;
        if let Some(value) = cookie
            && route.path == "/me"
        {
            person.check_after_run(&value)?;
        }
        Ok(run)
    };
    for route in &ROUTES {
        load(route, warmup)?;
    }

    let mut results: Vec<Vec<WrkRun>> = vec![Vec::new(); ROUTES.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..ROUTES.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            results[index].push(load(&ROUTES[index], seconds)?);
        }
        for (credential, _, me, empty, _) in PAIRS {
            let mut line = format!("round {} {credential}:", round + 1);
            for index in [me, empty] {
                let r = results[index][round];
                line.push_str(&format!(
                    "  {} {:.0} req/s (p50 {:.0} us, p99 {:.0} us, {:.1} us CPU/req)",
                    ROUTES[index].name, r.rps, r.p50_us, r.p99_us, r.cpu_us
                ));
            }
            line.push_str(&format!(
                "  ratio {:.3}",
                results[me][round].rps / results[empty][round].rps
            ));
            println!("{line}");
        }
    }

    server.stop(&runtime)?;

    let pairs: Vec<Pair> = PAIRS
        .iter()
        .map(|(_, _, me, empty, target)| Pair::of(&results[*me], &results[*empty], *target))
        .collect();
    let total: u64 = results.iter().flatten().map(|r| r.requests).sum();
    println!();
    for (route, runs) in ROUTES.iter().zip(&results) {
        let m = Summary::of(runs);
        println!(
            "median {:<14} {:>8.0} req/s  p50 {:.0} us  p99 {:.0} us  server CPU {:.1} us/req{}",
            route.name,
            m.rps,
            m.p50_us,
            m.p99_us,
            m.cpu_us,
            if route.path == EMPTY_PATH {
                "  (baseline)"
            } else {
                ""
            }
        );
    }
    for (pair, (_, _, me, empty, _)) in pairs.iter().zip(PAIRS) {
        println!(
            "{:<28} {:.3}  (per-round {:.3}..{:.3}; target >= {}) {}",
            format!("{} / {}", ROUTES[me].name, ROUTES[empty].name),
            pair.ratio,
            pair.lo,
            pair.hi,
            pair.target,
            pair.verdict()
        );
    }
    for (pair, (_, _, me, empty, _)) in pairs.iter().zip(PAIRS) {
        println!(
            "server CPU per request: {} adds {:.1} us to {}'s {:.1} us; CPU ratio {:.3}",
            ROUTES[me].name,
            pair.me.cpu_us - pair.empty.cpu_us,
            ROUTES[empty].name,
            pair.empty.cpu_us,
            pair.empty.cpu_us / pair.me.cpu_us
        );
    }
    println!("requests served in measured rounds: {total}, all 2xx");
    println!("RESULT http.workers {workers}");
    println!("RESULT http.connections {connections}");
    println!("RESULT http.duration_s {seconds}");
    println!("RESULT http.rounds {rounds}");
    println!("RESULT http.token_bytes {}", token.len());
    println!("RESULT http.cookie_bytes {}", person.cookie_bytes);
    for (pair, (_, prefix, _, _, _)) in pairs.iter().zip(PAIRS) {
        pair.print_results(prefix);
    }
    Ok(())
}
