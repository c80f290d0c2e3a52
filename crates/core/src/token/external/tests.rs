use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair as _,
};
use jsonwebtoken::EncodingKey;
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::clock::ManualClock;
use crate::keys::tests::test_keys;
use crate::keys::{KeyRing, SigningKey};
use crate::revocation::{RevocationSet, Revoked};
use crate::token::TokenValidator;

const IDP: &str = "https://idp.example.com/oauth2/default";
const API: &str = "api://flyte";
const PUBLIC: &str = "https://flyte.example.com";
const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const LEEWAY: Duration = Duration::from_secs(30);
const RSA_KID: &str = "rsa-1";
const EC_KID: &str = "ec-p256";
const EC384_KID: &str = "ec-p384";

fn enc(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct EcKey {
    encoding: EncodingKey,
    x: String,
    y: String,
}

fn ec_key(alg: &'static EcdsaSigningAlgorithm) -> EcKey {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!(point[0], 4, "uncompressed point");
    let half = (point.len() - 1) / 2;
    EcKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        x: enc(&point[1..=half]),
        y: enc(&point[1 + half..]),
    }
}

fn p256() -> &'static EcKey {
    static KEY: OnceLock<EcKey> = OnceLock::new();
    KEY.get_or_init(|| ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING))
}

fn p384() -> &'static EcKey {
    static KEY: OnceLock<EcKey> = OnceLock::new();
    KEY.get_or_init(|| ec_key(&ECDSA_P384_SHA384_FIXED_SIGNING))
}

fn idp_rsa() -> &'static SigningKey {
    &test_keys()[0].0
}

fn other_rsa() -> &'static SigningKey {
    &test_keys()[1].0
}

/// An RSA JWK without `alg`, as Entra ID publishes them.
fn rsa_jwk(key: &SigningKey, kid: &str) -> Value {
    json!({
        "kty": "RSA", "use": "sig", "kid": kid,
        "n": enc(key.public().modulus()), "e": enc(key.public().exponent())
    })
}

