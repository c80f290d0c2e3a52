use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::clock::ManualClock;
use crate::keys::SigningKey;
use crate::keys::tests::test_keys;

const ISSUER: &str = "https://flyte.example.com";
const LIFETIME: Duration = Duration::from_secs(1800);
const LEEWAY: Duration = Duration::from_secs(30);
const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z

struct Fixture {
    clock: Arc<ManualClock>,
    ring: Arc<KeyRing>,
    issuer: TokenIssuer,
    validator: TokenValidator,
}

fn audiences() -> Vec<String> {
    vec![
        ISSUER.to_owned(),
        format!("{ISSUER}/"),
        "http://flyteadmin:80".to_owned(),
    ]
}

fn fixture() -> Fixture {
    let [(current, _), (old, _)] = test_keys();
    let clock = Arc::new(ManualClock::new(datetime!(2024-01-01 00:00 UTC)));
    let ring = Arc::new(KeyRing::new(current.clone(), Some(old.public().clone())));
    let issuer = TokenIssuer::new(ring.clone(), ISSUER.to_owned(), LIFETIME, clock.clone());
    let validator = TokenValidator::new(
        ring.clone(),
        ISSUER.to_owned(),
        audiences(),
        LEEWAY,
        clock.clone(),
    );
    Fixture {
        clock,
        ring,
        issuer,
        validator,
    }
}

fn app_request() -> AccessTokenRequest {
    AccessTokenRequest {
        subject: "ci-bot".into(),
        client_id: "ci-bot".into(),
        client_name: Some("CI bot".into()),
        audience: vec![ISSUER.into()],
        scopes: vec!["all".into(), "read".into()],
        user_info: None,
        kind: PrincipalKind::App,
        session_id: None,
    }
}

fn claims_json() -> serde_json::Value {
    json!({
        "iss": ISSUER, "sub": "ci-bot", "aud": [ISSUER], "exp": T0 + 600, "iat": T0, "jti": "j-1",
        "client_id": "ci-bot", "identity_type": "app", "scp": ["all"], "scope": "all"
    })
}

fn header_json(kid: &str) -> serde_json::Value {
    json!({"alg": "RS256", "typ": "at+jwt", "kid": kid})
}

/// Signs arbitrary header and claims with `key` (RS256), for tokens the issuer would never produce.
fn sign_raw(header: &serde_json::Value, claims: &serde_json::Value, key: &SigningKey) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key.encoding_key(), Algorithm::RS256)
        .unwrap();
    format!("{message}.{sig}")
}

fn current_key() -> &'static SigningKey {
    &test_keys()[0].0
}

fn decode_part(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn issued_tokens_have_the_rfc9068_shape() {
    let f = fixture();
    let issued = f.issuer.issue(&app_request()).unwrap();
    assert_eq!(issued.expires_in, 1800);
    let parts: Vec<&str> = issued.access_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_part(parts[0]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], f.ring.current().kid());
    let claims = decode_part(parts[1]);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "ci-bot");
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["iat"], T0);
    assert_eq!(claims["exp"], T0 + 1800);
    assert_eq!(claims["client_id"], "ci-bot");
    assert_eq!(claims["identity_type"], "app");
    assert!(claims.get("sid").is_none(), "app tokens carry no sid");
    assert_eq!(claims["scp"], json!(["all", "read"]));
    assert_eq!(claims["scope"], "all read");
    assert_eq!(claims["user_info"]["name"], "CI bot");
    assert!(claims.get("nbf").is_none());
    let jti = uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).unwrap();
    assert_eq!(jti.get_version_num(), 4);
    assert_eq!(issued.claims.jti, jti.to_string());
    assert_ne!(
        f.issuer.issue(&app_request()).unwrap().claims.jti,
        issued.claims.jti
    );

    // Without a distinct name, app tokens carry no user_info; without scopes, no `scope`.
    let mut req = app_request();
    req.client_name = None;
    req.scopes.clear();
    let claims = decode_part(
        f.issuer
            .issue(&req)
            .unwrap()
            .access_token
            .split('.')
            .nth(1)
            .unwrap(),
    );
    assert!(claims.get("user_info").is_none() && claims.get("scope").is_none());
    assert_eq!(claims["scp"], json!([]));
}

