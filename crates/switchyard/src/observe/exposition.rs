//! The Prometheus text exposition format (version 0.0.4): metric families with their `HELP`
//! and `TYPE` lines, samples with escaped label values, histograms with cumulative buckets.
//!
//! A writer appends to one `String`; the caller names each family once and then gives its
//! samples, so a family's samples stay together as the format requires.

use std::fmt::Write;

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Appends families and samples to a document.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts the family `name` (which must match `[a-zA-Z_:][a-zA-Z0-9_:]*`; the callers
    /// pass constants).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name), "metric name {name:?}");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self
    }

    /// One sample of the current family: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        push_value(&mut self.out, value);
        self.out.push('\n');
        self
    }

    /// A whole family whose samples differ by one label: `label="NAME" value` for each of
    /// `values`.
    pub fn labelled<'a>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> &mut Self {
        self.family(name, kind, help);
        for (n, v) in values {
            self.sample(name, &[(label, n)], v);
        }
        self
    }

    /// A histogram's samples: `buckets` are `(upper bound, count of values in that bucket)`
    /// in increasing order (made cumulative here), then `+Inf`, `_sum` and `_count`. A last
    /// bucket bounded by infinity holds the values past the largest finite bound.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
    ) -> &mut Self {
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (bound, count) in buckets {
            cumulative += count;
            if bound.is_infinite() {
                // Values past the largest bound: counted in `+Inf` alone.
                continue;
            }
            le.clear();
            push_value(&mut le, *bound);
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_bucket");
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {cumulative}");
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        self.out.push(' ');
        push_value(&mut self.out, sum);
        self.out.push('\n');
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {cumulative}");
        self
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (k, v) in all {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family(
            "switchyard_requests_total",
            Kind::Counter,
            "Requests.\nAll.",
        )
        .sample(
            "switchyard_requests_total",
            &[("route", "a\"b\\c\nd"), ("code", "2xx")],
            12.0,
        )
        .sample("switchyard_requests_total", &[], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP switchyard_requests_total Requests.\\nAll.\n\
             # TYPE switchyard_requests_total counter\n\
             switchyard_requests_total{route=\"a\\\"b\\\\c\\nd\",code=\"2xx\"} 12\n\
             switchyard_requests_total 0.5\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_and_end_with_inf() {
        let mut e = Exposition::new();
        e.family("x_seconds", Kind::Histogram, "X.").histogram(
            "x_seconds",
            &[("route", "r")],
            &[(0.005, 2), (0.1, 3), (f64::INFINITY, 1)],
            0.25,
        );
        let text = e.finish();
        assert!(text.contains("x_seconds_bucket{route=\"r\",le=\"0.005\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{route=\"r\",le=\"0.1\"} 5\n"));
        assert!(text.contains("x_seconds_bucket{route=\"r\",le=\"+Inf\"} 6\n"));
        assert_eq!(text.matches("+Inf").count(), 1);
        assert!(text.contains("x_seconds_sum{route=\"r\"} 0.25\n"));
        assert!(text.contains("x_seconds_count{route=\"r\"} 6\n"));
    }

    #[test]
    fn special_values_and_names() {
        let mut s = String::new();
        push_value(&mut s, f64::NAN);
        s.push(' ');
        push_value(&mut s, f64::INFINITY);
        s.push(' ');
        push_value(&mut s, 1e20);
        assert_eq!(s, "NaN +Inf 100000000000000000000");
        assert!(valid_name("switchyard_up"));
        assert!(!valid_name("9lives"));
        assert!(!valid_name("a-b"));
    }
}