fn ec_jwk(key: &EcKey, crv: &str, kid: &str) -> Value {
    json!({"kty": "EC", "use": "sig", "crv": crv, "kid": kid, "x": key.x, "y": key.y})
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn standard_set() -> Vec<u8> {
    jwks(&[
        rsa_jwk(idp_rsa(), RSA_KID),
        ec_jwk(p256(), "P-256", EC_KID),
        ec_jwk(p384(), "P-384", EC384_KID),
    ])
}

fn rules() -> ExternalRules {
    ExternalRules {
        check_issuer: true,
        audiences: vec![API.to_owned(), format!("{PUBLIC}/")],
    }
}

struct Fixture {
    clock: Arc<ManualClock>,
    authority: Arc<RemoteAuthority>,
    validator: TokenValidator,
}

fn fixture_with(rules: ExternalRules) -> Fixture {
    let clock = Arc::new(ManualClock::new(datetime!(2024-01-01 00:00 UTC)));
    let authority = Arc::new(RemoteAuthority::new());
    assert_eq!(
        authority.update(Some(IDP.to_owned()), &standard_set()),
        Ok(3)
    );
    let validator = TokenValidator::external(authority.clone(), rules, LEEWAY, clock.clone());
    Fixture {
        clock,
        authority,
        validator,
    }
}

fn fixture() -> Fixture {
    fixture_with(rules())
}

/// An Okta client-credentials token: `sub` is the client id, `cid` names it, `scp` is an array.
fn okta_app_claims() -> Value {
    json!({
        "ver": 1, "jti": "AT.app-1", "iss": IDP, "aud": API, "iat": T0, "exp": T0 + 3600,
        "cid": "0oa-ci-bot", "scp": ["all"], "sub": "0oa-ci-bot"
    })
}

fn sign(header: &Value, claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    let message = format!(
        "{}.{}",
        enc(header.to_string().as_bytes()),
        enc(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

fn rs256(claims: &Value) -> String {
    sign(
        &json!({"alg": "RS256", "kid": RSA_KID, "typ": "JWT"}),
        claims,
        Algorithm::RS256,
        idp_rsa().encoding_key(),
    )
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        enc(header.to_string().as_bytes()),
        enc(claims.to_string().as_bytes())
    )
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

#[test]
fn rs256_tokens_of_the_authority_are_accepted() {
    let f = fixture();
    assert!(f.validator.is_external());
    assert!(Arc::ptr_eq(f.validator.authority().unwrap(), &f.authority));
    let token = rs256(&okta_app_claims());
    let id = f.validator.validate(&token).unwrap();
    assert_eq!(id.kind, PrincipalKind::App);
    assert_eq!(id.subject, "0oa-ci-bot");
    assert_eq!(id.client_id, "0oa-ci-bot");
    assert_eq!(id.scopes, ["all"]);
    assert_eq!(id.audience, [API]);
    assert_eq!(id.token_id, "AT.app-1");
    assert_eq!(id.expires_at, T0 + 3600);
    assert_eq!(id.issued_at, T0);
    assert_eq!(id.session_id, None);
    assert_eq!(id.user_info.subject, "0oa-ci-bot");
    assert_eq!(
        id.user_info.name, "0oa-ci-bot",
        "apps are named by client id"
    );
    assert_eq!(
        Value::Object(id.user_info.additional_claims.clone()),
        okta_app_claims()
    );
}

#[test]
fn every_accepted_algorithm_verifies() {
    let f = fixture();
    let claims = okta_app_claims();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let header = json!({"alg": format!("{alg:?}"), "kid": RSA_KID});
        let token = sign(&header, &claims, alg, idp_rsa().encoding_key());
        assert!(f.validator.validate_uncached(&token).is_ok(), "{alg:?}");
    }
    let es256 = sign(
        &json!({"alg": "ES256", "kid": EC_KID, "typ": "at+jwt"}),
        &claims,
        Algorithm::ES256,
        &p256().encoding,
    );
    assert_eq!(
        f.validator.validate(&es256).unwrap().client_id,
        "0oa-ci-bot"
    );
    let es384 = sign(
        &json!({"alg": "ES384", "kid": EC384_KID}),
        &claims,
        Algorithm::ES384,
        &p384().encoding,
    );
    assert!(f.validator.validate(&es384).is_ok());
    // Without a kid, the key of the token's type is found.
    let no_kid = sign(
        &json!({"alg": "ES256"}),
        &claims,
        Algorithm::ES256,
        &p256().encoding,
    );
    assert!(f.validator.validate(&no_kid).is_ok());
}

#[test]
fn a_key_verifies_only_algorithms_of_its_type_and_its_alg() {
    let f = fixture();
    let claims = okta_app_claims();
    // An EC signature claimed to be by the P-384 key, or an RSA one by an EC key.
    let token = sign(
        &json!({"alg": "ES256", "kid": EC384_KID}),
        &claims,
        Algorithm::ES256,
        &p256().encoding,
    );
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::BadSignature)
    );
    let token = sign(
        &json!({"alg": "RS256", "kid": EC_KID}),
        &claims,
        Algorithm::RS256,
        idp_rsa().encoding_key(),
    );
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::BadSignature)
    );

    // A JWK with `alg: RS256` verifies RS256 only.
    let mut jwk = rsa_jwk(idp_rsa(), RSA_KID);
    jwk["alg"] = json!("RS256");
    f.authority.update(Some(IDP.into()), &jwks(&[jwk])).unwrap();
    let ps256 = sign(
        &json!({"alg": "PS256", "kid": RSA_KID}),
        &claims,
        Algorithm::PS256,
        idp_rsa().encoding_key(),
    );
    assert_eq!(
        f.validator.validate(&ps256),
        Err(ValidationError::BadSignature)
    );
    assert!(f.validator.validate(&rs256(&claims)).is_ok());
    // No kid and no key of the token's type: perhaps a newer set has one.
    let es256 = sign(
        &json!({"alg": "ES256"}),
        &claims,
        Algorithm::ES256,
        &p256().encoding,
    );
    assert_eq!(
        f.validator.validate(&es256),
        Err(ValidationError::UnknownKey)
    );
}

#[test]
fn unknown_kid_is_unknown_key_and_no_kid_tries_the_keys() {
    let f = fixture();
    let claims = okta_app_claims();
    let token = sign(
        &json!({"alg": "RS256", "kid": "rotated-in"}),
        &claims,
        Algorithm::RS256,
        other_rsa().encoding_key(),
    );
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::UnknownKey)
    );
    assert_eq!(f.validator.remembered(), 0);

    // No kid, one RSA key: accepted.
    let token = sign(
        &json!({"alg": "RS256"}),
        &claims,
        Algorithm::RS256,
        idp_rsa().encoding_key(),
    );
    assert!(f.validator.validate(&token).is_ok());
    // No kid, signed by a key the set does not hold.
    let token = sign(
        &json!({"alg": "RS256"}),
        &claims,
        Algorithm::RS256,
        other_rsa().encoding_key(),
    );
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::BadSignature)
    );
    // The right kid, the wrong key.
    let token = sign(
        &json!({"alg": "RS256", "kid": RSA_KID}),
        &claims,
        Algorithm::RS256,
        other_rsa().encoding_key(),
    );
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::BadSignature)
    );
    // Before the first fetch there is no key at all.
    let empty = TokenValidator::external(
        Arc::new(RemoteAuthority::new()),
        rules(),
        LEEWAY,
        f.clock.clone(),
    );
    assert_eq!(
        empty.validate(&rs256(&claims)),
        Err(ValidationError::UnknownKey)
    );
}