#[test]
fn valid_app_tokens_give_the_app_identity() {
    let f = fixture();
    let issued = f.issuer.issue(&app_request()).unwrap();
    let id = f.validator.validate(&issued.access_token).unwrap();
    assert_eq!(id.subject, "ci-bot");
    assert_eq!(id.client_id, "ci-bot");
    assert_eq!(id.kind, PrincipalKind::App);
    assert_eq!(id.scopes, ["all", "read"]);
    assert!(id.has_scope("all"));
    assert_eq!(id.audience, [ISSUER]);
    assert_eq!(id.token_id, issued.claims.jti);
    assert_eq!(id.expires_at, T0 + 1800);
    let u = &id.user_info;
    assert_eq!(
        (
            u.subject.as_str(),
            u.name.as_str(),
            u.preferred_username.as_str()
        ),
        ("ci-bot", "CI bot", "ci-bot")
    );
    let ac = &u.additional_claims;
    assert_eq!(ac["iss"], ISSUER);
    assert_eq!(ac["sub"], "ci-bot");
    assert_eq!(ac["aud"], json!([ISSUER]));
    assert_eq!(ac["exp"], T0 + 1800);
    assert_eq!(ac["iat"], T0);
    assert_eq!(ac["jti"], issued.claims.jti.as_str());
    assert_eq!(ac["client_id"], "ci-bot");
    assert_eq!(ac["scp"], json!(["all", "read"]));
    assert_eq!(ac["scope"], "all read");

    let mut req = app_request();
    req.client_name = None;
    let id = f
        .validator
        .validate(&f.issuer.issue(&req).unwrap().access_token)
        .unwrap();
    assert_eq!(id.user_info.name, "ci-bot");
}

#[test]
fn user_tokens_carry_their_user_info() {
    let f = fixture();
    let req = AccessTokenRequest {
        subject: "00u1abc".into(),
        client_id: "flytectl".into(),
        client_name: None,
        audience: vec![ISSUER.into()],
        scopes: vec!["all".into(), "offline".into()],
        user_info: Some(UserInfo {
            subject: "00u1abc".into(),
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            ..UserInfo::default()
        }),
        kind: PrincipalKind::User,
        session_id: Some("fam-1".into()),
    };
    let id = f
        .validator
        .validate(&f.issuer.issue(&req).unwrap().access_token)
        .unwrap();
    assert_eq!(id.kind, PrincipalKind::User);
    assert_eq!(id.session_id.as_deref(), Some("fam-1"));
    assert_eq!(id.issued_at, T0);
    assert_eq!(id.user_info.additional_claims["identity_type"], "user");
    assert_eq!(id.user_info.additional_claims["sid"], "fam-1");
    assert_eq!(id.user_info.name, "Ada Lovelace");
    assert_eq!(id.user_info.email, "ada@example.com");
    assert_eq!(id.user_info.additional_claims["client_id"], "flytectl");
}

#[test]
fn garbage_is_malformed() {
    let f = fixture();
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        "eyJhbGciOiJSUzI1NiJ9.!.x",
        "..",
    ] {
        assert_eq!(
            f.validator.validate(token),
            Err(ValidationError::Malformed),
            "{token:?}"
        );
    }
    // A header that is not JSON.
    let not_json = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("not json"));
    assert_eq!(
        f.validator.validate(&not_json),
        Err(ValidationError::Malformed)
    );
    // Valid signature over a payload that is not JSON.
    let key = current_key();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json(key.kid()).to_string()),
        URL_SAFE_NO_PAD.encode("[1,2")
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key.encoding_key(), Algorithm::RS256)
        .unwrap();
    assert_eq!(
        f.validator.validate(&format!("{message}.{sig}")),
        Err(ValidationError::Malformed)
    );
    // A signature that is not base64url.
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    let (message, _) = token.rsplit_once('.').unwrap();
    assert_eq!(
        f.validator.validate(&format!("{message}.***")),
        Err(ValidationError::Malformed)
    );
}

#[test]
fn alg_none_is_refused() {
    let f = fixture();
    let mut header = header_json(current_key().kid());
    header["alg"] = json!("none");
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims_json().to_string())
    );
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::UnsupportedAlgorithm)
    );
    let mut header = header_json(current_key().kid());
    header.as_object_mut().unwrap().remove("alg");
    let token = sign_raw(&header, &claims_json(), current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::UnsupportedAlgorithm)
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let f = fixture();
    let key = current_key();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid().into());
    for secret in [
        key.public().modulus().to_vec(),
        serde_json::to_vec(&key.public().jwk()).unwrap(),
    ] {
        let token =
            jsonwebtoken::encode(&header, &claims_json(), &EncodingKey::from_secret(&secret))
                .unwrap();
        assert_eq!(
            f.validator.validate(&token),
            Err(ValidationError::UnsupportedAlgorithm)
        );
    }
    let mut header = header_json(key.kid());
    header["alg"] = json!("RS512");
    assert_eq!(
        f.validator
            .validate(&sign_raw(&header, &claims_json(), key)),
        Err(ValidationError::UnsupportedAlgorithm)
    );
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let f = fixture();
    let token = sign_raw(&header_json("not-a-key"), &claims_json(), current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::UnknownKey)
    );

    let mut header = header_json("");
    header.as_object_mut().unwrap().remove("kid");
    let token = sign_raw(&header, &claims_json(), current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::UnknownKey)
    );

    // Signed by a key the ring does not hold.
    let [(current, _), (other, _)] = test_keys();
    let ring = Arc::new(KeyRing::new(current.clone(), None));
    let validator = TokenValidator::new(ring, ISSUER.into(), audiences(), LEEWAY, f.clock.clone());
    let token = sign_raw(&header_json(other.kid()), &claims_json(), other);
    assert_eq!(validator.validate(&token), Err(ValidationError::UnknownKey));
}

