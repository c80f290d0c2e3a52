//! Token validation against the bare RS256 signature check of the same token.
//!
//! One process, one key, one token. Four operations are timed in interleaved rounds (the order
//! rotates each round, so drift of the shared machine hits all alike):
//!
//! * `validate`: `TokenValidator::validate_uncached` — header decode, key lookup, signature check,
//!   claims decode and checks, `Identity` construction (what the first sighting of a token costs);
//! * `memo_hit`: `TokenValidator::validate` of a token seen before — the memo lookup and the time
//!   checks (what every later `/me` and RPC with the same token costs);
//! * `jwt_verify` (the baseline of the target): `jsonwebtoken::crypto::verify` of the token's
//!   signing input and signature with the same public key — the signature check `validate`
//!   makes, and nothing else;
//! * `floor`: aws-lc-rs `ParsedPublicKey::verify_sig` with the key parsed once and the signature
//!   already decoded — the cost of RSA-2048/SHA-256 verification itself, for reference.
//!
//! Target: `validate` ≤ 1.5 × `jwt_verify`.
//!
//! Options: `--rounds N` (default 21), `--iters N` per operation per round (default 3000),
//! `--warmup N` (default 2000).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flyteauth_bench::stats::{median, range, verdict};
use flyteauth_bench::{arg, fixture};
use flyteauth_core::clock::{Clock, SystemClock};
use flyteauth_core::config::Config;
use flyteauth_core::identity::PrincipalKind;
use flyteauth_core::keys::{KeyRing, SigningKey};
use flyteauth_core::token::{AccessTokenRequest, TokenIssuer, TokenValidator};
use jsonwebtoken::Algorithm;
use rsa::pkcs1::EncodeRsaPublicKey;

const TARGET_RATIO: f64 = 1.5;

/// A named operation; one indirect call per iteration, the same for all three.
type Op<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

