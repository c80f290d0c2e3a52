//! Passwords of human accounts: argon2id hashes in PHC string form, and the rules for new passwords.
//!
//! Parameters: argon2id, m = 19456 KiB, t = 2, p = 1, 16-byte random salt, 32-byte output — the OWASP
//! minimum for argon2id. Hashes carry their parameters, so raising them later keeps old hashes verifiable.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore as _;

/// Memory cost in KiB.
pub const MEMORY_KIB: u32 = 19_456;
/// Number of passes.
pub const ITERATIONS: u32 = 2;
/// Degree of parallelism.
pub const PARALLELISM: u32 = 1;
/// Shortest acceptable new password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest acceptable new password, in characters (bounds the hashing work a request can ask for).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Why a password could not be accepted or hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_CHARS`].
    #[error("the password must be at least {min} characters long")]
    TooShort {
        /// The minimum.
        min: usize,
    },
    /// Longer than [`MAX_PASSWORD_CHARS`].
    #[error("the password must be at most {max} characters long")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// Contains a control character (newline, tab, NUL, …).
    #[error("the password must not contain control characters")]
    ControlCharacter,
    /// The hash could not be computed.
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a fresh random salt; returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
/// Callers should check new passwords with [`check_new_password`] first. Takes tens of milliseconds: run it
/// off async workers.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `presented` is the password hashed in `phc`. Only argon2id hashes are accepted; a malformed hash,
/// or a presented password longer than [`MAX_PASSWORD_CHARS`] characters, is simply "no".
pub fn verify_password(phc: &str, presented: &str) -> bool {
    if presented.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    hasher().is_ok_and(|h| h.verify_password(presented.as_bytes(), &hash).is_ok())
}

/// A hash of nothing anyone knows, with the same parameters as real ones (computed once, on first use).
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("flyteauth: no such user").unwrap_or_default());

/// Spends about as long as [`verify_password`] on a real account, so a login for an unknown user name answers
/// no faster than one with a wrong password.
pub fn equalize_timing_for_unknown_user(presented: &str) {
    let _ = verify_password(&DUMMY_HASH, presented);
}

/// Checks a new password: [`MIN_PASSWORD_CHARS`] to [`MAX_PASSWORD_CHARS`] characters, no control characters.
/// Spaces and any printable Unicode are allowed (pass phrases are welcome).
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort {
            min: MIN_PASSWORD_CHARS,
        });
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordError::TooLong {
            max: MAX_PASSWORD_CHARS,
        });
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery staple"));
        assert!(!verify_password(&phc, "correct horse battery stapl"));
        assert!(!verify_password(&phc, ""));
        let again = hash_password("correct horse battery staple").unwrap();
        assert_ne!(phc, again, "salted");
        equalize_timing_for_unknown_user("whatever");
    }

    #[test]
    fn malformed_or_foreign_hashes_never_verify() {
        for phc in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$2b$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
        ] {
            assert!(!verify_password(phc, "x"), "{phc}");
        }
        // An argon2i hash of the right password is still refused.
        let salt = SaltString::encode_b64(&[1u8; 16]).unwrap();
        let params = Params::new(1024, 1, 1, None).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(!verify_password(&argon2i, "pw"));
    }

    #[test]
    fn new_password_rules() {
        check_new_password("twelve chars").unwrap();
        check_new_password("ünïcödé pässwörd").unwrap();
        check_new_password(&"x".repeat(1024)).unwrap();
        assert_eq!(
            check_new_password("elevenchars"),
            Err(PasswordError::TooShort { min: 12 })
        );
        assert_eq!(
            check_new_password(&"x".repeat(1025)),
            Err(PasswordError::TooLong { max: 1024 })
        );
        for bad in [
            "twelve chars\n",
            "twelve\tchars",
            "twelve\0chars",
            "twelve\u{7f}chars",
        ] {
            assert_eq!(
                check_new_password(bad),
                Err(PasswordError::ControlCharacter),
                "{bad:?}"
            );
        }
        assert!(!PasswordError::TooShort { min: 12 }.to_string().is_empty());
    }
}