#[test]
fn alg_none_hmac_and_unknown_algorithms_are_refused() {
    let f = fixture();
    let claims = okta_app_claims();
    for header in [
        json!({"alg": "none", "kid": RSA_KID}),
        json!({"alg": "None"}),
        json!({"kid": RSA_KID}),
        json!({"alg": "EdDSA", "kid": RSA_KID}),
        json!({"alg": "ES512", "kid": EC_KID}),
        json!({"alg": "rs256", "kid": RSA_KID}),
    ] {
        assert_eq!(
            f.validator.validate(&unsigned(&header, &claims)),
            Err(ValidationError::UnsupportedAlgorithm),
            "{header}"
        );
    }

    // HS256 "signed" with what the IdP publishes about its key: the PEM and DER public key, the JWK, the JWKS.
    let public = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(idp_rsa().public().modulus()),
        rsa::BigUint::from_bytes_be(idp_rsa().public().exponent()),
    )
    .unwrap();
    let secrets: Vec<Vec<u8>> = vec![
        public
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
            .into_bytes(),
        public.to_public_key_der().unwrap().as_bytes().to_vec(),
        public.to_pkcs1_der().unwrap().as_bytes().to_vec(),
        rsa_jwk(idp_rsa(), RSA_KID).to_string().into_bytes(),
        standard_set(),
    ];
    for secret in &secrets {
        for (alg, name) in [
            (Algorithm::HS256, "HS256"),
            (Algorithm::HS384, "HS384"),
            (Algorithm::HS512, "HS512"),
        ] {
            for header in [json!({"alg": name, "kid": RSA_KID}), json!({"alg": name})] {
                let token = sign(&header, &claims, alg, &EncodingKey::from_secret(secret));
                assert_eq!(
                    f.validator.validate(&token),
                    Err(ValidationError::UnsupportedAlgorithm)
                );
            }
        }
    }

    // A symmetric key in the set is never taken.
    let set = jwks(&[
        json!({"kty": "oct", "kid": "hmac", "alg": "HS256", "k": enc(b"shared secret")}),
        rsa_jwk(idp_rsa(), RSA_KID),
    ]);
    assert_eq!(f.authority.update(Some(IDP.into()), &set), Ok(1));
    assert!(!f.authority.has_key("hmac"));
}

#[test]
fn typ_may_be_absent_or_any_jwt_spelling_and_crit_is_refused() {
    let f = fixture();
    let claims = okta_app_claims();
    for (typ, ok) in [
        (json!("JWT"), true),
        (json!("jwt"), true),
        (json!("at+jwt"), true),
        (json!("application/at+jwt"), true),
        (json!("Application/JWT"), true),
        (Value::Null, true),
        (json!("dpop+jwt"), false),
        (json!("logout+jwt"), false),
    ] {
        let mut header = json!({"alg": "RS256", "kid": RSA_KID});
        if !typ.is_null() {
            header["typ"] = typ.clone();
        }
        let token = sign(&header, &claims, Algorithm::RS256, idp_rsa().encoding_key());
        assert_eq!(f.validator.validate(&token).is_ok(), ok, "{typ}");
    }
    let header = json!({"alg": "RS256", "kid": RSA_KID, "crit": ["exp"], "exp": 1});
    let token = sign(&header, &claims, Algorithm::RS256, idp_rsa().encoding_key());
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::Malformed)
    );
    for garbage in ["", "a.b", "a.b.c.d", "!!!.e30.sig"] {
        assert_eq!(
            f.validator.validate(garbage),
            Err(ValidationError::Malformed)
        );
    }
}

#[test]
fn issuer_is_checked_against_the_authority() {
    let f = fixture();
    for iss in [json!("https://evil.example.com"), json!(format!("{IDP}/"))] {
        let token = rs256(&with(okta_app_claims(), json!({ "iss": iss })));
        assert_eq!(
            f.validator.validate(&token),
            Err(ValidationError::WrongIssuer),
            "{iss}"
        );
    }
    let no_iss = rs256(&with(okta_app_claims(), json!({"iss": null})));
    assert_eq!(
        f.validator.validate(&no_iss),
        Err(ValidationError::MissingClaim("iss"))
    );
    let numeric = rs256(&with(okta_app_claims(), json!({"iss": 7})));
    assert_eq!(
        f.validator.validate(&numeric),
        Err(ValidationError::Malformed)
    );

    // An authority whose metadata named no issuer accepts nobody while the check is on.
    let authority = Arc::new(RemoteAuthority::new());
    authority.update(None, &standard_set()).unwrap();
    assert_eq!(authority.issuer(), None);
    let validator = TokenValidator::external(authority.clone(), rules(), LEEWAY, f.clock.clone());
    assert_eq!(
        validator.validate(&rs256(&okta_app_claims())),
        Err(ValidationError::WrongIssuer)
    );

    // With the check off (flyteauth.externalIssuerCheck: false), any or no issuer passes.
    let lax = TokenValidator::external(
        authority,
        ExternalRules {
            check_issuer: false,
            ..rules()
        },
        LEEWAY,
        f.clock.clone(),
    );
    let evil = rs256(&with(
        okta_app_claims(),
        json!({"iss": "https://evil.example.com"}),
    ));
    assert!(lax.validate(&evil).is_ok());
    assert!(lax.validate(&no_iss).is_ok());
}

