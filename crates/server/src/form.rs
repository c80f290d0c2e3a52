//! Strict `application/x-www-form-urlencoded` parsing for the OAuth endpoints.
//!
//! Stricter than a lossy decoder on purpose: RFC 6749 §3.2 forbids repeated parameters, and a
//! value that is not UTF-8 after percent-decoding is rejected rather than silently mangled.

use std::collections::HashMap;

/// Why a form body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    /// A name or value is not valid UTF-8 after percent-decoding.
    #[error("the request body is not valid UTF-8 form data")]
    NotUtf8,
    /// The same parameter appears twice.
    #[error("parameter '{0}' is repeated")]
    Repeated(String),
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn decode_component(raw: &[u8]) -> Result<String, FormError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| FormError::NotUtf8)
}

/// Parses a form body into a map, rejecting repeats and non-UTF-8 data.
///
/// Parameters without a value (`scope=`) are kept as empty strings: the Flyte SDKs send an empty
/// `scope` when they have no scopes, which must mean "default", not "missing".
pub fn parse(body: &[u8]) -> Result<HashMap<String, String>, FormError> {
    let mut params = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name = decode_component(name)?;
        let value = decode_component(value)?;
        if params.contains_key(&name) {
            return Err(FormError::Repeated(name));
        }
        params.insert(name, value);
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        let p = parse(b"scope=all+offline&x=a%2Bb%3D&empty=&flag").unwrap();
        assert_eq!(p["scope"], "all offline");
        assert_eq!(p["x"], "a+b=");
        assert_eq!(p["empty"], "");
        assert_eq!(p["flag"], "");
    }

    #[test]
    fn rejects_repeats() {
        assert_eq!(
            parse(b"grant_type=a&grant_type=b"),
            Err(FormError::Repeated("grant_type".into()))
        );
    }

    #[test]
    fn rejects_non_utf8() {
        assert_eq!(parse(b"a=%ff%fe"), Err(FormError::NotUtf8));
        assert_eq!(parse(b"a=\xff"), Err(FormError::NotUtf8));
    }
}
