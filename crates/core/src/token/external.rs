//! Access tokens of an external authorization server (`auth.appAuth.authServerType: External`).
//!
//! The server fetches the external metadata and its `jwks_uri` and hands them to a [`RemoteAuthority`]; a
//! validator made by [`TokenValidator::external`](super::TokenValidator::external) checks tokens against the
//! authority's current keys and issuer and against [`ExternalRules`]. What an external token must carry is what
//! identity providers actually issue (Okta, Entra ID, Keycloak, Auth0, …), not our own claims: only `exp` is
//! required, and who the principal is and what it may do are read from the claims those providers use.
//!
//! The key set is read-mostly: every validation that misses the memo takes one snapshot (an `Arc` clone under a
//! read lock) and uses it throughout, so a concurrent update never mixes two key sets in one validation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{HEADER_STACK_BYTES, JoseHeader, ValidationError, decode_header, split_token};
use crate::identity::{Identity, PrincipalKind, UserInfo};
use crate::keys::{MAX_RSA_BITS, MIN_RSA_BITS};

/// Keys kept from one key set at most. Real sets hold a handful; the bound caps what a token without `kid`
/// (checked against every key of its type) can cost.
pub const MAX_REMOTE_KEYS: usize = 32;

/// Why a key set was not taken; the keys held before stay in use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JSON Web Key Set: {0}")]
    Malformed(String),
    /// No key of the set can verify an accepted algorithm.
    #[error(
        "the key set holds no usable signature key ({found} keys; usable are RSA keys of 2048 to 8192 bits and \
         EC P-256 / P-384 keys, not meant for encryption, for RS256/384/512, PS256/384/512, ES256 or ES384)"
    )]
    NoUsableKeys {
        /// How many keys the set holds.
        found: usize,
    },
}

/// What the external authorization server says: the issuer its tokens must carry (from its metadata) and the
/// keys that sign them (its JWKS). Starts empty; the server's fetcher replaces both with
/// [`RemoteAuthority::update`] while validations read them.
pub struct RemoteAuthority {
    state: RwLock<Arc<Snapshot>>,
    /// A copy of the current snapshot's epoch, so a memo hit checks it without the lock.
    epoch: AtomicU64,
}

/// One consistent view of the authority.
struct Snapshot {
    issuer: Option<String>,
    keys: Vec<RemoteKey>,
    /// Bumped whenever an update drops or changes a key or changes the issuer: tokens verified under an older
    /// epoch are verified again rather than answered from the memo.
    epoch: u64,
}

/// The type of a usable key, which decides the algorithms it verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    Rsa,
    EcP256,
    EcP384,
}

struct RemoteKey {
    kid: Option<String>,
    key_type: KeyType,
    /// The JWK's `alg`, when it names one: the key then verifies that algorithm only (RFC 7517 §4.4).
    alg: Option<Algorithm>,
    decoding: DecodingKey,
    /// The JWK's key material, to tell whether an update dropped this key.
    params: AlgorithmParameters,
}

impl RemoteKey {
    fn verifies(&self, alg: Algorithm) -> bool {
        let type_fits = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.key_type == KeyType::Rsa,
            Algorithm::ES256 => self.key_type == KeyType::EcP256,
            Algorithm::ES384 => self.key_type == KeyType::EcP384,
            _ => false,
        };
        type_fits && self.alg.is_none_or(|a| a == alg)
    }

    fn same_as(&self, other: &RemoteKey) -> bool {
        self.kid == other.kid && self.alg == other.alg && self.params == other.params
    }
}

impl Default for RemoteAuthority {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RemoteAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("RemoteAuthority")
            .field("issuer", &snapshot.issuer)
            .field("keys", &snapshot.keys.len())
            .field("epoch", &snapshot.epoch)
            .finish()
    }
}

