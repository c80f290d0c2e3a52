//! Access tokens: JWTs (RS256 by default, ES256 or EdDSA with `flyteauth.signingAlgorithm`) in the RFC 9068 shape plus the Flyte claims (`scp`, `client_id`, `user_info`) and
//! ours (`identity_type`, `sid`); and OpenID Connect ID tokens.
//!
//! Validation is the hot path of the whole product (every RPC and `/me`), so [`TokenValidator::validate`] does
//! the minimum: one header decode into a stack buffer, one signature check, one claims decode, no I/O.
//!
//! A validator works in one of two modes, fixed at construction: our own tokens ([`TokenValidator::new`]), or the
//! tokens of an external authorization server ([`TokenValidator::external`], keys and issuer held by a
//! [`RemoteAuthority`] the server keeps fresh). Both share the memo and the revocation set.
//!
//! Issuance is one signature plus a few hundred bytes of JSON and base64: the header is encoded once per
//! issuer, the claims are serialized and encoded straight into the token's buffer, and the key was parsed when
//! it was loaded (see [`crate::keys`]), so an RS256 token costs about one RSA signature.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::identity::{Identity, PrincipalKind, UserInfo};
use crate::keys::{KeyRing, MAX_SIGNATURE_BYTES, SigningAlgorithm, SigningKey};
use crate::revocation::RevocationSet;

mod cache;
mod external;
pub use cache::{
    CAPACITY as VERIFIED_TOKEN_CAPACITY, MAX_TOKEN_BYTES as VERIFIED_TOKEN_MAX_BYTES,
    PER_PRINCIPAL_CAPACITY as VERIFIED_TOKENS_PER_PRINCIPAL,
};
use cache::{Verified, VerifiedTokens};
use external::ExternalMode;
pub use external::{ExternalRules, KeySetError, MAX_REMOTE_KEYS, RemoteAuthority};

/// The `typ` header of our access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user, or the client id for applications.
    pub sub: String,
    /// Audiences; always serialized as an array, read from a string or an array.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Not before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id (UUID v4).
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// `identity_type`: whether `sub` is a person (`"user"`) or an application (`"app"`). Validation reads the
    /// principal's kind from this claim and nothing else.
    pub identity_type: PrincipalKind,
    /// `sid`: the login (refresh-token family) a user token belongs to; absent on app tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Granted scopes; always serialized as an array, read from a string (one scope, as flyteadmin does) or an
    /// array.
    #[serde(default, deserialize_with = "one_or_many")]
    pub scp: Vec<String>,
    /// Granted scopes, space-separated (RFC 9068 §2.2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Profile of the principal. Serialized compactly (empty members left out) because every byte of the token
    /// is parsed again on each validation; read back with defaults for the missing members.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "compact_user_info"
    )]
    pub user_info: Option<UserInfo>,
}

fn compact_user_info<S: serde::Serializer>(
    info: &Option<UserInfo>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let Some(u) = info else {
        return s.serialize_none();
    };
    let mut map = s.serialize_map(None)?;
    for (key, value) in [
        ("subject", &u.subject),
        ("name", &u.name),
        ("preferred_username", &u.preferred_username),
        ("given_name", &u.given_name),
        ("family_name", &u.family_name),
        ("email", &u.email),
        ("picture", &u.picture),
    ] {
        if !value.is_empty() {
            map.serialize_entry(key, value)?;
        }
    }
    if !u.additional_claims.is_empty() {
        map.serialize_entry("additional_claims", &u.additional_claims)?;
    }
    map.end()
}

/// What to put in a new access token.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessTokenRequest {
    /// `sub`: the user's subject, or the client id for application tokens.
    pub subject: String,
    /// `client_id`.
    pub client_id: String,
    /// The client's display name, carried in `user_info.name` of application tokens.
    pub client_name: Option<String>,
    /// `aud`.
    pub audience: Vec<String>,
    /// `scp` and `scope`.
    pub scopes: Vec<String>,
    /// `user_info` for user tokens.
    pub user_info: Option<UserInfo>,
    /// `identity_type`: a person or an application.
    pub kind: PrincipalKind,
    /// `sid`: the login (refresh-token family) of a user token; `None` for app tokens.
    pub session_id: Option<String>,
}

