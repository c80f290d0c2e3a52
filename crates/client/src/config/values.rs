//! Parsers of single setting values. They are shared by variables, file keys and flags, so each returns a bare
//! message and the caller names where the value came from.

use std::net::Ipv6Addr;
use std::time::Duration;

use super::{AuthType, Endpoint};

/// `true/false`, `1/0`, `yes/no`, `on/off`, any case. Anything else is refused rather than read as "truthy".
pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "expected true or false (or 1/0, yes/no, on/off), found {value:?}"
        )),
    }
}

/// A non-empty string, surrounding whitespace removed.
pub(super) fn parse_text(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is empty".into());
    }
    Ok(value.to_owned())
}

/// Every spelling of either SDK and of the `flyte` CLI's `--auth-type`, compared without case and with `-` read
/// as `_` (so `client-secret`, `client_secret` and `ClientSecret`-as-`clientsecret` all match).
pub(super) fn parse_auth_type(value: &str) -> Option<AuthType> {
    let spelled = value.trim().to_ascii_lowercase().replace('-', "_");
    match spelled.as_str() {
        "pkce" | "standard" => Some(AuthType::Pkce),
        "clientsecret" | "client_secret" | "basic" | "client_credentials" | "app_credential" => {
            Some(AuthType::ClientSecret)
        }
        "deviceflow" | "device_flow" | "headless" => Some(AuthType::DeviceFlow),
        "externalcommand" | "external_command" | "external_process" | "command" | "custom" => {
            Some(AuthType::ExternalCommand)
        }
        _ => None,
    }
}

/// [`parse_auth_type`] with the message a person needs when it fails.
pub(super) fn parse_auth_type_setting(value: &str) -> Result<AuthType, String> {
    if let Some(auth_type) = parse_auth_type(value) {
        return Ok(auth_type);
    }
    if value.trim().eq_ignore_ascii_case("passthrough") {
        return Err(
            "Passthrough forwards the headers of an incoming request and has no meaning for this client".into(),
        );
    }
    Err(format!(
        "unknown auth type {value:?}: expected Pkce, ClientSecret, DeviceFlow or ExternalCommand"
    ))
}

/// Go's `time.ParseDuration` syntax (`30s`, `1h30m`, `1.5h`, `250ms`), or a whole number of seconds.
pub(super) fn parse_duration(value: &str) -> Result<Duration, String> {
    let text = value.trim();
    let bad = || {
        format!(
            "expected a duration such as 30s, 5m, 1h30m or 250ms (or whole seconds), found {value:?}"
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| bad());
    }
    let mut rest = text;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(bad()),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        // More than 18 fractional digits cannot change a nanosecond count of any unit.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| bad())?;
            digits * unit_nanos / 10u128.pow(fraction.len() as u32)
        };
        nanos = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(fraction_nanos))
            .and_then(|n| n.checked_add(nanos))
            .ok_or_else(bad)?;
        rest = after;
    }
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{value:?} is too long"))
}