impl RemoteAuthority {
    /// An authority that knows nothing yet: no issuer, no keys (every token fails with
    /// [`ValidationError::UnknownKey`] until the first [`update`](Self::update)).
    pub fn new() -> Self {
        Self {
            state: RwLock::new(Arc::new(Snapshot {
                issuer: None,
                keys: Vec::new(),
                epoch: 0,
            })),
            epoch: AtomicU64::new(0),
        }
    }

    /// Replaces the issuer and the keys at once: `issuer` is what tokens must carry as `iss` (`None`: not known,
    /// so tokens fail the issuer check while it is on), `jwks_json` an RFC 7517 key set. Keeps every key usable
    /// to verify signatures — RSA keys (2048 to 8192 bits) for RS256/384/512 and PS256/384/512, EC P-256 and
    /// P-384 keys for ES256 and ES384, not marked for encryption, restricted to their `alg` when it names one —
    /// and skips the others (symmetric keys above all: a token "signed" with a published secret must never
    /// verify). Returns how many keys were kept.
    ///
    /// A set that does not parse, or holds no usable key, is refused and changes nothing: the issuer and the
    /// keys held before stay in use.
    pub fn update(&self, issuer: Option<String>, jwks_json: &[u8]) -> Result<usize, KeySetError> {
        let keys = parse_key_set(jwks_json)?;
        let kept = keys.len();
        let issuer = issuer.filter(|i| !i.is_empty());
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let dropped_something = state.issuer != issuer
            || state
                .keys
                .iter()
                .any(|old| !keys.iter().any(|new| new.same_as(old)));
        let epoch = if dropped_something {
            state.epoch.wrapping_add(1)
        } else {
            state.epoch
        };
        *state = Arc::new(Snapshot {
            issuer,
            keys,
            epoch,
        });
        // Stored while the write lock is held, after the snapshot: whoever reads the new epoch sees the new keys.
        self.epoch.store(epoch, Ordering::Release);
        Ok(kept)
    }

    /// Whether a key with id `kid` is held.
    pub fn has_key(&self, kid: &str) -> bool {
        self.snapshot()
            .keys
            .iter()
            .any(|k| k.kid.as_deref() == Some(kid))
    }

    /// How many keys are held.
    pub fn key_count(&self) -> usize {
        self.snapshot().keys.len()
    }

    /// The issuer tokens must carry, once known.
    pub fn issuer(&self) -> Option<String> {
        self.snapshot().issuer.clone()
    }

    /// The current key-set epoch: it changes whenever an update drops or changes a key or the issuer.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The set as it arrives: each key parsed on its own, so one key of a kind jsonwebtoken does not model (an
/// X25519 or secp256k1 key, say) costs that key, not the whole set.
#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Value>,
}

fn parse_key_set(json: &[u8]) -> Result<Vec<RemoteKey>, KeySetError> {
    let raw: RawKeySet =
        serde_json::from_slice(json).map_err(|e| KeySetError::Malformed(e.to_string()))?;
    let found = raw.keys.len();
    let keys: Vec<RemoteKey> = raw
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(usable_key)
        .take(MAX_REMOTE_KEYS)
        .collect();
    if keys.is_empty() {
        return Err(KeySetError::NoUsableKeys { found });
    }
    Ok(keys)
}

/// The key, if it can verify one of the accepted algorithms.
fn usable_key(jwk: Jwk) -> Option<RemoteKey> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let alg = match common.key_algorithm {
        None => None,
        Some(a) => Some(accepted_key_algorithm(a)?),
    };
    let (key_type, decoding) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = b64(&rsa.n)?;
            let e = b64(&rsa.e)?;
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&(n.len() * 8)) || e.is_empty() {
                return None;
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(n, e))
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (key_type, coordinate_len) = match ec.curve {
                EllipticCurve::P256 => (KeyType::EcP256, 32),
                EllipticCurve::P384 => (KeyType::EcP384, 48),
                _ => return None,
            };
            if b64(&ec.x)?.len() != coordinate_len || b64(&ec.y)?.len() != coordinate_len {
                return None;
            }
            (key_type, DecodingKey::from_jwk(&jwk).ok()?)
        }
        // Symmetric and Edwards keys: never (HS* is refused outright; EdDSA is not among the accepted).
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::OctetKeyPair(_) => return None,
    };
    let key = RemoteKey {
        kid: jwk.common.key_id.clone(),
        key_type,
        alg,
        decoding,
        params: jwk.algorithm,
    };
    // A key whose `alg` does not suit its type would never verify anything.
    match alg {
        Some(a) if !key.verifies(a) => None,
        _ => Some(key),
    }
}

