//! OAuth clients: secret hashes, generated secrets, and the static clients from configuration.

use std::fmt;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::{FlyteClientConfig, SelfAuthServerConfig};

/// Why a client or a secret hash is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An encoded secret hash is neither `sha256:<64 hex>` nor `bcrypt:<bcrypt hash>`.
    #[error("invalid secret hash encoding: {0}")]
    InvalidHash(&'static str),
    /// A static client's `client_secret` is not the base64 of a bcrypt hash.
    #[error(
        "static client {id:?}: client_secret must be the standard base64 of a bcrypt hash ({reason})"
    )]
    InvalidSecret {
        /// The client id.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A confidential static client has no `client_secret`.
    #[error("static client {id:?} is not public but has no client_secret")]
    MissingSecret {
        /// The client id.
        id: String,
    },
}

/// How a client secret is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretHash {
    /// A bcrypt hash (`$2a$…`), as flyteadmin's static clients carry; for human-chosen secrets.
    Bcrypt(String),
    /// SHA-256 of the secret; enough for secrets we generate, which carry 256 bits of entropy.
    Sha256([u8; 32]),
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bcrypt(_) => f.write_str("Bcrypt(<redacted>)"),
            Self::Sha256(_) => f.write_str("Sha256(<redacted>)"),
        }
    }
}

impl SecretHash {
    /// Whether `presented` is the secret. SHA-256 digests are compared in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        match self {
            // Non-truncating: bcrypt reads 72 bytes at most, and a longer secret must not pass on its prefix.
            Self::Bcrypt(hash) => bcrypt::non_truncating_verify(presented, hash).unwrap_or(false),
            Self::Sha256(expected) => {
                let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                digest.ct_eq(expected).into()
            }
        }
    }

    /// The storage form: `sha256:<hex>` or `bcrypt:<hash>`.
    pub fn encode(&self) -> String {
        match self {
            Self::Bcrypt(hash) => format!("bcrypt:{hash}"),
            Self::Sha256(digest) => format!("sha256:{}", hex::encode(digest)),
        }
    }

    /// Reads the storage form written by [`SecretHash::encode`].
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        if let Some(h) = s.strip_prefix("sha256:") {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(h, &mut digest)
                .map_err(|_| ClientError::InvalidHash("sha256 needs 64 hexadecimal digits"))?;
            Ok(Self::Sha256(digest))
        } else if let Some(h) = s.strip_prefix("bcrypt:") {
            check_bcrypt(h).map_err(ClientError::InvalidHash)?;
            Ok(Self::Bcrypt(h.to_owned()))
        } else {
            Err(ClientError::InvalidHash(
                "expected a \"sha256:\" or \"bcrypt:\" prefix",
            ))
        }
    }
}

/// A new client secret: 32 random bytes, base64url without padding (43 characters, never a ':').
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The hash stored for a secret from [`generate_secret`]. A fast hash suffices: with 256 bits of entropy there is
/// nothing to brute-force, and token requests stay cheap.
pub fn hash_generated_secret(secret: &str) -> SecretHash {
    SecretHash::Sha256(Sha256::digest(secret.as_bytes()).into())
}

/// The cost of the dummy hash in [`equalize_timing_for_unknown_client`]. flyteadmin's documentation generates
/// static-client hashes with `bcrypt.gensalt(6)` and its sample hash has cost 6, so 6 is what most
/// configurations carry. Client ids are not secret (they sit in every client config), so this only keeps
/// "unknown client" and "wrong secret" from being told apart by a glance at the latency, without making every
/// failed lookup cost more than a real one.
pub const DUMMY_BCRYPT_COST: u32 = 6;

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    bcrypt::hash_with_salt(b"flyteauth: no such client", DUMMY_BCRYPT_COST, [0x5a; 16])
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
        .unwrap_or_default()
});

/// Spends about as long as checking a bcrypt secret of a known client, so a request for an unknown client id
/// answers no faster than one with a wrong secret.
pub fn equalize_timing_for_unknown_client(presented: &str) {
    let _ = bcrypt::non_truncating_verify(presented, &DUMMY_HASH);
}

