//! RSA signing keys, their RFC 7638 key ids, the key ring (current key plus the previous one for validation) and
//! the JWKS document published for them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Smallest accepted modulus: RS256 with less than 2048 bits is below every current recommendation, and
/// aws-lc refuses it.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted modulus (aws-lc's limit for RS256 verification).
pub const MAX_RSA_BITS: usize = 8192;
/// Size of generated keys, as `flyteadmin secrets init` does.
pub const GENERATED_RSA_BITS: usize = 2048;

/// Why a key could not be loaded or generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is not a PEM-encoded RSA private key.
    #[error("not a PEM RSA private key: {0}")]
    Malformed(String),
    /// The key is an RSA key we refuse (encrypted, too small, too large, inconsistent).
    #[error("unsupported RSA key: {0}")]
    Unsupported(String),
    /// Key generation failed.
    #[error("cannot generate an RSA key: {0}")]
    Generation(String),
}

/// A private RSA key used to sign tokens with RS256.
#[derive(Clone)]
pub struct SigningKey {
    encoding: EncodingKey,
    public: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// Reads a PEM private key: PKCS#1 (`RSA PRIVATE KEY`, what flyteadmin writes) or PKCS#8 (`PRIVATE KEY`).
    /// Text around the PEM block is ignored; CRLF line endings are accepted.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| KeyError::Malformed("the PEM text is not UTF-8".into()))?;
        let text = Zeroizing::new(text.replace("\r\n", "\n"));
        let key = if let Some(block) = pem_block(&text, "RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(block)
                .map_err(|e| KeyError::Malformed(format!("PKCS#1: {e}")))?
        } else if let Some(block) = pem_block(&text, "PRIVATE KEY") {
            RsaPrivateKey::from_pkcs8_pem(block)
                .map_err(|e| KeyError::Malformed(format!("PKCS#8: {e}")))?
        } else if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyError::Unsupported(
                "encrypted private keys are not supported".into(),
            ));
        } else {
            return Err(KeyError::Malformed(
                "expected a \"-----BEGIN RSA PRIVATE KEY-----\" (PKCS#1) or \"-----BEGIN PRIVATE KEY-----\" (PKCS#8) \
                 block"
                    .into(),
            ));
        };
        Self::from_rsa(&key)
    }

    /// Generates a fresh RSA-2048 key; returns it with its PKCS#1 PEM encoding (what flyteadmin stores), which
    /// is wiped from memory when dropped.
    pub fn generate() -> Result<(Self, Zeroizing<String>), KeyError> {
        let mut rng = rsa::rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, GENERATED_RSA_BITS)
            .map_err(|e| KeyError::Generation(e.to_string()))?;
        let pem = key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generation(e.to_string()))?;
        let signing = Self::from_rsa(&key)?;
        Ok((signing, pem))
    }

    fn from_rsa(key: &RsaPrivateKey) -> Result<Self, KeyError> {
        let bits = key.size() * 8;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::Unsupported(format!(
                "a {bits}-bit modulus; expected {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
            )));
        }
        key.validate()
            .map_err(|e| KeyError::Unsupported(format!("inconsistent key: {e}")))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        let public =
            VerifyingKey::from_rsa_components(&key.n().to_bytes_be(), &key.e().to_bytes_be());
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public,
        })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The public half.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// The key in the form jsonwebtoken signs with.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

/// A public RSA key that verifies RS256 signatures.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
    decoding: DecodingKey,
}

impl VerifyingKey {
    /// A key from its big-endian modulus and exponent (leading zero bytes are ignored).
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Self {
        let n = strip_leading_zeros(n).to_vec();
        let e = strip_leading_zeros(e).to_vec();
        Self {
            kid: rfc7638_thumbprint(&n, &e),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            n,
            e,
        }
    }

    /// The key id (RFC 7638 SHA-256 thumbprint, base64url without padding).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The modulus, big-endian, without leading zeros.
    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    /// The public exponent, big-endian, without leading zeros.
    pub fn exponent(&self) -> &[u8] {
        &self.e
    }

    /// The key in the form jsonwebtoken verifies with.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// This key as a JWK (`kty` RSA, `use` sig, `alg` RS256).
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "RSA".to_owned(),
            key_use: "sig".to_owned(),
            alg: "RS256".to_owned(),
            kid: self.kid.clone(),
            n: URL_SAFE_NO_PAD.encode(&self.n),
            e: URL_SAFE_NO_PAD.encode(&self.e),
        }
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The keys in use: the current signing key and, optionally, the previous key, accepted for validation only.
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: SigningKey,
    previous: Option<VerifyingKey>,
}

impl KeyRing {
    /// A ring signing with `current` and also accepting tokens signed by `previous`. A previous key equal to
    /// the current one is dropped.
    pub fn new(current: SigningKey, previous: Option<VerifyingKey>) -> Self {
        let previous = previous.filter(|p| p.kid != current.public.kid);
        Self { current, previous }
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The previous key, if any.
    pub fn previous(&self) -> Option<&VerifyingKey> {
        self.previous.as_ref()
    }

    /// The verifying key with id `kid`, current or previous.
    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        if self.current.public.kid == kid {
            Some(&self.current.public)
        } else {
            self.previous.as_ref().filter(|p| p.kid == kid)
        }
    }

    /// The JWKS document: the current key first, then the previous one.
    pub fn jwks(&self) -> Jwks {
        let mut keys = vec![self.current.public.jwk()];
        if let Some(p) = &self.previous {
            keys.push(p.jwk());
        }
        Jwks { keys }
    }
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One RSA public key as a JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type, "RSA".
    pub kty: String,
    /// Intended use, "sig".
    #[serde(rename = "use")]
    pub key_use: String,
    /// Algorithm, "RS256".
    pub alg: String,
    /// Key id.
    pub kid: String,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Exponent, base64url without padding.
    pub e: String,
}

/// The RFC 7638 JWK thumbprint of an RSA public key: SHA-256 over `{"e":…,"kty":"RSA","n":…}`, base64url
/// without padding. `n` and `e` are big-endian; leading zero bytes are ignored.
pub fn rfc7638_thumbprint(n: &[u8], e: &[u8]) -> String {
    let n = URL_SAFE_NO_PAD.encode(strip_leading_zeros(n));
    let e = URL_SAFE_NO_PAD.encode(strip_leading_zeros(e));
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2); base64url needs no JSON escaping.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
pub(crate) mod tests;