fn accepted_key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// The algorithm named by a token's `alg`, if accepted. Matched on the exact string: `none`, HS*, EdDSA and
/// anything unknown are refused before a key is looked at.
fn accepted_token_algorithm(alg: Option<&str>) -> Result<Algorithm, ValidationError> {
    Ok(match alg {
        Some("RS256") => Algorithm::RS256,
        Some("RS384") => Algorithm::RS384,
        Some("RS512") => Algorithm::RS512,
        Some("PS256") => Algorithm::PS256,
        Some("PS384") => Algorithm::PS384,
        Some("PS512") => Algorithm::PS512,
        Some("ES256") => Algorithm::ES256,
        Some("ES384") => Algorithm::ES384,
        _ => return Err(ValidationError::UnsupportedAlgorithm),
    })
}

/// Base64url, tolerating the padding some providers leave on JWK members.
fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Identity providers write `typ` as `JWT`, `at+jwt` (RFC 9068), with or without `application/`, or not at all.
fn is_external_typ(typ: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case("jwt") || typ.eq_ignore_ascii_case("at+jwt")
}

/// How an external token's claims are checked beyond its signature and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRules {
    /// Whether `iss` must equal the authority's issuer (`flyteauth.externalIssuerCheck`, on by default;
    /// flyteadmin has no such check).
    pub check_issuer: bool,
    /// The audiences a token may be for: its `aud` (a string or an array) must hold one of them. Compared
    /// ignoring one trailing '/' on either side. Empty accepts no token.
    pub audiences: Vec<String>,
}

/// The validator's state in external mode.
pub(super) struct ExternalMode {
    authority: Arc<RemoteAuthority>,
    check_issuer: bool,
    /// The rules' audiences without their trailing '/'.
    audiences: Vec<String>,
}

impl fmt::Debug for ExternalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalMode")
            .field("authority", &self.authority)
            .field("check_issuer", &self.check_issuer)
            .field("audiences", &self.audiences)
            .finish()
    }
}

fn without_trailing_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

/// `grant_type` values meaning an application authenticated as itself (Auth0 writes a hyphen).
const CLIENT_CREDENTIALS: [&str; 2] = ["client_credentials", "client-credentials"];

impl ExternalMode {
    pub(super) fn new(authority: Arc<RemoteAuthority>, rules: ExternalRules) -> Self {
        let mut audiences: Vec<String> = Vec::with_capacity(rules.audiences.len());
        for a in &rules.audiences {
            let a = without_trailing_slash(a.trim());
            if !a.is_empty() && !audiences.iter().any(|x| x == a) {
                audiences.push(a.to_owned());
            }
        }
        Self {
            authority,
            check_issuer: rules.check_issuer,
            audiences,
        }
    }

    pub(super) fn authority(&self) -> &Arc<RemoteAuthority> {
        &self.authority
    }

