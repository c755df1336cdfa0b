//! Parsing and formatting of individual values: durations, sizes, whole numbers, lists and
//! socket addresses.
//!
//! Every parser returns `Err(reason)` with a human-readable reason (what was expected) and never
//! panics.

use std::net::SocketAddr;
use std::time::Duration;

const MS_PER_S: u64 = 1_000;
const MS_PER_M: u64 = 60 * MS_PER_S;
const MS_PER_H: u64 = 60 * MS_PER_M;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// Splits `s` into its leading ASCII digits and the rest, rejecting signs and fractions with a
/// helpful message. `what` names the kind of value ("duration", "size").
fn split_number<'a>(s: &'a str, what: &str, example: &str) -> Result<(u64, &'a str), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("empty {what}; expected e.g. {example}"));
    }
    if s.starts_with('-') {
        return Err(format!(
            "a {what} cannot be negative; expected e.g. {example}"
        ));
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, rest) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "expected a whole number with an optional unit, e.g. {example}"
        ));
    }
    if rest.starts_with('.') || rest.starts_with(',') {
        return Err(format!(
            "fractional {what}s are not supported; use a smaller unit (e.g. {example})"
        ));
    }
    let n = parse_u64(digits).map_err(|_| format!("{what} `{s}` is too large"))?;
    Ok((n, rest))
}

/// Parses a non-negative whole decimal number (ASCII digits only: no sign, no spaces).
pub fn parse_u64(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("empty value; expected a whole number".to_string());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a non-negative whole number (digits only)".to_string());
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| format!("number `{s}` is too large"))?;
    }
    Ok(n)
}

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h` (case-insensitive);
/// a bare number is seconds. `0` is accepted here (callers check their own range).
///
/// ```
/// # use std::time::Duration;
/// # use switchyard_config::value::parse_duration;
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("1.5s").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let example = "500ms, 10s, 5m or 1h";
    let (n, unit) = split_number(s, "duration", example)?;
    let ms_per_unit = match unit.to_ascii_lowercase().as_str() {
        "ms" => 1,
        "" | "s" => MS_PER_S,
        "m" => MS_PER_M,
        "h" => MS_PER_H,
        _ => {
            return Err(format!(
                "unknown duration unit `{unit}`; expected ms, s, m or h (e.g. {example})"
            ))
        }
    };
    let ms = n
        .checked_mul(ms_per_unit)
        .ok_or_else(|| format!("duration `{}` is too large", s.trim()))?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration with the largest unit that divides it exactly: `2m`, `90s`, `1500ms`;
/// zero is `0s`. Sub-millisecond parts are rounded up to the next millisecond.
///
/// ```
/// # use std::time::Duration;
/// # use switchyard_config::value::format_duration;
/// assert_eq!(format_duration(Duration::from_secs(120)), "2m");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        ms += 1;
    }
    let (h, m, s) = (
        u128::from(MS_PER_H),
        u128::from(MS_PER_M),
        u128::from(MS_PER_S),
    );
    if ms == 0 {
        "0s".to_string()
    } else if ms % h == 0 {
        format!("{}h", ms / h)
    } else if ms % m == 0 {
        format!("{}m", ms / m)
    } else if ms % s == 0 {
        format!("{}s", ms / s)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a size in bytes: a whole number, optionally followed by `k`/`kb`/`kib`,
/// `m`/`mb`/`mib` or `g`/`gb`/`gib` (all 1024-based, case-insensitive) or `b`.
///
/// ```
/// # use switchyard_config::value::parse_size;
/// assert_eq!(parse_size("16k"), Ok(16384));
/// assert_eq!(parse_size("1MiB"), Ok(1 << 20));
/// assert_eq!(parse_size("512"), Ok(512));
/// ```
pub fn parse_size(s: &str) -> Result<usize, String> {
    let example = "8192, 16k or 1m";
    let (n, unit) = split_number(s, "size", example)?;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => {
            return Err(format!(
                "unknown size unit `{unit}`; expected k, m or g (1024-based), e.g. {example}"
            ))
        }
    };
    usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size `{}` is too large", s.trim()))
}

/// Formats a size with the largest 1024-based unit that divides it exactly: `16k`, `1m`,
/// `1500`.
///
/// ```
/// # use switchyard_config::value::format_size;
/// assert_eq!(format_size(16384), "16k");
/// assert_eq!(format_size(1000), "1000");
/// ```
pub fn format_size(n: usize) -> String {
    if n == 0 {
        "0".to_string()
    } else if n % GIB == 0 {
        format!("{}g", n / GIB)
    } else if n % MIB == 0 {
        format!("{}m", n / MIB)
    } else if n % KIB == 0 {
        format!("{}k", n / KIB)
    } else {
        n.to_string()
    }
}