/// A duration as [`parse_duration`] reads it back: `1h30m`, `2m`, `250ms`, `0s`.
pub(super) fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    let secs = duration.as_secs();
    let sub = duration.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(sub / 1_000_000), "ms"),
        (u64::from(sub / 1_000 % 1_000), "us"),
        (u64::from(sub % 1_000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// A list given as one string: a JSON array of strings, or words separated by commas and/or whitespace.
pub(super) fn parse_list(value: &str) -> Result<Vec<String>, String> {
    let text = value.trim();
    if text.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(text)
            .map_err(|e| format!("expected a JSON array of strings: {e}"));
    }
    Ok(text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A command given as one string: a JSON array; else flytekit's comma list when there are commas and no
/// whitespace; else words split like a shell does, honouring quotes and backslashes (nothing is expanded).
pub(super) fn parse_command(value: &str) -> Result<Vec<String>, String> {
    let text = value.trim();
    if text.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(text)
            .map_err(|e| format!("expected a JSON array of strings: {e}"));
    }
    if text.contains(',') && !text.contains(char::is_whitespace) {
        return Ok(text
            .split(',')
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect());
    }
    shell_words(text)
}

fn shell_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Distinguishes an empty quoted word (`''`) from no word at all.
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("the command has an unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("the command has an unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("the command has an unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("the command ends with a lone backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

const ENDPOINT_FORMS: &str =
    "expected dns:///HOST[:PORT], https://HOST[:PORT][/PREFIX] or HOST[:PORT]";

/// `dns:///h[:p]`, `h[:p]`, `http(s)://h[:p]`, each optionally followed by a path prefix.
pub(super) fn parse_endpoint(value: &str) -> Result<Endpoint, String> {
    let text = value.trim();
    if text.is_empty() {
        return Err("the endpoint is empty".into());
    }
    let rest = ["dns:///", "https://", "http://"]
        .iter()
        .find_map(|scheme| {
            text.get(..scheme.len())
                .filter(|head| head.eq_ignore_ascii_case(scheme))
                .map(|_| &text[scheme.len()..])
        });
    let rest = match rest {
        Some(rest) => rest,
        None if text.contains("://") => return Err(format!("{text:?}: {ENDPOINT_FORMS}")),
        None => text,
    };
    if let Some(c) = rest
        .chars()
        .find(|c| matches!(c, '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{text:?} contains {c:?}: {ENDPOINT_FORMS}"));
    }
    let (authority, prefix) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = parse_authority(authority).map_err(|why| format!("{text:?}: {why}"))?;
    Ok(Endpoint {
        authority,
        path_prefix: prefix.trim_end_matches('/').to_owned(),
    })
}

fn parse_authority(authority: &str) -> Result<String, String> {
    if authority.is_empty() {
        return Err(format!("no host: {ENDPOINT_FORMS}"));
    }
    let (host, port) = if let Some(inside) = authority.strip_prefix('[') {
        let Some((address, after)) = inside.split_once(']') else {
            return Err("an IPv6 address lacks its closing ']'".into());
        };
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("[{address}] is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {after:?} after the IPv6 address"))?,
            ),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err("an IPv6 address must be written in brackets, as [::1]:8080".into());
        }
        check_host(host)?;
        (host.to_ascii_lowercase(), port)
    };
    match port {
        None => Ok(host),
        Some(port) => {
            let valid = !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p != 0);
            if !valid {
                return Err(format!("{port:?} is not a port (1-65535)"));
            }
            Ok(format!("{host}:{port}"))
        }
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("no host: {ENDPOINT_FORMS}"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(())
}

/// The RPC base URL of an endpoint.
pub(super) fn base_url(endpoint: &Endpoint, insecure: bool) -> url::Url {
    let scheme = if insecure { "http" } else { "https" };
    let text = format!("{scheme}://{}{}", endpoint.authority, endpoint.path_prefix);
    match url::Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            // Only an Endpoint built by hand, bypassing `Endpoint::parse`, gets here.
            tracing::warn!(endpoint = %text, error = %e, "the endpoint is not a URL");
            unparsable_endpoint_url()
        }
    }
}

#[allow(
    clippy::expect_used,
    reason = "a constant URL that always parses; the input-dependent parse is handled by the caller"
)]
fn unparsable_endpoint_url() -> url::Url {
    url::Url::parse("https://invalid.invalid/").expect("a constant URL parses")
}

/// Whether `host` (no port) is a name with three or more labels, whose first label the `flyte` CLI takes as the
/// organization. IP addresses are not names.
pub(super) fn org_from_host(authority: &str) -> Option<String> {
    if authority.starts_with('[') {
        return None;
    }
    let host = authority.split(':').next().unwrap_or(authority);
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    (labels.len() >= 3 && !labels[0].is_empty()).then(|| labels[0].to_owned())
}

/// Whether the host is this machine (`localhost`, `*.localhost`, a loopback address).
pub(super) fn is_loopback(authority: &str) -> bool {
    let host = if let Some(inside) = authority.strip_prefix('[') {
        inside.split(']').next().unwrap_or(inside)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}
