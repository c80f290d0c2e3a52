//! Text rules shared by both backends, so that they accept and return exactly the same values.
//!
//! PostgreSQL cannot store U+0000 in `text` or `jsonb`, while SQLite can. Rather than let the same call succeed on
//! one backend and fail with a driver error on the other, keys and record fields containing NUL are rejected up
//! front, lookups by such keys simply find nothing, and audit events (which must be recorded even when an
//! attacker sends a NUL in a client id) have NUL replaced by U+FFFD.

use std::borrow::Cow;

use serde_json::Value;

use crate::StoreError;

const NUL_REASON: &str = "contains a NUL character";

/// Rejects text that one of the backends could not store.
pub(crate) fn check(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::InvalidInput {
            field,
            reason: NUL_REASON,
        });
    }
    Ok(())
}

/// [`check`] for every element of a list.
pub(crate) fn check_list(field: &'static str, values: &[String]) -> Result<(), StoreError> {
    values.iter().try_for_each(|v| check(field, v))
}

/// Whether a lookup key can possibly match a stored key (stored keys never contain NUL).
pub(crate) fn storable_key(key: &str) -> bool {
    !key.contains('\0')
}

/// A keyset cursor equivalent to `after` for stored keys.
///
/// Stored keys contain no NUL and compare bytewise, so "greater than `p` + NUL + anything" selects the same keys
/// as "greater than `p`": every key extending `p` continues with a byte above NUL.
pub(crate) fn cursor(after: &str) -> &str {
    match after.find('\0') {
        Some(i) => &after[..i],
        None => after,
    }
}

/// Replaces NUL characters so the text can be stored anywhere.
pub(crate) fn scrub(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// [`scrub`] applied to every string and object key inside a JSON value.
pub(crate) fn scrub_json(value: &Value) -> Cow<'_, Value> {
    if !json_has_nul(value) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(scrubbed(value))
}

fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn scrubbed(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(scrub(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(scrubbed).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (scrub(k).into_owned(), scrubbed(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_truncates_at_nul() {
        assert_eq!(cursor("ab\0cd"), "ab");
        assert_eq!(cursor("abc"), "abc");
    }

    #[test]
    fn scrub_json_reaches_keys_and_nested_strings() {
        let v = serde_json::json!({"a\u{0}": ["x\u{0}y", {"k": "\u{0}"}], "n": 1});
        let s = scrub_json(&v).into_owned();
        assert_eq!(
            s,
            serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}], "n": 1})
        );
        let clean = serde_json::json!({"a": 1});
        assert!(matches!(scrub_json(&clean), Cow::Borrowed(_)));
    }
}
