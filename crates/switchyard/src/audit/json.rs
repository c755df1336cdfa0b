//! The few JSON pieces an audit request line is made of, appended to a byte buffer without
//! allocating: strings with JSON escaping, unsigned integers, milliseconds with microsecond
//! precision, RFC 3339 times. The text is what `serde_json` writes for the same values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Appends `s` as a JSON string: quoted, with `"`, `\` and control characters escaped.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    // Most strings need no escape: one pass without branches (vectorised), one copy.
    if !s.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Appends `s` in quotes as it is: for text that never needs escaping (an IP address as the
/// proxy prints it, an HTTP method, which is a token).
pub fn plain_string(out: &mut Vec<u8>, s: &[u8]) {
    debug_assert!(!s.iter().any(|&b| needs_escape(b)), "{s:?}");
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `,"key":` and `value` as a JSON string, or nothing without a value (`key` is
/// written as it is: a field name needing no escape).
pub fn opt_field(out: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    if let Some(v) = value {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        string(out, v);
    }
}

/// Appends `n` in decimal.
pub fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in decimal with at least `width` digits (zero-padded).
fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut n = n;
    while n > 0 {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[i.min(digits.len() - width)..]);
}

/// Appends `d` in milliseconds with microsecond precision, as the shortest decimal that
/// reads back as the same float (`1.5`, `12.0`, `0.123`), like `serde_json` writes the `f64`.
pub fn ms(out: &mut Vec<u8>, d: Duration) {
    let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
    uint(out, us / 1000);
    out.push(b'.');
    let frac = us % 1000;
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let (frac, width) = match frac {
        f if f % 100 == 0 => (f / 100, 1),
        f if f % 10 == 0 => (f / 10, 2),
        f => (f, 3),
    };
    padded(out, frac, width);
}

/// Appends `t` as a quoted RFC 3339 UTC time with milliseconds, e.g.
/// `"2026-11-26T12:00:00.123Z"`.
pub fn time(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    out.push(b'"');
    padded(out, y.max(0) as u64, 4);
    for (sep, n) in [(b'-', mo), (b'-', da)] {
        out.push(sep);
        padded(out, u64::from(n), 2);
    }
    for (sep, n) in [
        (b'T', rem / 3600),
        (b':', rem % 3600 / 60),
        (b':', rem % 60),
    ] {
        out.push(sep);
        padded(out, n, 2);
    }
    out.push(b'.');
    padded(out, u64::from(d.subsec_millis()), 3);
    out.extend_from_slice(b"Z\"");
}

/// A thread's last second written by [`TimeText::write`]: its text up to the milliseconds,
/// formatted once per second instead of once per line.
#[derive(Debug, Clone, Default)]
pub struct TimeText {
    secs: Option<u64>,
    /// `"YYYY-MM-DDTHH:MM:SS.` (with the opening quote).
    text: Vec<u8>,
}

impl TimeText {
    /// Appends `t` exactly as [`time`] does.
    pub fn write(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.secs != Some(d.as_secs()) {
            self.text.clear();
            time(
                &mut self.text,
                UNIX_EPOCH + Duration::from_secs(d.as_secs()),
            );
            self.text.truncate(self.text.len() - b"000Z\"".len());
            self.secs = Some(d.as_secs());
        }
        out.extend_from_slice(&self.text);
        padded(out, u64::from(d.subsec_millis()), 3);
        out.extend_from_slice(b"Z\"");
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "",
            "/v1/chat",
            "a\"b\\c",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "é→😀",
            "end\"",
        ] {
            let ours = text(|o| string(o, s.as_bytes()));
            assert_eq!(ours, serde_json::to_string(s).unwrap(), "{s:?}");
        }
        assert_eq!(text(|o| opt_field(o, b"k", None)), "");
        assert_eq!(text(|o| opt_field(o, b"k", Some(b"v\""))), r#","k":"v\"""#);
    }

    #[test]
    fn integers() {
        for n in [0, 7, 10, 200, 123_456_789, u64::MAX] {
            assert_eq!(text(|o| uint(o, n)), n.to_string());
        }
    }

    #[test]
    fn milliseconds_read_back_as_serde_json_writes_them() {
        for us in [
            0u64,
            1,
            10,
            100,
            999,
            1000,
            1500,
            12_000,
            12_340,
            123_456,
            86_400_000_001,
        ] {
            let d = Duration::from_micros(us);
            let f = (d.as_micros() as f64) / 1000.0;
            assert_eq!(
                text(|o| ms(o, d)),
                serde_json::to_string(&f).unwrap(),
                "{us}µs"
            );
        }
    }

    #[test]
    fn cached_seconds_write_the_same_times() {
        let mut cache = TimeText::default();
        for ms in [
            0,
            999,
            1_000,
            1_709_210_096_789,
            1_709_210_096_001,
            1_709_210_097_000,
            951_782_400_000,
            253_402_300_799_999,
        ] {
            let t = UNIX_EPOCH + Duration::from_millis(ms) + Duration::from_micros(456);
            let cached = text(|o| cache.write(o, t));
            assert_eq!(cached, text(|o| time(o, t)), "{ms}");
        }
    }

    #[test]
    fn times() {
        let t = |ms| text(|o| time(o, UNIX_EPOCH + Duration::from_millis(ms)));
        assert_eq!(t(0), "\"1970-01-01T00:00:00.000Z\"");
        assert_eq!(t(1_709_210_096_789), "\"2024-02-29T12:34:56.789Z\"");
        assert_eq!(t(951_782_400_000), "\"2000-02-29T00:00:00.000Z\"");
        assert_eq!(t(253_402_300_799_999), "\"9999-12-31T23:59:59.999Z\"");
    }
}
