//! The server's own signing key, loaded a second time for the benchmarks' baselines: a bare aws-lc-rs signing
//! loop (the floor of token issuance) and the check of tokens from either server of the peer benchmark. RS256
//! (RSA, the default every Flyte client expects) or ES256 (EC P-256, `flyteauth.signingAlgorithm: ES256`).
//!
//! The key comes from the file the server read at start-up (`token_rsa_key.pem` in its secrets directory,
//! whatever the kind of key), and is checked against the public key the server publishes, so the baseline signs
//! with exactly the key the token endpoint signs with.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flyteauth_core::keys::SigningAlgorithm;
use flyteauth_server::state::AppState;
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, SecretDocument};
use rsa::traits::PublicKeyParts;

/// The key pair, parsed once.
#[derive(Debug)]
enum Pair {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
}

/// The server's signing key, parsed once.
#[derive(Debug)]
pub struct ServerKey {
    pair: Pair,
    /// The PEM file it was read from (what the peer server is given too).
    pub path: PathBuf,
    /// The size of the key in bits (the RSA modulus, or 256 for P-256).
    pub bits: usize,
}

/// Where a server built from `state` keeps its signing key.
pub fn key_file(state: &AppState) -> PathBuf {
    state
        .config
        .secrets
        .secrets_prefix
        .join(flyteauth_core::secrets::TOKEN_RSA_KEY)
}