#[test]
fn tampering_breaks_the_signature() {
    let f = fixture();
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = decode_part(parts[1]);
    claims["scp"] = json!(["all", "admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(
        f.validator.validate(&tampered),
        Err(ValidationError::BadSignature)
    );

    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        f.validator.validate(&flipped),
        Err(ValidationError::BadSignature)
    );

    // Claimed to be by the previous key, signed by the current one.
    let token = sign_raw(
        &header_json(test_keys()[1].0.kid()),
        &claims_json(),
        current_key(),
    );
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::BadSignature)
    );
    let empty_sig = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(
        f.validator.validate(&empty_sig),
        Err(ValidationError::BadSignature)
    );
}

#[test]
fn expiry_honours_the_leeway() {
    let f = fixture();
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    f.clock.advance(time::Duration::seconds(1800 + 29));
    assert!(
        f.validator.validate(&token).is_ok(),
        "expired within the leeway is accepted"
    );
    f.clock.advance(time::Duration::seconds(1));
    assert_eq!(f.validator.validate(&token), Err(ValidationError::Expired));
    f.clock.advance(time::Duration::days(1));
    assert_eq!(f.validator.validate(&token), Err(ValidationError::Expired));

    let strict = TokenValidator::new(
        f.ring.clone(),
        ISSUER.into(),
        audiences(),
        Duration::ZERO,
        f.clock.clone(),
    );
    f.clock.set(datetime!(2024-01-01 00:00 UTC));
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    f.clock.advance(time::Duration::seconds(1799));
    assert!(strict.validate(&token).is_ok());
    f.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        strict.validate(&token),
        Err(ValidationError::Expired),
        "exp itself is already too late"
    );
}

#[test]
fn not_yet_valid_tokens_are_refused() {
    let f = fixture();
    let mut claims = claims_json();
    claims["nbf"] = json!(T0 + 31);
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::NotYetValid)
    );
    claims["nbf"] = json!(T0 + 30);
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert!(
        f.validator.validate(&token).is_ok(),
        "nbf within the leeway"
    );

    let mut claims = claims_json();
    claims["iat"] = json!(T0 + 120);
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::NotYetValid),
        "issued in the future"
    );
    f.clock.advance(time::Duration::seconds(100));
    assert!(f.validator.validate(&token).is_ok());
}

#[test]
fn issuer_must_match_exactly() {
    let f = fixture();
    for iss in [
        format!("{ISSUER}/"),
        "https://evil.example.com".to_owned(),
        String::new(),
    ] {
        let mut claims = claims_json();
        claims["iss"] = json!(iss);
        let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
        assert_eq!(
            f.validator.validate(&token),
            Err(ValidationError::WrongIssuer),
            "{iss}"
        );
    }
}

#[test]
fn audience_must_intersect() {
    let f = fixture();
    let mut claims = claims_json();
    claims["aud"] = json!(["https://other.example.com"]);
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::WrongAudience)
    );
    claims["aud"] = json!([]);
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::WrongAudience)
    );
    claims["aud"] = json!(["https://other.example.com", "http://flyteadmin:80"]);
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token).unwrap().audience,
        ["https://other.example.com", "http://flyteadmin:80"]
    );
}

#[test]
fn audience_and_scp_may_be_strings() {
    let f = fixture();
    let mut claims = claims_json();
    claims["aud"] = json!(ISSUER);
    claims["scp"] = json!("all offline");
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    let id = f.validator.validate(&token).unwrap();
    assert_eq!(id.audience, [ISSUER]);
    assert_eq!(
        id.scopes,
        ["all offline"],
        "a string scp is one scope, as in flyteadmin"
    );

    let mut claims = claims_json();
    claims.as_object_mut().unwrap().remove("scp");
    claims["scope"] = json!("all  read");
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token).unwrap().scopes,
        ["all", "read"]
    );

    let parsed: AccessTokenClaims = serde_json::from_value(json!({
        "iss": "i", "sub": "s", "aud": "a", "exp": 1, "iat": 0, "jti": "j", "client_id": "c", "scp": "x",
        "identity_type": "user"
    }))
    .unwrap();
    assert_eq!(
        (parsed.aud, parsed.scp),
        (vec!["a".to_owned()], vec!["x".to_owned()])
    );
}

#[test]
fn tokens_signed_by_the_previous_key_are_accepted() {
    let f = fixture();
    let [(current, _), (old, _)] = test_keys();
    let old_ring = Arc::new(KeyRing::new(old.clone(), None));
    let old_issuer = TokenIssuer::new(old_ring, ISSUER.into(), LIFETIME, f.clock.clone());
    let token = old_issuer.issue(&app_request()).unwrap().access_token;
    assert_eq!(f.validator.validate(&token).unwrap().client_id, "ci-bot");

    // Once the old key is gone from the ring, its tokens are unknown.
    let ring = Arc::new(KeyRing::new(current.clone(), None));
    let validator = TokenValidator::new(ring, ISSUER.into(), audiences(), LEEWAY, f.clock.clone());
    assert_eq!(validator.validate(&token), Err(ValidationError::UnknownKey));
}

