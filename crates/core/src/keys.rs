//! Token signing keys (RSA, EC P-256 or Ed25519), their RFC 7638 key ids, the key ring (current key plus the
//! previous one for validation) and the JWKS document published for them.
//!
//! Signing and verification go through keys parsed once, when they are loaded: a [`SigningKey`] holds aws-lc's
//! key pair, a [`VerifyingKey`] its parsed public key. jsonwebtoken's own signing path parses the private key
//! from DER (and checks it) for every signature, which costs more than the RSA operation itself; its key forms
//! are still kept for callers that sign or verify through jsonwebtoken.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::der::asn1::ObjectIdentifier;
use rsa::pkcs8::{DecodePrivateKey, PrivateKeyInfo, SecretDocument};
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

/// The longest signature any of our algorithms produces: an RSA signature is as long as the modulus.
pub const MAX_SIGNATURE_BYTES: usize = MAX_RSA_BITS / 8;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Why a key could not be loaded, generated or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is not a PEM-encoded private key of a kind we read.
    #[error("not a PEM private key: {0}")]
    Malformed(String),
    /// The key is one we refuse (encrypted, too small, too large, inconsistent, another curve).
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// Key generation failed.
    #[error("cannot generate a key: {0}")]
    Generation(String),
    /// The signature could not be computed.
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// The JWS algorithm tokens are signed with (`flyteauth.signingAlgorithm`), one per kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an RSA key (2048 to 8192 bits): what every Flyte client and
    /// flyteadmin expect.
    #[default]
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA with P-256 and SHA-256 (RFC 7518 §3.4).
    #[serde(rename = "ES256")]
    Es256,
    /// EdDSA with Ed25519 (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlgorithm {
    /// Every algorithm, in the order the documentation lists them.
    pub const ALL: [Self; 3] = [Self::Rs256, Self::Es256, Self::EdDsa];

    /// The JWS `alg` value: `RS256`, `ES256` or `EdDSA`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Reads a JWS `alg` value (exact spelling).
    pub fn from_jws(alg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == alg)
    }

    /// The kind of key the algorithm needs, for messages: `RSA`, `EC P-256` or `Ed25519`.
    pub fn key_kind(&self) -> &'static str {
        match self {
            Self::Rs256 => "RSA",
            Self::Es256 => "EC P-256",
            Self::EdDsa => "Ed25519",
        }
    }

    /// The same algorithm in jsonwebtoken's terms.
    pub fn jsonwebtoken(&self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `alg` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a signing algorithm we support; expected RS256, ES256 or EdDSA")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for SigningAlgorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_jws(s).ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// The pre-parsed private key: one variant per algorithm, each signing in one call without re-reading the key.
enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    /// Signs `message` into `out`; returns the signature's length.
    fn sign(&self, message: &[u8], out: &mut [u8; MAX_SIGNATURE_BYTES]) -> Result<usize, KeyError> {
        let failed = |_| KeyError::Signing("the signing backend refused the message".into());
        match self {
            Self::Rsa(pair) => {
                let len = pair.public_modulus_len();
                let buf = out
                    .get_mut(..len)
                    .ok_or_else(|| KeyError::Signing("the modulus is too long".into()))?;
                // aws-lc draws no randomness for PKCS#1 v1.5; the argument exists for ring's API.
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    message,
                    buf,
                )
                .map_err(failed)?;
                Ok(len)
            }
            Self::Ecdsa(pair) => {
                let sig = pair
                    .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                    .map_err(failed)?;
                copy_signature(sig.as_ref(), out)
            }
            Self::Ed25519(pair) => copy_signature(pair.sign(message).as_ref(), out),
        }
    }
}

fn copy_signature(sig: &[u8], out: &mut [u8; MAX_SIGNATURE_BYTES]) -> Result<usize, KeyError> {
    out.get_mut(..sig.len())
        .ok_or_else(|| KeyError::Signing("the signature is too long".into()))?
        .copy_from_slice(sig);
    Ok(sig.len())
}

