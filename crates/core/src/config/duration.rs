//! Go duration strings (`"30m"`, `"1h30m"`, `"1.5s"`, `"500ms"`), the form flyteadmin's configuration uses.

use std::time::Duration;

use serde::{Deserializer, Serializer, de};

/// What a duration value must look like; used in error messages.
pub(crate) const EXPECTED: &str = "a Go duration string such as \"30m\", \"1h30m\", \"1.5s\" or \"500ms\" (units ns, us, ms, s, m, h)";

/// Parses a Go duration string. Negative durations are rejected: every duration in our configuration is a
/// span of time that must not run backwards.
pub fn parse_go_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let bad = || format!("invalid duration {input:?}: expected {EXPECTED}");
    let s = match s.strip_prefix('+') {
        Some(rest) => rest,
        None if s.starts_with('-') => {
            return if s[1..].chars().all(|c| c == '0' || c == '.') && s.len() > 1 {
                Ok(Duration::ZERO)
            } else {
                Err(format!(
                    "invalid duration {input:?}: expected a duration that is not negative"
                ))
            };
        }
        None => s,
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(f) => {
                let frac_len = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = after_num
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_num.len());
        let (unit, next) = after_num.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let int_value: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut nanos = int_value.checked_mul(unit_nanos).ok_or_else(bad)?;
        // Fractions beyond nanosecond precision are truncated, as Go does.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(bad)?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad())?;
    // The remainder is below 10^9 and always fits.
    let sub = u32::try_from(total % 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, sub))
}

/// Formats a duration as a compact Go duration string that [`parse_go_duration`] reads back unchanged.
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let nanos = d.subsec_nanos();
    let secs = d.as_secs();
    if secs == 0 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let mut out = String::new();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || nanos > 0 {
        out.push_str(&s.to_string());
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out.push('s');
    }
    out
}

/// serde `with` module for `std::time::Duration` fields written as Go duration strings.
pub(crate) mod go {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_go_duration(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                // A bare 0 is unambiguous; any other bare number is (in Go) nanoseconds, which is almost never what
                // the author meant, so it is refused rather than guessed.
                if v == 0 {
                    Ok(Duration::ZERO)
                } else {
                    Err(E::custom(format!(
                        "invalid duration {v}: a bare number has no unit; expected {EXPECTED}"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "invalid duration {v}: expected a duration that is not negative"
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("1s", Duration::from_secs(1)),
            ("30m", Duration::from_secs(1800)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("2h45m10s", Duration::from_secs(9910)),
            ("1.5h", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("500ms", Duration::from_millis(500)),
            ("10us", Duration::from_micros(10)),
            ("10\u{b5}s", Duration::from_micros(10)),
            ("10\u{3bc}s", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("+5m", Duration::from_secs(300)),
            ("1m1.000000001s", Duration::new(61, 1)),
            (" 30m ", Duration::from_secs(1800)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for s in [
            "",
            "30",
            "m",
            "1x",
            "1h30",
            "-5m",
            "1..5s",
            ".s",
            "h1",
            "1 h",
            "99999999999999999999999h",
        ] {
            let err = parse_go_duration(s).unwrap_err();
            assert!(err.contains("duration"), "{s}: {err}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(7),
            Duration::from_micros(10),
            Duration::from_millis(500),
            Duration::from_millis(1500),
            Duration::from_secs(1),
            Duration::from_secs(1800),
            Duration::from_secs(3600),
            Duration::from_secs(5400),
            Duration::new(61, 1),
        ] {
            let s = format_go_duration(d);
            assert_eq!(parse_go_duration(&s), Ok(d), "{s}");
        }
        assert_eq!(format_go_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(format_go_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
    }
}