/// What to put in a new OpenID Connect ID token (OpenID Connect Core §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdTokenRequest {
    /// `sub`: the person's stable subject.
    pub subject: String,
    /// The client; the token's only `aud`.
    pub client_id: String,
    /// `auth_time`: when the person signed in, unix seconds.
    pub auth_time: i64,
    /// `nonce` of the authorization request, echoed when present.
    pub nonce: Option<String>,
    /// `name` (left out when empty).
    pub name: String,
    /// `preferred_username` (left out when empty).
    pub preferred_username: String,
    /// `email` (left out when empty).
    pub email: String,
    /// The access token issued with it, for `at_hash`.
    pub access_token: String,
    /// `sid`: the login the token belongs to (left out when `None`).
    pub session_id: Option<String>,
}

/// The claims of an ID token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience: the client id.
    pub aud: Vec<String>,
    /// Expiry, unix seconds (the access-token lifetime).
    pub exp: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// When the person signed in, unix seconds.
    pub auth_time: i64,
    /// The authorization request's `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of the SHA-256 of the access token, base64url (OpenID Connect Core §3.1.3.6).
    pub at_hash: String,
    /// The login (refresh-token family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The `typ` header of our ID tokens; the validator refuses it, so an ID token never passes as an access token.
pub const ID_TOKEN_TYP: &str = "JWT";

/// `at_hash` of `access_token` for RS256 and ES256: the left 128 bits of its SHA-256, unpadded base64url. (For
/// EdDSA, OpenID Connect names no hash; SHA-256 is what every reader that checks it with Ed25519 expects.)
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// A freshly minted token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The compact JWT.
    pub access_token: String,
    /// Seconds until it expires (the `expires_in` of the token response).
    pub expires_in: u64,
    /// Its claims.
    pub claims: AccessTokenClaims,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The signature could not be computed.
    #[error("cannot sign the token: {0}")]
    Signing(String),
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// Not a well-formed compact JWS with JSON header and claims, or not an access token (`typ`).
    #[error("the token is malformed")]
    Malformed,
    /// `alg` is not one we accept: for our own tokens, the algorithm of the key its `kid` names (RS256, ES256
    /// or EdDSA); for an external server's, RS256/384/512,
    /// PS256/384/512, ES256 or ES384 (never `none` or HS*).
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// No `kid`, or a `kid` that is neither the current nor the previous key; for an external server, a `kid`
    /// its key set does not hold (or no key of the token's type when there is no `kid`), which is worth one
    /// refetch of the set.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not match.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not ours.
    #[error("the token was issued by someone else")]
    WrongIssuer,
    /// No `aud` is one of ours.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// A required claim is absent.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    /// The token, its login, its application or its user was revoked.
    #[error("the token has been revoked")]
    Revoked,
}

impl ValidationError {
    /// A snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::Revoked => "revoked",
        }
    }

    fn from_jwt(kind: &ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm => Self::UnsupportedAlgorithm,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) => Self::MissingClaim(match c.as_str() {
                "exp" => "exp",
                "iss" => "iss",
                "aud" => "aud",
                "sub" => "sub",
                "nbf" => "nbf",
                _ => "claim",
            }),
            // A key our ring produced that the backend refuses would be a bug; for the caller it is still a
            // token that does not verify.
            ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::RsaFailedSigning => Self::BadSignature,
            _ => Self::Malformed,
        }
    }
}

