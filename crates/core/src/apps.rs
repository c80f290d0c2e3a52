//! Apps (`cloudidl.identity.AppsService`): the rules for what an app may be called and carry, the grant-type
//! numbers of the protocol, and list paging.
//!
//! Apps are confidential OAuth clients created at run time; each becomes an API key ([`crate::api_key`]). Their
//! client ids are the slugs the flyte SDK makes of a name (`re.sub("[^0-9a-zA-Z]+", "-", name.lower())`), so
//! exactly those characters are accepted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;

/// The most apps one List page returns (and the page size when none is asked for).
pub const MAX_PAGE: u32 = 100;

/// The scopes a new app gets: platform calls need `all`.
pub const APP_SCOPES: &[&str] = &["all"];

/// Client ids no app may take: the well-known clients of Flyte's own tools.
pub const RESERVED_CLIENT_IDS: &[&str] = &["flytectl", "flytepropeller", "flyte-cli"];

/// Longest client id, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// Longest client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 128;

/// Most redirect URIs one app may register.
pub const MAX_REDIRECT_URIS: usize = 20;

/// Longest redirect URI, in bytes.
pub const MAX_REDIRECT_URI_LEN: usize = 2048;

/// The grant type every app has: it is how an API key signs in.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// `cloudidl.identity.GrantTypes`: protocol number and OAuth name, in number order.
const GRANT_TYPES: &[(i32, &str)] = &[
    (0, "authorization_code"),
    (1, "implicit"),
    (2, "password"),
    (3, CLIENT_CREDENTIALS),
    (4, "refresh_token"),
    (5, "urn:ietf:params:oauth:grant-type:device_code"),
];

/// The number of `client_credentials` in [`GRANT_TYPES`].
const CLIENT_CREDENTIALS_NUMBER: i32 = 3;

/// Longest page token [`parse_page_token`] looks at: the encoding of the longest client id.
const MAX_PAGE_TOKEN_LEN: usize = MAX_CLIENT_ID_CHARS.div_ceil(3) * 4;

/// Why an app request is not acceptable. Each message names the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// `client_id` is malformed or reserved.
    #[error("invalid client_id: {0}")]
    ClientId(String),
    /// `client_name` is too long or has control characters.
    #[error("invalid client_name: {0}")]
    ClientName(String),
    /// `redirect_uris` has too many entries or one is not an absolute http(s) URL.
    #[error("invalid redirect_uris: {0}")]
    RedirectUri(String),
    /// `grant_types` has a number that is not a `cloudidl.identity.GrantTypes` value.
    #[error("invalid grant_types: {0} is not a grant type (0 to 5)")]
    GrantType(i32),
    /// The list request's `token` is not one a previous List returned.
    #[error("invalid request.token: not a page token returned by List")]
    PageToken,
}

/// Checks the characters, length and ends of a client id, but not whether it is reserved.
fn check_client_id_syntax(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some((i, c)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "may contain only lower-case letters a-z, digits and '-', not '{}' at position {}",
            c.escape_debug(),
            i + 1
        ));
    }
    if id.len() > MAX_CLIENT_ID_CHARS {
        return Err(format!("must be at most {MAX_CLIENT_ID_CHARS} characters"));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err("must start and end with a letter or a digit".into());
    }
    Ok(())
}

/// 1 to 64 characters of `[a-z0-9-]`, starting and ending with a letter or digit, not one of
/// [`RESERVED_CLIENT_IDS`].
pub fn validate_client_id(id: &str) -> Result<(), AppError> {
    check_client_id_syntax(id).map_err(AppError::ClientId)?;
    if RESERVED_CLIENT_IDS.contains(&id) {
        return Err(AppError::ClientId(format!(
            "{id:?} is reserved for Flyte's own tools"
        )));
    }
    Ok(())
}

/// Characters that reorder the text around them: a name carrying them could display as someone else's.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The name to store: trimmed, at most 128 characters, without control (or bidirectional-override) characters.
/// An empty result means "no name": the caller uses the client id.
pub fn validate_client_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if let Some(c) = name.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return Err(AppError::ClientName(format!(
            "must be printable text, not {}",
            c.escape_unicode()
        )));
    }
    if name.chars().count() > MAX_CLIENT_NAME_CHARS {
        return Err(AppError::ClientName(format!(
            "must be at most {MAX_CLIENT_NAME_CHARS} characters"
        )));
    }
    Ok(name.to_owned())
}

