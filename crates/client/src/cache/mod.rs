//! The token cache.
//!
//! Tokens live in the OS keyring under the layout of the Python `flyte` 2.x SDK, so a login by either is used
//! by the other: service `host[:port]` ([`crate::config::Endpoint::cache_service`]), user `tokens`, value the JSON
//! `{"access_token": "…", "refresh_token": "…" | null}`. On Linux that is the Secret Service (GNOME Keyring,
//! KWallet) with the attributes Python's `keyring` writes; on macOS the login keychain through
//! `/usr/bin/security`, as the SDK does. When no keyring answers (no D-Bus session, a locked or absent
//! collection, a 3 s timeout) or `disableKeyring` is set, the cache is a 0600 JSON file,
//! `$XDG_STATE_HOME/flyte/tokens.json` (default `~/.local/state/flyte/tokens.json`).
//!
//! Which store a process uses is decided once by [`TokenCache::open`]; a keyring that stops answering later
//! (an error or the 3 s timeout on any operation) hands that operation and the rest of the process to the file,
//! so a command never hangs on a keyring and never mixes the two within one run.

mod file;
mod layout;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "linux")]
mod secret_service;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Secret;
use file::FileStore;
use layout::{LEGACY_USERS, TOKENS_USER};

#[cfg(target_os = "macos")]
use self::macos as os_keyring;
#[cfg(target_os = "linux")]
use self::secret_service as os_keyring;

/// Platforms without a keyring this crate speaks to: always the file.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod os_keyring {
    use super::KeyringError;
    use crate::Secret;

    fn none() -> KeyringError {
        KeyringError::Unavailable("no keyring support on this platform".to_owned())
    }
    pub(super) async fn probe() -> Result<(), KeyringError> {
        Err(none())
    }
    pub(super) async fn get(_: &str, _: &str) -> Result<Option<Secret>, KeyringError> {
        Err(none())
    }
    pub(super) async fn set(_: &str, _: &str, _: &Secret) -> Result<(), KeyringError> {
        Err(none())
    }
    pub(super) async fn delete(_: &str, _: &str) -> Result<bool, KeyringError> {
        Err(none())
    }
}

/// The longest any one keyring operation may take before the file is used instead.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a keyring operation did not happen.
#[derive(Debug)]
enum KeyringError {
    /// No keyring answered (no bus, no service, no default collection, no answer in time).
    Unavailable(String),
    /// The keyring answered but refused (locked and not unlocked, dismissed prompt, tool failure).
    Refused(String),
}

impl std::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) | Self::Refused(why) => f.write_str(why),
        }
    }
}

async fn bounded<T>(
    operation: impl Future<Output = Result<T, KeyringError>>,
) -> Result<T, KeyringError> {
    tokio::time::timeout(KEYRING_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            Err(KeyringError::Unavailable(format!(
                "no answer within {}s",
                KEYRING_TIMEOUT.as_secs()
            )))
        })
}

/// Why the cache cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache file cannot be read, written or given mode 0600.
    #[error("token cache {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The keyring refused an operation it had accepted to start (locked item, dismissed prompt).
    #[error("keyring: {0}")]
    Keyring(String),
}

/// What the cache holds for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedTokens {
    /// The access token; empty when only a refresh token was stored (the SDK allows that).
    pub access_token: Secret,
    /// The refresh token, if the flow gave one.
    pub refresh_token: Option<Secret>,
}

/// Where the tokens of this process are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// The OS keyring.
    Keyring,
    /// The 0600 file.
    File,
}

/// Options for [`TokenCache::open`].
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// Skip the keyring (`admin.disableKeyring`).
    pub disable_keyring: bool,
    /// The file to use instead of the default path (tests, `FLYTE_TOKEN_CACHE_FILE`).
    pub file: Option<PathBuf>,
}

/// The token cache of one process.
#[derive(Debug)]
pub struct TokenCache {
    /// Whether the keyring is (still) in use.
    keyring: AtomicBool,
    /// The file, or why no path could be chosen for it.
    file: Result<FileStore, String>,
}

impl TokenCache {
    /// Picks the keyring if one answers within the timeout, else the file.
    pub async fn open(options: &CacheOptions) -> Self {
        Self::open_with(options, &|name| std::env::var_os(name)).await
    }

