//! The device authorization grant (RFC 8628): user codes, and the rules of the device authorization request.
//!
//! A device (a CLI on a headless machine) asks for a device code and a user code; the person types the user
//! code at the activation page on another machine, signs in and approves; meanwhile the device polls the token
//! endpoint with the device code.
//!
//! User codes are [`USER_CODE_LEN`] characters from the 20 consonants of [`USER_CODE_ALPHABET`] (no vowels, so
//! no words; no digits, so no 0/O or 1/I confusion — RFC 8628 §6.1). They are stored normalized (upper case, no
//! separator) and shown as `XXXX-XXXX`.
//!
//! # Guessing
//!
//! There are [`USER_CODE_SPACE`] = 20^8 = 25,600,000,000 user codes (about 34.6 bits). Someone trying codes
//! at the activation page while `L` codes are live, each guess hitting one with probability `L / 20^8`, needs
//! `20^8 / L` guesses on average. With `flyteauth.device.maxCodeAttempts` wrong codes allowed per session and
//! per client address within `attemptWindow` (10 per 15 minutes by default), one address gets
//! [`guess_probability`]`(L, attempts)` = `attempts × L / 20^8` per window: with 1,000 live codes and 10
//! attempts, under 4e-7 per window, under 4e-5 a day (96 windows). A device code expires after `codeLifetime`
//! (10 minutes), which bounds `L` by the rate codes are requested.

use std::collections::HashMap;

use rand::Rng;

use crate::authorize::{OFFLINE_SCOPES, user_scopes};
use crate::clients::Client;
use crate::grant::{AUTHORIZATION_CODE, DEVICE_CODE, resolve_audience};
use crate::oauth::{ErrorCode, OAuthError};

/// The characters of user codes: the 20 upper-case consonants without Y.
pub const USER_CODE_ALPHABET: &str = "BCDFGHJKLMNPQRSTVWXZ";

/// The length of a normalized user code.
pub const USER_CODE_LEN: usize = 8;

/// How many distinct user codes exist: 20^8 = 25,600,000,000.
pub const USER_CODE_SPACE: u64 = 25_600_000_000;

// The constant above is what the alphabet and length make it.
const _: () =
    assert!(USER_CODE_SPACE == (USER_CODE_ALPHABET.len() as u64).pow(USER_CODE_LEN as u32));

/// The chance that `attempts` guesses, each of a distinct user code, hit one of `live_codes` live codes:
/// `attempts × live_codes / 20^8`, capped at 1 (a union bound, exact for distinct guesses).
pub fn guess_probability(live_codes: u64, attempts: u64) -> f64 {
    let hits = (live_codes as f64) * (attempts as f64);
    (hits / USER_CODE_SPACE as f64).min(1.0)
}

/// A fresh, normalized user code: [`USER_CODE_LEN`] characters, each drawn uniformly from
/// [`USER_CODE_ALPHABET`] by the thread-local CSPRNG.
pub fn new_user_code() -> String {
    new_user_code_with(&mut rand::rng())
}

/// As [`new_user_code`], drawing from `rng` (tests pass a seeded one).
pub fn new_user_code_with<R: Rng + ?Sized>(rng: &mut R) -> String {
    let alphabet = USER_CODE_ALPHABET.as_bytes();
    (0..USER_CODE_LEN)
        // `random_range` picks an index uniformly (no modulo bias).
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// The stored form of a user code as a person typed it: upper-cased, without `-` and whitespace; `None`
/// unless exactly [`USER_CODE_LEN`] characters of [`USER_CODE_ALPHABET`] remain.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(USER_CODE_LEN);
    for c in typed.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let c = c.to_ascii_uppercase();
        if !USER_CODE_ALPHABET.contains(c) || out.len() == USER_CODE_LEN {
            return None;
        }
        out.push(c);
    }
    (out.len() == USER_CODE_LEN).then_some(out)
}

/// How a normalized user code is shown: `BCDFGHJK` as `BCDF-GHJK`. Anything else comes back unchanged.
pub fn display_user_code(code: &str) -> String {
    let normalized = code.len() == USER_CODE_LEN
        && code
            .bytes()
            .all(|b| USER_CODE_ALPHABET.as_bytes().contains(&b));
    match code.split_at_checked(USER_CODE_LEN / 2) {
        Some((head, tail)) if normalized => format!("{head}-{tail}"),
        _ => code.to_owned(),
    }
}

/// What a device authorization request is granted; the token exchange later mints exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    /// Granted scopes, in request (or registration) order, without duplicates.
    pub scopes: Vec<String>,
    /// The tokens' `aud`.
    pub audience: Vec<String>,
}

impl DeviceAuthorization {
    /// Whether a refresh token is granted (`offline` or `offline_access`).
    pub fn grants_offline(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| OFFLINE_SCOPES.contains(&s.as_str()))
    }
}