/// At most 20, each an absolute http(s) URL with a host and without fragment, at most 2048 bytes, stored as
/// sent (so no whitespace or control characters, which URL parsing would silently drop).
pub fn validate_redirect_uris(uris: &[String]) -> Result<(), AppError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(AppError::RedirectUri(format!(
            "at most {MAX_REDIRECT_URIS} are allowed, not {}",
            uris.len()
        )));
    }
    for (i, uri) in uris.iter().enumerate() {
        let bad = |reason: &str| AppError::RedirectUri(format!("[{i}] {reason}"));
        if uri.is_empty() {
            return Err(bad("is empty"));
        }
        if uri.len() > MAX_REDIRECT_URI_LEN {
            return Err(bad(&format!(
                "is longer than {MAX_REDIRECT_URI_LEN} characters"
            )));
        }
        if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters"));
        }
        let parsed =
            Url::parse(uri).map_err(|e| bad(&format!("is not an absolute URL ({e}): {uri:?}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(&format!("must be an http or https URL: {uri:?}")));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad(&format!("has no host: {uri:?}")));
        }
        if parsed.fragment().is_some() {
            return Err(bad(&format!("must not have a fragment: {uri:?}")));
        }
    }
    Ok(())
}

/// The OAuth name of a `cloudidl.identity.GrantTypes` number (0 `authorization_code`, 1 `implicit`, 2
/// `password`, 3 `client_credentials`, 4 `refresh_token`, 5 `urn:ietf:params:oauth:grant-type:device_code`).
pub fn grant_type_name(number: i32) -> Option<&'static str> {
    GRANT_TYPES
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, name)| *name)
}

/// The `cloudidl.identity.GrantTypes` number of an OAuth grant type name.
pub fn grant_type_number(name: &str) -> Option<i32> {
    GRANT_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(number, _)| *number)
}

/// The grant types stored for a new or updated app: the requested ones, always with `client_credentials`, each
/// once, in protocol-number order (so asking for the same set in another order stores the same list). A number
/// that is no grant type is refused.
pub fn app_grant_types(requested: &[i32]) -> Result<Vec<String>, AppError> {
    if let Some(&unknown) = requested.iter().find(|n| grant_type_name(**n).is_none()) {
        return Err(AppError::GrantType(unknown));
    }
    Ok(GRANT_TYPES
        .iter()
        .filter(|(n, _)| *n == CLIENT_CREDENTIALS_NUMBER || requested.contains(n))
        .map(|(_, name)| (*name).to_owned())
        .collect())
}

/// Opaque list page tokens: base64url (no padding) of the last client id of the previous page.
pub fn page_token(last_client_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_client_id)
}

/// The client id a page token of [`page_token`] stands for. `""` is not a token (callers check for it first); a
/// token that does not decode to a well-formed client id is [`AppError::PageToken`]. Reserved ids are accepted:
/// a cursor only says where the previous page ended.
pub fn parse_page_token(token: &str) -> Result<String, AppError> {
    if token.is_empty() || token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(AppError::PageToken);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| AppError::PageToken)?;
    let id = String::from_utf8(bytes).map_err(|_| AppError::PageToken)?;
    check_client_id_syntax(&id).map_err(|_| AppError::PageToken)?;
    Ok(id)
}