#[test]
fn audience_must_intersect_ignoring_a_trailing_slash() {
    let f = fixture();
    for (aud, ok) in [
        (json!(API), true),
        (json!(format!("{API}/")), true),
        (json!(PUBLIC), true),
        (json!(format!("{PUBLIC}/")), true),
        (json!(["account", PUBLIC]), true),
        (json!("api://other"), false),
        (json!(["account", "api://other"]), false),
        (json!([]), false),
        (json!(format!("{PUBLIC}//")), false),
        (json!("https://flyte.example.com.evil.com"), false),
    ] {
        let token = rs256(&with(okta_app_claims(), json!({ "aud": aud })));
        let result = f.validator.validate(&token);
        if ok {
            assert_eq!(
                result.unwrap().audience.len(),
                aud.as_array().map_or(1, Vec::len)
            );
        } else {
            assert_eq!(result, Err(ValidationError::WrongAudience), "{aud}");
        }
    }
    let no_aud = rs256(&with(okta_app_claims(), json!({"aud": null})));
    assert_eq!(
        f.validator.validate(&no_aud),
        Err(ValidationError::MissingClaim("aud"))
    );
    let bad = rs256(&with(okta_app_claims(), json!({"aud": [API, 3]})));
    assert_eq!(f.validator.validate(&bad), Err(ValidationError::Malformed));

    // No audiences configured: nothing is for us.
    let none = fixture_with(ExternalRules {
        check_issuer: true,
        audiences: vec![" ".into()],
    });
    assert_eq!(
        none.validator.validate(&rs256(&okta_app_claims())),
        Err(ValidationError::WrongAudience)
    );
}

#[test]
fn times_are_checked_with_the_leeway() {
    let f = fixture();
    let expired = rs256(&with(okta_app_claims(), json!({"exp": T0 - 31})));
    assert_eq!(
        f.validator.validate(&expired),
        Err(ValidationError::Expired)
    );
    let just = rs256(&with(okta_app_claims(), json!({"exp": T0 - 29})));
    assert!(f.validator.validate(&just).is_ok(), "within the leeway");
    f.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        f.validator.validate(&just),
        Err(ValidationError::Expired),
        "and the memo forgets it"
    );

    let no_exp = rs256(&with(okta_app_claims(), json!({"exp": null})));
    assert_eq!(
        f.validator.validate(&no_exp),
        Err(ValidationError::MissingClaim("exp"))
    );
    let text_exp = rs256(&with(okta_app_claims(), json!({"exp": "tomorrow"})));
    assert_eq!(
        f.validator.validate(&text_exp),
        Err(ValidationError::Malformed)
    );
    let fractional = rs256(&with(okta_app_claims(), json!({"exp": T0 as f64 + 600.5})));
    assert_eq!(
        f.validator.validate(&fractional).unwrap().expires_at,
        T0 + 600
    );

    let early = rs256(&with(okta_app_claims(), json!({"nbf": T0 + 60})));
    assert_eq!(
        f.validator.validate(&early),
        Err(ValidationError::NotYetValid)
    );
    let future_iat = rs256(&with(okta_app_claims(), json!({"iat": T0 + 60})));
    assert_eq!(
        f.validator.validate(&future_iat),
        Err(ValidationError::NotYetValid)
    );
    // Neither iat nor nbf: only exp matters; the token counts as issued at the epoch for revocations.
    let timeless = rs256(&with(okta_app_claims(), json!({"iat": null})));
    assert_eq!(f.validator.validate(&timeless).unwrap().issued_at, 0);
    f.clock.advance(time::Duration::days(-365));
    assert!(
        f.validator.validate(&timeless).is_ok(),
        "remembered, no start time"
    );
}

#[test]
fn scopes_come_from_scp_array_scp_string_or_scope() {
    let f = fixture();
    let scopes = |changes: Value| {
        f.validator
            .validate(&rs256(&with(okta_app_claims(), changes)))
            .map(|id| id.scopes.clone())
    };
    assert_eq!(
        scopes(json!({"scp": ["all", "offline"]})).unwrap(),
        ["all", "offline"]
    );
    assert_eq!(
        scopes(json!({"scp": "all  offline"})).unwrap(),
        ["all", "offline"]
    );
    assert_eq!(
        scopes(json!({"scp": null, "scope": "openid all"})).unwrap(),
        ["openid", "all"]
    );
    assert_eq!(
        scopes(json!({"scp": ["all"], "scope": "read"})).unwrap(),
        ["all"],
        "scp wins"
    );
    assert_eq!(
        scopes(json!({"scp": null})).unwrap(),
        Vec::<String>::new(),
        "a client without scopes gets none"
    );
    assert_eq!(scopes(json!({"scp": 5})), Err(ValidationError::Malformed));
    assert_eq!(
        scopes(json!({"scp": ["all", 5]})),
        Err(ValidationError::Malformed)
    );
}

