//! Authenticated encryption of small values for cookies: the cookie format.
//!
//! A sealed cookie value is
//!
//! ```text
//! base64url-without-padding( 0x01 || nonce (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes) )
//! ```
//!
//! - `0x01` is the format version; any other first byte is refused.
//! - The plaintext is the value's JSON (`serde_json`).
//! - The nonce is fresh random bytes for every seal, so sealing the same value twice gives different cookies.
//! - The additional authenticated data is the cookie's name, so a value sealed for one cookie does not open as
//!   another.
//! - The key is HKDF-SHA256 (RFC 5869) with salt `"flyteauth cookie seal v1"`, input keying material
//!   `cookie_block_key || cookie_hash_key` (the flyteadmin secrets) and info `"aes-256-gcm"`, 32 bytes long.
//!   Every replica that shares the secrets derives the same key, and the key outlives restarts.
//!
//! A value longer than [`MAX_SEALED_CHARS`] is refused before it is decoded. Errors never carry the value or
//! any part of it.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{self, HKDF_SHA256, Salt};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// The format version byte that starts every sealed value.
pub const VERSION: u8 = 0x01;
/// Longest sealed value [`Sealer::open`] looks at, in characters (a browser keeps at most 4096 bytes a cookie).
pub const MAX_SEALED_CHARS: usize = 4096;
/// Length of the authentication tag that ends the ciphertext.
pub const TAG_LEN: usize = 16;

const HKDF_SALT: &[u8] = b"flyteauth cookie seal v1";
const HKDF_INFO: &[u8] = b"aes-256-gcm";
const KEY_LEN: usize = 32;
/// Version byte, nonce and tag: the shortest decoded value that can authenticate.
const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Why a value could not be sealed or opened. The messages never include the value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// One of the secrets the key is derived from is empty.
    #[error("the cookie keys must not be empty")]
    EmptyKey,
    /// The cookie name is empty or holds characters a cookie name may not.
    #[error("the cookie name is not a valid cookie name")]
    BadName,
    /// The value could not be written as JSON.
    #[error("the value cannot be serialized")]
    Serialize,
    /// The sealed value, or the cookie it would make, is longer than allowed.
    #[error("the sealed value is too long ({len} characters, at most {max})")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The sealed value is not unpadded base64url.
    #[error("the sealed value is not base64url")]
    Encoding,
    /// The sealed value starts with an unknown format version.
    #[error("the sealed value has an unknown format version")]
    Version,
    /// The sealed value is too short to hold a nonce and a tag.
    #[error("the sealed value is too short")]
    TooShort,
    /// The sealed value was not made with this key for this cookie name, or was altered.
    #[error("the sealed value does not authenticate")]
    Authentication,
    /// The opened value is not the JSON of the expected type.
    #[error("the opened value is not of the expected shape")]
    Json,
    /// The cipher refused the operation (not expected with a valid key).
    #[error("the cipher failed")]
    Crypto,
}