/// The parameters of a device authorization request (`POST /oauth2/device/code`, RFC 8628 §3.1) that shape
/// the grant; `client_id` and any client authentication are the caller's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceAuthorizationRequest<'a> {
    /// `scope`: absent, empty or blank means "the client's registered scopes".
    pub scope: Option<&'a str>,
    /// `audience`: absent or empty means "this server".
    pub audience: Option<&'a str>,
}

impl<'a> DeviceAuthorizationRequest<'a> {
    /// Reads the request from the form `params` and decides it for the authenticated `client`
    /// ([`DeviceAuthorizationRequest::decide`]).
    pub fn parse(
        params: &'a HashMap<String, String>,
        client: &Client,
        accepted_audiences: &[String],
        default_audience: &str,
    ) -> Result<DeviceAuthorization, OAuthError> {
        Self::from_params(params).decide(client, accepted_audiences, default_audience)
    }

    /// Reads `scope` and `audience` from the form `params` (other parameters are ignored).
    pub fn from_params(params: &'a HashMap<String, String>) -> Self {
        Self {
            scope: params.get("scope").map(String::as_str),
            audience: params
                .get("audience")
                .map(String::as_str)
                .filter(|a| !a.is_empty()),
        }
    }

    /// Decides the request for the authenticated `client`.
    ///
    /// - The client must be allowed the device grant ([`DEVICE_CODE`]) — or be a public client allowed
    ///   `authorization_code`. flyteadmin's default public clients `flytectl` and `flyte-cli` list only
    ///   `authorization_code` and `refresh_token`, yet the Flyte SDKs use them for the device flow; for a public
    ///   client both grants end in the same thing, a person signing in and approving it, so allowing one allows
    ///   the other. A confidential client must list the device grant. Else `unauthorized_client`.
    /// - `scope`: as for the authorization-code grant ([`user_scopes`]): registered scopes plus `openid`,
    ///   `profile`, `email`; `offline`/`offline_access` only with the `refresh_token` grant (`invalid_scope`).
    ///   None: the client's registered scopes.
    /// - `audience`: absent or empty is `[default_audience]`; otherwise one of `accepted_audiences` or of the
    ///   client's audiences (else `invalid_target`).
    pub fn decide(
        &self,
        client: &Client,
        accepted_audiences: &[String],
        default_audience: &str,
    ) -> Result<DeviceAuthorization, OAuthError> {
        if !allows_device_grant(client) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not allowed to use the device_code grant",
            ));
        }
        let scopes = user_scopes(client, self.scope)?;
        let audience =
            resolve_audience(client, self.audience, accepted_audiences, default_audience)?;
        Ok(DeviceAuthorization { scopes, audience })
    }
}