/// A private key tokens are signed with: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA).
#[derive(Clone)]
pub struct SigningKey {
    signer: Arc<Signer>,
    encoding: EncodingKey,
    public: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.algorithm)
            .field("kid", &self.public.kid)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// Reads a PEM private key: RSA as PKCS#1 (`RSA PRIVATE KEY`, what flyteadmin writes) or PKCS#8
    /// (`PRIVATE KEY`); EC P-256 as PKCS#8 or SEC1 (`EC PRIVATE KEY`, what `openssl ecparam` writes); Ed25519 as
    /// PKCS#8. Text around the PEM block is ignored; CRLF line endings are accepted.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| KeyError::Malformed("the PEM text is not UTF-8".into()))?;
        let text = Zeroizing::new(text.replace("\r\n", "\n"));
        if let Some(block) = pem_block(&text, "RSA PRIVATE KEY") {
            let key = RsaPrivateKey::from_pkcs1_pem(block)
                .map_err(|e| KeyError::Malformed(format!("PKCS#1: {e}")))?;
            Self::from_rsa(&key)
        } else if let Some(block) = pem_block(&text, "EC PRIVATE KEY") {
            let der = pem_der(block, "SEC1")?;
            let pair = EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der.as_bytes(),
            )
            .map_err(|e| {
                KeyError::Unsupported(format!("SEC1 EC key: {e} (only P-256 keys are supported)"))
            })?;
            Self::from_ecdsa(pair)
        } else if let Some(block) = pem_block(&text, "PRIVATE KEY") {
            Self::from_pkcs8(&pem_der(block, "PKCS#8")?)
        } else if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            Err(KeyError::Unsupported(
                "encrypted private keys are not supported".into(),
            ))
        } else {
            Err(KeyError::Malformed(
                "expected a \"-----BEGIN RSA PRIVATE KEY-----\" (PKCS#1), \"-----BEGIN EC PRIVATE KEY-----\" (SEC1) \
                 or \"-----BEGIN PRIVATE KEY-----\" (PKCS#8) block"
                    .into(),
            ))
        }
    }

    fn from_pkcs8(der: &SecretDocument) -> Result<Self, KeyError> {
        let info = PrivateKeyInfo::try_from(der.as_bytes())
            .map_err(|e| KeyError::Malformed(format!("PKCS#8: {e}")))?;
        let oid = info.algorithm.oid;
        if oid == OID_RSA {
            let key = RsaPrivateKey::from_pkcs8_der(der.as_bytes())
                .map_err(|e| KeyError::Malformed(format!("PKCS#8: {e}")))?;
            Self::from_rsa(&key)
        } else if oid == OID_EC_PUBLIC_KEY {
            let curve = info.algorithm.parameters_oid().ok();
            if curve != Some(OID_P256) {
                return Err(KeyError::Unsupported(format!(
                    "an EC key on curve {}; only P-256 (ES256) is supported",
                    curve.map_or_else(|| "(unnamed)".to_owned(), |c| c.to_string())
                )));
            }
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes())
                .map_err(|e| KeyError::Unsupported(format!("EC P-256 key: {e}")))?;
            Self::from_ecdsa(pair)
        } else if oid == OID_ED25519 {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.as_bytes())
                .map_err(|e| KeyError::Unsupported(format!("Ed25519 key: {e}")))?;
            Self::from_ed25519(pair)
        } else {
            Err(KeyError::Unsupported(format!(
                "a PKCS#8 key of algorithm {oid}; expected RSA, EC P-256 or Ed25519"
            )))
        }
    }

    /// Generates a fresh RSA-2048 key; returns it with its PKCS#1 PEM encoding (what flyteadmin stores), which
    /// is wiped from memory when dropped.
    pub fn generate() -> Result<(Self, Zeroizing<String>), KeyError> {
        Self::generate_for(SigningAlgorithm::Rs256)
    }

    /// Generates a fresh key for `algorithm`: RSA-2048 as PKCS#1 PEM, EC P-256 or Ed25519 as PKCS#8 PEM.
    /// Returns it with its PEM encoding, which is wiped from memory when dropped.
    pub fn generate_for(
        algorithm: SigningAlgorithm,
    ) -> Result<(Self, Zeroizing<String>), KeyError> {
        let generation = |e: &dyn fmt::Display| KeyError::Generation(e.to_string());
        match algorithm {
            SigningAlgorithm::Rs256 => {
                let mut rng = rsa::rand_core::OsRng;
                let key =
                    RsaPrivateKey::new(&mut rng, GENERATED_RSA_BITS).map_err(|e| generation(&e))?;
                let pem = key
                    .to_pkcs1_pem(LineEnding::LF)
                    .map_err(|e| generation(&e))?;
                Ok((Self::from_rsa(&key)?, pem))
            }
            SigningAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|e| generation(&e))?;
                let pkcs8 = pair.to_pkcs8v1().map_err(|e| generation(&e))?;
                let pem = pkcs8_pem(pkcs8.as_ref())?;
                Ok((Self::from_ecdsa(pair)?, pem))
            }
            SigningAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::generate().map_err(|e| generation(&e))?;
                // v1 (no public key inside) is what `openssl genpkey -algorithm ED25519` writes and every
                // reader accepts.
                let pkcs8 = pair.to_pkcs8v1().map_err(|e| generation(&e))?;
                let pem = pkcs8_pem(pkcs8.as_ref())?;
                Ok((Self::from_ed25519(pair)?, pem))
            }
        }
    }

    fn from_rsa(key: &RsaPrivateKey) -> Result<Self, KeyError> {
        let bits = key.size() * 8;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::Unsupported(format!(
                "a {bits}-bit RSA modulus; expected {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
            )));
        }
        key.validate()
            .map_err(|e| KeyError::Unsupported(format!("inconsistent RSA key: {e}")))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        let pair = RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| KeyError::Unsupported(format!("RSA key refused by aws-lc: {e}")))?;
        let public =
            VerifyingKey::from_rsa_components(&key.n().to_bytes_be(), &key.e().to_bytes_be());
        Ok(Self {
            signer: Arc::new(Signer::Rsa(pair)),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public,
        })
    }

    fn from_ecdsa(pair: EcdsaKeyPair) -> Result<Self, KeyError> {
        let point = pair.public_key().as_ref();
        let (x, y) = match point {
            [0x04, xy @ ..] if xy.len() == 64 => xy.split_at(32),
            _ => {
                return Err(KeyError::Unsupported(
                    "the EC public key is not an uncompressed P-256 point".into(),
                ));
            }
        };
        let public = VerifyingKey::from_p256_coordinates(x, y)?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|e| KeyError::Malformed(format!("EC key: {e}")))?;
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        Ok(Self {
            signer: Arc::new(Signer::Ecdsa(pair)),
            encoding,
            public,
        })
    }

    fn from_ed25519(pair: Ed25519KeyPair) -> Result<Self, KeyError> {
        let public = VerifyingKey::from_ed25519(pair.public_key().as_ref())?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|e| KeyError::Malformed(format!("Ed25519 key: {e}")))?;
        let encoding = EncodingKey::from_ed_der(pkcs8.as_ref());
        Ok(Self {
            signer: Arc::new(Signer::Ed25519(pair)),
            encoding,
            public,
        })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.public.algorithm
    }

    /// The public half.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// The key in the form jsonwebtoken signs with (slower: it parses the key again for every signature).
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The raw signature of `message` with this key's algorithm (for ES256 the fixed-size `r || s` that JWS
    /// uses).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut buf = [0u8; MAX_SIGNATURE_BYTES];
        let len = self.signer.sign(message, &mut buf)?;
        Ok(buf[..len].to_vec())
    }

    /// Completes a compact JWS: `jws` holds the signing input `header.payload` (both base64url); appends `.`
    /// and the base64url signature of it.
    pub fn sign_compact(&self, jws: &mut String) -> Result<(), KeyError> {
        let mut buf = [0u8; MAX_SIGNATURE_BYTES];
        let len = self.signer.sign(jws.as_bytes(), &mut buf)?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&buf[..len], jws);
        Ok(())
    }

    /// Length of the base64url signature [`SigningKey::sign_compact`] appends (without the dot).
    pub fn signature_b64_len(&self) -> usize {
        let bytes = match &*self.signer {
            Signer::Rsa(pair) => pair.public_modulus_len(),
            Signer::Ecdsa(_) | Signer::Ed25519(_) => 64,
        };
        (bytes * 4).div_ceil(3)
    }
}