#[test]
fn required_claims_must_be_present() {
    let f = fixture();
    for claim in [
        "exp",
        "iat",
        "iss",
        "sub",
        "aud",
        "jti",
        "client_id",
        "identity_type",
    ] {
        let mut claims = claims_json();
        claims.as_object_mut().unwrap().remove(claim);
        let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
        assert_eq!(
            f.validator.validate(&token),
            Err(ValidationError::MissingClaim(claim)),
            "{claim}"
        );
        let mut claims = claims_json();
        claims[claim] = serde_json::Value::Null;
        let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
        assert_eq!(
            f.validator.validate(&token),
            Err(ValidationError::MissingClaim(claim)),
            "null {claim}"
        );
    }
    let mut claims = claims_json();
    claims["exp"] = json!("tomorrow");
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::Malformed)
    );
}

#[test]
fn only_access_tokens_are_accepted() {
    let f = fixture();
    for (typ, ok) in [
        (json!("at+jwt"), true),
        (json!("application/at+jwt"), true),
        (json!("AT+JWT"), true),
        (json!("JWT"), false),
        (serde_json::Value::Null, false),
    ] {
        let mut header = header_json(current_key().kid());
        header["typ"] = typ.clone();
        let token = sign_raw(&header, &claims_json(), current_key());
        assert_eq!(f.validator.validate(&token).is_ok(), ok, "{typ}");
    }
    let mut header = header_json(current_key().kid());
    header["crit"] = json!(["exp"]);
    let token = sign_raw(&header, &claims_json(), current_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::Malformed)
    );
}

#[test]
fn long_headers_still_decode() {
    let f = fixture();
    let mut header = header_json(current_key().kid());
    header["x-padding"] = json!("p".repeat(2000));
    let token = sign_raw(&header, &claims_json(), current_key());
    assert!(f.validator.validate(&token).is_ok());
}

#[test]
fn reasons_are_snake_case_labels() {
    let all = [
        (ValidationError::Malformed, "malformed"),
        (
            ValidationError::UnsupportedAlgorithm,
            "unsupported_algorithm",
        ),
        (ValidationError::UnknownKey, "unknown_key"),
        (ValidationError::BadSignature, "bad_signature"),
        (ValidationError::Expired, "expired"),
        (ValidationError::NotYetValid, "not_yet_valid"),
        (ValidationError::WrongIssuer, "wrong_issuer"),
        (ValidationError::WrongAudience, "wrong_audience"),
        (ValidationError::MissingClaim("exp"), "missing_claim"),
        (ValidationError::Revoked, "revoked"),
    ];
    for (e, label) in all {
        assert_eq!(e.reason(), label);
        assert!(!e.to_string().is_empty());
    }
    assert!(
        ValidationError::MissingClaim("jti")
            .to_string()
            .contains("jti")
    );
}

#[test]
fn jsonwebtoken_error_kinds_map_onto_reasons() {
    use jsonwebtoken::errors::ErrorKind as K;
    assert_eq!(
        ValidationError::from_jwt(&K::InvalidSignature),
        ValidationError::BadSignature
    );
    assert_eq!(
        ValidationError::from_jwt(&K::InvalidAlgorithm),
        ValidationError::UnsupportedAlgorithm
    );
    assert_eq!(
        ValidationError::from_jwt(&K::ExpiredSignature),
        ValidationError::Expired
    );
    assert_eq!(
        ValidationError::from_jwt(&K::ImmatureSignature),
        ValidationError::NotYetValid
    );
    assert_eq!(
        ValidationError::from_jwt(&K::InvalidIssuer),
        ValidationError::WrongIssuer
    );
    assert_eq!(
        ValidationError::from_jwt(&K::InvalidAudience),
        ValidationError::WrongAudience
    );
    assert_eq!(
        ValidationError::from_jwt(&K::MissingRequiredClaim("exp".into())),
        ValidationError::MissingClaim("exp")
    );
    assert_eq!(
        ValidationError::from_jwt(&K::InvalidToken),
        ValidationError::Malformed
    );
}

#[test]
fn debug_output_of_issuer_and_validator_is_safe() {
    let f = fixture();
    let debug = format!("{:?} {:?}", f.issuer, f.validator);
    assert!(debug.contains(ISSUER));
    assert!(!debug.contains("PRIVATE"));
}

// The memo of verified tokens: a hit must never answer differently from full validation.

#[test]
fn a_remembered_token_still_expires() {
    let f = fixture();
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    assert!(f.validator.validate(&token).is_ok());
    assert_eq!(f.validator.remembered(), 1);
    assert!(f.validator.validate(&token).is_ok(), "served from the memo");
    // Just inside exp + leeway, then just past it.
    f.clock.advance(time::Duration::seconds(1800 + 29));
    assert!(f.validator.validate(&token).is_ok());
    f.clock.advance(time::Duration::seconds(1));
    assert_eq!(f.validator.validate(&token), Err(ValidationError::Expired));
    assert_eq!(f.validator.remembered(), 0, "expired entries are dropped");
}

