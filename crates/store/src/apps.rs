//! Confidential apps (API-key clients) registered at run time.
//!
//! Static clients from the configuration file are not stored here; they live in memory in the server.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;
use crate::text::{self, check, check_list};

/// Persistence of apps created at run time, keyed by `client_id`.
#[async_trait]
pub trait AppStore: Send + Sync {
    /// Stores a new app and returns it as stored (`updated_at` = `created_at`).
    ///
    /// Fails with [`StoreError::AlreadyExists`] when the `client_id` is taken.
    async fn create_app(&self, app: &NewApp) -> Result<AppRecord, StoreError>;

    /// Looks an app up by client id.
    async fn get_app(&self, client_id: &str) -> Result<Option<AppRecord>, StoreError>;

    /// One page of apps ordered by `client_id` (bytewise, identically on every backend), starting after `after`.
    ///
    /// Pass the last `client_id` of a page as `after` to get the next one; a page shorter than `limit` is the last.
    async fn list_apps(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AppRecord>, StoreError>;

    /// One page of the apps `filter` selects, ordered by `client_id` exactly like [`AppStore::list_apps`] (whose
    /// result equals this one's with the default filter), starting after `after`.
    ///
    /// Filter values are compared exactly; a value containing NUL (which no stored app has) selects nothing.
    async fn list_apps_by(
        &self,
        filter: &AppFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AppRecord>, StoreError>;

    /// Applies the fields set in `update`; returns the updated app, or `None` if there is no such app.
    async fn update_app(
        &self,
        client_id: &str,
        update: &AppUpdate,
    ) -> Result<Option<AppRecord>, StoreError>;

    /// Deletes an app; returns whether it existed.
    async fn delete_app(&self, client_id: &str) -> Result<bool, StoreError>;
}

/// Which apps a listing returns.
///
/// Each field that is set must match exactly; the default selects every app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppFilter {
    /// Only apps created by this subject.
    pub created_by: Option<String>,
    /// Only apps of this organization (`Some("")` selects the apps without one).
    pub organization: Option<String>,
}

impl AppFilter {
    /// Whether no stored app can match: stored text never contains NUL (and PostgreSQL could not even compare it).
    pub(crate) fn matches_nothing(&self) -> bool {
        [&self.created_by, &self.organization]
            .into_iter()
            .flatten()
            .any(|v| !text::storable_key(v))
    }
}

/// An app to be created.
///
/// `Debug` prints `secret_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApp {
    /// The OAuth client id; unique.
    pub client_id: String,
    /// Human-readable name.
    pub client_name: String,
    /// Owning organization (may be empty).
    pub organization: String,
    /// The encoded secret hash (e.g. `sha256:<hex>`); opaque to the store.
    pub secret_hash: String,
    /// OAuth grant types the app may use.
    pub grant_types: Vec<String>,
    /// Scopes the app may request.
    pub scopes: Vec<String>,
    /// Audiences the app may request.
    pub audience: Vec<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Subject of whoever created the app.
    pub created_by: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// An app as stored.
///
/// `Debug` prints `secret_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The OAuth client id; unique.
    pub client_id: String,
    /// Human-readable name.
    pub client_name: String,
    /// Owning organization (may be empty).
    pub organization: String,
    /// The encoded secret hash; opaque to the store.
    pub secret_hash: String,
    /// OAuth grant types the app may use.
    pub grant_types: Vec<String>,
    /// Scopes the app may request.
    pub scopes: Vec<String>,
    /// Audiences the app may request.
    pub audience: Vec<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Subject of whoever created the app.
    pub created_by: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Time of the last update (or creation), unix seconds.
    pub updated_at: i64,
}

/// A partial update of an app: `None` leaves a field unchanged, `Some(vec![])` empties a list.
///
/// `client_id`, `organization`, `created_by` and `created_at` cannot change. Start from [`AppUpdate::at`]:
/// `AppUpdate { scopes: Some(scopes), ..AppUpdate::at(now) }`. `Debug` prints `secret_hash` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppUpdate {
    /// New human-readable name.
    pub client_name: Option<String>,
    /// New encoded secret hash (secret rotation).
    pub secret_hash: Option<String>,
    /// New grant types.
    pub grant_types: Option<Vec<String>>,
    /// New scopes.
    pub scopes: Option<Vec<String>>,
    /// New audiences.
    pub audience: Option<Vec<String>>,
    /// New redirect URIs.
    pub redirect_uris: Option<Vec<String>>,
    /// Time of this update, unix seconds; always written, even when no other field is set.
    pub updated_at: i64,
}

impl AppUpdate {
    /// An update that changes nothing but `updated_at`.
    pub fn at(updated_at: i64) -> Self {
        AppUpdate {
            client_name: None,
            secret_hash: None,
            grant_types: None,
            scopes: None,
            audience: None,
            redirect_uris: None,
            updated_at,
        }
    }
}

impl NewApp {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check("client_id", &self.client_id)?;
        check("client_name", &self.client_name)?;
        check("organization", &self.organization)?;
        check("secret_hash", &self.secret_hash)?;
        check_list("grant_types", &self.grant_types)?;
        check_list("scopes", &self.scopes)?;
        check_list("audience", &self.audience)?;
        check_list("redirect_uris", &self.redirect_uris)?;
        check("created_by", &self.created_by)
    }

    pub(crate) fn to_record(&self) -> AppRecord {
        AppRecord {
            client_id: self.client_id.clone(),
            client_name: self.client_name.clone(),
            organization: self.organization.clone(),
            secret_hash: self.secret_hash.clone(),
            grant_types: self.grant_types.clone(),
            scopes: self.scopes.clone(),
            audience: self.audience.clone(),
            redirect_uris: self.redirect_uris.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            updated_at: self.created_at,
        }
    }
}

impl AppUpdate {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let opt = |field, v: &Option<String>| v.as_deref().map_or(Ok(()), |v| check(field, v));
        let list =
            |field, v: &Option<Vec<String>>| v.as_deref().map_or(Ok(()), |v| check_list(field, v));
        opt("client_name", &self.client_name)?;
        opt("secret_hash", &self.secret_hash)?;
        list("grant_types", &self.grant_types)?;
        list("scopes", &self.scopes)?;
        list("audience", &self.audience)?;
        list("redirect_uris", &self.redirect_uris)
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for NewApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApp")
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .field("organization", &self.organization)
            .field("secret_hash", &REDACTED)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("redirect_uris", &self.redirect_uris)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for AppRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRecord")
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .field("organization", &self.organization)
            .field("secret_hash", &REDACTED)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("redirect_uris", &self.redirect_uris)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl fmt::Debug for AppUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppUpdate")
            .field("client_name", &self.client_name)
            .field("secret_hash", &self.secret_hash.as_ref().map(|_| REDACTED))
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("redirect_uris", &self.redirect_uris)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret_hash() {
        let app = NewApp {
            client_id: "c".into(),
            client_name: "n".into(),
            organization: String::new(),
            secret_hash: "sha256:deadbeef".into(),
            grant_types: vec![],
            scopes: vec![],
            audience: vec![],
            redirect_uris: vec![],
            created_by: "me".into(),
            created_at: 1,
        };
        let update = AppUpdate {
            secret_hash: Some("sha256:deadbeef".into()),
            ..AppUpdate::at(2)
        };
        for text in [
            format!("{app:?}"),
            format!("{:?}", app.to_record()),
            format!("{update:?}"),
        ] {
            assert!(!text.contains("deadbeef"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }
}