#[test]
fn no_client_and_no_scope_claim_means_all() {
    let f = fixture();
    let bare = json!({"iss": IDP, "aud": API, "exp": T0 + 60, "sub": "ada"});
    let id = f.validator.validate(&rs256(&bare)).unwrap();
    assert_eq!(id.scopes, ["all"]);
    assert_eq!(id.kind, PrincipalKind::User);
    assert_eq!(id.client_id, API, "the client falls back to the audience");
    // An empty scope claim is still a scope claim.
    let id = f
        .validator
        .validate(&rs256(&with(bare.clone(), json!({"scope": ""}))))
        .unwrap();
    assert!(id.scopes.is_empty());
    // A client without scopes gets none.
    for client in ["client_id", "azp", "cid"] {
        let id = f
            .validator
            .validate(&rs256(&with(bare.clone(), json!({ client: "flytectl" }))))
            .unwrap();
        assert!(id.scopes.is_empty(), "{client}");
        assert_eq!(id.client_id, "flytectl");
    }
}

#[test]
fn users_and_apps_are_told_apart() {
    let f = fixture();
    let base = json!({"iss": IDP, "aud": API, "exp": T0 + 60, "scp": ["all"]});
    for (changes, kind, subject, client) in [
        (
            json!({"sub": "ci", "client_id": "ci"}),
            PrincipalKind::App,
            "ci",
            "ci",
        ),
        (
            json!({"sub": "ci", "azp": "ci"}),
            PrincipalKind::App,
            "ci",
            "ci",
        ),
        (json!({"cid": "ci"}), PrincipalKind::App, "ci", "ci"),
        (json!({}), PrincipalKind::App, API, API),
        (
            json!({"sub": "sa-1", "azp": "ci", "gty": "client_credentials"}),
            PrincipalKind::App,
            "sa-1",
            "ci",
        ),
        (
            json!({"sub": "ci@clients", "azp": "ci", "gty": "client-credentials"}),
            PrincipalKind::App,
            "ci@clients",
            "ci",
        ),
        (
            json!({"sub": "sa-1", "client_id": "ci", "grant_type": "client_credentials"}),
            PrincipalKind::App,
            "sa-1",
            "ci",
        ),
        (
            json!({"sub": "ada", "cid": "flytectl"}),
            PrincipalKind::User,
            "ada",
            "flytectl",
        ),
        (
            json!({"sub": "ada", "azp": "flytectl", "gty": ["refresh_token", "password"]}),
            PrincipalKind::User,
            "ada",
            "flytectl",
        ),
        (json!({"sub": "ada"}), PrincipalKind::User, "ada", API),
        // client_id first, then azp, then cid.
        (
            json!({"sub": "ci", "client_id": "ci", "azp": "other", "cid": "third"}),
            PrincipalKind::App,
            "ci",
            "ci",
        ),
    ] {
        let id = f
            .validator
            .validate(&rs256(&with(base.clone(), changes.clone())))
            .unwrap();
        assert_eq!(
            (id.kind, id.subject.as_str(), id.client_id.as_str()),
            (kind, subject, client),
            "{changes}"
        );
    }
}

