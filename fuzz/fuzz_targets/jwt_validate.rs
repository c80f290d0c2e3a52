//! Access-token validation with a real key ring: the compact-JWS split, the JOSE header, the RS256 signature
//! and the claims.
//!
//! The first byte picks what the rest is:
//! - `0`: the token string itself (what a caller puts after `Bearer `);
//! - `1`: a header JSON, a NUL byte, a claims JSON — signed with the ring's key, so malformed headers reach
//!   the checks after decoding;
//! - `2`: a claims JSON under our own valid header (`RS256`, `at+jwt`, the current `kid`), signed, so the
//!   claims checks see arbitrary claims.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flyteauth_core::clock::ManualClock;
use flyteauth_core::keys::{KeyRing, SigningKey};
use flyteauth_core::token::TokenValidator;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;

/// The clock every seed's `iat`/`exp` is written against (2023-11-14T22:13:20Z).
const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://flyte.example.com";
const AUDIENCE: &str = "https://flyte.example.com";
const LEEWAY_SECS: i64 = 60;

struct Fixture {
    keys: Arc<KeyRing>,
    validator: TokenValidator,
    own_header: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // A fixed key, not a generated one: RSA key generation can take seconds under the sanitizer, longer
        // than libFuzzer's per-input timeout when it lands in the first input.
        let key = SigningKey::from_pem(include_bytes!("../fuzz-only-signing-key.pem")).expect("the fuzz key parses");
        let own_header = format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{}"}}"#, key.kid());
        let keys = Arc::new(KeyRing::new(key, None));
        let clock = time::OffsetDateTime::from_unix_timestamp(NOW).expect("a valid timestamp");
        let validator = TokenValidator::new(
            Arc::clone(&keys),
            ISSUER.to_owned(),
            vec![AUDIENCE.to_owned()],
            Duration::from_secs(LEEWAY_SECS as u64),
            Arc::new(ManualClock::new(clock)),
        );
        Fixture {
            keys,
            validator,
            own_header,
        }
    })
}

fn signed(fixture: &Fixture, header: &[u8], claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        fixture.keys.current().encoding_key(),
        Algorithm::RS256,
    )
    .expect("sign with the ring's key");
    format!("{message}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let token = match mode % 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(token) => token.to_owned(),
            Err(_) => return,
        },
        1 => {
            let (header, claims) = match rest.iter().position(|b| *b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            signed(fixture, header, claims)
        }
        _ => signed(fixture, fixture.own_header.as_bytes(), rest),
    };

    let first = fixture.validator.validate_uncached(&token);
    let memo = fixture.validator.validate(&token);
    let again = fixture.validator.validate(&token);
    // The memo must agree with a full check, on the first sighting and on a hit.
    assert_eq!(
        first.is_ok(),
        memo.is_ok(),
        "memo disagrees on first sighting"
    );
    assert_eq!(memo.is_ok(), again.is_ok(), "memo disagrees on a hit");
    if let (Err(a), Err(b)) = (&first, &memo) {
        assert_eq!(a, b);
    }
    if let Ok(identity) = first {
        // Whatever passes meets the promises of validation.
        assert!(identity.audience.iter().any(|a| a == AUDIENCE));
        assert!(NOW < identity.expires_at.saturating_add(LEEWAY_SECS));
        assert!(identity.issued_at <= NOW.saturating_add(LEEWAY_SECS));
        assert!(!identity.user_info.subject.is_empty() || identity.subject.is_empty());
    }
});
