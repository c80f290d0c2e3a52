//! The value the Python `flyte` 2.x SDK keeps under user `tokens`: `json.dumps({"access_token": …,
//! "refresh_token": …})`, byte for byte, so either side can compare or rewrite what the other stored.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use zeroize::Zeroizing;

use super::CachedTokens;
use crate::Secret;

/// The keyring user of the combined item.
pub(super) const TOKENS_USER: &str = "tokens";
/// Users of the SDK's older one-item-per-token layout, removed together with `tokens`.
pub(super) const LEGACY_USERS: [&str; 2] = ["access_token", "refresh_token"];

#[derive(Serialize)]
struct Layout<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
}

impl<'a> From<&'a CachedTokens> for Layout<'a> {
    fn from(tokens: &'a CachedTokens) -> Self {
        Self {
            access_token: tokens.access_token.expose(),
            refresh_token: tokens.refresh_token.as_ref().map(Secret::expose),
        }
    }
}

/// Python's `json.dumps` defaults: `", "` between members, `": "` after keys, and `ensure_ascii` (every
/// character outside printable ASCII as `\uXXXX`, lower-case hex, UTF-16 surrogate pairs).
struct PythonJson;

impl Formatter for PythonJson {
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                let mut buf = [0u8; 1];
                writer.write_all(c.encode_utf8(&mut buf).as_bytes())?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// The keyring value for `tokens`.
pub(super) fn encode(tokens: &CachedTokens) -> Secret {
    let mut out = Zeroizing::new(Vec::with_capacity(64));
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, PythonJson);
    // Serializing two strings into a Vec cannot fail.
    if Layout::from(tokens).serialize(&mut serializer).is_err() {
        out.clear();
    }
    Secret::new(String::from_utf8_lossy(&out).into_owned())
}

/// The object stored per service in the cache file (same members as the keyring value).
pub(super) fn to_value(tokens: &CachedTokens) -> serde_json::Value {
    serde_json::json!({
        "access_token": tokens.access_token.expose(),
        "refresh_token": tokens.refresh_token.as_ref().map(Secret::expose),
    })
}

/// Reads a keyring value the way the SDK does: extra members ignored, `refresh_token` optional, an empty
/// access token allowed only beside a refresh token. Anything else is not a cached login.
pub(super) fn decode(value: &str) -> Option<CachedTokens> {
    from_value(&serde_json::from_str(value).ok()?)
}

/// [`decode`] for an already parsed object (an entry of the cache file).
pub(super) fn from_value(value: &serde_json::Value) -> Option<CachedTokens> {
    let object = value.as_object()?;
    let text = |key: &str| match object.get(key) {
        None | Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Some(None),
        Some(serde_json::Value::String(s)) => Some(Some(Secret::new(s.as_str()))),
        Some(_) => None,
    };
    let access_token = text("access_token")?;
    let refresh_token = text("refresh_token")?;
    match (access_token, refresh_token) {
        (None, None) => None,
        (access_token, refresh_token) => Some(CachedTokens {
            access_token: access_token.unwrap_or_else(|| Secret::new("")),
            refresh_token,
        }),
    }
}
