//! A strict parser of the Prometheus text format (0.0.4), enough to check `/metrics`: every
//! family has one `# HELP` and one `# TYPE` before its samples, its samples are contiguous,
//! names and label names are valid, label values are properly escaped, values are numbers, no
//! series appears twice, and histograms have cumulative buckets ending in `+Inf` equal to
//! `_count`. Any violation is an `Err` naming the line.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample: its labels (sorted) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed document.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Family name to its type.
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// The value of `name` with exactly `labels`, if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Every sample of `name` whose labels include `labels`.
    pub fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn valid_label(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `name{labels} value` (no timestamps are expected from switchyard).
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "no value".to_string())?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end: usize;
        loop {
            // label name
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if r[start..].starts_with('}') {
                end = start + 1;
                break;
            }
            let eq = r[start..].find('=').ok_or("label without =")? + start;
            let lname = &r[start..eq];
            if !valid_label(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            if !r[eq + 1..].starts_with('"') {
                return Err("label value not quoted".into());
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                chars.next();
            }
            let mut v = String::new();
            loop {
                let (_, c) = chars.next().ok_or("unterminated label value")?;
                match c {
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => v.push('\\'),
                        '"' => v.push('"'),
                        'n' => v.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    '"' => break,
                    '\n' => return Err("raw newline in label value".into()),
                    c => v.push(c),
                }
            }
            if labels.insert(lname.to_string(), v).is_some() {
                return Err(format!("label {lname} twice"));
            }
            match chars.next().ok_or("unterminated labels")? {
                (_, ',') => {}
                (i, '}') => {
                    end = i + 1;
                    break;
                }
                (_, c) => return Err(format!("unexpected {c:?} after a label")),
            }
        }
        rest = &r[end..];
    }
    let v = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_string())?;
    if v.contains(' ') {
        return Err("timestamps or trailing fields are not expected".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: value(v)?,
    })
}

/// The family a sample name belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram") {
                return Some(base);
            }
        }
    }
    None
}

/// Parses and checks `text`.
pub fn parse(text: &str) -> Result<Metrics, String> {
    let mut m = Metrics::default();
    let mut helped = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen = HashSet::new();
    if !text.ends_with('\n') {
        return Err("the document must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(err("empty line".into()));
        }
        if let Some(c) = line.strip_prefix("# ") {
            let mut parts = c.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !valid_name(name) {
                return Err(err(format!("bad family name {name:?}")));
            }
            match kind {
                "HELP" => {
                    if !helped.insert(name.to_string()) {
                        return Err(err("HELP twice".into()));
                    }
                }
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(err(format!("bad type {t:?}")));
                    }
                    if m.types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(err("TYPE twice".into()));
                    }
                    if let Some(prev) = current.replace(name.to_string()) {
                        finished.insert(prev);
                    }
                }
                _ => return Err(err("unknown comment".into())),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(err("malformed comment".into()));
        }
        let s = sample(line).map_err(err)?;
        let family = family_of(&s.name, &m.types)
            .ok_or_else(|| err("sample before its TYPE".into()))?
            .to_string();
        if current.as_deref() != Some(family.as_str()) || finished.contains(&family) {
            return Err(err(format!(
                "sample of {family} outside its family's block"
            )));
        }
        if !helped.contains(&family) {
            return Err(err("family without HELP".into()));
        }
        let t = &m.types[&family];
        if t == "counter" && (s.value.is_nan() || s.value < 0.0) {
            return Err(err("negative or NaN counter".into()));
        }
        if s.name.ends_with("_bucket") && t == "histogram" && !s.labels.contains_key("le") {
            return Err(err("bucket without le".into()));
        }
        let key = format!("{}{:?}", s.name, s.labels);
        if !seen.insert(key) {
            return Err(err("series twice".into()));
        }
        m.samples.push(s);
    }
    check_histograms(&m)?;
    Ok(m)
}

/// Each histogram series: buckets in increasing `le`, cumulative, ending in `+Inf` equal to
/// `_count`, with a `_sum`.
fn check_histograms(m: &Metrics) -> Result<(), String> {
    for (family, t) in &m.types {
        if t != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in m.samples.iter().filter(|s| s.name == bucket) {
            let mut labels = s.labels.clone();
            let le = value(&labels.remove("le").unwrap())?;
            groups
                .entry(format!("{labels:?}"))
                .or_default()
                .push((le, s.value));
        }
        for (labels, buckets) in groups {
            let ok = buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            if !ok {
                return Err(format!(
                    "{family}{labels}: buckets not increasing and cumulative"
                ));
            }
            let last = buckets.last().unwrap();
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels}: no +Inf bucket"));
            }
            let count = m
                .samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count") && format!("{:?}", s.labels) == labels
                })
                .ok_or_else(|| format!("{family}{labels}: no _count"))?;
            if count.value != last.1 {
                return Err(format!(
                    "{family}{labels}: +Inf {} != _count {}",
                    last.1, count.value
                ));
            }
            let has_sum = m
                .samples
                .iter()
                .any(|s| s.name == format!("{family}_sum") && format!("{:?}", s.labels) == labels);
            if !has_sum {
                return Err(format!("{family}{labels}: no _sum"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 3\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 3.5\nh_count 2\n";
    let m = parse(good).unwrap();
    assert_eq!(m.get("a_total", &[("x", "q\"\\\n")]), Some(3.0));
    for bad in [
        "a 1\n",                                                        // no TYPE
        "# HELP a A.\n# TYPE a gauge\na{x=\"1} 1\n",                    // unterminated
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n",               // bad escape
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",                      // twice
        "# HELP a A.\n# TYPE a gauge\na one\n",                         // value
        "# HELP a A.\n# TYPE a counter\na -1\n",                        // negative counter
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\nb 1\na 1\n", // not contiguous
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
