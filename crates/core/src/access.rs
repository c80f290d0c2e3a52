//! Who may do what with the management APIs (apps today).
//!
//! Every decision about callers and ownership lives here, so the role model can grow in one place. Today there
//! are two roles: an **owner** sees and changes the apps whose `created_by` is their subject; an **admin** sees
//! and changes every app. Admins are people whose account says so (`is_admin`, the embedded default's first
//! account) and the identities listed in `flyteauth.admins`: a person's subject or user name, or an app's
//! client id. Applications may not manage apps unless listed.

use std::collections::BTreeSet;

use crate::config::Config;

/// Who is calling a management API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A person, signed in through a browser, the device flow or a refresh token.
    Person {
        /// The stable subject (`sub`), which apps record as their owner.
        subject: &'a str,
        /// The account's user name, when known.
        username: Option<&'a str>,
        /// Whether the account is an administrator.
        is_admin: bool,
    },
    /// An application, authenticated with its client credentials.
    App {
        /// Its client id.
        client_id: &'a str,
    },
}

/// Why a caller is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessDenied {
    /// An application may not manage apps.
    #[error(
        "applications may not manage apps: sign in as a person, or list this app's client id in flyteauth.admins"
    )]
    AppCaller,
}

/// The access rules, with the administrators from `flyteauth.admins`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Entries as written (trimmed): compared with subjects and client ids, which are case-sensitive.
    admins: BTreeSet<String>,
    /// The same entries lowercased: user names are stored lowercased, and `Alice` in the file means `alice`.
    admin_usernames: BTreeSet<String>,
}

impl AccessPolicy {
    /// The policy for a configuration (`flyteauth.admins`).
    pub fn from_config(config: &Config) -> Self {
        Self::new(config.flyteauth.admins.iter().cloned())
    }

    /// A policy whose admins are `admins` (subjects, user names or client ids); entries are trimmed and empty
    /// ones dropped.
    pub fn new(admins: impl IntoIterator<Item = String>) -> Self {
        let admins: BTreeSet<String> = admins
            .into_iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        let admin_usernames = admins.iter().map(|a| a.to_lowercase()).collect();
        Self {
            admins,
            admin_usernames,
        }
    }

    /// Admin: a person with `is_admin`, or whose subject or user name is listed; an app whose client id is listed.
    pub fn is_admin(&self, caller: &Caller<'_>) -> bool {
        match *caller {
            Caller::Person {
                subject,
                username,
                is_admin,
            } => {
                is_admin
                    || self.admins.contains(subject)
                    || username.is_some_and(|u| self.admin_usernames.contains(&u.to_lowercase()))
            }
            Caller::App { client_id } => self.admins.contains(client_id),
        }
    }

    /// People may manage their own apps; apps only when admin.
    pub fn may_manage_apps(&self, caller: &Caller<'_>) -> Result<(), AccessDenied> {
        match caller {
            Caller::Person { .. } => Ok(()),
            Caller::App { .. } if self.is_admin(caller) => Ok(()),
            Caller::App { .. } => Err(AccessDenied::AppCaller),
        }
    }

    /// Whether `caller` may see and change an app created by `owner` (its subject): the owner or an admin.
    pub fn may_touch_app(&self, caller: &Caller<'_>, owner: &str) -> bool {
        if self.is_admin(caller) {
            return true;
        }
        match *caller {
            Caller::Person { subject, .. } => subject == owner,
            // Only admin apps manage apps at all (see `may_manage_apps`).
            Caller::App { .. } => false,
        }
    }

    /// The `created_by` filter for listing: `None` for admins (all apps), `Some(subject)` otherwise.
    ///
    /// A non-admin app gets its own client id, so that a caller forgetting [`AccessPolicy::may_manage_apps`] still
    /// never lists every app.
    pub fn list_filter<'c>(&self, caller: &Caller<'c>) -> Option<&'c str> {
        if self.is_admin(caller) {
            return None;
        }
        match *caller {
            Caller::Person { subject, .. } => Some(subject),
            Caller::App { client_id } => Some(client_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person<'a>(subject: &'a str, username: Option<&'a str>) -> Caller<'a> {
        Caller::Person {
            subject,
            username,
            is_admin: false,
        }
    }

    fn policy(admins: &[&str]) -> AccessPolicy {
        AccessPolicy::new(admins.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn admins_are_flagged_accounts_and_listed_identities() {
        let p = policy(&["  sub-root ", "Ops", "ci-admin", ""]);
        let flagged = Caller::Person {
            subject: "s1",
            username: Some("first"),
            is_admin: true,
        };
        assert!(p.is_admin(&flagged));
        assert!(p.is_admin(&person("sub-root", None)));
        // User names are compared as stored (lowercased); subjects exactly.
        assert!(p.is_admin(&person("s2", Some("ops"))));
        assert!(!p.is_admin(&person("ops", None)));
        assert!(!p.is_admin(&person("SUB-ROOT", None)));
        assert!(p.is_admin(&Caller::App {
            client_id: "ci-admin"
        }));
        assert!(!p.is_admin(&Caller::App {
            client_id: "ci-bot"
        }));
        assert!(!p.is_admin(&person("", Some(""))));
        assert!(!AccessPolicy::default().is_admin(&person("sub-root", Some("ops"))));
    }

    #[test]
    fn from_config_reads_flyteauth_admins() {
        let mut config = Config::default();
        config.flyteauth.admins = vec!["alice".into(), "ci-admin".into()];
        let p = AccessPolicy::from_config(&config);
        assert!(p.is_admin(&person("x", Some("alice"))));
        assert!(p.is_admin(&Caller::App {
            client_id: "ci-admin"
        }));
    }

    #[test]
    fn people_manage_their_own_apps_and_admins_all() {
        let p = policy(&["ci-admin"]);
        let alice = person("alice-sub", Some("alice"));
        assert_eq!(p.may_manage_apps(&alice), Ok(()));
        assert!(p.may_touch_app(&alice, "alice-sub"));
        assert!(!p.may_touch_app(&alice, "bob-sub"));
        assert_eq!(p.list_filter(&alice), Some("alice-sub"));

        let admin = Caller::Person {
            subject: "root-sub",
            username: None,
            is_admin: true,
        };
        assert_eq!(p.may_manage_apps(&admin), Ok(()));
        assert!(p.may_touch_app(&admin, "bob-sub"));
        assert_eq!(p.list_filter(&admin), None);
    }

    #[test]
    fn apps_manage_apps_only_when_listed() {
        let p = policy(&["ci-admin"]);
        let bot = Caller::App {
            client_id: "ci-bot",
        };
        assert_eq!(p.may_manage_apps(&bot), Err(AccessDenied::AppCaller));
        assert!(!p.may_touch_app(&bot, "ci-bot"));
        assert_eq!(p.list_filter(&bot), Some("ci-bot"));
        let message = AccessDenied::AppCaller.to_string();
        assert!(message.contains("flyteauth.admins"), "{message}");

        let admin_app = Caller::App {
            client_id: "ci-admin",
        };
        assert_eq!(p.may_manage_apps(&admin_app), Ok(()));
        assert!(p.may_touch_app(&admin_app, "alice-sub"));
        assert_eq!(p.list_filter(&admin_app), None);
    }
}