    /// Full validation: header, key, signature, claims. Returns the identity, the later of `iat` and `nbf`
    /// (`i64::MIN` when the token has neither) and the epoch of the key set used.
    ///
    /// A token naming a `kid` is checked against the keys of that id only; one without is checked against every
    /// key of its algorithm's type (at most [`MAX_REMOTE_KEYS`] signature checks).
    pub(super) fn verify(
        &self,
        token: &str,
        now: i64,
        leeway: i64,
    ) -> Result<(Identity, i64, u64), ValidationError> {
        let parts = split_token(token)?;
        let mut stack = [0u8; HEADER_STACK_BYTES];
        let mut heap = Vec::new();
        let header_json = decode_header(parts.header_b64, &mut stack, &mut heap)?;
        let header: JoseHeader<'_> =
            serde_json::from_slice(header_json).map_err(|_| ValidationError::Malformed)?;
        let alg = accepted_token_algorithm(header.alg.as_deref())?;
        // No critical header parameter is understood here (RFC 7515 §4.1.11).
        if header.crit.is_some() || !header.typ.as_deref().is_none_or(is_external_typ) {
            return Err(ValidationError::Malformed);
        }

        let snapshot = self.authority.snapshot();
        let kid = header.kid.as_deref();
        let mut candidates = snapshot
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .peekable();
        if candidates.peek().is_none() {
            return Err(ValidationError::UnknownKey);
        }
        let mut tried = 0usize;
        let mut verified = false;
        for key in candidates.filter(|k| k.verifies(alg)) {
            tried += 1;
            match jsonwebtoken::crypto::verify(
                parts.signature_b64,
                parts.message,
                &key.decoding,
                alg,
            ) {
                Ok(true) => {
                    verified = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => match ValidationError::from_jwt(e.kind()) {
                    ValidationError::BadSignature => {}
                    other => return Err(other),
                },
            }
        }
        if !verified {
            // Without a kid and no key of the token's type, a newer set may have one; with a kid that names a key
            // of another type, or keys that do not verify, it is the signature that is wrong.
            return Err(if tried == 0 && kid.is_none() {
                ValidationError::UnknownKey
            } else {
                ValidationError::BadSignature
            });
        }

        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload_b64)
            .map_err(|_| ValidationError::Malformed)?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| ValidationError::Malformed)?;
        let (identity, not_before) =
            self.check_claims(claims, token, snapshot.issuer.as_deref(), now, leeway)?;
        Ok((identity, not_before, snapshot.epoch))
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        token: &str,
        expected_issuer: Option<&str>,
        now: i64,
        leeway: i64,
    ) -> Result<(Identity, i64), ValidationError> {
        use ValidationError::MissingClaim;
        let exp = time_claim(&claims, "exp")?.ok_or(MissingClaim("exp"))?;
        let iat = time_claim(&claims, "iat")?;
        let nbf = time_claim(&claims, "nbf")?;
        if now >= exp.saturating_add(leeway) {
            return Err(ValidationError::Expired);
        }
        let latest_start = now.saturating_add(leeway);
        if nbf.is_some_and(|t| t > latest_start) || iat.is_some_and(|t| t > latest_start) {
            return Err(ValidationError::NotYetValid);
        }
        if self.check_issuer {
            let expected = expected_issuer.ok_or(ValidationError::WrongIssuer)?;
            let iss = str_claim(&claims, "iss")?.ok_or(MissingClaim("iss"))?;
            if iss != expected {
                return Err(ValidationError::WrongIssuer);
            }
        }
        let audience = strings_claim(&claims, "aud")?.ok_or(MissingClaim("aud"))?;
        if !audience.iter().any(|a| {
            let a = without_trailing_slash(a);
            self.audiences.iter().any(|ours| ours == a)
        }) {
            return Err(ValidationError::WrongAudience);
        }

        let client_claim = ["client_id", "azp", "cid"]
            .into_iter()
            .map(|name| str_claim(&claims, name))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .find(|c| !c.is_empty());
        let sub = str_claim(&claims, "sub")?.filter(|s| !s.is_empty());
        let (mut scopes, has_scope_claim) = match strings_or_spaced(&claims, "scp")? {
            Some(scp) => (scp, true),
            None => match strings_or_spaced(&claims, "scope")? {
                Some(scope) => (scope, true),
                None => (Vec::new(), false),
            },
        };
        // flyteadmin's rule: a token naming neither a client nor any scope is a user's with full access.
        if client_claim.is_none() && !has_scope_claim {
            scopes = vec!["all".to_owned()];
        }
        let client_credentials = ["gty", "grant_type"]
            .into_iter()
            .any(|name| names_any(&claims, name, &CLIENT_CREDENTIALS));
        // Entra ID marks app-only tokens with the optional `idtyp` claim; their `sub` is not the client id.
        let entra_app = claims.get("idtyp").and_then(Value::as_str) == Some("app");
        let kind = if sub.is_none() || sub == client_claim || client_credentials || entra_app {
            PrincipalKind::App
        } else {
            PrincipalKind::User
        };
        // The audience check passed, so there is a first audience.
        let client_id = client_claim
            .or_else(|| audience.first().map(String::as_str))
            .unwrap_or_default()
            .to_owned();
        let subject = sub.map_or_else(|| client_id.clone(), str::to_owned);
        let token_id = match str_claim(&claims, "jti")? {
            Some(jti) if !jti.is_empty() => jti.to_owned(),
            // Revocation and the memo need an id; the token's digest names exactly this token.
            _ => hex::encode(Sha256::digest(token.as_bytes())),
        };
        let session_id = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut user_info = UserInfo {
            subject: subject.clone(),
            name: text("name"),
            preferred_username: text("preferred_username"),
            given_name: text("given_name"),
            family_name: text("family_name"),
            email: text("email"),
            picture: text("picture"),
            additional_claims: Map::new(),
        };
        if kind == PrincipalKind::App {
            if user_info.name.is_empty() {
                user_info.name.clone_from(&client_id);
            }
            if user_info.preferred_username.is_empty() {
                user_info.preferred_username.clone_from(&client_id);
            }
        }
        user_info.additional_claims = claims;
        let identity = Identity {
            subject,
            client_id,
            kind,
            scopes,
            audience,
            token_id,
            expires_at: exp,
            // Without `iat`, the token counts as issued at the epoch: a revocation of its user or app covers it.
            issued_at: iat.or(nbf).unwrap_or(0),
            session_id,
            user_info,
            memo: Default::default(),
        };
        let not_before = match (iat, nbf) {
            (Some(a), Some(b)) => a.max(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => i64::MIN,
        };
        Ok((identity, not_before))
    }
}