#[test]
fn a_remembered_token_is_not_valid_before_its_time_when_the_clock_goes_back() {
    let f = fixture();
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    assert!(f.validator.validate(&token).is_ok());
    f.clock.advance(time::Duration::seconds(-31));
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::NotYetValid)
    );
}

#[test]
fn failures_are_not_remembered() {
    let f = fixture();
    let mut claims = claims_json();
    claims["iat"] = json!(T0 + 120);
    let early = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&early),
        Err(ValidationError::NotYetValid)
    );
    assert_eq!(f.validator.remembered(), 0);
    f.clock.advance(time::Duration::seconds(120));
    assert!(
        f.validator.validate(&early).is_ok(),
        "verified afresh once valid"
    );
}

#[test]
fn only_the_exact_bytes_hit_the_memo() {
    let f = fixture();
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    assert!(f.validator.validate(&token).is_ok());
    // Same header and payload, a flipped signature character: must be verified, and fail.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        f.validator.validate(&forged),
        Err(ValidationError::BadSignature)
    );
    // A payload with another subject under the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = decode_part(parts[1]);
    claims["sub"] = json!("someone-else");
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(
        f.validator.validate(&spliced),
        Err(ValidationError::BadSignature)
    );
}

#[test]
fn the_memo_stays_bounded() {
    // One principal's tokens: its quota bounds them (the global bound is the cache module's test).
    let f = fixture();
    let mut claims = claims_json();
    for i in 0..(VERIFIED_TOKENS_PER_PRINCIPAL + 10) {
        claims["jti"] = json!(format!("j-{i}"));
        let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
        assert!(f.validator.validate(&token).is_ok());
        assert!(f.validator.remembered() <= VERIFIED_TOKENS_PER_PRINCIPAL);
    }
    const { assert!(VERIFIED_TOKENS_PER_PRINCIPAL < VERIFIED_TOKEN_CAPACITY) };
}

#[test]
fn the_kind_comes_from_identity_type_only() {
    let f = fixture();
    // A user whose subject happens to equal the client id is still a user.
    let mut claims = claims_json();
    claims["identity_type"] = json!("user");
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    let id = f.validator.validate(&token).unwrap();
    assert_eq!(id.kind, PrincipalKind::User);
    assert_eq!(id.user_info.name, "", "no app profile is made up for users");
    // An app token whose subject differs from its client id is still an app.
    let mut claims = claims_json();
    claims["sub"] = json!("something-else");
    let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
    assert_eq!(
        f.validator.validate(&token).unwrap().kind,
        PrincipalKind::App
    );
    for bad in [json!("robot"), json!(""), json!(1), json!("App")] {
        let mut claims = claims_json();
        claims["identity_type"] = bad.clone();
        let token = sign_raw(&header_json(current_key().kid()), &claims, current_key());
        assert_eq!(
            f.validator.validate(&token),
            Err(ValidationError::Malformed),
            "{bad}"
        );
    }
}

fn user_request(sid: &str) -> AccessTokenRequest {
    AccessTokenRequest {
        subject: "u-1".into(),
        client_id: "flytectl".into(),
        client_name: None,
        audience: vec![ISSUER.into()],
        scopes: vec!["all".into()],
        user_info: None,
        kind: PrincipalKind::User,
        session_id: Some(sid.into()),
    }
}

#[test]
fn revocations_apply_on_the_memo_and_the_fresh_path() {
    use crate::revocation::{RevocationSet, Revoked};
    let f = fixture();
    let set = Arc::new(RevocationSet::default());
    let validator = TokenValidator::new(
        f.ring.clone(),
        ISSUER.into(),
        audiences(),
        LEEWAY,
        f.clock.clone(),
    )
    .with_revocations(set.clone());
    assert!(Arc::ptr_eq(validator.revocations(), &set));

    // Remembered, then revoked by jti: the memo hit must fail too.
    let issued = f.issuer.issue(&app_request()).unwrap();
    assert!(validator.validate(&issued.access_token).is_ok());
    set.insert(Revoked::Token(issued.claims.jti.clone()), T0 + 3600);
    assert_eq!(
        validator.validate(&issued.access_token),
        Err(ValidationError::Revoked)
    );
    assert_eq!(
        validator.validate_uncached(&issued.access_token),
        Err(ValidationError::Revoked)
    );

    // Never seen before, family revoked: the fresh path fails and remembers nothing.
    let before = validator.remembered();
    let family = f.issuer.issue(&user_request("fam-1")).unwrap();
    let other = f.issuer.issue(&user_request("fam-2")).unwrap();
    set.insert(Revoked::Family("fam-1".into()), T0 + 3600);
    assert_eq!(
        validator.validate(&family.access_token),
        Err(ValidationError::Revoked)
    );
    assert_eq!(validator.remembered(), before);
    assert!(validator.validate(&other.access_token).is_ok());

    // A user revoked now: tokens issued up to now fail, later ones pass.
    set.insert(
        Revoked::User {
            subject: "u-1".into(),
            revoked_at: T0,
        },
        T0 + 3600,
    );
    assert_eq!(
        validator.validate(&other.access_token),
        Err(ValidationError::Revoked)
    );
    f.clock.advance(time::Duration::seconds(1));
    let fresh = f.issuer.issue(&user_request("fam-3")).unwrap();
    assert!(validator.validate(&fresh.access_token).is_ok());

    // An app revoked: its older tokens fail.
    let app_token = f.issuer.issue(&app_request()).unwrap();
    assert!(validator.validate(&app_token.access_token).is_ok());
    set.insert(
        Revoked::App {
            client_id: "ci-bot".into(),
            revoked_at: T0 + 1,
        },
        T0 + 3600,
    );
    assert_eq!(
        validator.validate(&app_token.access_token),
        Err(ValidationError::Revoked)
    );
    // The default validator has its own, empty set.
    assert!(f.validator.validate(&app_token.access_token).is_ok());
}