fn pem_der(block: &str, what: &str) -> Result<SecretDocument, KeyError> {
    SecretDocument::from_pem(block)
        .map(|(_, doc)| doc)
        .map_err(|e| KeyError::Malformed(format!("{what}: {e}")))
}

fn pkcs8_pem(der: &[u8]) -> Result<Zeroizing<String>, KeyError> {
    SecretDocument::try_from(der)
        .and_then(|doc| doc.to_pem("PRIVATE KEY", LineEnding::LF))
        .map_err(|e| KeyError::Generation(e.to_string()))
}

fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

/// The public numbers of a key, as its JWK carries them (big-endian, leading zeros stripped for RSA).
#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicNumbers {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { x: Vec<u8>, y: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

/// A public key that verifies the signatures of one algorithm (RS256, ES256 or EdDSA).
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    kid: String,
    algorithm: SigningAlgorithm,
    numbers: PublicNumbers,
    decoding: DecodingKey,
    /// Parsed once; `None` for RSA components aws-lc refuses, whose signatures then never verify.
    parsed: Option<ParsedPublicKey>,
}

impl VerifyingKey {
    /// An RS256 key from its big-endian modulus and exponent (leading zero bytes are ignored).
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Self {
        let n = strip_leading_zeros(n).to_vec();
        let e = strip_leading_zeros(e).to_vec();
        let parsed = PublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .ok();
        Self {
            kid: rfc7638_thumbprint(&n, &e),
            algorithm: SigningAlgorithm::Rs256,
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            parsed,
            numbers: PublicNumbers::Rsa { n, e },
        }
    }