impl ServerKey {
    /// Reads a private key from a PEM file: RSA as PKCS#1 (`RSA PRIVATE KEY`, what `secrets init` writes) or
    /// PKCS#8, or EC P-256 as PKCS#8 (`PRIVATE KEY`).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the signing key {}", path.display()))?;
        let rsa = if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs1_pem(&text).context("PKCS#1 RSA key")?
        } else if text.contains("-----BEGIN PRIVATE KEY-----") {
            match RsaPrivateKey::from_pkcs8_pem(&text) {
                Ok(key) => key,
                Err(_) => return Self::p256_from_pem(path, &text),
            }
        } else {
            bail!(
                "{} holds no private key the benchmarks sign with (RSA or EC P-256)",
                path.display()
            );
        };
        let der = rsa.to_pkcs1_der().context("re-encode the key")?;
        let pair = RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| anyhow::anyhow!("aws-lc-rs rejected the key: {e}"))?;
        Ok(Self {
            bits: rsa.n().bits(),
            pair: Pair::Rsa(pair),
            path: path.to_owned(),
        })
    }

    fn p256_from_pem(path: &Path, text: &str) -> anyhow::Result<Self> {
        let (_, der) = SecretDocument::from_pem(text).context("PKCS#8 PEM")?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes())
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} is neither an RSA nor an EC P-256 key: {e}",
                    path.display()
                )
            })?;
        Ok(Self {
            bits: 256,
            pair: Pair::P256(pair),
            path: path.to_owned(),
        })
    }

    /// The signing key of the server built from `state`, checked to be the one it publishes.
    pub fn of_server(state: &AppState) -> anyhow::Result<Self> {
        let key = Self::from_file(&key_file(state))?;
        // The published key must accept what this key signs: one check for every kind of key.
        let probe = b"flyteauth bench: is this the published key?";
        let published = state.keys.current().public();
        if published.algorithm() != key.algorithm() || !published.verify(probe, &key.sign(probe)?) {
            bail!(
                "{} is not the key the server signs with",
                key.path.display()
            );
        }
        Ok(key)
    }

    /// The JWS algorithm it signs with: RS256 or ES256.
    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.pair {
            Pair::Rsa(_) => SigningAlgorithm::Rs256,
            Pair::P256(_) => SigningAlgorithm::Es256,
        }
    }

    /// The JWS `alg` value: `RS256` or `ES256`.
    pub fn alg(&self) -> &'static str {
        self.algorithm().as_str()
    }

    /// The kind of key, for labels: `RSA-2048` or `EC P-256`.
    pub fn kind(&self) -> String {
        match self.pair {
            Pair::Rsa(_) => format!("RSA-{}", self.bits),
            Pair::P256(_) => self.algorithm().key_kind().to_owned(),
        }
    }

    /// One JWS signature of `message` (RSASSA-PKCS1-v1_5 with SHA-256, or ECDSA P-256 with SHA-256 as the
    /// 64-byte `r || s` of RFC 7518 §3.4).
    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| anyhow::anyhow!("aws-lc-rs could not sign"))?;
                Ok(signature)
            }
            Pair::P256(pair) => Ok(pair
                .sign(&rng, message)
                .map_err(|_| anyhow::anyhow!("aws-lc-rs could not sign"))?
                .as_ref()
                .to_vec()),
        }
    }

    /// Signs `message` over and over for `limit` on the calling thread: the cost of the signature itself,
    /// with the key parsed once and nothing else around it.
    pub fn sign_loop(&self, message: &[u8], limit: Duration) -> anyhow::Result<SignRun> {
        let rng = SystemRandom::new();
        let mut signature = match &self.pair {
            Pair::Rsa(pair) => vec![0u8; pair.public_modulus_len()],
            Pair::P256(_) => Vec::new(),
        };
        let started = Instant::now();
        let thread_before = crate::cpu::thread_ns();
        let mut signs = 0u64;
        // Check the clock every few signatures only: reading it is cheap, but not free next to nothing.
        while started.elapsed() < limit {
            for _ in 0..8 {
                let message = std::hint::black_box(message);
                let signed = match &self.pair {
                    Pair::Rsa(pair) => pair
                        .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                        .is_ok(),
                    Pair::P256(pair) => pair.sign(&rng, message).map(std::hint::black_box).is_ok(),
                };
                if !signed {
                    bail!("aws-lc-rs could not sign");
                }
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

    /// Checks that `token` is a compact JWS signed with this key under its algorithm, and returns its header and
    /// claims.
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
        if header["alg"] != self.alg() {
            bail!("signed with {}, not {}", header["alg"], self.alg());
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .context("signature is not base64url")?;
        let checked = match &self.pair {
            Pair::Rsa(pair) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref())
                    .verify(input.as_bytes(), &signature)
            }
            Pair::P256(pair) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
                    .verify(input.as_bytes(), &signature)
            }
        };
        checked.map_err(|_| {
            anyhow::anyhow!("the {} signature does not verify with the key", self.alg())
        })?;
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

    /// Both kinds of key the peer benchmark runs with sign, verify and refuse a tampered token.
    #[test]
    fn signs_and_verifies_with_a_fresh_key() -> anyhow::Result<()> {
        use flyteauth_core::keys::SigningAlgorithm;
        for (algorithm, bits, kind) in [
            (SigningAlgorithm::Rs256, 2048, "RSA-2048"),
            (SigningAlgorithm::Es256, 256, "EC P-256"),
        ] {
            let dir = tempfile::tempdir()?;
            flyteauth_core::secrets::write_fresh_set_for(&dir.path().join("secrets"), algorithm)?;
            let key = ServerKey::from_file(
                &dir.path()
                    .join("secrets")
                    .join(flyteauth_core::secrets::TOKEN_RSA_KEY),
            )?;
            assert_eq!(
                (key.bits, key.kind(), key.alg()),
                (bits, kind.to_owned(), algorithm.as_str())
            );
            let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, key.alg());
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
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
        }
        Ok(())
    }

    /// The key file of a real in-process server is the key its token endpoint signs with, RS256 or ES256, and
    /// the peer benchmark's request gets a token there (what `issuance` and `peer` check before timing).
    #[test]
    fn the_server_signs_with_the_key_file() -> anyhow::Result<()> {
        use flyteauth_core::keys::SigningAlgorithm;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256] {
            let server = runtime.block_on(crate::inproc::start_signing(algorithm, |_| {
                axum::Router::new()
            }))?;
            let fixture = runtime.block_on(crate::grant_fixture::Fixture::create(&server.state))?;
            let key = ServerKey::of_server(&server.state)?;
            assert_eq!(key.alg(), algorithm.as_str());
            let token = crate::grant_fixture::exchange_at(
                server.addr,
                "/oauth2/token",
                Some(&fixture.cc_basic),
                crate::grant_fixture::PEER_BODY,
            )?;
            let (_, claims) = key.verify_jwt(&token)?;
            assert_eq!(claims["sub"], crate::grant_fixture::CC_CLIENT_ID);
            server.stop(&runtime)?;
        }
        Ok(())
    }
}