#[test]
fn at_hash_is_the_left_half_of_sha256() {
    // Computed independently: base64url(sha256("an.access.token")[..16]).
    assert_eq!(at_hash("an.access.token"), "UkM2b42E54u4hWzuKV_B3w");
    assert_eq!(at_hash("").len(), 22);
}

#[test]
fn id_tokens() {
    let f = fixture();
    let access = f.issuer.issue(&user_request("fam-1")).unwrap().access_token;
    let req = IdTokenRequest {
        subject: "u-1".into(),
        client_id: "flytectl".into(),
        auth_time: T0 - 60,
        nonce: Some("n-0S6_WzA2Mj".into()),
        name: "Ada Lovelace".into(),
        preferred_username: "ada".into(),
        email: String::new(),
        access_token: access.clone(),
        session_id: Some("fam-1".into()),
    };
    let token = f.issuer.issue_id_token(&req).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = decode_part(parts[0]);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], f.ring.current().kid());
    let claims: IdTokenClaims = serde_json::from_value(decode_part(parts[1])).unwrap();
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.sub, "u-1");
    assert_eq!(claims.aud, ["flytectl"]);
    assert_eq!(claims.iat, T0);
    assert_eq!(claims.exp, T0 + 1800);
    assert_eq!(claims.auth_time, T0 - 60);
    assert_eq!(claims.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    assert_eq!(claims.at_hash, at_hash(&access));
    assert_eq!(claims.sid.as_deref(), Some("fam-1"));
    assert_eq!(claims.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(claims.preferred_username.as_deref(), Some("ada"));
    assert_eq!(claims.email, None, "empty claims are left out");
    let raw = decode_part(parts[1]);
    assert!(raw.get("email").is_none());

    // The signature verifies with the ring's key.
    let message = format!("{}.{}", parts[0], parts[1]);
    assert!(
        jsonwebtoken::crypto::verify(
            parts[2],
            message.as_bytes(),
            f.ring.current().public().decoding_key(),
            Algorithm::RS256
        )
        .unwrap()
    );
    // An ID token is never accepted as an access token.
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::Malformed)
    );

    let bare = f
        .issuer
        .issue_id_token(&IdTokenRequest {
            nonce: None,
            session_id: None,
            ..req
        })
        .unwrap();
    let raw = decode_part(bare.split('.').nth(1).unwrap());
    assert!(raw.get("nonce").is_none() && raw.get("sid").is_none());
}

fn fixture_with(key: &SigningKey, previous: Option<&SigningKey>) -> Fixture {
    let clock = Arc::new(ManualClock::new(datetime!(2024-01-01 00:00 UTC)));
    let ring = Arc::new(KeyRing::new(
        key.clone(),
        previous.map(|p| p.public().clone()),
    ));
    let issuer = TokenIssuer::new(ring.clone(), ISSUER.to_owned(), LIFETIME, clock.clone());
    let validator = TokenValidator::new(
        ring.clone(),
        ISSUER.to_owned(),
        audiences(),
        LEEWAY,
        clock.clone(),
    );
    Fixture {
        clock,
        ring,
        issuer,
        validator,
    }
}

fn every_kind_of_key() -> [&'static SigningKey; 3] {
    let [(ec, _), (ed, _)] = crate::keys::tests::ec_and_ed_keys();
    [current_key(), ec, ed]
}

#[test]
fn rs256_tokens_are_byte_for_byte_what_jsonwebtoken_signs() {
    let f = fixture();
    let issued = f.issuer.issue(&app_request()).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(current_key().kid().to_owned());
    let theirs =
        jsonwebtoken::encode(&header, &issued.claims, current_key().encoding_key()).unwrap();
    assert_eq!(issued.access_token, theirs);
}