/// An OAuth client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Client id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Secret hash; `None` for public clients.
    pub secret: Option<SecretHash>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Registered scopes.
    pub scopes: Vec<String>,
    /// Audiences the client may request besides the server's own.
    pub audience: Vec<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
}

impl Client {
    /// A public client has no secret.
    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    /// Whether the client may use `grant_type`.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// The clients of `selfAuthServer.staticClients`, with their base64-wrapped bcrypt secrets decoded.
pub fn static_clients(cfg: &SelfAuthServerConfig) -> Result<Vec<Client>, ClientError> {
    cfg.static_clients
        .iter()
        .map(|(key, sc)| {
            let id = if sc.id.is_empty() {
                key.clone()
            } else {
                sc.id.clone()
            };
            let secret = if sc.public {
                None
            } else {
                let raw = sc
                    .client_secret
                    .as_deref()
                    .ok_or_else(|| ClientError::MissingSecret { id: id.clone() })?;
                let hash =
                    decode_config_secret(raw).map_err(|reason| ClientError::InvalidSecret {
                        id: id.clone(),
                        reason,
                    })?;
                Some(SecretHash::Bcrypt(hash))
            };
            Ok(Client {
                name: id.clone(),
                id,
                secret,
                grant_types: sc.grant_types.clone(),
                scopes: sc.scopes.clone(),
                audience: sc.audience.clone(),
                redirect_uris: sc.redirect_uris.clone(),
            })
        })
        .collect()
}

/// Makes sure the public client the SDKs are told to log in with (`thirdPartyConfig.flyteClient`) can do so:
/// when no static client has its id, it becomes a public client of its own (authorization code + refresh, its
/// redirect URI and scopes); when a static client has that id but not its redirect URI, the URI is registered
/// on it. Returns a sentence describing what was added, for the start-up log.
pub fn ensure_flyte_client(clients: &mut Vec<Client>, fc: &FlyteClientConfig) -> Option<String> {
    let id = fc.client_id.trim();
    let redirect = fc.redirect_uri.trim();
    if id.is_empty() || redirect.is_empty() {
        return None;
    }
    match clients.iter_mut().find(|c| c.id == id) {
        Some(client) if client.redirect_uris.iter().any(|r| r == redirect) => None,
        Some(client) => {
            client.redirect_uris.push(redirect.to_owned());
            Some(format!(
                "registered thirdPartyConfig.flyteClient.redirectUri {redirect:?} on static client {id:?}"
            ))
        }
        None => {
            clients.push(Client {
                id: id.to_owned(),
                name: id.to_owned(),
                secret: None,
                grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
                scopes: fc.scopes.clone(),
                audience: Some(fc.audience.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .into_iter()
                    .collect(),
                redirect_uris: vec![redirect.to_owned()],
            });
            Some(format!(
                "added public client {id:?} from thirdPartyConfig.flyteClient (no static client has that id)"
            ))
        }
    }
}

/// Decodes a configured `client_secret` (standard base64 of a bcrypt hash, as flyteadmin expects) into the bcrypt
/// hash. A bare bcrypt hash is accepted too, since it cannot be mistaken for base64 (`$` is not in the alphabet).
pub(crate) fn decode_config_secret(value: &str) -> Result<String, &'static str> {
    let value = value.trim();
    let hash = if value.starts_with("$2") {
        value.to_owned()
    } else {
        let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = STANDARD
            .decode(&compact)
            .or_else(|_| STANDARD_NO_PAD.decode(compact.trim_end_matches('=')))
            .map_err(|_| "not valid base64")?;
        String::from_utf8(bytes).map_err(|_| "the decoded value is not text")?
    };
    check_bcrypt(&hash)?;
    Ok(hash)
}

fn check_bcrypt(hash: &str) -> Result<(), &'static str> {
    let b = hash.as_bytes();
    let shape_ok = b.len() == 60
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$';
    if !shape_ok {
        return Err("the decoded value is not a bcrypt hash ($2a$/$2b$/$2y$, 60 characters)");
    }
    let cost = u32::from(b[4] - b'0') * 10 + u32::from(b[5] - b'0');
    if !(4..=31).contains(&cost) {
        return Err("the bcrypt cost must be between 4 and 31");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