/// Mints access tokens with the ring's current key.
pub struct TokenIssuer {
    keys: Arc<KeyRing>,
    issuer: String,
    lifetime: Duration,
    clock: Arc<dyn Clock>,
    /// The access tokens' JOSE header, base64url: the same for every token of this key.
    header_b64: String,
    /// The ID tokens' header, base64url.
    id_header_b64: String,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.keys.current().kid())
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl TokenIssuer {
    /// An issuer signing with `keys.current()`, setting `iss` to `issuer` and `exp` to now + `lifetime`.
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: String,
        lifetime: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let header_b64 = encoded_header(keys.current(), ACCESS_TOKEN_TYP);
        let id_header_b64 = encoded_header(keys.current(), ID_TOKEN_TYP);
        Self {
            keys,
            issuer,
            lifetime,
            clock,
            header_b64,
            id_header_b64,
        }
    }

    /// The compact JWS of `claims` under `header_b64`, signed with the current key.
    fn sign<C: Serialize>(&self, header_b64: &str, claims: &C) -> Result<String, TokenError> {
        let key = self.keys.current();
        let json = serde_json::to_vec(claims).map_err(|e| TokenError::Signing(e.to_string()))?;
        let mut jws = String::with_capacity(
            header_b64.len() + 2 + (json.len() * 4).div_ceil(3) + key.signature_b64_len(),
        );
        jws.push_str(header_b64);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut jws);
        key.sign_compact(&mut jws)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok(jws)
    }

    fn lifetime_secs(&self) -> i64 {
        i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX)
    }

    /// Mints an ID token: header `typ: JWT` and the current `kid`; `iss`, `sub`, `aud = [client_id]`, `exp`
    /// (the access-token lifetime), `iat`, `auth_time`, `nonce` and `sid` when given, `at_hash` of the access
    /// token, and `name`, `preferred_username`, `email` whenever they are not empty. The profile claims do not
    /// depend on `profile`/`email` being among the scopes: the clients are first-party, the data is the
    /// person's own, and the access token's `user_info` carries the same.
    pub fn issue_id_token(&self, req: &IdTokenRequest) -> Result<String, TokenError> {
        let now = self.clock.unix_now();
        let some = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        let claims = IdTokenClaims {
            iss: self.issuer.clone(),
            sub: req.subject.clone(),
            aud: vec![req.client_id.clone()],
            exp: now.saturating_add(self.lifetime_secs()),
            iat: now,
            auth_time: req.auth_time,
            nonce: req.nonce.clone().filter(|n| !n.is_empty()),
            at_hash: at_hash(&req.access_token),
            sid: req.session_id.clone(),
            name: some(&req.name),
            preferred_username: some(&req.preferred_username),
            email: some(&req.email),
        };
        self.sign(&self.id_header_b64, &claims)
    }

    /// Mints a token for `req`. Application tokens with a known client name carry it as
    /// `user_info: {"name": …}`; the validator fills in the rest of an application's profile.
    pub fn issue(&self, req: &AccessTokenRequest) -> Result<IssuedToken, TokenError> {
        let now = self.clock.unix_now();
        let lifetime = self.lifetime_secs();
        let user_info = match (&req.user_info, req.client_name.as_deref()) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(name))
                if req.kind == PrincipalKind::App && !name.is_empty() && name != req.client_id =>
            {
                Some(UserInfo {
                    name: name.to_owned(),
                    ..UserInfo::default()
                })
            }
            (None, _) => None,
        };
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: req.subject.clone(),
            aud: req.audience.clone(),
            exp: now.saturating_add(lifetime),
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: req.client_id.clone(),
            identity_type: req.kind,
            sid: req.session_id.clone(),
            scp: req.scopes.clone(),
            scope: (!req.scopes.is_empty()).then(|| req.scopes.join(" ")),
            user_info,
        };
        let access_token = self.sign(&self.header_b64, &claims)?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.lifetime.as_secs(),
            claims,
        })
    }
}

/// The base64url JOSE header of `key`'s tokens with `typ`: jsonwebtoken's serialization (`typ`, `alg`, `kid`), so
/// our tokens are byte for byte what `jsonwebtoken::encode` would make of the same claims.
fn encoded_header(key: &SigningKey, typ: &str) -> String {
    let mut header = Header::new(key.algorithm().jsonwebtoken());
    header.typ = Some(typ.to_owned());
    header.kid = Some(key.kid().to_owned());
    // A header of strings cannot fail to serialize; an empty one would only make every token fail validation.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Validates access tokens: ours against a key ring, issuer and audiences, or an external server's against its
/// [`RemoteAuthority`].
pub struct TokenValidator {
    mode: Mode,
    leeway: i64,
    clock: Arc<dyn Clock>,
    verified: VerifiedTokens,
    revocations: Arc<RevocationSet>,
}

/// Whose tokens a validator accepts.
enum Mode {
    /// Ours: signed by a key of the ring with its algorithm, `typ: at+jwt`, our claims.
    Own(OwnMode),
    /// An external authorization server's.
    External(ExternalMode),
}

struct OwnMode {
    keys: Arc<KeyRing>,
    issuer: String,
    audiences: Vec<String>,
}

impl fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenValidator");
        match &self.mode {
            Mode::Own(own) => d
                .field("issuer", &own.issuer)
                .field("audiences", &own.audiences),
            Mode::External(ext) => d.field("external", ext),
        };
        d.field("leeway", &self.leeway).finish()
    }
}

// Our headers are ~100 bytes; anything beyond this decodes on the heap (and is almost certainly not ours).
const HEADER_STACK_BYTES: usize = 512;