#[test]
fn tokens_of_every_algorithm_verify_with_jsonwebtoken_aws_lc_and_the_validator() {
    use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
    for key in every_kind_of_key() {
        let alg = key.algorithm();
        let f = fixture_with(key, None);
        let issued = f.issuer.issue(&app_request()).unwrap();
        let token = &issued.access_token;
        assert_eq!(
            decode_part(token.split('.').next().unwrap())["alg"],
            alg.as_str()
        );

        let mut validation = jsonwebtoken::Validation::new(alg.jsonwebtoken());
        validation.set_audience(&[ISSUER]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_exp = false; // the manual clock is in 2024
        let decoded = jsonwebtoken::decode::<AccessTokenClaims>(
            token,
            key.public().decoding_key(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims, issued.claims, "{alg}");
        assert_eq!(decoded.header.kid.as_deref(), Some(key.kid()));

        // aws-lc with a public key rebuilt from the published JWK alone.
        let jwk = key.public().jwk();
        let b64 = |s: &Option<String>| URL_SAFE_NO_PAD.decode(s.as_deref().unwrap()).unwrap();
        let (message, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let verified = match alg {
            SigningAlgorithm::Rs256 => aws_lc_rs::rsa::PublicKeyComponents {
                n: b64(&jwk.n),
                e: b64(&jwk.e),
            }
            .verify(
                &sig::RSA_PKCS1_2048_8192_SHA256,
                message.as_bytes(),
                &signature,
            ),
            SigningAlgorithm::Es256 => {
                let point = [vec![4], b64(&jwk.x), b64(&jwk.y)].concat();
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message.as_bytes(), &signature)
            }
            SigningAlgorithm::EdDsa => UnparsedPublicKey::new(&sig::ED25519, b64(&jwk.x))
                .verify(message.as_bytes(), &signature),
        };
        assert!(verified.is_ok(), "{alg}");

        let id = f.validator.validate(token).unwrap();
        assert_eq!(
            (id.client_id.as_str(), id.kind),
            ("ci-bot", PrincipalKind::App)
        );
        assert!(f.validator.validate_uncached(token).is_ok());

        // ID tokens too.
        let id_token = f
            .issuer
            .issue_id_token(&IdTokenRequest {
                subject: "u-1".into(),
                client_id: "flytectl".into(),
                auth_time: T0,
                nonce: None,
                name: String::new(),
                preferred_username: String::new(),
                email: String::new(),
                access_token: token.clone(),
                session_id: None,
            })
            .unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg.jsonwebtoken());
        validation.set_audience(&["flytectl"]);
        validation.validate_exp = false;
        jsonwebtoken::decode::<IdTokenClaims>(&id_token, key.public().decoding_key(), &validation)
            .unwrap();
    }
}

#[test]
fn a_change_of_algorithm_keeps_the_previous_keys_tokens_valid() {
    let [rsa, ec, ed] = every_kind_of_key();
    let before = fixture_with(rsa, None)
        .issuer
        .issue(&app_request())
        .unwrap()
        .access_token;
    for current in [ec, ed] {
        let f = fixture_with(current, Some(rsa));
        assert!(
            f.validator.validate(&before).is_ok(),
            "{}",
            current.algorithm()
        );
        let now = f.issuer.issue(&app_request()).unwrap().access_token;
        assert!(f.validator.validate(&now).is_ok());
        let jwks = f.ring.jwks();
        assert_eq!(jwks.keys[0].alg, current.algorithm().as_str());
        assert_eq!(jwks.keys[1].alg, "RS256");
    }
    // And back: an RSA ring still accepting an EC key's tokens.
    let ec_token = fixture_with(ec, None)
        .issuer
        .issue(&app_request())
        .unwrap()
        .access_token;
    assert!(
        fixture_with(rsa, Some(ec))
            .validator
            .validate(&ec_token)
            .is_ok()
    );
}

#[test]
fn a_key_verifies_only_its_own_algorithm() {
    let [rsa, ec, ed] = every_kind_of_key();
    let f = fixture_with(ec, Some(rsa));
    let claims = claims_json();
    // ES256 token relabelled RS256 (same kid): refused before any signature check.
    for (key, alg) in [(ec, "RS256"), (ec, "EdDSA"), (rsa, "ES256"), (ed, "RS256")] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": key.kid()});
        let mut jws = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        key.sign_compact(&mut jws).unwrap();
        let expected = if key.kid() == ed.kid() {
            ValidationError::UnknownKey // not in this ring at all
        } else {
            ValidationError::UnsupportedAlgorithm
        };
        assert_eq!(
            f.validator.validate(&jws),
            Err(expected),
            "{alg} on {:?}",
            key.algorithm()
        );
    }
    // Signed by the right kind of key but a forged signature: a bad signature, even for ES256.
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": ec.kid()});
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
    assert_eq!(
        f.validator.validate(&forged),
        Err(ValidationError::BadSignature)
    );
    let bad_b64 = format!("{message}.!!!");
    assert_eq!(
        f.validator.validate(&bad_b64),
        Err(ValidationError::Malformed)
    );
}

