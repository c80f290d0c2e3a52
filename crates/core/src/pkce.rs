//! Proof Key for Code Exchange (RFC 7636), `S256` only.
//!
//! The authorization request carries `code_challenge = BASE64URL(SHA256(code_verifier))`; the token request
//! carries the verifier. `plain` is refused: it protects nothing once the authorization request is observed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

use crate::oauth::{ErrorCode, OAuthError};

/// The only accepted `code_challenge_method`.
pub const S256: &str = "S256";

/// Shortest `code_verifier` (RFC 7636 §4.1).
pub const MIN_VERIFIER_LEN: usize = 43;
/// Longest `code_verifier` (RFC 7636 §4.1).
pub const MAX_VERIFIER_LEN: usize = 128;
/// Length of an `S256` challenge: 32 bytes of SHA-256 in unpadded base64url.
pub const CHALLENGE_LEN: usize = 43;

/// The unreserved characters of RFC 3986, which make up a verifier.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks the shape of a presented `code_verifier`: 43 to 128 characters of `[A-Za-z0-9-._~]`.
/// A bad verifier is `invalid_grant` (the token request cannot be honoured with it).
pub fn check_verifier(verifier: &str) -> Result<(), OAuthError> {
    let len = verifier.len();
    if !(MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&len) {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            format!(
                "code_verifier must be {MIN_VERIFIER_LEN} to {MAX_VERIFIER_LEN} characters long, not {len}"
            ),
        ));
    }
    if !verifier.bytes().all(is_unreserved) {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "code_verifier may only contain letters, digits, '-', '.', '_' and '~'",
        ));
    }
    Ok(())
}

/// Checks the `code_challenge` and `code_challenge_method` of an authorization request.
///
/// The method must be `S256`; `plain` and an absent method (which RFC 7636 §4.3 defines as `plain`) are refused
/// with `invalid_request`. The challenge must be 43 characters of unpadded base64url that decode to 32 bytes.
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), OAuthError> {
    match method {
        Some(S256) => {}
        None | Some("") => {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "code_challenge_method is required and must be S256 (plain is not accepted)",
            ));
        }
        Some("plain") => {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "code_challenge_method plain is not accepted; use S256",
            ));
        }
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "unsupported code_challenge_method; use S256",
            ));
        }
    }
    let mut digest = [0u8; 33];
    let decoded = (challenge.len() == CHALLENGE_LEN)
        .then(|| URL_SAFE_NO_PAD.decode_slice(challenge, &mut digest).ok())
        .flatten();
    if decoded != Some(32) {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge must be the unpadded base64url of a SHA-256 digest (43 characters)",
        ));
    }
    Ok(())
}

pub use flyteauth_types::pkce::s256_challenge;

/// Whether `verifier` hashes to `challenge` under `S256`, compared in constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    let expected = s256_challenge(verifier);
    expected.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_example_verifies() {
        assert_eq!(s256_challenge(VERIFIER), CHALLENGE);
        assert!(verify_s256(VERIFIER, CHALLENGE));
        assert!(!verify_s256(VERIFIER, &CHALLENGE[..42]));
        assert!(!verify_s256(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!verify_s256(VERIFIER, ""));
        check_verifier(VERIFIER).unwrap();
        check_challenge(CHALLENGE, Some("S256")).unwrap();
    }

    #[test]
    fn verifier_shape() {
        check_verifier(&"a".repeat(43)).unwrap();
        check_verifier(&"~._-".repeat(32)).unwrap();
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            String::new(),
            format!("{}+", "a".repeat(43)),
            format!("{}=", "a".repeat(43)),
            format!("{} ", "a".repeat(43)),
            format!("{}é", "a".repeat(43)),
        ] {
            let err = check_verifier(&bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidGrant, "{bad:?}");
        }
    }

    #[test]
    fn only_s256_challenges() {
        for (method, needle) in [
            (None, "required"),
            (Some("plain"), "plain"),
            (Some("s256"), "S256"),
        ] {
            let err = check_challenge(CHALLENGE, method).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert!(
                err.description.contains(needle),
                "{method:?}: {}",
                err.description
            );
        }
        for bad in [
            "",
            &CHALLENGE[..42],
            &format!("{CHALLENGE}A"),
            &format!("{}=", &CHALLENGE[..42]),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
            // 43 characters whose last one carries bits beyond the 32 bytes.
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
        ] {
            let err = check_challenge(bad, Some("S256")).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }
}
