//! Secrets, read the way flyteadmin reads them: environment variable `<env-prefix><name>` first, then the file
//! `<secrets-prefix>/<name>`; same names and encodings. Also writes a fresh set like `flyteadmin secrets init`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::RngCore as _;
use zeroize::{Zeroize as _, Zeroizing};

use crate::config::{Config, OpenIdConfig, SecretsConfig};
use crate::keys::{KeyRing, SigningAlgorithm, SigningKey};

/// Cookie HMAC key: base64 RawStd of 64 random bytes.
pub const COOKIE_HASH_KEY: &str = "cookie_hash_key";
/// Cookie encryption key: base64 RawStd of 32 random bytes (16 and 24 work too).
pub const COOKIE_BLOCK_KEY: &str = "cookie_block_key";
/// Key encrypting claims inside codes: base64 RawStd of 32 random bytes.
pub const CLAIM_SYMMETRIC_KEY: &str = "claim_symmetric_key";
/// Token signing key: RSA private key, PKCS#1 PEM (flyteadmin's name); with `flyteauth.signingAlgorithm` ES256
/// or EdDSA, an EC P-256 or Ed25519 private key, PKCS#8 PEM.
pub const TOKEN_RSA_KEY: &str = "token_rsa_key.pem";
/// Previous token signing key, optional, accepted for validation only.
pub const TOKEN_RSA_KEY_OLD: &str = "token_rsa_key_old.pem";
/// The upstream OIDC client secret: raw text, one trailing newline trimmed.
pub const OIDC_CLIENT_SECRET: &str = "oidc_client_secret";

/// Base64 as Go's `RawStdEncoding` writes it; padding is tolerated on input and trailing bits are not checked,
/// as Go does not check them either.
const RAW_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why a secret could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is neither in the environment nor on disk.
    #[error("secret {name:?} is missing (looked in {looked_in})")]
    Missing {
        /// Secret name.
        name: String,
        /// Where it was looked for.
        looked_in: String,
    },
    /// The secret exists but is not in the expected form (the reason never includes its value).
    #[error("secret {name:?} is malformed: {reason}")]
    Malformed {
        /// Secret name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing secret file.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The signing key is not of the kind `flyteauth.signingAlgorithm` asks for.
    #[error(
        "secret {name:?} holds {} key ({found}) but flyteauth.signingAlgorithm is {configured}: set \
         flyteauth.signingAlgorithm: {found}, or replace the key with {} key (`flyteauth secrets init \
         --signing-algorithm {configured}` writes one)",
        article(found.key_kind()),
        article(configured.key_kind())
    )]
    AlgorithmMismatch {
        /// Secret name.
        name: String,
        /// The algorithm the key is for.
        found: SigningAlgorithm,
        /// The algorithm configured.
        configured: SigningAlgorithm,
    },
    /// A fresh key could not be generated.
    #[error("cannot generate secrets: {reason}")]
    Generation {
        /// What failed.
        reason: String,
    },
}

fn article(kind: &str) -> String {
    let vowel = kind.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// Secret bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes; handle with care.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Shortens the time the bytes linger in freed memory; `zeroize` keeps the compiler from eliding the
        // writes to memory that is about to be freed, which a plain loop does not.
        self.0.zeroize();
    }
}

#[derive(Debug, Clone)]
enum Environment {
    Process,
    Fixed(BTreeMap<String, Vec<u8>>),
}

/// Where secrets come from: environment variables first, then files.
#[derive(Debug, Clone)]
pub struct SecretSource {
    secrets_prefix: PathBuf,
    env_prefix: String,
    env: Environment,
}

impl SecretSource {
    /// The source described by the `secrets:` section, reading the process environment.
    pub fn from_config(cfg: &SecretsConfig) -> Self {
        Self::new(cfg.secrets_prefix.clone(), cfg.env_prefix.clone())
    }

    /// A source reading `<env_prefix><name>` from the process environment, then `<secrets_prefix>/<name>`.
    pub fn new(secrets_prefix: impl Into<PathBuf>, env_prefix: impl Into<String>) -> Self {
        Self {
            secrets_prefix: secrets_prefix.into(),
            env_prefix: env_prefix.into(),
            env: Environment::Process,
        }
    }