/// Whether `client` may use the device grant: it lists [`DEVICE_CODE`], or it is public and lists
/// `authorization_code` (see [`DeviceAuthorizationRequest::decide`]). The token exchange asks the same.
pub fn allows_device_grant(client: &Client) -> bool {
    client.allows_grant(DEVICE_CODE)
        || (client.is_public() && client.allows_grant(AUTHORIZATION_CODE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::hash_generated_secret;
    use crate::grant::{CLIENT_CREDENTIALS, REFRESH_TOKEN};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const DEFAULT_AUD: &str = "http://localhost:8088";

    /// flyteadmin's default public client.
    fn flytectl() -> Client {
        Client {
            id: "flytectl".into(),
            name: "flytectl".into(),
            secret: None,
            grant_types: vec![REFRESH_TOKEN.into(), AUTHORIZATION_CODE.into()],
            scopes: vec!["all".into(), "offline".into(), "access_token".into()],
            audience: vec!["api://flyte".into()],
            redirect_uris: vec!["http://localhost:53593/callback".into()],
        }
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn run(client: &Client, pairs: &[(&str, &str)]) -> Result<DeviceAuthorization, OAuthError> {
        DeviceAuthorizationRequest::parse(
            &params(pairs),
            client,
            &[DEFAULT_AUD.to_owned()],
            DEFAULT_AUD,
        )
    }

    #[test]
    fn the_code_space() {
        assert_eq!(USER_CODE_ALPHABET.len(), 20);
        assert_eq!(USER_CODE_SPACE, 20u64.pow(8));
        assert_eq!(USER_CODE_SPACE, 25_600_000_000);
        for vowel in "AEIOUY".chars() {
            assert!(!USER_CODE_ALPHABET.contains(vowel), "{vowel}");
        }
        let mut sorted: Vec<char> = USER_CODE_ALPHABET.chars().collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 20, "no repeated character");
        let p = guess_probability(1000, 10);
        assert!(p > 3.9e-7 && p < 4.0e-7, "{p}");
        assert_eq!(guess_probability(0, 10), 0.0);
        assert_eq!(guess_probability(u64::MAX, u64::MAX), 1.0);
    }

    #[test]
    fn new_codes_are_normalized_and_uniform() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(code.len(), USER_CODE_LEN);
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
        }
        // Each character about equally often: 8,000 draws, 400 expected per character.
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts: HashMap<char, u32> = HashMap::new();
        for _ in 0..1000 {
            for c in new_user_code_with(&mut rng).chars() {
                *counts.entry(c).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), 20);
        for (c, n) in counts {
            assert!((300..500).contains(&n), "{c}: {n}");
        }
        assert_ne!(new_user_code(), new_user_code());
    }

    #[test]
    fn normalization() {
        for typed in [
            "BCDFGHJK",
            "bcdf-ghjk",
            "BcDf GhJk",
            " bcdf - ghjk\n",
            "B-C-D-F-G-H-J-K",
            "\tBCDFGHJK\t",
        ] {
            assert_eq!(
                normalize_user_code(typed).as_deref(),
                Some("BCDFGHJK"),
                "{typed:?}"
            );
        }
        for typed in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "BCDF-GHJA",
            "BCDF-GHJ0",
            "BCDF_GHJK",
            "BCDFGHJKBCDFGHJK",
            "ＢCDFGHJK",
            "BCDFGHJ\u{130}",
        ] {
            assert_eq!(normalize_user_code(typed), None, "{typed:?}");
        }
    }

    #[test]
    fn display() {
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(
            normalize_user_code(&display_user_code("WXZBCDFG")).as_deref(),
            Some("WXZBCDFG")
        );
        assert_eq!(display_user_code("short"), "short");
        assert_eq!(display_user_code("ÄÄÄÄ"), "ÄÄÄÄ", "8 bytes, not a code");
        assert_eq!(display_user_code("bcdfghjk"), "bcdfghjk", "not normalized");
    }

    #[test]
    fn default_public_clients_may_use_the_device_grant() {
        let d = run(&flytectl(), &[("client_id", "flytectl"), ("scope", "")]).unwrap();
        assert_eq!(d.scopes, ["all", "offline", "access_token"]);
        assert_eq!(d.audience, [DEFAULT_AUD]);
        assert!(d.grants_offline());

        // What the SDKs send: the server-advertised scopes and an empty audience.
        let d = run(&flytectl(), &[("scope", "all offline"), ("audience", "")]).unwrap();
        assert_eq!(d.scopes, ["all", "offline"]);
        assert_eq!(d.audience, [DEFAULT_AUD]);
        assert_eq!(run(&flytectl(), &[]).unwrap().scopes.len(), 3);
    }

    #[test]
    fn which_clients_are_allowed() {
        // A public client without authorization_code, and a confidential client without the device grant.
        let mut public = flytectl();
        public.grant_types = vec![REFRESH_TOKEN.into()];
        let mut conf = flytectl();
        conf.secret = Some(hash_generated_secret("s"));
        conf.grant_types = vec![AUTHORIZATION_CODE.into(), CLIENT_CREDENTIALS.into()];
        for c in [&public, &conf] {
            assert!(!allows_device_grant(c));
            assert_eq!(run(c, &[]).unwrap_err().code, ErrorCode::UnauthorizedClient);
        }
        // Listing the device grant is enough for either.
        public.grant_types.push(DEVICE_CODE.into());
        conf.grant_types.push(DEVICE_CODE.into());
        for c in [&public, &conf] {
            assert!(allows_device_grant(c));
            run(c, &[]).unwrap();
        }
    }

    #[test]
    fn scope_rules_are_those_of_authorize() {
        assert_eq!(
            run(&flytectl(), &[("scope", "openid all openid")])
                .unwrap()
                .scopes,
            ["openid", "all"]
        );
        let e = run(&flytectl(), &[("scope", "all admin")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("admin"));

        // Without the refresh_token grant: offline refused, and left out of the default.
        let mut c = flytectl();
        c.grant_types = vec![DEVICE_CODE.into()];
        assert_eq!(
            run(&c, &[("scope", "all offline")]).unwrap_err().code,
            ErrorCode::InvalidScope
        );
        let d = run(&c, &[("scope", " ")]).unwrap();
        assert_eq!(d.scopes, ["all", "access_token"]);
        assert!(!d.grants_offline());
    }

    #[test]
    fn audience_rules() {
        let aud = |a: &str| run(&flytectl(), &[("audience", a)]);
        assert_eq!(aud("").unwrap().audience, [DEFAULT_AUD]);
        assert_eq!(aud("api://flyte").unwrap().audience, ["api://flyte"]);
        assert_eq!(aud(DEFAULT_AUD).unwrap().audience, [DEFAULT_AUD]);
        assert_eq!(
            aud("https://evil.example.com").unwrap_err().code,
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            DeviceAuthorizationRequest::from_params(&params(&[("audience", ""), ("scope", "")])),
            DeviceAuthorizationRequest {
                scope: Some(""),
                audience: None
            }
        );
    }
}