#[test]
fn user_info_and_session_come_from_standard_claims() {
    let f = fixture();
    let claims = json!({
        "iss": IDP, "aud": API, "exp": T0 + 60, "iat": T0, "sub": "00u1", "cid": "flytectl",
        "scp": ["all"], "name": "Ada Lovelace", "preferred_username": "ada@example.com",
        "given_name": "Ada", "family_name": "Lovelace", "email": "ada@example.com",
        "picture": "https://example.com/ada.png", "sid": "idp-session", "groups": ["admins"]
    });
    let token = rs256(&claims);
    let id = f.validator.validate(&token).unwrap();
    let u = &id.user_info;
    assert_eq!(u.subject, "00u1");
    assert_eq!(u.name, "Ada Lovelace");
    assert_eq!(u.preferred_username, "ada@example.com");
    assert_eq!(
        (u.given_name.as_str(), u.family_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert_eq!(u.email, "ada@example.com");
    assert_eq!(u.picture, "https://example.com/ada.png");
    assert_eq!(Value::Object(u.additional_claims.clone()), claims);
    assert_eq!(id.session_id.as_deref(), Some("idp-session"));
    // Without jti, the token's SHA-256 is its id.
    assert_eq!(id.token_id, hex::encode(Sha256::digest(token.as_bytes())));
    assert_eq!(id.token_id.len(), 64);
    // A sid that is not a string is no session.
    let id = f
        .validator
        .validate(&rs256(&with(claims, json!({"sid": 7}))))
        .unwrap();
    assert_eq!(id.session_id, None);
}

#[test]
fn the_memo_answers_the_second_time_until_a_key_is_dropped() {
    let f = fixture();
    let token = rs256(&okta_app_claims());
    let first = f.validator.validate(&token).unwrap();
    assert_eq!(f.validator.remembered(), 1);
    let second = f.validator.validate(&token).unwrap();
    assert!(Arc::ptr_eq(&first, &second), "served from the memo");

    // A refresh that brings the same keys, or more, keeps the memo's answers.
    let epoch = f.authority.epoch();
    f.authority
        .update(Some(IDP.into()), &standard_set())
        .unwrap();
    let mut more = serde_json::from_slice::<Value>(&standard_set()).unwrap();
    more["keys"]
        .as_array_mut()
        .unwrap()
        .push(rsa_jwk(other_rsa(), "rsa-2"));
    assert_eq!(
        f.authority
            .update(Some(IDP.into()), more.to_string().as_bytes()),
        Ok(4)
    );
    assert_eq!(f.authority.epoch(), epoch);
    assert!(Arc::ptr_eq(&f.validator.validate(&token).unwrap(), &first));

    // The key is dropped: the remembered token is verified again, and fails.
    let without_rsa = jwks(&[ec_jwk(p256(), "P-256", EC_KID)]);
    assert_eq!(f.authority.update(Some(IDP.into()), &without_rsa), Ok(1));
    assert_ne!(f.authority.epoch(), epoch);
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::UnknownKey)
    );
    assert_eq!(f.validator.remembered(), 0);

    // Back again, then a new issuer: verified again too.
    f.authority
        .update(Some(IDP.into()), &standard_set())
        .unwrap();
    assert!(f.validator.validate(&token).is_ok());
    f.authority
        .update(Some("https://new.example.com".into()), &standard_set())
        .unwrap();
    assert_eq!(
        f.validator.validate(&token),
        Err(ValidationError::WrongIssuer)
    );
}

#[test]
fn revocation_by_jti_or_digest_still_applies() {
    let f = fixture();
    let set = Arc::new(RevocationSet::default());
    let validator = TokenValidator::external(f.authority.clone(), rules(), LEEWAY, f.clock.clone())
        .with_revocations(set.clone());
    let token = rs256(&okta_app_claims());
    assert!(validator.validate(&token).is_ok());
    set.insert(Revoked::Token("AT.app-1".into()), T0 + 3600);
    assert_eq!(validator.validate(&token), Err(ValidationError::Revoked));
    assert_eq!(
        validator.validate_uncached(&token),
        Err(ValidationError::Revoked)
    );

    let no_jti = rs256(&with(okta_app_claims(), json!({"jti": null})));
    let id = validator.validate(&no_jti).unwrap();
    set.insert(Revoked::Token(id.token_id.clone()), T0 + 3600);
    assert_eq!(validator.validate(&no_jti), Err(ValidationError::Revoked));

    // A user revoked now: their tokens issued up to now fail.
    let user = rs256(&json!({
        "iss": IDP, "aud": API, "exp": T0 + 60, "iat": T0, "sub": "ada", "cid": "flytectl", "scp": ["all"]
    }));
    assert!(validator.validate(&user).is_ok());
    set.insert(
        Revoked::User {
            subject: "ada".into(),
            revoked_at: T0,
        },
        T0 + 3600,
    );
    assert_eq!(validator.validate(&user), Err(ValidationError::Revoked));
}