#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// The claims as they arrive, every one optional so absence maps to [`ValidationError::MissingClaim`].
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default, deserialize_with = "opt_one_or_many")]
    aud: Option<Vec<String>>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    client_id: Option<String>,
    identity_type: Option<String>,
    sid: Option<String>,
    #[serde(default, deserialize_with = "opt_one_or_many")]
    scp: Option<Vec<String>>,
    scope: Option<String>,
    user_info: Option<UserInfo>,
}

impl TokenValidator {
    /// A validator accepting tokens signed by a key of `keys`, issued by exactly `issuer`, for at least one of
    /// `audiences`, tolerating `leeway` of clock skew on `exp`, `nbf` and `iat`.
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: String,
        audiences: Vec<String>,
        leeway: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_mode(
            Mode::Own(OwnMode {
                keys,
                issuer,
                audiences,
            }),
            leeway,
            clock,
        )
    }

    /// A validator accepting the access tokens of an external authorization server: signed by a key `authority`
    /// holds at the time, with the claims checked by `rules` (see [`RemoteAuthority`] and [`ExternalRules`]),
    /// tolerating `leeway` of clock skew on `exp`, `nbf` and `iat`.
    pub fn external(
        authority: Arc<RemoteAuthority>,
        rules: ExternalRules,
        leeway: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_mode(
            Mode::External(ExternalMode::new(authority, rules)),
            leeway,
            clock,
        )
    }

    fn with_mode(mode: Mode, leeway: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            mode,
            leeway: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
            clock,
            verified: VerifiedTokens::default(),
            revocations: Arc::new(RevocationSet::default()),
        }
    }

    /// Checks tokens against `revocations` (shared with whoever fills it) instead of the empty set
    /// [`TokenValidator::new`] starts with.
    pub fn with_revocations(mut self, revocations: Arc<RevocationSet>) -> Self {
        self.revocations = revocations;
        self
    }

    /// The revocations every validation consults; insert into it to revoke.
    pub fn revocations(&self) -> &Arc<RevocationSet> {
        &self.revocations
    }

    /// Whether this validator accepts an external server's tokens ([`TokenValidator::external`]).
    pub fn is_external(&self) -> bool {
        matches!(self.mode, Mode::External(_))
    }

    /// The external server's keys and issuer, for a validator made by [`TokenValidator::external`].
    pub fn authority(&self) -> Option<&Arc<RemoteAuthority>> {
        match &self.mode {
            Mode::Own(_) => None,
            Mode::External(ext) => Some(ext.authority()),
        }
    }

    /// Validates `token` and returns who it speaks for. Scopes are not checked here (callers decide).
    ///
    /// A token that passed before is answered from a bounded memo keyed by a keyed hash of its exact bytes (see
    /// the `cache` module for why a forged token cannot collide with a remembered one), with only `exp`,
    /// `nbf` and `iat` checked again: the signature check dominates the cost of every protected call. The
    /// [revocations](Self::revocations) are consulted on both paths, so a revoked token fails even when
    /// remembered ([`ValidationError::Revoked`]). In external mode a remembered token is verified afresh once
    /// the authority dropped a key or changed its issuer since.
    pub fn validate(&self, token: &str) -> Result<Arc<Identity>, ValidationError> {
        // The mode is matched once here; each arm is its own copy of the memo logic, so our own tokens pay
        // nothing for the external mode's key-set epoch.
        match &self.mode {
            Mode::Own(own) => self.validate_memo::<false>(token, 0, |now| {
                own.verify(token, now, self.leeway)
                    .map(|(identity, not_before)| (identity, not_before, 0))
            }),
            Mode::External(ext) => {
                self.validate_memo::<true>(token, ext.authority().epoch(), |now| {
                    ext.verify(token, now, self.leeway)
                })
            }
        }
    }

    /// The memo around `verify`, which returns the identity, the later of `iat` and `nbf`, and the key-set
    /// epoch it was verified under. With `CHECK_EPOCH`, a hit from another `epoch` is verified again.
    #[inline(always)]
    fn validate_memo<const CHECK_EPOCH: bool>(
        &self,
        token: &str,
        epoch: u64,
        verify: impl FnOnce(i64) -> Result<(Identity, i64, u64), ValidationError>,
    ) -> Result<Arc<Identity>, ValidationError> {
        let now = self.clock.unix_now();
        let key = self.verified.key(token);
        if let Some((key, hit)) = key.and_then(|k| Some((k, self.verified.get(k)?))) {
            if CHECK_EPOCH && hit.epoch != epoch {
                self.verified.remove(key);
            } else {
                if now >= hit.identity.expires_at.saturating_add(self.leeway) {
                    self.verified.remove(key);
                    return Err(ValidationError::Expired);
                }
                if hit.not_before > now.saturating_add(self.leeway) {
                    return Err(ValidationError::NotYetValid);
                }
                if self.revocations.is_revoked(&hit.identity) {
                    return Err(ValidationError::Revoked);
                }
                return Ok(hit.identity);
            }
        }
        let (identity, not_before, epoch) = verify(now)?;
        if self.revocations.is_revoked(&identity) {
            return Err(ValidationError::Revoked);
        }
        let identity = Arc::new(identity);
        if let Some(key) = key {
            self.verified.insert(
                key,
                Verified {
                    identity: identity.clone(),
                    not_before,
                    epoch,
                },
                now,
                self.leeway,
            );
        }
        Ok(identity)
    }

    /// Full validation of `token` including revocations, neither consulting nor filling the memo (what a first
    /// sighting costs).
    pub fn validate_uncached(&self, token: &str) -> Result<Identity, ValidationError> {
        let now = self.clock.unix_now();
        let identity = match &self.mode {
            Mode::Own(own) => own.verify(token, now, self.leeway)?.0,
            Mode::External(ext) => ext.verify(token, now, self.leeway)?.0,
        };
        if self.revocations.is_revoked(&identity) {
            return Err(ValidationError::Revoked);
        }
        Ok(identity)
    }

    /// How many verified tokens the memo holds (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }
}