    /// [`Self::open`] reading the environment through `env`.
    async fn open_with(
        options: &CacheOptions,
        env: &(dyn Fn(&str) -> Option<OsString> + Sync),
    ) -> Self {
        let file = match &options.file {
            Some(path) => Ok(path.clone()),
            None => file::default_path(env),
        }
        .map(FileStore::new);
        let keyring = if options.disable_keyring {
            tracing::debug!("keyring disabled by the configuration; using the token cache file");
            false
        } else if cfg!(target_os = "linux")
            && env("DBUS_SESSION_BUS_ADDRESS").is_none_or(|a| a.is_empty())
        {
            tracing::debug!(
                "no D-Bus session (DBUS_SESSION_BUS_ADDRESS unset); using the token cache file"
            );
            false
        } else {
            match bounded(os_keyring::probe()).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(reason = %e, "keyring unavailable; using the token cache file");
                    false
                }
            }
        };
        Self {
            keyring: AtomicBool::new(keyring),
            file,
        }
    }

    /// Which store is in use.
    pub fn kind(&self) -> CacheKind {
        if self.keyring.load(Ordering::Relaxed) {
            CacheKind::Keyring
        } else {
            CacheKind::File
        }
    }

    /// The file this cache uses (now, or once the keyring fails).
    pub fn file_path(&self) -> Option<&std::path::Path> {
        self.file.as_ref().ok().map(FileStore::path)
    }

    fn give_up_keyring(&self, operation: &str, e: &KeyringError) {
        tracing::debug!(operation, reason = %e, "keyring failed; using the token cache file from now on");
        self.keyring.store(false, Ordering::Relaxed);
    }

    /// The tokens cached for `service`, if any. A value that is not the SDK's JSON counts as none.
    pub async fn load(&self, service: &str) -> Result<Option<CachedTokens>, CacheError> {
        if self.kind() == CacheKind::Keyring {
            match bounded(os_keyring::get(service, TOKENS_USER)).await {
                Ok(value) => {
                    let tokens = value.as_ref().and_then(|v| layout::decode(v.expose()));
                    if value.is_some() && tokens.is_none() {
                        tracing::debug!(
                            service,
                            "keyring item is not the SDK's token JSON; ignoring it"
                        );
                    }
                    return Ok(tokens);
                }
                Err(e) => self.give_up_keyring("load", &e),
            }
        }
        let Ok(store) = &self.file else {
            return Ok(None);
        };
        let (store, service) = (store.clone(), service.to_owned());
        blocking(store.path().to_owned(), move || store.load(&service)).await
    }

    /// Replaces the tokens cached for `service`.
    pub async fn store(&self, service: &str, tokens: &CachedTokens) -> Result<(), CacheError> {
        if self.kind() == CacheKind::Keyring {
            match bounded(os_keyring::set(
                service,
                TOKENS_USER,
                &layout::encode(tokens),
            ))
            .await
            {
                Ok(()) => return Ok(()),
                Err(e) => self.give_up_keyring("store", &e),
            }
        }
        let store = self.file.as_ref().map_err(|reason| CacheError::File {
            path: PathBuf::from("~/.local/state/flyte/tokens.json"),
            reason: reason.clone(),
        })?;
        let (store, service, tokens) = (store.clone(), service.to_owned(), tokens.clone());
        blocking(store.path().to_owned(), move || {
            store.store(&service, &tokens)
        })
        .await
    }

    /// Removes what is cached for `service` (also the SDK's legacy `access_token` / `refresh_token` items).
    /// Returns whether anything was there.
    ///
    /// The file entry goes too when the keyring is in use, so that signing out also ends a login an earlier
    /// run without a keyring left there. A keyring that refuses the deletion is an error: the login would
    /// otherwise survive a sign-out that reported success.
    pub async fn remove(&self, service: &str) -> Result<bool, CacheError> {
        let mut removed = false;
        if self.kind() == CacheKind::Keyring {
            for user in std::iter::once(TOKENS_USER).chain(LEGACY_USERS) {
                match bounded(os_keyring::delete(service, user)).await {
                    Ok(found) => removed |= found,
                    Err(KeyringError::Refused(why)) => return Err(CacheError::Keyring(why)),
                    Err(e) => {
                        self.give_up_keyring("remove", &e);
                        break;
                    }
                }
            }
        }
        let Ok(store) = &self.file else {
            return Ok(removed);
        };
        let (store, service) = (store.clone(), service.to_owned());
        Ok(blocking(store.path().to_owned(), move || store.remove(&service)).await? || removed)
    }
}

/// Runs file I/O (and the lock wait) off the async threads.
async fn blocking<T: Send + 'static>(
    path: PathBuf,
    work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(CacheError::File {
            path,
            reason: format!("the file task failed: {e}"),
        })
    })
}