/// The page size for a requested limit: 0 means [`MAX_PAGE`], and nothing larger is served.
pub fn page_limit(requested: u32) -> u32 {
    if requested == 0 {
        MAX_PAGE
    } else {
        requested.min(MAX_PAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_sdk_slugs() {
        for ok in [
            "ci-bot",
            "a",
            "0",
            "my-app-2",
            "x--y",
            &"a".repeat(64),
            "default-app",
        ] {
            assert_eq!(validate_client_id(ok), Ok(()), "{ok}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("CI-bot", "'C' at position 1"),
            ("ci_bot", "'_' at position 3"),
            ("ci bot", "' ' at position 3"),
            ("ci:bot", "':'"),
            ("ci-bøt", "'ø'"),
            ("ci\nbot", "\\n"),
            ("-bot", "start and end"),
            ("bot-", "start and end"),
            ("-", "start and end"),
            (&"a".repeat(65), "at most 64"),
            ("flytectl", "reserved"),
            ("flytepropeller", "reserved"),
            ("flyte-cli", "reserved"),
        ] {
            let err = validate_client_id(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("invalid client_id: "), "{text}");
            assert!(text.contains(needle), "{bad:?}: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn client_names_are_trimmed_printable_and_bounded() {
        assert_eq!(validate_client_name("  CI bot ✓ ").unwrap(), "CI bot ✓");
        assert_eq!(validate_client_name("").unwrap(), "");
        assert_eq!(validate_client_name(" \t ").unwrap(), "");
        assert_eq!(
            validate_client_name(&"é".repeat(128)).unwrap(),
            "é".repeat(128)
        );
        for bad in [
            "a\nb".to_owned(),
            "a\u{7}b".to_owned(),
            "a\u{202E}b".to_owned(),
            "é".repeat(129),
        ] {
            let err = validate_client_name(&bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid client_name: "),
                "{err}"
            );
        }
    }

    #[test]
    fn redirect_uris_are_absolute_http_urls() {
        let ok: Vec<String> = [
            "http://localhost:8080/authorization-code/callback",
            "https://app.example.com/cb?x=1",
            "http://127.0.0.1/",
        ]
        .map(String::from)
        .into();
        assert_eq!(validate_redirect_uris(&ok), Ok(()));
        assert_eq!(validate_redirect_uris(&[]), Ok(()));
        assert_eq!(
            validate_redirect_uris(&vec!["https://a.example/".to_owned(); 20]),
            Ok(())
        );
        let too_many = vec!["https://a.example/".to_owned(); 21];
        assert!(
            validate_redirect_uris(&too_many)
                .unwrap_err()
                .to_string()
                .contains("at most 20")
        );
        for bad in [
            String::new(),
            "/callback".to_owned(),
            "localhost:8080/cb".to_owned(),
            "ftp://example.com/".to_owned(),
            "myapp://callback".to_owned(),
            "https://example.com/cb#frag".to_owned(),
            "https://example.com/\ncb".to_owned(),
            " https://example.com/cb".to_owned(),
            format!("https://example.com/{}", "a".repeat(2048)),
        ] {
            let err = validate_redirect_uris(&["https://ok.example/".to_owned(), bad.clone()])
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("invalid redirect_uris: [1] "),
                "{bad:?}: {text}"
            );
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn grant_type_numbers_are_cloudidls() {
        let names = [
            "authorization_code",
            "implicit",
            "password",
            "client_credentials",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ];
        for (number, name) in names.iter().enumerate() {
            let number = i32::try_from(number).unwrap();
            assert_eq!(grant_type_name(number), Some(*name));
            assert_eq!(grant_type_number(name), Some(number));
        }
        assert_eq!(grant_type_name(6), None);
        assert_eq!(grant_type_name(-1), None);
        assert_eq!(grant_type_number("device_code"), None);
    }

    #[test]
    fn app_grant_types_always_include_client_credentials() {
        assert_eq!(app_grant_types(&[]).unwrap(), ["client_credentials"]);
        // What `flyte create api-key` sends: CLIENT_CREDENTIALS, AUTHORIZATION_CODE.
        assert_eq!(
            app_grant_types(&[3, 0]).unwrap(),
            ["authorization_code", "client_credentials"]
        );
        assert_eq!(
            app_grant_types(&[4, 4, 3]).unwrap(),
            ["client_credentials", "refresh_token"]
        );
        assert_eq!(app_grant_types(&[3, 7]), Err(AppError::GrantType(7)));
        assert!(
            AppError::GrantType(7)
                .to_string()
                .starts_with("invalid grant_types:")
        );
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        for id in ["a", "ci-bot", &"z".repeat(64), "flytectl"] {
            let token = page_token(id);
            assert!(!token.contains('='), "{token}");
            assert_eq!(parse_page_token(&token).unwrap(), id);
        }
        for bad in [
            String::new(),
            "!!!".to_owned(),
            page_token("Not An Id"),
            page_token("-x"),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            page_token(&"a".repeat(65)),
            "A".repeat(10_000),
        ] {
            assert_eq!(parse_page_token(&bad), Err(AppError::PageToken), "{bad}");
        }
        assert!(AppError::PageToken.to_string().contains("token"));
    }

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(0), MAX_PAGE);
        assert_eq!(page_limit(1), 1);
        assert_eq!(page_limit(100), 100);
        assert_eq!(page_limit(101), MAX_PAGE);
        assert_eq!(page_limit(u32::MAX), MAX_PAGE);
    }

    #[test]
    fn constants() {
        assert_eq!(APP_SCOPES, ["all"]);
        assert_eq!(MAX_PAGE, 100);
        assert_eq!(MAX_PAGE_TOKEN_LEN, 88);
        assert!(page_token(&"a".repeat(64)).len() <= MAX_PAGE_TOKEN_LEN);
    }
}