/// The parts of a compact JWS: base64url header, payload and signature, and the signing input
/// (`header.payload`).
struct Parts<'t> {
    header_b64: &'t str,
    payload_b64: &'t str,
    signature_b64: &'t str,
    message: &'t [u8],
}

/// Splits a compact JWS into its three parts; anything else is [`ValidationError::Malformed`].
#[inline]
fn split_token(token: &str) -> Result<Parts<'_>, ValidationError> {
    let mut parts = token.splitn(3, '.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(ValidationError::Malformed);
    };
    if signature_b64.contains('.') {
        return Err(ValidationError::Malformed);
    }
    let message_len = header_b64.len() + 1 + payload_b64.len();
    Ok(Parts {
        header_b64,
        payload_b64,
        signature_b64,
        message: &token.as_bytes()[..message_len],
    })
}

/// The JSON of a base64url header: decoded into `stack` when it fits (ours always do), else into `heap`.
#[inline]
fn decode_header<'b>(
    header_b64: &str,
    stack: &'b mut [u8; HEADER_STACK_BYTES],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], ValidationError> {
    match URL_SAFE_NO_PAD.decode_slice(header_b64, stack) {
        Ok(len) => Ok(&stack[..len]),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            *heap = URL_SAFE_NO_PAD
                .decode(header_b64)
                .map_err(|_| ValidationError::Malformed)?;
            Ok(heap)
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(ValidationError::Malformed),
    }
}

impl OwnMode {
    /// Full validation: header, signature, claims. Returns the identity and the later of `iat` and `nbf`.
    fn verify(
        &self,
        token: &str,
        now: i64,
        leeway: i64,
    ) -> Result<(Identity, i64), ValidationError> {
        let parts = split_token(token)?;
        let mut stack = [0u8; HEADER_STACK_BYTES];
        let mut heap = Vec::new();
        let header_json = decode_header(parts.header_b64, &mut stack, &mut heap)?;
        let header: JoseHeader<'_> =
            serde_json::from_slice(header_json).map_err(|_| ValidationError::Malformed)?;
        let alg = header
            .alg
            .as_deref()
            .and_then(SigningAlgorithm::from_jws)
            .ok_or(ValidationError::UnsupportedAlgorithm)?;
        // We define no critical header parameters, so any `crit` is one we do not understand (RFC 7515 §4.1.11).
        if header.crit.is_some() || !header.typ.as_deref().is_some_and(is_access_token_typ) {
            return Err(ValidationError::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.find(kid))
            .ok_or(ValidationError::UnknownKey)?;
        // Each key verifies its own algorithm only, so a token cannot pick how our key is used.
        if key.algorithm() != alg {
            return Err(ValidationError::UnsupportedAlgorithm);
        }
        let mut signature = [0u8; MAX_SIGNATURE_BYTES];
        let len = URL_SAFE_NO_PAD
            .decode_slice(parts.signature_b64, &mut signature)
            .map_err(|_| ValidationError::Malformed)?;
        if !key.verify(parts.message, &signature[..len]) {
            return Err(ValidationError::BadSignature);
        }

        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload_b64)
            .map_err(|_| ValidationError::Malformed)?;
        let raw: RawClaims =
            serde_json::from_slice(&payload).map_err(|_| ValidationError::Malformed)?;
        self.check_claims(raw, now, leeway)
    }

