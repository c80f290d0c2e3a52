//! Human accounts: user-name rules and stable subjects.

/// Longest user name, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// Why a user name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// Empty after trimming.
    #[error("the user name must not be empty")]
    Empty,
    /// Longer than [`MAX_USERNAME_CHARS`].
    #[error("the user name must be at most {max} characters long")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// Does not start with a letter or digit.
    #[error("the user name must start with a letter or a digit")]
    BadStart,
    /// Contains a character outside `[a-z0-9._@-]` (after lowercasing); control characters are shown escaped.
    #[error("the user name may only contain letters a-z, digits, '.', '_', '@' and '-', not {0}")]
    InvalidCharacter(String),
}

/// The canonical form of a user name: trimmed, lowercased, 1 to [`MAX_USERNAME_CHARS`] characters of
/// `[a-z0-9._@-]`, starting with a letter or digit. Quotes, semicolons, spaces, `%`, `*`, control and
/// non-ASCII characters are refused, so user names are safe in logs, URLs and audit records.
pub fn normalize_username(raw: &str) -> Result<String, UserError> {
    let name = raw.trim().to_lowercase();
    if name.is_empty() {
        return Err(UserError::Empty);
    }
    if let Some(c) = name.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '@' | '-'))
    }) {
        let shown = if c.is_control() || c.is_whitespace() {
            format!("{:?}", c.escape_unicode().to_string())
        } else {
            format!("'{c}'")
        };
        return Err(UserError::InvalidCharacter(shown));
    }
    if name.len() > MAX_USERNAME_CHARS {
        return Err(UserError::TooLong {
            max: MAX_USERNAME_CHARS,
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(UserError::BadStart);
    }
    Ok(name)
}

/// A new stable subject for an account: a random UUID (v4), never reused and independent of the user name,
/// so renaming an account keeps its tokens' `sub`.
pub fn new_subject() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_username("  Ada.Lovelace ").unwrap(),
            "ada.lovelace"
        );
        assert_eq!(normalize_username("ADMIN").unwrap(), "admin");
        assert_eq!(
            normalize_username("a@example.com").unwrap(),
            "a@example.com"
        );
        assert_eq!(normalize_username("0_x-y").unwrap(), "0_x-y");
        assert_eq!(normalize_username(&"a".repeat(64)).unwrap().len(), 64);
    }

    #[test]
    fn bad_names_are_refused_clearly() {
        assert_eq!(normalize_username("   "), Err(UserError::Empty));
        assert_eq!(
            normalize_username(&"a".repeat(65)),
            Err(UserError::TooLong { max: 64 })
        );
        for bad in ["-admin", ".admin", "_x", "@x"] {
            assert_eq!(normalize_username(bad), Err(UserError::BadStart), "{bad}");
        }
        for bad in [
            "admin'--",
            "a;drop table users",
            "a b",
            "a\"b",
            "a%",
            "a*",
            "a/b",
            "ädmin",
            "a\u{0}b",
            "a\nb",
            "a\u{202e}b",
        ] {
            let err = normalize_username(bad).unwrap_err();
            assert!(matches!(err, UserError::InvalidCharacter(_)), "{bad:?}");
            let msg = err.to_string();
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
            assert!(msg.contains("may only contain"), "{msg}");
        }
    }

    #[test]
    fn subjects_are_fresh_uuid_v4() {
        let a = new_subject();
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_ne!(a, new_subject());
    }
}