#[test]
fn okta_entra_keycloak_and_auth0_tokens() {
    let f = fixture();
    // Okta, authorization code: `cid` is flytectl, `sub` the person's login.
    let okta_user = json!({
        "ver": 1, "jti": "AT.u-1", "iss": IDP, "aud": "api://flyte", "iat": T0, "exp": T0 + 3600,
        "cid": "flytectl", "uid": "00u1abc", "scp": ["openid", "all", "offline_access"], "auth_time": T0 - 10,
        "sub": "ada@example.com"
    });
    let id = f.validator.validate(&rs256(&okta_user)).unwrap();
    assert_eq!(
        (id.kind, id.subject.as_str(), id.client_id.as_str()),
        (PrincipalKind::User, "ada@example.com", "flytectl")
    );
    assert!(id.has_scope("all"));

    let authority = Arc::new(RemoteAuthority::new());
    let lax = |issuer: &str| {
        authority
            .update(Some(issuer.into()), &standard_set())
            .unwrap();
        TokenValidator::external(authority.clone(), rules(), LEEWAY, f.clock.clone())
    };

    // Entra ID v2, client credentials: no jti, no scp, `roles`; `sub` is the service principal, `azp` the app.
    let entra = "https://login.microsoftonline.com/72f988bf-tenant/v2.0";
    let validator = lax(entra);
    let entra_app = json!({
        "aud": API, "iss": entra, "iat": T0, "nbf": T0, "exp": T0 + 3600, "aio": "E2Z", "azp": "6e74172b-app",
        "azpacr": "1", "oid": "f5b6-sp", "rh": "0.AR", "roles": ["Flyte.All"], "sub": "f5b6-sp",
        "tid": "72f988bf-tenant", "uti": "Xb1", "ver": "2.0", "idtyp": "app"
    });
    let header =
        json!({"typ": "JWT", "alg": "RS256", "kid": RSA_KID, "x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg"});
    let token = sign(
        &header,
        &entra_app,
        Algorithm::RS256,
        idp_rsa().encoding_key(),
    );
    let id = validator.validate(&token).unwrap();
    assert_eq!(id.kind, PrincipalKind::App, "idtyp: app");
    assert_eq!(
        (id.subject.as_str(), id.client_id.as_str()),
        ("f5b6-sp", "6e74172b-app")
    );
    assert!(id.scopes.is_empty(), "roles are not scopes");
    assert_eq!(id.token_id.len(), 64, "no jti: the digest");
    // Without the optional idtyp claim its sub is not its client id, so it reads as a user.
    let token = sign(
        &header,
        &with(entra_app, json!({"idtyp": null})),
        Algorithm::RS256,
        idp_rsa().encoding_key(),
    );
    assert_eq!(
        validator.validate(&token).unwrap().kind,
        PrincipalKind::User
    );
    // Entra ID v2, delegated: `scp` is a space-separated string.
    let entra_user = json!({
        "aud": API, "iss": entra, "iat": T0, "nbf": T0, "exp": T0 + 3600, "azp": "flytectl-app",
        "name": "Ada Lovelace", "oid": "u-oid", "preferred_username": "ada@contoso.com",
        "scp": "all offline_access", "sub": "pairwise-sub", "tid": "72f988bf-tenant", "ver": "2.0"
    });
    let token = sign(
        &header,
        &entra_user,
        Algorithm::RS256,
        idp_rsa().encoding_key(),
    );
    let id = validator.validate(&token).unwrap();
    assert_eq!(id.kind, PrincipalKind::User);
    assert_eq!(id.scopes, ["all", "offline_access"]);
    assert_eq!(id.user_info.preferred_username, "ada@contoso.com");

    // Keycloak, authorization code: `azp`, `scope`, `sid`, the profile claims, an audience array.
    let keycloak = "https://keycloak.example.com/realms/flyte";
    let validator = lax(keycloak);
    let kc_user = json!({
        "exp": T0 + 300, "iat": T0, "auth_time": T0, "jti": "onrtac:5b7c", "iss": keycloak,
        "aud": ["https://flyte.example.com", "account"], "sub": "3c6e-uuid", "typ": "Bearer", "azp": "flytectl",
        "sid": "8a5f-session", "scope": "openid profile email all", "email_verified": true, "name": "Ada Lovelace",
        "preferred_username": "ada", "given_name": "Ada", "family_name": "Lovelace", "email": "ada@example.com"
    });
    let id = validator.validate(&rs256(&kc_user)).unwrap();
    assert_eq!(
        (id.kind, id.subject.as_str(), id.client_id.as_str()),
        (PrincipalKind::User, "3c6e-uuid", "flytectl")
    );
    assert_eq!(id.scopes, ["openid", "profile", "email", "all"]);
    assert_eq!(id.session_id.as_deref(), Some("8a5f-session"));
    assert_eq!(id.user_info.email, "ada@example.com");

    // Auth0, client credentials: `gty: client-credentials`, `sub` is `<client>@clients`.
    let auth0 = "https://tenant.eu.auth0.com/";
    let validator = lax(auth0);
    let auth0_app = json!({
        "iss": auth0, "sub": "Xy12@clients", "aud": API, "iat": T0, "exp": T0 + 86400,
        "scope": "all", "gty": "client-credentials", "azp": "Xy12"
    });
    let id = validator.validate(&rs256(&auth0_app)).unwrap();
    assert_eq!(
        (id.kind, id.client_id.as_str(), id.scopes.as_slice()),
        (PrincipalKind::App, "Xy12", ["all".to_owned()].as_slice())
    );
}