/// Splits a comma-separated list, trimming each entry. Empty entries (including an entirely
/// empty value, `a,,b` and a trailing comma) are errors.
///
/// ```
/// # use switchyard_config::value::parse_list;
/// assert_eq!(parse_list(" a , b "), Ok(vec!["a", "b"]));
/// assert!(parse_list("a,,b").is_err());
/// ```
pub fn parse_list(s: &str) -> Result<Vec<&str>, String> {
    if s.trim().is_empty() {
        return Err("empty list; expected one or more comma-separated entries".to_string());
    }
    let entries: Vec<&str> = s.split(',').map(str::trim).collect();
    if let Some(i) = entries.iter().position(|e| e.is_empty()) {
        return Err(format!(
            "entry {} of the list is empty; remove the extra comma",
            i + 1
        ));
    }
    Ok(entries)
}

/// Formats a list as INI: entries joined by `, `.
pub fn format_list<S: AsRef<str>>(entries: &[S]) -> String {
    entries
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a socket address to listen on: `IPv4:PORT` or `[IPv6]:PORT` (no host names).
/// Port 0 asks the operating system for any free port.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse::<SocketAddr>().map_err(|_| {
        "expected an IP address and port such as 127.0.0.1:8080 or [::1]:8080 \
         (host names are not accepted here)"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("10S"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_reject_bad_input() {
        for bad in [
            "", " ", "-1", "-1s", "1.5s", "1,5s", "s", "ms", "10x", "10 s", "+5s", "1d", "1e3",
            "١s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("1.5s").unwrap_err().contains("fractional"));
        assert!(parse_duration("-1").unwrap_err().contains("negative"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("10x").unwrap_err().contains("unit"));
    }

    #[test]
    fn durations_overflow_is_an_error() {
        assert!(parse_duration("18446744073709551615ms").is_ok());
        assert!(parse_duration("18446744073709551616ms")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("18446744073709551615h")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("99999999999999999999999999999999").is_err());
    }

    #[test]
    fn durations_format_with_largest_exact_unit() {
        let f = |ms| format_duration(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(1), "1ms");
        assert_eq!(f(1500), "1500ms");
        assert_eq!(f(90_000), "90s");
        assert_eq!(f(120_000), "2m");
        assert_eq!(f(5_400_000), "90m");
        assert_eq!(f(7_200_000), "2h");
        assert_eq!(format_duration(Duration::from_nanos(1)), "1ms");
        assert_eq!(format_duration(Duration::from_nanos(1_000_001)), "2ms");
    }

    #[test]
    fn durations_round_trip() {
        for ms in [1, 999, 1000, 59_999, 60_000, 3_600_000, 3_600_001, u64::MAX] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}ms");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("100b"), Ok(100));
        for k in ["16k", "16K", "16kb", "16KB", "16kib", "16KiB"] {
            assert_eq!(parse_size(k), Ok(16 * 1024), "{k}");
        }
        for m in ["1m", "1M", "1mb", "1MiB"] {
            assert_eq!(parse_size(m), Ok(1 << 20), "{m}");
        }
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    }

    #[test]
    fn sizes_reject_bad_input() {
        for bad in ["", "-1", "1.5k", "k", "10q", "10 k", "1kk", "1tb", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("18446744073709551615g")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes_format_with_largest_exact_unit() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1), "1");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(1024), "1k");
        assert_eq!(format_size(16384), "16k");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(1 << 20), "1m");
        assert_eq!(format_size(3 << 30), "3g");
        for n in [
            0,
            1,
            1023,
            1024,
            1025,
            1 << 20,
            (1 << 20) + 1024,
            usize::MAX,
        ] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_u64("18446744073709551616").is_err());
        for bad in ["", "-1", "+1", "1.0", " 1", "x"] {
            assert!(parse_u64(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(parse_list("a"), Ok(vec!["a"]));
        assert_eq!(parse_list("a, b ,c"), Ok(vec!["a", "b", "c"]));
        for bad in ["", " ", ",", "a,", ",a", "a,,b", "a, ,b"] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_list(&["a", "b"]), "a, b");
        assert_eq!(format_list::<&str>(&[]), "");
    }

    #[test]
    fn socket_addrs() {
        assert_eq!(
            parse_socket_addr("127.0.0.1:8080"),
            Ok("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("[::1]:80"),
            Ok("[::1]:80".parse().unwrap())
        );
        for bad in ["localhost:80", "127.0.0.1", "::1:80", "1.2.3.4:99999", ""] {
            assert!(parse_socket_addr(bad).is_err(), "{bad:?}");
        }
    }
}
