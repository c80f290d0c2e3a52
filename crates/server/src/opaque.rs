//! Opaque credentials we hand out (authorization codes, refresh tokens, session cookies): 256-bit random
//! strings of which the store keeps only a SHA-256 digest, so a copy of the database redeems nothing.

use sha2::{Digest, Sha256};

/// A fresh credential: 32 random bytes, base64url without padding.
pub fn new_token() -> String {
    flyteauth_core::clients::generate_secret()
}

/// The digest the store keeps for `token`, as lower-case hex.
pub fn digest(token: &str) -> String {
    hex_lower(&Sha256::digest(token.as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_digests_stable() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(digest("abc").len(), 64);
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
