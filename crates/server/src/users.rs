//! Local accounts of the embedded identity provider: the operator commands (`flyteauth users …`) and the first
//! admin account of a fresh installation.
//!
//! The commands open the same database a server started with the same `--config` / `--data-dir` uses, so an
//! operator can add or disable people while it runs. Passwords come from a file or standard input, never argv.

use flyteauth_core::password::{check_new_password, hash_password};
use flyteauth_core::users::{new_subject, normalize_username};
use flyteauth_store::{NewUser, Revocation, RevocationKind, Store, StoreError, UserRecord};
use std::path::PathBuf;

/// Why a user command failed; each message is one line naming what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserCommandError {
    /// The user name is not acceptable.
    #[error("{0}")]
    Name(#[from] flyteauth_core::users::UserError),
    /// The password is not acceptable.
    #[error("{0}")]
    Password(#[from] flyteauth_core::password::PasswordError),
    /// The password could not be read.
    #[error("cannot read the password from {what}: {source}")]
    ReadPassword {
        /// `standard input` or the file's path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No such account.
    #[error("there is no user named {0:?}")]
    NoSuchUser(String),
    /// The name is taken.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// The store failed.
    #[error("database: {0}")]
    Store(StoreError),
    /// The password could not be hashed.
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

impl From<StoreError> for UserCommandError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Where a new password comes from.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// The first line of a file.
    File(PathBuf),
    /// The first line of standard input.
    Stdin,
}

impl PasswordSource {
    /// Reads the password: the first line, without its line ending.
    pub fn read(&self) -> Result<String, UserCommandError> {
        let (what, text) = match self {
            Self::File(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| UserCommandError::ReadPassword {
                    what: path.display().to_string(),
                    source,
                }),
            ),
            Self::Stdin => {
                let mut line = String::new();
                let read = std::io::stdin()
                    .read_line(&mut line)
                    .map(|_| line)
                    .map_err(|source| UserCommandError::ReadPassword {
                        what: "standard input".into(),
                        source,
                    });
                ("standard input".to_owned(), read)
            }
        };
        let text = text?;
        let line = text.lines().next().unwrap_or_default().to_owned();
        if line.is_empty() {
            return Err(UserCommandError::ReadPassword {
                what,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "it is empty"),
            });
        }
        Ok(line)
    }
}

/// The profile of a new account.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    /// User name (normalized to lower case).
    pub username: String,
    /// E-mail address (may be empty).
    pub email: String,
    /// Display name (defaults to the user name).
    pub display_name: String,
    /// Whether the account administers the installation.
    pub is_admin: bool,
}

/// Creates an account with `password`.
pub async fn add(
    store: &dyn Store,
    account: &NewAccount,
    password: &str,
    now: i64,
) -> Result<UserRecord, UserCommandError> {
    let username = normalize_username(&account.username)?;
    check_new_password(password)?;
    let hash = hash_off_thread(password).await?;
    let display_name = match account.display_name.trim() {
        "" => username.clone(),
        name => name.to_owned(),
    };
    let user = NewUser {
        username: username.clone(),
        subject: new_subject(),
        email: account.email.trim().to_owned(),
        display_name,
        password_hash: hash,
        is_admin: account.is_admin,
        created_at: now,
    };
    match store.create_user(&user).await {
        Ok(record) => Ok(record),
        Err(StoreError::AlreadyExists { .. }) => Err(UserCommandError::Exists(username)),
        Err(e) => Err(e.into()),
    }
}

/// Replaces an account's password (and lifts any lockout).
pub async fn set_password(
    store: &dyn Store,
    name: &str,
    password: &str,
    now: i64,
) -> Result<(), UserCommandError> {
    let username = normalize_username(name)?;
    check_new_password(password)?;
    let hash = hash_off_thread(password).await?;
    if store.set_password(&username, &hash, now).await? {
        Ok(())
    } else {
        Err(UserCommandError::NoSuchUser(username))
    }
}

/// Disables or re-enables an account. Disabling ends its browser sessions and refresh families and revokes
/// every access token issued to it so far; the revocation is kept `token_lifetime_secs` (the access-token
/// lifetime plus the validation leeway), after which no such token is valid anyway. Every replica applies it
/// within its revocation poll interval.
pub async fn set_disabled(
    store: &dyn Store,
    name: &str,
    disabled: bool,
    now: i64,
    token_lifetime_secs: i64,
) -> Result<(), UserCommandError> {
    let username = normalize_username(name)?;
    let Some(user) = store.get_user(&username).await? else {
        return Err(UserCommandError::NoSuchUser(username));
    };
    if !store.set_disabled(&username, disabled, now).await? {
        return Err(UserCommandError::NoSuchUser(username));
    }
    if disabled {
        store.delete_user_sessions(&username).await?;
        store.revoke_user_families(&user.subject, now).await?;
        store
            .revoke(&Revocation {
                kind: RevocationKind::User,
                token_id: user.subject.clone(),
                expires_at: now.saturating_add(token_lifetime_secs),
                reason: "user.disabled".to_owned(),
                revoked_at: now,
            })
            .await?;
    }
    Ok(())
}

/// How long a revocation of a person must outlive `now` to cover every access token issued under `config` and
/// every browser session cookie (which `/me` accepts without asking the store).
pub fn token_lifetime_secs(config: &flyteauth_core::config::Config) -> i64 {
    let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    secs(config.auth.app_auth.self_auth_server.access_token_lifespan)
        .max(secs(config.flyteauth.session.lifetime))
        .saturating_add(secs(config.flyteauth.token_leeway))
}

/// Every account, in user-name order.
pub async fn list(store: &dyn Store) -> Result<Vec<UserRecord>, UserCommandError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_users(after.as_deref(), 200).await?;
        let done = page.len() < 200;
        after = page.last().map(|u| u.username.clone());
        all.extend(page);
        if done || after.is_none() {
            return Ok(all);
        }
    }
}

/// The first admin account of an installation with no accounts yet.
#[derive(Debug)]
pub enum FirstAdmin {
    /// There were accounts already; nothing was done.
    NotNeeded,
    /// Created with a password taken from the configured file.
    FromFile {
        /// The account's user name.
        username: String,
    },
    /// Created with a generated password, to be shown once.
    Generated {
        /// The account's user name.
        username: String,
        /// The password, shown once and stored only as a hash.
        password: String,
    },
}

/// Creates the first admin account if the installation has none. Its password comes from `password_file` if
/// given, else it is generated (to be printed once by the caller).
pub async fn ensure_first_admin(
    store: &dyn Store,
    username: &str,
    password_file: Option<&std::path::Path>,
    now: i64,
) -> Result<FirstAdmin, UserCommandError> {
    if store.count_users().await? > 0 {
        return Ok(FirstAdmin::NotNeeded);
    }
    let (password, generated) = match password_file {
        Some(path) => (PasswordSource::File(path.to_path_buf()).read()?, false),
        None => (flyteauth_core::clients::generate_secret(), true),
    };
    let account = NewAccount {
        username: username.to_owned(),
        display_name: "Administrator".to_owned(),
        is_admin: true,
        ..NewAccount::default()
    };
    let record = add(store, &account, &password, now).await?;
    Ok(if generated {
        FirstAdmin::Generated {
            username: record.username,
            password,
        }
    } else {
        FirstAdmin::FromFile {
            username: record.username,
        }
    })
}

/// argon2 is deliberately slow: keep it off the async workers.
async fn hash_off_thread(password: &str) -> Result<String, UserCommandError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| UserCommandError::Hashing(e.to_string()))?
        .map_err(UserCommandError::Password)
}
