//! The Secret Service (D-Bus) keyring, with the attributes of Python's `keyring`.
//!
//! Python's `keyring` SecretService backend writes items into the default collection with the attributes
//! `{"application": "Python keyring library", "service": S, "username": U}` and the label
//! `Password for 'U' on 'S'`, and finds them by `{service, username}` in that collection. Doing exactly the
//! same is what lets a login of one CLI be read by the other. Like that backend (and `jeepney`, which it uses),
//! only `DBUS_SESSION_BUS_ADDRESS` names the bus. A missing default collection is not created: that would make
//! a keyring the person never asked for, so the caller falls back to the file instead.

use std::collections::HashMap;

use ::secret_service::{Collection, EncryptionType, Error, SecretService};

use super::KeyringError;
use crate::Secret;

const APPLICATION: &str = "Python keyring library";
/// The content type `secretstorage` gives the items it creates.
const CONTENT_TYPE: &str = "text/plain";

fn unavailable(e: Error) -> KeyringError {
    match e {
        Error::Locked | Error::Prompt => KeyringError::Refused(e.to_string()),
        e => KeyringError::Unavailable(e.to_string()),
    }
}

async fn connect() -> Result<SecretService<'static>, KeyringError> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|a| a.is_empty()) {
        return Err(KeyringError::Unavailable(
            "DBUS_SESSION_BUS_ADDRESS is not set".to_owned(),
        ));
    }
    // A plain session: the secret crosses only the person's own session bus, which only their processes reach, and
    // any of those may read the unlocked item anyway. The encrypted session's Diffie-Hellman in pure Rust cost
    // more than half of a cached `flyte whoami` (callgrind).
    SecretService::connect(EncryptionType::Plain)
        .await
        .map_err(unavailable)
}

/// The default collection, unlocked (which may show the desktop's unlock prompt, as Python's does).
async fn default_collection<'a>(ss: &'a SecretService<'a>) -> Result<Collection<'a>, KeyringError> {
    let collection = ss.get_default_collection().await.map_err(|e| match e {
        Error::NoResult => {
            KeyringError::Unavailable("the Secret Service has no default collection".to_owned())
        }
        e => unavailable(e),
    })?;
    if collection.is_locked().await.map_err(unavailable)? {
        collection.unlock().await.map_err(unavailable)?;
        if collection.is_locked().await.map_err(unavailable)? {
            return Err(KeyringError::Refused(
                "the default collection stays locked".to_owned(),
            ));
        }
    }
    Ok(collection)
}

fn query<'a>(service: &'a str, user: &'a str) -> HashMap<&'static str, &'a str> {
    HashMap::from([("service", service), ("username", user)])
}

/// Whether a usable keyring answers.
pub(super) async fn probe() -> Result<(), KeyringError> {
    let ss = connect().await?;
    default_collection(&ss).await.map(drop)
}

/// The secret of the first item for `service` / `user`.
pub(super) async fn get(service: &str, user: &str) -> Result<Option<Secret>, KeyringError> {
    let ss = connect().await?;
    let collection = default_collection(&ss).await?;
    let items = collection
        .search_items(query(service, user))
        .await
        .map_err(unavailable)?;
    let Some(item) = items.first() else {
        return Ok(None);
    };
    if item.is_locked().await.map_err(unavailable)? {
        item.unlock().await.map_err(unavailable)?;
        if item.is_locked().await.map_err(unavailable)? {
            return Err(KeyringError::Refused("the item stays locked".to_owned()));
        }
    }
    let secret = zeroize::Zeroizing::new(item.get_secret().await.map_err(unavailable)?);
    match std::str::from_utf8(&secret) {
        Ok(text) => Ok(Some(Secret::new(text))),
        Err(_) => Ok(None),
    }
}

/// Creates or replaces the item for `service` / `user`.
pub(super) async fn set(service: &str, user: &str, value: &Secret) -> Result<(), KeyringError> {
    let ss = connect().await?;
    let collection = default_collection(&ss).await?;
    let mut attributes = query(service, user);
    attributes.insert("application", APPLICATION);
    let label = format!("Password for '{user}' on '{service}'");
    collection
        .create_item(
            &label,
            attributes,
            value.expose().as_bytes(),
            true,
            CONTENT_TYPE,
        )
        .await
        .map(drop)
        .map_err(unavailable)
}

/// Deletes every item for `service` / `user`; whether there was one.
pub(super) async fn delete(service: &str, user: &str) -> Result<bool, KeyringError> {
    let ss = connect().await?;
    let collection = default_collection(&ss).await?;
    let items = collection
        .search_items(query(service, user))
        .await
        .map_err(unavailable)?;
    for item in &items {
        item.delete().await.map_err(unavailable)?;
    }
    Ok(!items.is_empty())
}