    /// The same source, but taking environment variables from `vars` instead of the process environment
    /// (for tests and embedding; changing the process environment is unsafe in multi-threaded programs).
    pub fn with_env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        self.env = Environment::Fixed(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// The directory secret files are read from.
    pub fn secrets_prefix(&self) -> &Path {
        &self.secrets_prefix
    }

    /// Reads secret `name`; `Ok(None)` when it is neither in the environment nor on disk.
    pub fn read(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(SecretError::Malformed {
                name: name.to_owned(),
                reason: "a secret name must be a plain file name".to_owned(),
            });
        }
        let var = format!("{}{}", self.env_prefix, name);
        let from_env = match &self.env {
            Environment::Process => {
                std::env::var_os(&var).map(std::ffi::OsString::into_encoded_bytes)
            }
            Environment::Fixed(vars) => vars.get(&var).cloned(),
        };
        if let Some(bytes) = from_env {
            return Ok(Some(Secret(bytes)));
        }
        let path = self.secrets_prefix.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Secret(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretError::Io { path, source }),
        }
    }

    /// Reads secret `name`, which must exist.
    pub fn require(&self, name: &str) -> Result<Secret, SecretError> {
        self.read(name)?.ok_or_else(|| SecretError::Missing {
            name: name.to_owned(),
            looked_in: format!(
                "environment variable {}{} and file {}",
                self.env_prefix,
                name,
                self.secrets_prefix.join(name).display()
            ),
        })
    }
}

/// Decodes a base64 RawStd secret as flyteadmin writes it, tolerating line breaks, surrounding whitespace and
/// padding.
pub fn decode_base64_secret(name: &str, secret: &Secret) -> Result<Secret, SecretError> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        secret
            .expose()
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    RAW_STD
        .decode(&*compact)
        .map(Secret)
        .map_err(|_| SecretError::Malformed {
            name: name.to_owned(),
            reason: "expected base64 (standard alphabet, as `flyteadmin secrets init` writes)"
                .to_owned(),
        })
}

/// The secrets the server needs at start-up, decoded and length-checked.
#[derive(Debug, Clone)]
pub struct AuthSecrets {
    /// Cookie HMAC key (at least 32 bytes; flyteadmin generates 64).
    pub cookie_hash_key: Secret,
    /// Cookie AES key (16, 24 or 32 bytes).
    pub cookie_block_key: Secret,
    /// AES-256 key for claims inside codes (32 bytes).
    pub claim_symmetric_key: Secret,
    /// Token signing keys: the current key (of the kind `flyteauth.signingAlgorithm` names) and, if present, the
    /// previous one (of any kind, so tokens signed before a change of algorithm stay valid until they expire).
    pub key_ring: KeyRing,
    /// The upstream OpenID provider's client secret (`auth.userAuth.openId`), when federation is configured and
    /// the secret exists (a public client at the provider has none).
    pub oidc_client_secret: Option<Secret>,
}

impl AuthSecrets {
    /// Reads every secret under the names `cfg` gives; a missing or malformed one is an error naming it, and so
    /// is a signing key of another kind than `flyteauth.signingAlgorithm`.
    pub fn load(src: &SecretSource, cfg: &Config) -> Result<Self, SecretError> {
        let ua = &cfg.auth.user_auth;
        let sas = &cfg.auth.app_auth.self_auth_server;
        let cookie_hash_key = load_key(
            src,
            &ua.cookie_hash_key_secret_name,
            |n| n >= 32,
            "at least 32 bytes",
        )?;
        let cookie_block_key = load_key(
            src,
            &ua.cookie_block_key_secret_name,
            |n| matches!(n, 16 | 24 | 32),
            "16, 24 or 32 bytes",
        )?;
        let claim_symmetric_key = load_key(
            src,
            &sas.claim_symmetric_encryption_key_secret_name,
            |n| n == 32,
            "32 bytes",
        )?;
        let current = load_signing_key(src, &sas.token_signing_rsa_key_secret_name)?;
        let configured = cfg.flyteauth.signing_algorithm;
        if current.algorithm() != configured {
            return Err(SecretError::AlgorithmMismatch {
                name: sas.token_signing_rsa_key_secret_name.clone(),
                found: current.algorithm(),
                configured,
            });
        }
        let previous = match sas.old_token_signing_rsa_key_secret_name.trim() {
            "" => None,
            name => match src.read(name)? {
                Some(pem) => Some(parse_signing_key(name, &pem)?.public().clone()),
                None => None,
            },
        };
        let oidc_client_secret = if cfg.federation_enabled() {
            load_oidc_client_secret(src, &ua.open_id)?
        } else {
            None
        };
        Ok(Self {
            cookie_hash_key,
            cookie_block_key,
            claim_symmetric_key,
            key_ring: KeyRing::new(current, previous),
            oidc_client_secret,
        })
    }
}

