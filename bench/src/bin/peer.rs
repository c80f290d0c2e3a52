//! `client_credentials` issuance of flyteauth against node oidc-provider, one core each.
//!
//! - flyteauth: the in-process server of the `grants` and `issuance` benchmarks (1 worker thread; `scripts/bench`
//!   runs this process under `taskset -c 0`), app `bench-cc` with a generated secret (SHA-256 digest).
//! - oidc-provider (`bench/peer`, the version its package-lock.json pins; `npm ci` if it is not installed):
//!   `taskset -c 0 node server.mjs PORT` with `NODE_ENV=production`, one client with `client_secret_basic`,
//!   JWT access tokens through resource indicators (a default resource, `accessTokenFormat: 'jwt'`, the
//!   algorithm of `--alg`), signing with the same key as flyteauth (the PEM file flyteauth loaded). node runs JavaScript on
//!   one thread but has helper threads (libuv's pool, V8's compiler and garbage collector); `taskset` keeps all
//!   of them on the one core.
//!
//! Both servers get the same core and never run at the same time: each round loads one, then the other (the
//! order alternates), and the idle one has no connection. wrk (1 thread, on `--wrk-cpu`) sends the same
//! request to both: `POST` to the token endpoint (`/oauth2/token`, `/token`), HTTP Basic,
//! `grant_type=client_credentials&scope=all` (oidc-provider grants a machine client only the scopes asked
//! for). Before anything is timed, one answer of each is checked to be a JWT of the algorithm that verifies with
//! the key. Any non-2xx answer or socket error fails the run.
//!
//! `--alg RS256` (the default, what every Flyte client expects; RSA-2048) or `--alg ES256` (EC P-256, with
//! `flyteauth.signingAlgorithm: ES256` and oidc-provider signing ES256 too): the same comparison with a
//! signature that costs little next to the rest of a request. RESULT keys start `peer.` for RS256 and
//! `peer_es256.` for ES256.
//!
//! Target: flyteauth req/s ≥ 2.0 × oidc-provider req/s (the median of the per-round ratios).
//!
//! The ceiling: each round also runs the bare signing loop of the `issuance` benchmark (aws-lc-rs, the server's
//! key, on the same core, `--sign-duration` s), the rate of a server that did nothing but sign. No server signing
//! with that algorithm on this core can pass that rate, so `sign loop / oidc-provider` is the highest ratio any server could
//! reach here, and `ratio / ceiling` says how much of it flyteauth reaches.
//!
//! Options: `--alg RS256|ES256` (RS256), `--workers N` (1), `--rounds N` (5), `--duration S` per run (5), `--warmup S` per server (2),
//! `--connections N` (16), `--sign-duration S` (3), `--wrk-cpu N` (unpinned), `--node-cpu N` (0; negative: unpinned; use the core
//! this process is pinned to), `--peer-dir DIR` (bench/peer), `--plot FILE.png` (tokens/s per round of both),
//! `--font FILE.ttf` (for the plot's text; default: DejaVu Sans or Liberation Sans where installed).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flyteauth_bench::grant_fixture::{self, CC_CLIENT_ID, Fixture, PEER_BODY};
use flyteauth_bench::node_peer::{self, Peer, PeerOptions};
use flyteauth_bench::plot::{self, Chart, Series};
use flyteauth_bench::process::memory;
use flyteauth_bench::signing::{ServerKey, SignRun};
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::wrk::{self, CpuSource, Load, LoadCpu, POST_SCRIPT, Summary, WrkRun};
use flyteauth_bench::{arg, inproc};
use flyteauth_core::keys::SigningAlgorithm;
use flyteauth_server::state::AppState;
use flyteauth_server::telemetry;

const TARGET_RATIO: f64 = 2.0;
const FLYTEAUTH_PATH: &str = "/oauth2/token";
const TIME_LIMIT: Duration = Duration::from_secs(900);

/// Which server a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Flyteauth,
    OidcProvider,
}