/// Per-operation time of `op`: the best of five rounds of `n / 5` runs after a warm-up (the best round is the
/// one least disturbed by whatever else the machine runs).
pub(crate) fn time_per_op(n: u32, mut op: impl FnMut()) -> Duration {
    for _ in 0..n.div_ceil(20) {
        op();
    }
    let round = n.div_ceil(5);
    (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            for _ in 0..round {
                op();
            }
            start.elapsed() / round
        })
        .min()
        .unwrap_or_default()
}

#[test]
#[ignore = "timing: cargo nextest run -p flyteauth-core --release --run-ignored only --no-capture signing_costs"]
fn signing_costs() {
    use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
    let rsa_pem = &test_keys()[0].1;
    let der = rsa::RsaPrivateKey::from_pkcs1_pem(rsa_pem)
        .unwrap()
        .to_pkcs1_der()
        .unwrap();
    let pair = aws_lc_rs::signature::RsaKeyPair::from_der(der.as_bytes()).unwrap();
    let f = fixture();
    let sample = f.issuer.issue(&app_request()).unwrap();
    let message = sample
        .access_token
        .rsplit_once('.')
        .unwrap()
        .0
        .as_bytes()
        .to_vec();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut sig = vec![0u8; pair.public_modulus_len()];
    // The issuance before: the same claims (a fresh jti each time) through jsonwebtoken::encode.
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(current_key().kid().to_owned());
    // Interleaved rounds, best of each: the three see the same disturbances from the rest of the machine.
    let (mut raw, mut old, mut new) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..10 {
        raw = raw.min(time_per_op(200, || {
            pair.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                &message,
                &mut sig,
            )
            .unwrap();
        }));
        old = old.min(time_per_op(100, || {
            let mut claims = sample.claims.clone();
            claims.jti = uuid::Uuid::new_v4().to_string();
            jsonwebtoken::encode(&header, &claims, current_key().encoding_key()).unwrap();
        }));
        new = new.min(time_per_op(200, || {
            f.issuer.issue(&app_request()).unwrap();
        }));
    }
    println!(
        "RS256-2048: raw RsaKeyPair::sign {:.1} us, old issue() {:.1} us, new issue() {:.1} us ({:+.1}% vs raw)",
        raw.as_secs_f64() * 1e6,
        old.as_secs_f64() * 1e6,
        new.as_secs_f64() * 1e6,
        (new.as_secs_f64() / raw.as_secs_f64() - 1.0) * 100.0
    );
    for key in every_kind_of_key() {
        let f = fixture_with(key, None);
        let issue = time_per_op(2000, || {
            f.issuer.issue(&app_request()).unwrap();
        });
        let token = f.issuer.issue(&app_request()).unwrap().access_token;
        let first_sight = time_per_op(2000, || {
            f.validator.validate_uncached(&token).unwrap();
        });
        f.validator.validate(&token).unwrap();
        let hit = time_per_op(200_000, || {
            f.validator.validate(&token).unwrap();
        });
        println!(
            "{}: issue {:.1} us, first-sight validation {:.1} us, memo hit {} ns, token {} bytes",
            key.algorithm(),
            issue.as_secs_f64() * 1e6,
            first_sight.as_secs_f64() * 1e6,
            hit.as_nanos(),
            token.len()
        );
    }
}

#[test]
#[ignore = "timing: cargo nextest run -p flyteauth-core --release --run-ignored only --no-capture memo_hit_cost"]
fn memo_hit_cost() {
    let f = fixture();
    let token = f.issuer.issue(&app_request()).unwrap().access_token;
    f.validator.validate(&token).unwrap();
    let hit = time_per_op(2_000_000, || {
        f.validator.validate(&token).unwrap();
    });
    println!(
        "memo hit {} ns, token {} bytes",
        hit.as_nanos(),
        token.len()
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "measurement: cargo nextest run -p flyteauth-core --release --run-ignored only --no-capture memo_memory"]
fn memo_memory_of_100k_app_tokens() {
    let f = fixture();
    let tokens: Vec<String> = (0..100_000)
        .map(|i| {
            let app = format!("app-{}", i % 1000);
            f.issuer
                .issue(&AccessTokenRequest {
                    subject: app.clone(),
                    client_id: app.clone(),
                    client_name: Some(format!("Application {}", i % 1000)),
                    audience: vec![ISSUER.into()],
                    scopes: vec!["all".into()],
                    user_info: None,
                    kind: PrincipalKind::App,
                    session_id: None,
                })
                .unwrap()
                .access_token
        })
        .collect();
    let before = rss_kib();
    for token in &tokens {
        f.validator.validate(token).unwrap();
    }
    let after = rss_kib();
    assert_eq!(f.validator.remembered(), 100_000);
    println!(
        "memo: 100000 app tokens ({} bytes each) of 1000 apps: RSS +{} KiB, {} bytes per token",
        tokens[0].len(),
        after - before,
        (after - before) * 1024 / 100_000
    );
}