    /// An ES256 key from the 32-byte big-endian coordinates of its P-256 point.
    pub fn from_p256_coordinates(x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(KeyError::Unsupported(
                "P-256 coordinates are 32 bytes each".into(),
            ));
        }
        let point = [&[0x04][..], x, y].concat();
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .map_err(|e| KeyError::Unsupported(format!("not a P-256 public key: {e}")))?;
        let (x64, y64) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        let decoding = DecodingKey::from_ec_components(&x64, &y64)
            .map_err(|e| KeyError::Unsupported(format!("not a P-256 public key: {e}")))?;
        Ok(Self {
            // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
            kid: thumbprint(&format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{x64}","y":"{y64}"}}"#
            )),
            algorithm: SigningAlgorithm::Es256,
            numbers: PublicNumbers::P256 {
                x: x.to_vec(),
                y: y.to_vec(),
            },
            decoding,
            parsed: Some(parsed),
        })
    }

    /// An EdDSA key from its 32-byte Ed25519 public key.
    pub fn from_ed25519(x: &[u8]) -> Result<Self, KeyError> {
        if x.len() != 32 {
            return Err(KeyError::Unsupported(
                "an Ed25519 public key is 32 bytes".into(),
            ));
        }
        let parsed = ParsedPublicKey::new(&ED25519, x)
            .map_err(|e| KeyError::Unsupported(format!("not an Ed25519 public key: {e}")))?;
        let x64 = URL_SAFE_NO_PAD.encode(x);
        let decoding = DecodingKey::from_ed_components(&x64)
            .map_err(|e| KeyError::Unsupported(format!("not an Ed25519 public key: {e}")))?;
        Ok(Self {
            // RFC 8037 §2: the OKP thumbprint covers crv, kty and x.
            kid: thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x64}"}}"#)),
            algorithm: SigningAlgorithm::EdDsa,
            numbers: PublicNumbers::Ed25519 { x: x.to_vec() },
            decoding,
            parsed: Some(parsed),
        })
    }

    /// The key id (RFC 7638 SHA-256 thumbprint, base64url without padding).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The RSA modulus, big-endian, without leading zeros; empty for other keys.
    pub fn modulus(&self) -> &[u8] {
        match &self.numbers {
            PublicNumbers::Rsa { n, .. } => n,
            _ => &[],
        }
    }

    /// The RSA public exponent, big-endian, without leading zeros; empty for other keys.
    pub fn exponent(&self) -> &[u8] {
        match &self.numbers {
            PublicNumbers::Rsa { e, .. } => e,
            _ => &[],
        }
    }

    /// The key in the form jsonwebtoken verifies with.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Whether `signature` (raw, as in the JWS after base64url decoding) is this key's signature of
    /// `message` under its algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .as_ref()
            .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }

    /// This key as a JWK (`use` sig, with `alg` and `kid`): `kty` RSA with `n` and `e`, `kty` EC with `crv`
    /// P-256, `x` and `y`, or `kty` OKP with `crv` Ed25519 and `x`.
    pub fn jwk(&self) -> Jwk {
        let b64 = |bytes: &[u8]| Some(URL_SAFE_NO_PAD.encode(bytes));
        let mut jwk = Jwk {
            kty: String::new(),
            key_use: "sig".to_owned(),
            alg: self.algorithm.as_str().to_owned(),
            kid: self.kid.clone(),
            crv: None,
            n: None,
            e: None,
            x: None,
            y: None,
        };
        match &self.numbers {
            PublicNumbers::Rsa { n, e } => {
                jwk.kty = "RSA".to_owned();
                jwk.n = b64(n);
                jwk.e = b64(e);
            }
            PublicNumbers::P256 { x, y } => {
                jwk.kty = "EC".to_owned();
                jwk.crv = Some("P-256".to_owned());
                jwk.x = b64(x);
                jwk.y = b64(y);
            }
            PublicNumbers::Ed25519 { x } => {
                jwk.kty = "OKP".to_owned();
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = b64(x);
            }
        }
        jwk
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The keys in use: the current signing key and, optionally, the previous key, accepted for validation only.
/// The previous key may be of another kind than the current one (a switch of `flyteauth.signingAlgorithm`):
/// each key verifies only its own algorithm.
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

/// One public key as a JWK: the members of its `kty` are set, the others are `None` and left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: "RSA", "EC" or "OKP".
    pub kty: String,
    /// Intended use, "sig".
    #[serde(rename = "use")]
    pub key_use: String,
    /// Algorithm: "RS256", "ES256" or "EdDSA".
    pub alg: String,
    /// Key id.
    pub kid: String,
    /// Curve: "P-256" (EC) or "Ed25519" (OKP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// RSA modulus, base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent, base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC x coordinate or Ed25519 public key, base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate, base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// The RFC 7638 JWK thumbprint of an RSA public key: SHA-256 over `{"e":…,"kty":"RSA","n":…}`, base64url
/// without padding. `n` and `e` are big-endian; leading zero bytes are ignored.
pub fn rfc7638_thumbprint(n: &[u8], e: &[u8]) -> String {
    let n = URL_SAFE_NO_PAD.encode(strip_leading_zeros(n));
    let e = URL_SAFE_NO_PAD.encode(strip_leading_zeros(e));
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2); base64url needs no JSON escaping.
    thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#))
}

fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
pub(crate) mod tests;