/// Checks the peer's token: signed with our key under its algorithm, for its client, its resource and issuer, a JWT access token.
fn check_peer_token(
    key: &ServerKey,
    peer: &Peer,
    token: &str,
    resource: &str,
) -> anyhow::Result<()> {
    let (header, claims) = key.verify_jwt(token).context("oidc-provider's token")?;
    if header["typ"] != "at+jwt" {
        bail!("oidc-provider's token has typ {}", header["typ"]);
    }
    if claims["client_id"] != node_peer::CLIENT_ID
        || claims["aud"] != resource
        || claims["iss"] != peer.issuer.as_str()
        || claims["scope"] != "all"
    {
        bail!("oidc-provider's token has unexpected claims: {claims}");
    }
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    if !matches!((iat, exp), (Some(iat), Some(exp)) if exp > iat) {
        bail!("oidc-provider's token has no valid lifetime: {claims}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    flyteauth_bench::watchdog(TIME_LIMIT, || {});
    let alg: String = arg("--alg", "RS256".to_owned())?;
    let algorithm = match SigningAlgorithm::from_jws(&alg) {
        Some(a @ (SigningAlgorithm::Rs256 | SigningAlgorithm::Es256)) => a,
        _ => bail!(
            "--alg must be RS256 or ES256 (the algorithms oidc-provider is set up for), not {alg:?}"
        ),
    };
    // The RS256 figures keep the keys they always had; the ES256 run writes beside them.
    let results = match algorithm {
        SigningAlgorithm::Rs256 => "peer".to_owned(),
        other => format!("peer_{}", other.as_str().to_lowercase()),
    };
    let workers: usize = arg("--workers", 1)?;
    let rounds: usize = arg("--rounds", 5)?;
    let seconds: u64 = arg("--duration", 5)?;
    let warmup: u64 = arg("--warmup", 2)?;
    let connections: u32 = arg("--connections", 16)?;
    let sign_seconds: f64 = arg("--sign-duration", 3.0)?;
    let load_cpu = LoadCpu::from_arg(arg("--wrk-cpu", -1)?);
    let node_cpu = usize::try_from(arg::<i64>("--node-cpu", 0)?).ok();
    let dir: PathBuf = arg("--peer-dir", node_peer::default_dir())?;
    let plot_file: Option<PathBuf> =
        arg("--plot", String::new()).map(|p| (!p.is_empty()).then(|| PathBuf::from(p)))?;
    let font: Option<PathBuf> =
        arg("--font", String::new()).map(|p| (!p.is_empty()).then(|| PathBuf::from(p)))?;
    if rounds == 0 || seconds == 0 || sign_seconds.is_nan() || sign_seconds <= 0.0 {
        bail!("--rounds and --duration must be at least 1, --sign-duration above 0");
    }
    let node = node_peer::node_version()?;
    let version = node_peer::ensure_installed(&dir)?;

    // As `flyteauth serve` does: one crypto provider for the process, logging as configured.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    telemetry::init(telemetry::LogFormat::Plain)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let server = runtime.block_on(inproc::start_signing(algorithm, |_: &AppState| {
        Router::new()
    }))?;
    let addr = server.addr;
    let state = server.state.clone();
    let fixture = runtime.block_on(Fixture::create(&state))?;
    let key = ServerKey::of_server(&state)?;

    let tmp = tempfile::tempdir()?;
    let secret = flyteauth_core::clients::generate_secret();
    // The peer's tokens are for the audience flyteauth's are for, so both carry alike claims.
    let resource = state.default_audience.clone();
    let peer = node_peer::start(&PeerOptions {
        dir: &dir,
        key_file: &key.path,
        alg: key.alg(),
        secret: &secret,
        resource: &resource,
        cpu: node_cpu,
        log: &tmp.path().join("oidc-provider.log"),
        limit: TIME_LIMIT,
    })?;
    let peer_basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{secret}", node_peer::CLIENT_ID))
    );

    // One answer of each, checked before anything is timed.
    let ours =
        grant_fixture::exchange_at(addr, FLYTEAUTH_PATH, Some(&fixture.cc_basic), PEER_BODY)?;
    let (_, claims) = key.verify_jwt(&ours).context("flyteauth's token")?;
    // What the sign loop signs: the signing input of a token like the ones measured.
    let signing_input = ours
        .rsplit_once('.')
        .map(|(input, _)| input.as_bytes().to_vec())
        .context("flyteauth's token has no signature part")?;
    if claims["sub"] != CC_CLIENT_ID {
        bail!("flyteauth's token is for {}", claims["sub"]);
    }
    grant_fixture::check_me(addr, &ours, CC_CLIENT_ID)?;
    let theirs = grant_fixture::exchange_at(
        peer.addr,
        node_peer::TOKEN_PATH,
        Some(&peer_basic),
        PEER_BODY,
    )?;
    check_peer_token(&key, &peer, &theirs, &resource)?;

    let script = tmp.path().join("post.lua");
    std::fs::write(&script, POST_SCRIPT)?;
    let script_args = [PEER_BODY.to_owned()];
    let header_lines = |basic: &str| -> Vec<String> {
        grant_fixture::headers(Some(basic))
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
    };
    let ours_headers = header_lines(&fixture.cc_basic);
    let theirs_headers = header_lines(&peer_basic);
    let ours_url = format!("http://{addr}{FLYTEAUTH_PATH}");
    let theirs_url = format!("http://{}{}", peer.addr, node_peer::TOKEN_PATH);
    let run = |side: Side, seconds: u64| -> anyhow::Result<WrkRun> {
        let (url, headers, source) = match side {
            Side::Flyteauth => (&ours_url, &ours_headers, CpuSource::ThisProcess),
            Side::OidcProvider => (&theirs_url, &theirs_headers, CpuSource::Process(peer.pid)),
        };
        let result = wrk::run_measured(
            load_cpu,
            &Load {
                url,
                headers,
                script: Some((&script, &script_args)),
                connections,
                seconds,
            },
            source,
        );
        if let Some(status) = peer.guard.exited() {
            let log = std::fs::read_to_string(&peer.log).unwrap_or_default();
            bail!("oidc-provider exited ({status}):\n{log}");
        }
        result.with_context(|| format!("{side:?}"))
    };

    println!(
        "flyteauth: in-process, {workers} worker thread(s), {addr}, POST {FLYTEAUTH_PATH}, app {CC_CLIENT_ID} \
         (SHA-256 secret); oidc-provider {version} on node {node}, {} (pid {}), POST {}, NODE_ENV=production; \
         both {} with the same {} key, HTTP Basic, body {PEER_BODY:?}; oidc-provider on CPU {}; wrk 1 \
         thread, {connections} connections, {seconds} s per run, {rounds} rounds; tokens {} and {} bytes",
        peer.addr,
        peer.pid,
        node_peer::TOKEN_PATH,
        key.alg(),
        key.kind(),
        node_cpu.map_or_else(|| "any".to_owned(), |c| c.to_string()),
        ours.len(),
        theirs.len(),
    );
    run(Side::Flyteauth, warmup)?;
    run(Side::OidcProvider, warmup)?;

    let mut flyteauth: Vec<WrkRun> = Vec::with_capacity(rounds);
    let mut oidc: Vec<WrkRun> = Vec::with_capacity(rounds);
    let mut signs: Vec<SignRun> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Alternate which server goes first, so neither always gets the calmer half of a round.
        let order = if round % 2 == 0 {
            [Side::Flyteauth, Side::OidcProvider]
        } else {
            [Side::OidcProvider, Side::Flyteauth]
        };
        for side in order {
            let r = run(side, seconds)?;
            match side {
                Side::Flyteauth => flyteauth.push(r),
                Side::OidcProvider => oidc.push(r),
            }
        }
        // Both servers are idle now (no connection), so the loop has the core to itself.
        signs.push(key.sign_loop(&signing_input, Duration::from_secs_f64(sign_seconds))?);
        let (f, o, g) = (flyteauth[round], oidc[round], signs[round]);
        println!(
            "round {}: flyteauth {:.0} req/s (p50 {:.0} us, p99 {:.0} us, {:.0} us CPU/req)  oidc-provider {:.0} \
             req/s (p50 {:.0} us, p99 {:.0} us, {:.0} us CPU/req)  ratio {:.3}  sign loop {:.0}/s ({:.1} us) \
             ceiling {:.3}",
            round + 1,
            f.rps,
            f.p50_us,
            f.p99_us,
            f.cpu_us,
            o.rps,
            o.p50_us,
            o.p99_us,
            o.cpu_us,
            f.rps / o.rps,
            g.per_s,
            g.cpu_us,
            g.per_s / o.rps
        );
    }
    let node_memory = memory(peer.pid)?;
    peer.guard.kill();
    server.stop(&runtime)?;

    let ratios: Vec<f64> = flyteauth
        .iter()
        .zip(&oidc)
        .map(|(f, o)| f.rps / o.rps)
        .collect();
    let ratio = median(&ratios);
    let (lo, hi) = range(&ratios);
    let (f, o) = (Summary::of(&flyteauth), Summary::of(&oidc));
    let ceilings: Vec<f64> = signs
        .iter()
        .zip(&oidc)
        .map(|(g, o)| g.per_s / o.rps)
        .collect();
    let ceiling = median(&ceilings);
    let (ceiling_lo, ceiling_hi) = range(&ceilings);
    let shares: Vec<f64> = flyteauth
        .iter()
        .zip(&signs)
        .map(|(f, g)| f.rps / g.per_s)
        .collect();
    let share = median(&shares);
    let sign_per_s = median(&signs.iter().map(|g| g.per_s).collect::<Vec<_>>());
    let sign_us = median(&signs.iter().map(|g| g.cpu_us).collect::<Vec<_>>());
    println!();
    println!(
        "median flyteauth     {:>7.0} req/s  p50 {:.0} us  p99 {:.0} us  server CPU {:.0} us/req",
        f.rps, f.p50_us, f.p99_us, f.cpu_us
    );
    println!(
        "median oidc-provider {:>7.0} req/s  p50 {:.0} us  p99 {:.0} us  server CPU {:.0} us/req  (baseline; \
         VmRSS {:.1} MB at the end)",
        o.rps,
        o.p50_us,
        o.p99_us,
        o.cpu_us,
        node_memory.rss as f64 / 1e6
    );
    println!(
        "flyteauth / oidc-provider {ratio:.3}  (per-round {lo:.3}..{hi:.3}; target >= {TARGET_RATIO}) {}",
        verdict(ratio >= TARGET_RATIO)
    );
    println!(
        "ceiling: the bare sign loop {sign_per_s:.0}/s ({sign_us:.1} us each) / oidc-provider {ceiling:.3} \
         (per-round {ceiling_lo:.3}..{ceiling_hi:.3}): the ratio of a server that only signed; flyteauth reaches \
         {share:.3} of the sign loop, {:.3} of the ceiling ratio",
        ratio / ceiling
    );

    let mut plotted = "none".to_owned();
    if let Some(out) = &plot_file {
        let f_rps: Vec<f64> = flyteauth.iter().map(|r| r.rps).collect();
        let o_rps: Vec<f64> = oidc.iter().map(|r| r.rps).collect();
        let g_rps: Vec<f64> = signs.iter().map(|g| g.per_s).collect();
        let title = format!(
            "Tokens/s on one core, {}: flyteauth {ratio:.2}x oidc-provider (signing alone: {ceiling:.2}x)",
            key.alg()
        );
        let g_name = format!("bare {} sign loop (no server can pass it)", key.kind());
        let o_name = format!("oidc-provider {version} (node {node})");
        let drawn = plot::find_font(font.as_deref()).and_then(|font| {
            plot::draw(
                &Chart {
                    title: &title,
                    x_label: "round",
                    y_label: "tokens per second",
                    series: &[
                        Series {
                            name: "flyteauth",
                            values: &f_rps,
                        },
                        Series {
                            name: &o_name,
                            values: &o_rps,
                        },
                        Series {
                            name: &g_name,
                            values: &g_rps,
                        },
                    ],
                },
                out,
                &font,
            )
        });
        match drawn {
            Ok(()) => {
                println!("wrote {}", out.display());
                plotted = out.display().to_string();
            }
            // The figures stand without the picture; a missing font should not cost the run.
            Err(e) => eprintln!("warning: no plot: {e:#}"),
        }
    }

    println!("RESULT {results}.workers {workers}");
    println!("RESULT {results}.connections {connections}");
    println!("RESULT {results}.duration_s {seconds}");
    println!("RESULT {results}.rounds {rounds}");
    println!("RESULT {results}.node {node}");
    println!("RESULT {results}.oidc_provider_version {version}");
    println!("RESULT {results}.flyteauth_rps {:.0}", f.rps);
    println!("RESULT {results}.oidc_provider_rps {:.0}", o.rps);
    println!("RESULT {results}.flyteauth_p50_us {:.0}", f.p50_us);
    println!("RESULT {results}.flyteauth_p99_us {:.0}", f.p99_us);
    println!("RESULT {results}.oidc_provider_p50_us {:.0}", o.p50_us);
    println!("RESULT {results}.oidc_provider_p99_us {:.0}", o.p99_us);
    println!("RESULT {results}.flyteauth_cpu_us {:.0}", f.cpu_us);
    println!("RESULT {results}.oidc_provider_cpu_us {:.0}", o.cpu_us);
    println!(
        "RESULT {results}.oidc_provider_rss_mb {:.1}",
        node_memory.rss as f64 / 1e6
    );
    println!("RESULT {results}.ratio {ratio:.3}");
    println!("RESULT {results}.sign_per_s {sign_per_s:.0}");
    println!("RESULT {results}.sign_us {sign_us:.1}");
    println!("RESULT {results}.ceiling {ceiling:.3}");
    println!("RESULT {results}.ceiling_range {ceiling_lo:.3}..{ceiling_hi:.3}");
    println!("RESULT {results}.share_of_sign_loop {share:.3}");
    println!("RESULT {results}.share_of_ceiling {:.3}", ratio / ceiling);
    println!("RESULT {results}.sign_duration_s {sign_seconds}");
    println!("RESULT {results}.ratio_range {lo:.3}..{hi:.3}");
    let per_round: Vec<String> = flyteauth
        .iter()
        .zip(&oidc)
        .map(|(f, o)| format!("{:.0}/{:.0}", f.rps, o.rps))
        .collect();
    println!("RESULT {results}.per_round {}", per_round.join(" "));
    for (round, (f, o)) in flyteauth.iter().zip(&oidc).enumerate() {
        println!(
            "RESULT {results}.round{} flyteauth {:.0} oidc-provider {:.0} ratio {:.3}",
            round + 1,
            f.rps,
            o.rps,
            f.rps / o.rps
        );
    }
    println!("RESULT {results}.plot {plotted}");
    println!("RESULT {results}.target {TARGET_RATIO}");
    println!(
        "RESULT {results}.verdict {}",
        verdict(ratio >= TARGET_RATIO)
    );
    Ok(())
}