/// Seals and opens cookie values with a key derived from the cookie secrets; see the [module](self) docs for
/// the format. Cheap to share behind an `Arc`.
pub struct Sealer {
    key: LessSafeKey,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

/// The length of HKDF output wanted, for [`hkdf::Prk::expand`].
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// Whether `name` is an RFC 6265 cookie name (an RFC 9110 token).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Sealer {
    /// Derives the sealing key from the `cookie_block_key` and `cookie_hash_key` secrets (either length;
    /// neither empty).
    pub fn from_secrets(block_key: &[u8], hash_key: &[u8]) -> Result<Self, SealError> {
        if block_key.is_empty() || hash_key.is_empty() {
            return Err(SealError::EmptyKey);
        }
        // Both copies of key material are wiped on every return path, errors included.
        let mut ikm = Zeroizing::new(Vec::with_capacity(block_key.len() + hash_key.len()));
        ikm.extend_from_slice(block_key);
        ikm.extend_from_slice(hash_key);
        let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(&ikm);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        prk.expand(&[HKDF_INFO], OutputLen(KEY_LEN))
            .and_then(|okm| okm.fill(&mut *key))
            .map_err(|_| SealError::Crypto)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &*key).map_err(|_| SealError::Crypto)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Seals `value` for the cookie `name`.
    pub fn seal<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<String, SealError> {
        if !is_cookie_name(name) {
            return Err(SealError::BadName);
        }
        let plaintext = serde_json::to_vec(value).map_err(|_| SealError::Serialize)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plaintext);
        let mut body = out.split_off(1 + NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Crypto)?;
        out.extend_from_slice(&body);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value sealed for the cookie `name` and reads it as a `T`.
    pub fn open<T: DeserializeOwned>(&self, name: &str, sealed: &str) -> Result<T, SealError> {
        if sealed.len() > MAX_SEALED_CHARS {
            return Err(SealError::TooLarge {
                len: sealed.len(),
                max: MAX_SEALED_CHARS,
            });
        }
        let mut raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Encoding)?;
        match raw.first() {
            None => return Err(SealError::TooShort),
            Some(&VERSION) => {}
            Some(_) => return Err(SealError::Version),
        }
        if raw.len() < OVERHEAD {
            return Err(SealError::TooShort);
        }
        let (head, body) = raw.split_at_mut(1 + NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&head[1..]).map_err(|_| SealError::TooShort)?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), body)
            .map_err(|_| SealError::Authentication)?;
        serde_json::from_slice(plaintext).map_err(|_| SealError::Json)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Value {
        who: String,
        n: i64,
    }

    fn value() -> Value {
        Value {
            who: "alice".into(),
            n: 42,
        }
    }

    fn sealer() -> Sealer {
        Sealer::from_secrets(&[2; 32], &[1; 64]).unwrap()
    }

    #[test]
    fn round_trip() {
        let s = sealer();
        let sealed = s.seal("flyteauth_session", &value()).unwrap();
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "a cookie-safe value: {sealed}"
        );
        assert_eq!(
            s.open::<Value>("flyteauth_session", &sealed).unwrap(),
            value()
        );
        // Another instance from the same secrets (another replica, or after a restart) opens it too.
        let again = Sealer::from_secrets(&[2; 32], &[1; 64]).unwrap();
        assert_eq!(
            again.open::<Value>("flyteauth_session", &sealed).unwrap(),
            value()
        );
    }

    #[test]
    fn the_format_is_version_nonce_ciphertext_tag() {
        let sealed = sealer().seal("c", &value()).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let json = serde_json::to_vec(&value()).unwrap();
        assert_eq!(raw[0], VERSION);
        assert_eq!(raw.len(), 1 + NONCE_LEN + json.len() + TAG_LEN);
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let s = sealer();
        assert_ne!(
            s.seal("c", &value()).unwrap(),
            s.seal("c", &value()).unwrap()
        );
    }

    #[test]
    fn tampering_with_any_byte_fails() {
        let s = sealer();
        let raw = URL_SAFE_NO_PAD
            .decode(s.seal("c", &value()).unwrap())
            .unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let err = s
                .open::<Value>("c", &URL_SAFE_NO_PAD.encode(&bad))
                .unwrap_err();
            let expected = if i == 0 {
                SealError::Version
            } else {
                SealError::Authentication
            };
            assert_eq!(err, expected, "byte {i}");
        }
    }

    #[test]
    fn another_cookie_name_or_key_fails() {
        let sealed = sealer().seal("flyteauth_session", &value()).unwrap();
        assert_eq!(
            sealer().open::<Value>("flyteauth_login_abc", &sealed),
            Err(SealError::Authentication)
        );
        for other in [
            Sealer::from_secrets(&[2; 32], &[9; 64]).unwrap(),
            Sealer::from_secrets(&[9; 32], &[1; 64]).unwrap(),
        ] {
            assert_eq!(
                other.open::<Value>("flyteauth_session", &sealed),
                Err(SealError::Authentication)
            );
        }
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let s = sealer();
        let sealed = s.seal("c", &value()).unwrap();
        let cases: Vec<(String, SealError)> = vec![
            (String::new(), SealError::TooShort),
            ("AQ".into(), SealError::TooShort),
            (sealed[..sealed.len() - 4].into(), SealError::Authentication),
            (
                URL_SAFE_NO_PAD.encode([VERSION; OVERHEAD - 1]),
                SealError::TooShort,
            ),
            (
                URL_SAFE_NO_PAD.encode([VERSION; OVERHEAD]),
                SealError::Authentication,
            ),
            (URL_SAFE_NO_PAD.encode([2u8; 64]), SealError::Version),
            (format!("{sealed}="), SealError::Encoding),
            ("not base64!".into(), SealError::Encoding),
            ("a b".into(), SealError::Encoding),
            ("é".into(), SealError::Encoding),
            (
                "A".repeat(MAX_SEALED_CHARS + 1),
                SealError::TooLarge {
                    len: MAX_SEALED_CHARS + 1,
                    max: MAX_SEALED_CHARS,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(s.open::<Value>("c", &input), Err(expected), "{input:?}");
        }
        // Authentic, but not the type asked for.
        let number = s.seal("c", &7).unwrap();
        assert_eq!(s.open::<Value>("c", &number), Err(SealError::Json));
        assert_eq!(s.open::<i64>("c", &number), Ok(7));
    }

    #[test]
    fn keys_and_names_are_checked() {
        assert_eq!(
            Sealer::from_secrets(&[], &[1]).unwrap_err(),
            SealError::EmptyKey
        );
        assert_eq!(
            Sealer::from_secrets(&[1], &[]).unwrap_err(),
            SealError::EmptyKey
        );
        let s = sealer();
        for bad in ["", "a b", "a;b", "a=b", "é", "a\r\n"] {
            assert_eq!(s.seal(bad, &1), Err(SealError::BadName), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let s = Sealer::from_secrets(b"block-secret", b"hash-secret").unwrap();
        let shown = format!("{s:?}");
        assert_eq!(shown, "Sealer { .. }");
    }

    #[test]
    fn errors_never_show_the_value() {
        let s = sealer();
        for input in ["secret-value!", "c2VjcmV0LXZhbHVl"] {
            let err = s.open::<Value>("c", input).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn a_sealer_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Sealer>();
    }
}