#[test]
fn updates_keep_usable_keys_and_refuse_bad_sets() {
    let authority = RemoteAuthority::new();
    assert_eq!((authority.key_count(), authority.issuer()), (0, None));
    assert_eq!(authority.update(Some(IDP.into()), &standard_set()), Ok(3));
    assert!(
        authority.has_key(RSA_KID) && authority.has_key(EC_KID) && authority.has_key(EC384_KID)
    );
    assert!(!authority.has_key("nope"));
    assert_eq!(authority.issuer().as_deref(), Some(IDP));

    // Refused sets change nothing, the issuer included.
    for bad in [&b"not json"[..], b"[]", b"{}", br#"{"keys": {}}"#] {
        assert!(
            matches!(
                authority.update(Some("https://other".into()), bad),
                Err(KeySetError::Malformed(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        authority.update(None, br#"{"keys": []}"#),
        Err(KeySetError::NoUsableKeys { found: 0 })
    );
    let mut small = rsa_jwk(idp_rsa(), "small");
    small["n"] = json!(enc(&[0xab; 128]));
    let mut encryption = rsa_jwk(idp_rsa(), "enc");
    encryption["use"] = json!("enc");
    let mut oaep = rsa_jwk(idp_rsa(), "oaep");
    oaep["alg"] = json!("RSA-OAEP");
    oaep.as_object_mut().unwrap().remove("use");
    let mut wrap_only = rsa_jwk(idp_rsa(), "wrap");
    wrap_only["key_ops"] = json!(["wrapKey"]);
    wrap_only.as_object_mut().unwrap().remove("use");
    let mut es_on_rsa = rsa_jwk(idp_rsa(), "mismatch");
    es_on_rsa["alg"] = json!("ES256");
    let mut short_ec = ec_jwk(p256(), "P-256", "short");
    short_ec["x"] = json!(enc(&[1; 31]));
    let unusable = [
        json!({"kty": "oct", "k": enc(b"secret")}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": enc(&[7; 32]), "kid": "ed"}),
        json!({"kty": "OKP", "crv": "X25519", "x": enc(&[7; 32]), "kid": "x"}),
        json!({"kty": "EC", "crv": "P-521", "x": enc(&[1; 66]), "y": enc(&[1; 66])}),
        json!({"kty": "EC", "crv": "secp256k1", "x": enc(&[1; 32]), "y": enc(&[1; 32])}),
        json!({"kty": "RSA", "n": "!!", "e": "AQAB"}),
        json!("not an object"),
        small,
        encryption,
        oaep,
        wrap_only,
        es_on_rsa,
        short_ec,
    ];
    assert_eq!(
        authority.update(Some("https://other".into()), &jwks(&unusable)),
        Err(KeySetError::NoUsableKeys {
            found: unusable.len()
        })
    );
    assert_eq!(authority.key_count(), 3);
    assert_eq!(authority.issuer().as_deref(), Some(IDP));

    // Mixed in with a usable key, the others are skipped and the set is taken.
    let mut mixed = unusable.to_vec();
    let mut padded = rsa_jwk(idp_rsa(), "padded");
    padded["n"] = json!(format!("AAAA{}==", padded["n"].as_str().unwrap()));
    mixed.push(padded);
    assert_eq!(
        authority.update(Some("https://other".into()), &jwks(&mixed)),
        Ok(1)
    );
    assert!(authority.has_key("padded") && !authority.has_key(RSA_KID));
    assert_eq!(authority.issuer().as_deref(), Some("https://other"));

    // A key with a leading zero byte and padding still verifies.
    let clock = Arc::new(ManualClock::new(datetime!(2024-01-01 00:00 UTC)));
    let validator = TokenValidator::external(
        Arc::new(authority),
        ExternalRules {
            check_issuer: false,
            ..rules()
        },
        LEEWAY,
        clock,
    );
    let token = sign(
        &json!({"alg": "RS256", "kid": "padded"}),
        &okta_app_claims(),
        Algorithm::RS256,
        idp_rsa().encoding_key(),
    );
    assert!(validator.validate(&token).is_ok());

    // The bound on kept keys.
    let many: Vec<Value> = (0..MAX_REMOTE_KEYS + 5)
        .map(|i| rsa_jwk(idp_rsa(), &format!("k{i}")))
        .collect();
    let authority = RemoteAuthority::new();
    assert_eq!(authority.update(None, &jwks(&many)), Ok(MAX_REMOTE_KEYS));
}

#[test]
fn debug_output_shows_counts_not_keys() {
    let f = fixture();
    let debug = format!("{:?} {:?}", f.authority, f.validator);
    assert!(debug.contains("keys: 3"), "{debug}");
    assert!(debug.contains(IDP));
    assert!(debug.contains("check_issuer: true"));
    assert!(!debug.contains(&p256().x), "{debug}");
    assert!(!debug.contains(&enc(idp_rsa().public().modulus())[..40]));
}

#[test]
fn our_own_validator_is_not_external() {
    let clock = Arc::new(ManualClock::new(datetime!(2024-01-01 00:00 UTC)));
    let ring = Arc::new(KeyRing::new(idp_rsa().clone(), None));
    let own = TokenValidator::new(ring, IDP.into(), vec![API.into()], LEEWAY, clock);
    assert!(!own.is_external());
    assert!(own.authority().is_none());
    // An external-shaped token is not ours: typ JWT, no identity_type.
    assert_eq!(
        own.validate(&rs256(&okta_app_claims())),
        Err(ValidationError::Malformed)
    );
}