/// A claim that must be a string when present (`null` counts as absent).
fn str_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ValidationError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::Malformed),
    }
}

/// A NumericDate (RFC 7519 §2): whole or fractional seconds; fractions are dropped.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ValidationError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.as_u64().is_some() {
                Ok(Some(i64::MAX))
            } else {
                match n.as_f64() {
                    // `as` saturates out-of-range floats, which is what a far-off time should become.
                    Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
                    _ => Err(ValidationError::Malformed),
                }
            }
        }
        Some(_) => Err(ValidationError::Malformed),
    }
}

/// A claim holding one string or an array of strings.
fn strings_claim(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, ValidationError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => string_items(items).map(Some),
        Some(_) => Err(ValidationError::Malformed),
    }
}

/// Scopes: an array of strings, or one space-separated string.
fn strings_or_spaced(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, ValidationError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(str::to_owned).collect())),
        Some(Value::Array(items)) => string_items(items).map(Some),
        Some(_) => Err(ValidationError::Malformed),
    }
}

fn string_items(items: &[Value]) -> Result<Vec<String>, ValidationError> {
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or(ValidationError::Malformed)
        })
        .collect()
}

/// Whether the claim is one of `values`, or an array holding one.
fn names_any(claims: &Map<String, Value>, name: &str, values: &[&str]) -> bool {
    match claims.get(name) {
        Some(Value::String(s)) => values.contains(&s.as_str()),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|s| values.contains(&s)),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
