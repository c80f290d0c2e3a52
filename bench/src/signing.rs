//! The server's own RSA signing key, loaded a second time for the benchmarks' baselines: a bare aws-lc-rs
//! `RsaKeyPair::sign` loop (the floor of token issuance) and the RS256 check of tokens from either server of the
//! peer benchmark.
//!
//! The key comes from the file the server read at start-up (`token_rsa_key.pem` in its secrets directory), and
//! is checked against the public key the server publishes, so the baseline signs with exactly the key the
//! token endpoint signs with.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flyteauth_server::state::AppState;
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;

/// The server's signing key, parsed once.
#[derive(Debug)]
pub struct ServerKey {
    pair: RsaKeyPair,
    /// The PEM file it was read from (what the peer server is given too).
    pub path: PathBuf,
    /// The modulus in bits.
    pub bits: usize,
    modulus: Vec<u8>,
}

/// Where a server built from `state` keeps its signing key.
pub fn key_file(state: &AppState) -> PathBuf {
    state
        .config
        .secrets
        .secrets_prefix
        .join(flyteauth_core::secrets::TOKEN_RSA_KEY)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

impl ServerKey {
    /// Reads an RSA private key from a PEM file: PKCS#1 (`RSA PRIVATE KEY`, what `secrets init` writes) or
    /// PKCS#8 (`PRIVATE KEY`).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the signing key {}", path.display()))?;
        let key = if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs1_pem(&text).context("PKCS#1 RSA key")?
        } else if text.contains("-----BEGIN PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs8_pem(&text)
                .context("PKCS#8 key (the benchmarks need an RSA signing key)")?
        } else {
            bail!(
                "{} holds no RSA private key (the benchmarks need the RS256 default)",
                path.display()
            );
        };
        let der = key.to_pkcs1_der().context("re-encode the key")?;
        let pair = RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| anyhow::anyhow!("aws-lc-rs rejected the key: {e}"))?;
        Ok(Self {
            bits: key.n().bits(),
            modulus: key.n().to_bytes_be(),
            pair,
            path: path.to_owned(),
        })
    }

    /// The signing key of the server built from `state`, checked to be the one it publishes.
    pub fn of_server(state: &AppState) -> anyhow::Result<Self> {
        let key = Self::from_file(&key_file(state))?;
        let published = state.keys.current().public().modulus();
        if strip_zeros(published) != strip_zeros(&key.modulus) {
            bail!(
                "{} is not the key the server signs with",
                key.path.display()
            );
        }
        Ok(key)
    }

    /// One RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`.
    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("aws-lc-rs could not sign"))?;
        Ok(signature)
    }

    /// Signs `message` over and over for `limit` on the calling thread: the cost of the RSA operation itself,
    /// with the key parsed once and nothing else around it.
    pub fn sign_loop(&self, message: &[u8], limit: Duration) -> anyhow::Result<SignRun> {
        let rng = SystemRandom::new();
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        let started = Instant::now();
        let thread_before = crate::cpu::thread_ns();
        let mut signs = 0u64;
        // Check the clock every few signatures only: reading it is cheap, but not free next to nothing.
        while started.elapsed() < limit {
            for _ in 0..8 {
                self.pair
                    .sign(
                        &RSA_PKCS1_SHA256,
                        &rng,
                        std::hint::black_box(message),
                        &mut signature,
                    )
                    .map_err(|_| anyhow::anyhow!("aws-lc-rs could not sign"))?;
                std::hint::black_box(&signature);
            }
            signs += 8;
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_ns = crate::cpu::thread_ns().saturating_sub(thread_before);
        Ok(SignRun {
            signs,
            per_s: signs as f64 / seconds,
            cpu_us: cpu_ns as f64 / 1e3 / signs.max(1) as f64,
        })
    }

    /// Checks that `token` is a compact JWS signed RS256 with this key, and returns its header and claims.
    pub fn verify_jwt(
        &self,
        token: &str,
    ) -> anyhow::Result<(serde_json::Value, serde_json::Value)> {
        let (input, signature) = token.rsplit_once('.').context("not a JWS")?;
        let (header, claims) = input.split_once('.').context("not a JWS")?;
        let decode = |part: &str, what: &str| -> anyhow::Result<serde_json::Value> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .with_context(|| format!("{what} is not base64url"))?;
            serde_json::from_slice(&bytes).with_context(|| format!("{what} is not JSON"))
        };
        let header = decode(header, "JWS header")?;
        let claims = decode(claims, "JWT claims")?;
        if header["alg"] != "RS256" {
            bail!("signed with {}, not RS256", header["alg"]);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .context("signature is not base64url")?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, self.pair.public_key().as_ref())
            .verify(input.as_bytes(), &signature)
            .map_err(|_| anyhow::anyhow!("the RS256 signature does not verify with the key"))?;
        Ok((header, claims))
    }
}

/// What a sign loop measured.
#[derive(Debug, Clone, Copy)]
pub struct SignRun {
    /// Signatures made.
    pub signs: u64,
    /// Signatures per second of wall time.
    pub per_s: f64,
    /// CPU time of the signing thread per signature, µs.
    pub cpu_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_a_fresh_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        flyteauth_core::secrets::write_fresh_set(&dir.path().join("secrets"))?;
        let key = ServerKey::from_file(
            &dir.path()
                .join("secrets")
                .join(flyteauth_core::secrets::TOKEN_RSA_KEY),
        )?;
        assert_eq!(key.bits, 2048);
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#)
        );
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes())?)
        );
        let (_, claims) = key.verify_jwt(&token)?;
        assert_eq!(claims["sub"], "x");
        let tampered = token.replacen("eyJzdWIiOiJ4In0", "eyJzdWIiOiJ5In0", 1);
        assert!(key.verify_jwt(&tampered).is_err());
        let run = key.sign_loop(input.as_bytes(), Duration::from_millis(50))?;
        assert!(run.signs >= 8 && run.per_s > 0.0);
        Ok(())
    }

    /// The key file of a real in-process server is the key its token endpoint signs with, and the peer
    /// benchmark's request gets a token there (what `issuance` and `peer` check before timing).
    #[test]
    fn the_server_signs_with_the_key_file() -> anyhow::Result<()> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let server = runtime.block_on(crate::inproc::start(|_| axum::Router::new()))?;
        let fixture = runtime.block_on(crate::grant_fixture::Fixture::create(&server.state))?;
        let key = ServerKey::of_server(&server.state)?;
        let token = crate::grant_fixture::exchange_at(
            server.addr,
            "/oauth2/token",
            Some(&fixture.cc_basic),
            crate::grant_fixture::PEER_BODY,
        )?;
        let (_, claims) = key.verify_jwt(&token)?;
        assert_eq!(claims["sub"], crate::grant_fixture::CC_CLIENT_ID);
        server.stop(&runtime)
    }
}