fn main() -> anyhow::Result<()> {
    flyteauth_bench::watchdog(Duration::from_secs(300), || {});
    let rounds: usize = arg("--rounds", 21)?;
    let iters: u32 = arg("--iters", 3_000)?;
    let warmup: u32 = arg("--warmup", 2_000)?;

    // Issuer, audiences, lifetime and leeway exactly as the server derives them from its config.
    let loaded = Config::from_yaml_str(&fixture::config_yaml(
        8088,
        std::path::Path::new("/nonexistent"),
    )?)?;
    let config = loaded.config;
    let (signing, _pem) = SigningKey::generate()?;
    let keys = Arc::new(KeyRing::new(signing, None));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let issuer = TokenIssuer::new(
        keys.clone(),
        config.issuer(),
        config.auth.app_auth.self_auth_server.access_token_lifespan,
        clock.clone(),
    );
    let validator = TokenValidator::new(
        keys.clone(),
        config.issuer(),
        config.accepted_audiences(),
        config.flyteauth.token_leeway,
        clock,
    );
    // The token the server mints for a client_credentials request of the bench client.
    let token = issuer
        .issue(&AccessTokenRequest {
            subject: fixture::CLIENT_ID.to_owned(),
            client_id: fixture::CLIENT_ID.to_owned(),
            client_name: None,
            audience: vec![config.issuer()],
            scopes: vec!["all".to_owned(), "read".to_owned()],
            user_info: None,
            kind: PrincipalKind::App,
            session_id: None,
        })?
        .access_token;

    let (message, signature_b64) = token
        .rsplit_once('.')
        .context("token has no signature part")?;
    let message = message.as_bytes();
    let public = keys.current().public();
    let decoding = public.decoding_key();
    let signature = URL_SAFE_NO_PAD.decode(signature_b64)?;
    let pkcs1 = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(public.modulus()),
        rsa::BigUint::from_bytes_be(public.exponent()),
    )?
    .to_pkcs1_der()?;
    let parsed = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1.as_bytes())
        .map_err(|e| anyhow::anyhow!("aws-lc-rs rejected the public key: {e}"))?;

    // The three must agree before their costs mean anything.
    let identity = validator
        .validate(&token)
        .map_err(|e| anyhow::anyhow!("validate refused the token: {e}"))?;
    if identity.subject != fixture::CLIENT_ID {
        bail!("validate returned subject {:?}", identity.subject);
    }
    if !jsonwebtoken::crypto::verify(signature_b64, message, decoding, Algorithm::RS256)? {
        bail!("jsonwebtoken::crypto::verify refused the signature");
    }
    parsed
        .verify_sig(message, &signature)
        .map_err(|_| anyhow::anyhow!("aws-lc-rs refused the signature"))?;

    let ops: [Op<'_>; 4] = [
        (
            "validate",
            Box::new(|| validator.validate_uncached(black_box(&token)).is_ok()),
        ),
        (
            "jwt_verify",
            Box::new(|| {
                jsonwebtoken::crypto::verify(
                    black_box(signature_b64),
                    black_box(message),
                    decoding,
                    Algorithm::RS256,
                )
                .unwrap_or(false)
            }),
        ),
        (
            "floor",
            Box::new(|| {
                parsed
                    .verify_sig(black_box(message), black_box(&signature))
                    .is_ok()
            }),
        ),
        (
            "memo_hit",
            Box::new(|| validator.validate(black_box(&token)).is_ok()),
        ),
    ];

    println!(
        "token: {} bytes; key: RSA-{} (kid {}); {rounds} rounds x {iters} iterations per operation, \
         {warmup} warm-up iterations",
        token.len(),
        public.modulus().len() * 8,
        public.kid(),
    );
    for (_, op) in &ops {
        for _ in 0..warmup {
            if !op() {
                bail!("an operation failed during warm-up");
            }
        }
    }

    let mut ns: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        for k in 0..ops.len() {
            let index = (round + k) % ops.len();
            let op = &ops[index].1;
            let start = Instant::now();
            let mut ok = true;
            for _ in 0..iters {
                ok &= op();
            }
            let elapsed = start.elapsed();
            if !ok {
                bail!("{} failed during measurement", ops[index].0);
            }
            ns[index].push(elapsed.as_nanos() as f64 / f64::from(iters));
        }
        println!(
            "round {}: validate {:.0} ns/op, jwt_verify {:.0} ns/op, floor {:.0} ns/op, memo_hit {:.0} ns/op, ratio {:.3}",
            round + 1,
            ns[0][round],
            ns[1][round],
            ns[2][round],
            ns[3][round],
            ns[0][round] / ns[1][round],
        );
    }

    let [validate, jwt_verify, floor, memo_hit] = [
        median(&ns[0]),
        median(&ns[1]),
        median(&ns[2]),
        median(&ns[3]),
    ];
    // Rounds are matched pairs (see bench/src/bin/http.rs): the median of per-round ratios.
    let per_round: Vec<f64> = ns[0].iter().zip(&ns[1]).map(|(v, j)| v / j).collect();
    let ratio = median(&per_round);
    let (lo, hi) = range(&per_round);
    println!();
    println!("median validate        {validate:>9.0} ns/op");
    println!("median jwt_verify      {jwt_verify:>9.0} ns/op   (baseline)");
    println!("median floor           {floor:>9.0} ns/op   (aws-lc-rs, pre-parsed key)");
    println!("median memo_hit        {memo_hit:>9.0} ns/op   (a token seen before)");
    println!(
        "validate / jwt_verify  {ratio:.3}  (per-round {lo:.3}..{hi:.3}; target <= {TARGET_RATIO}) {}",
        verdict(ratio <= TARGET_RATIO)
    );
    println!(
        "validate / floor       {:.3}   jwt_verify / floor {:.3}",
        validate / floor,
        jwt_verify / floor
    );
    println!("RESULT validation.validate_ns {validate:.0}");
    println!("RESULT validation.jwt_verify_ns {jwt_verify:.0}");
    println!("RESULT validation.floor_ns {floor:.0}");
    println!("RESULT validation.memo_hit_ns {memo_hit:.0}");
    println!(
        "RESULT validation.memo_hit_ratio {:.3}",
        memo_hit / jwt_verify
    );
    println!("RESULT validation.ratio {ratio:.3}");
    println!("RESULT validation.ratio_range {lo:.3}..{hi:.3}");
    println!("RESULT validation.ratio_floor {:.3}", validate / floor);
    println!(
        "RESULT validation.jwt_verify_over_floor {:.3}",
        jwt_verify / floor
    );
    println!("RESULT validation.token_bytes {}", token.len());
    println!("RESULT validation.rounds {rounds}");
    println!("RESULT validation.iters {iters}");
    println!(
        "RESULT validation.verdict {}",
        verdict(ratio <= TARGET_RATIO)
    );
    Ok(())
}