    fn check_claims(
        &self,
        raw: RawClaims,
        now: i64,
        leeway: i64,
    ) -> Result<(Identity, i64), ValidationError> {
        use ValidationError::MissingClaim;
        let exp = raw.exp.ok_or(MissingClaim("exp"))?;
        let iat = raw.iat.ok_or(MissingClaim("iat"))?;
        let iss = raw.iss.ok_or(MissingClaim("iss"))?;
        let sub = raw.sub.ok_or(MissingClaim("sub"))?;
        let aud = raw.aud.ok_or(MissingClaim("aud"))?;
        let jti = raw.jti.ok_or(MissingClaim("jti"))?;
        let client_id = raw.client_id.ok_or(MissingClaim("client_id"))?;
        let kind = raw
            .identity_type
            .as_deref()
            .ok_or(MissingClaim("identity_type"))
            .and_then(|t| PrincipalKind::parse(t).ok_or(ValidationError::Malformed))?;

        if now >= exp.saturating_add(leeway) {
            return Err(ValidationError::Expired);
        }
        let not_before = raw.nbf.map_or(iat, |nbf| nbf.max(iat));
        let latest_start = now.saturating_add(leeway);
        if raw.nbf.is_some_and(|nbf| nbf > latest_start) || iat > latest_start {
            return Err(ValidationError::NotYetValid);
        }
        if iss != self.issuer {
            return Err(ValidationError::WrongIssuer);
        }
        if !aud
            .iter()
            .any(|a| self.audiences.iter().any(|ours| ours == a))
        {
            return Err(ValidationError::WrongAudience);
        }

        let scopes = match raw.scp {
            Some(scp) => scp,
            None => raw
                .scope
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        let mut user_info = raw.user_info.unwrap_or_default();
        let (default_subject, default_name) = match kind {
            PrincipalKind::App => (&client_id, Some(&client_id)),
            PrincipalKind::User => (&sub, None),
        };
        if user_info.subject.is_empty() {
            user_info.subject.clone_from(default_subject);
        }
        if let Some(fallback) = default_name {
            if user_info.name.is_empty() {
                user_info.name.clone_from(fallback);
            }
            if user_info.preferred_username.is_empty() {
                user_info.preferred_username.clone_from(fallback);
            }
        }
        if user_info.additional_claims.is_empty() {
            let mut claims = Map::new();
            claims.insert("iss".into(), Value::String(iss));
            claims.insert("sub".into(), Value::String(sub.clone()));
            claims.insert("aud".into(), string_array(&aud));
            claims.insert("exp".into(), Value::from(exp));
            claims.insert("iat".into(), Value::from(iat));
            if let Some(nbf) = raw.nbf {
                claims.insert("nbf".into(), Value::from(nbf));
            }
            claims.insert("jti".into(), Value::String(jti.clone()));
            claims.insert("client_id".into(), Value::String(client_id.clone()));
            claims.insert("identity_type".into(), Value::from(kind.as_str()));
            if let Some(sid) = &raw.sid {
                claims.insert("sid".into(), Value::String(sid.clone()));
            }
            claims.insert("scp".into(), string_array(&scopes));
            if let Some(scope) = raw.scope {
                claims.insert("scope".into(), Value::String(scope));
            }
            user_info.additional_claims = claims;
        }
        let identity = Identity {
            subject: sub,
            client_id,
            kind,
            scopes,
            audience: aud,
            token_id: jti,
            expires_at: exp,
            issued_at: iat,
            session_id: raw.sid,
            user_info,
            memo: Default::default(),
        };
        Ok((identity, not_before))
    }
}

fn string_array(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
}

fn is_access_token_typ(typ: &str) -> bool {
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)
}

struct OneOrMany;

impl<'de> Visitor<'de> for OneOrMany {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        Ok(vec![v.to_owned()])
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Vec<String>, E> {
        Ok(vec![v])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
        while let Some(s) = seq.next_element::<String>()? {
            out.push(s);
        }
        Ok(out)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(OneOrMany)
}

fn opt_one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null, a string or an array of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            one_or_many(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

#[cfg(test)]
mod tests;