fn load_key(
    src: &SecretSource,
    name: &str,
    length_ok: impl Fn(usize) -> bool,
    expected: &str,
) -> Result<Secret, SecretError> {
    let decoded = decode_base64_secret(name, &src.require(name)?)?;
    if length_ok(decoded.expose().len()) {
        Ok(decoded)
    } else {
        Err(SecretError::Malformed {
            name: name.to_owned(),
            reason: format!(
                "decodes to {} bytes; expected {expected}",
                decoded.expose().len()
            ),
        })
    }
}

fn load_signing_key(src: &SecretSource, name: &str) -> Result<SigningKey, SecretError> {
    parse_signing_key(name, &src.require(name)?)
}

fn parse_signing_key(name: &str, pem: &Secret) -> Result<SigningKey, SecretError> {
    SigningKey::from_pem(pem.expose()).map_err(|e| SecretError::Malformed {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads the upstream OIDC client secret: `openId.clientSecretFile` if set (flyteadmin's deprecated absolute
/// path), else the secret named `openId.clientSecretName`. One trailing `\n` is trimmed, as flyteadmin does.
pub fn load_oidc_client_secret(
    src: &SecretSource,
    cfg: &OpenIdConfig,
) -> Result<Option<Secret>, SecretError> {
    let raw = match &cfg.client_secret_file {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(Secret(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SecretError::Io {
                    path: path.clone(),
                    source,
                });
            }
        },
        None => src.read(&cfg.client_secret_name)?,
    };
    Ok(raw.map(|s| {
        let bytes = s.expose();
        let trimmed = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        Secret(trimmed.to_vec())
    }))
}

/// Writes a fresh set of secrets into `dir`, as `flyteadmin secrets init` does: `claim_symmetric_key` (32 bytes),
/// `cookie_hash_key` (64), `cookie_block_key` (32), base64 RawStd, and `token_rsa_key.pem` (RSA-2048, PKCS#1 PEM).
/// The directory is created with mode 0700 if missing; files are created with mode 0600. Nothing is written
/// if any of the files exists. Returns the paths written.
pub fn write_fresh_set(dir: &Path) -> Result<Vec<PathBuf>, SecretError> {
    write_fresh_set_for(dir, SigningAlgorithm::Rs256)
}

/// [`write_fresh_set`] with a signing key for `algorithm`: RSA-2048 (PKCS#1 PEM), EC P-256 or Ed25519 (PKCS#8
/// PEM), still named `token_rsa_key.pem`, the name flyteadmin's configuration points at.
pub fn write_fresh_set_for(
    dir: &Path,
    algorithm: SigningAlgorithm,
) -> Result<Vec<PathBuf>, SecretError> {
    let names = [
        CLAIM_SYMMETRIC_KEY,
        COOKIE_HASH_KEY,
        COOKIE_BLOCK_KEY,
        TOKEN_RSA_KEY,
    ];
    for name in names {
        let path = dir.join(name);
        if path.exists() {
            return Err(SecretError::Exists { path });
        }
    }
    let (_, pem) = SigningKey::generate_for(algorithm).map_err(|e| SecretError::Generation {
        reason: e.to_string(),
    })?;
    let contents: [(&str, Zeroizing<Vec<u8>>); 4] = [
        (CLAIM_SYMMETRIC_KEY, random_base64(32)),
        (COOKIE_HASH_KEY, random_base64(64)),
        (COOKIE_BLOCK_KEY, random_base64(32)),
        (TOKEN_RSA_KEY, Zeroizing::new(pem.as_bytes().to_vec())),
    ];
    create_private_dir(dir)?;
    let mut written = Vec::with_capacity(contents.len());
    for (name, bytes) in contents {
        let path = dir.join(name);
        write_private_file(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

fn random_base64(len: usize) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    rand::rng().fill_bytes(&mut bytes);
    Zeroizing::new(RAW_STD.encode(&*bytes).into_bytes())
}

fn create_private_dir(dir: &Path) -> Result<(), SecretError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| SecretError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let io = |source| SecretError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SecretError::Exists {
                path: path.to_owned(),
            }
        } else {
            io(e)
        }
    })?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests;
