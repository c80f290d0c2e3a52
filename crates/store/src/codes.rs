//! Single-use authorization codes (OAuth 2.0 authorization code grant).

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::{check, check_list};

/// Persistence of authorization codes, keyed by the code's hash.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Stores a new, unredeemed code.
    ///
    /// Fails with [`StoreError::AlreadyExists`] (entity `"authorization code"`, key `<redacted>`) when the hash is
    /// already stored.
    async fn put_code(&self, code: &NewCode) -> Result<(), StoreError>;

    /// Redeems a code, atomically: if it was not redeemed yet, `redeemed_at` becomes `now`.
    ///
    /// Returns `None` for an unknown code. Otherwise returns the code as it was before this call together with
    /// whether this call redeemed it: `(record with redeemed_at None, true)` for exactly one caller, however many
    /// race; `(record with its redeemed_at, false)` for every later one, so a replay can be detected. Expiry is
    /// not checked: compare `expires_at` yourself.
    async fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
    ) -> Result<Option<(CodeRecord, bool)>, StoreError>;

    /// Deletes codes that expired before `now` (`expires_at < now`), redeemed or not; returns how many.
    async fn purge_expired_codes(&self, now: i64) -> Result<u64, StoreError>;
}

/// A code to be stored.
///
/// `Debug` prints `code_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewCode {
    /// Hash of the code (e.g. SHA-256 hex); the code itself is never stored.
    pub code_hash: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The PKCE code challenge.
    pub code_challenge: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted audiences.
    pub audience: Vec<String>,
    /// Subject of the user who authorized.
    pub subject: String,
    /// User name of the user who authorized.
    pub username: String,
    /// The refresh/login family the tokens issued for this code will belong to.
    pub family_id: String,
    /// The OpenID Connect nonce (may be empty).
    pub nonce: String,
    /// When the user authenticated, unix seconds.
    pub auth_time: i64,
    /// When the code was issued, unix seconds.
    pub created_at: i64,
    /// When the code stops being valid, unix seconds.
    pub expires_at: i64,
}

/// A code as stored.
///
/// `Debug` prints `code_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// Hash of the code.
    pub code_hash: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The PKCE code challenge.
    pub code_challenge: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted audiences.
    pub audience: Vec<String>,
    /// Subject of the user who authorized.
    pub subject: String,
    /// User name of the user who authorized.
    pub username: String,
    /// The refresh/login family of the tokens issued for this code.
    pub family_id: String,
    /// The OpenID Connect nonce (may be empty).
    pub nonce: String,
    /// When the user authenticated, unix seconds.
    pub auth_time: i64,
    /// When the code was issued, unix seconds.
    pub created_at: i64,
    /// When the code stops being valid, unix seconds.
    pub expires_at: i64,
    /// When the code was redeemed, unix seconds; `None` while unused.
    pub redeemed_at: Option<i64>,
}

impl NewCode {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("code_hash", &self.code_hash)?;
        check("client_id", &self.client_id)?;
        check("redirect_uri", &self.redirect_uri)?;
        check("code_challenge", &self.code_challenge)?;
        check_list("scopes", &self.scopes)?;
        check_list("audience", &self.audience)?;
        check("subject", &self.subject)?;
        check("username", &self.username)?;
        check("family_id", &self.family_id)?;
        check("nonce", &self.nonce)
    }

    #[cfg(test)]
    pub(crate) fn to_record(&self) -> CodeRecord {
        CodeRecord {
            code_hash: self.code_hash.clone(),
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            code_challenge: self.code_challenge.clone(),
            scopes: self.scopes.clone(),
            audience: self.audience.clone(),
            subject: self.subject.clone(),
            username: self.username.clone(),
            family_id: self.family_id.clone(),
            nonce: self.nonce.clone(),
            auth_time: self.auth_time,
            created_at: self.created_at,
            expires_at: self.expires_at,
            redeemed_at: None,
        }
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for NewCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCode")
            .field("code_hash", &REDACTED)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("code_challenge", &self.code_challenge)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("family_id", &self.family_id)
            .field("nonce", &self.nonce)
            .field("auth_time", &self.auth_time)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for CodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeRecord")
            .field("code_hash", &REDACTED)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("code_challenge", &self.code_challenge)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("family_id", &self.family_id)
            .field("nonce", &self.nonce)
            .field("auth_time", &self.auth_time)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("redeemed_at", &self.redeemed_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_code_hash() {
        let code = NewCode {
            code_hash: "deadbeef".into(),
            client_id: "flytectl".into(),
            redirect_uri: "http://localhost/cb".into(),
            code_challenge: "c".into(),
            scopes: vec![],
            audience: vec![],
            subject: "s".into(),
            username: "u".into(),
            family_id: "f".into(),
            nonce: String::new(),
            auth_time: 1,
            created_at: 1,
            expires_at: 2,
        };
        for text in [format!("{code:?}"), format!("{:?}", code.to_record())] {
            assert!(!text.contains("deadbeef"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }
}
