//! A route's `versions` key: which version of a model serves requests that name the model
//! without one.
//!
//! `versions = llama@v1 90, llama@v2 10, qwen@newest` splits requests for `llama` between the
//! backends serving `llama@v1` and `llama@v2` by weight (a canary), and sends requests for
//! `qwen` to the newest version any healthy backend serves. A single weighted entry pins the
//! model to that version. Requests that name a version (`llama@v2`) get that version.

use std::fmt;

use crate::model::ModelId;

/// How a model's version is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionChoice {
    /// The highest version served by a healthy backend (compared as numbers where the versions
    /// are numbers, `v2 < v10`, else as text).
    Newest,
    /// These versions, each getting `weight` parts of the requests; one entry pins the version.
    Weighted(Vec<(String, u32)>),
}

/// The rule for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersions {
    /// The model's name (without a version).
    pub model: String,
    /// How its version is chosen.
    pub choice: VersionChoice,
}

/// The most weight one entry takes.
pub const MAX_VERSION_WEIGHT: u32 = 10_000;

impl fmt::Display for ModelVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.choice {
            VersionChoice::Newest => write!(f, "{}@newest", self.model),
            VersionChoice::Weighted(entries) => {
                for (i, (v, w)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}@{v} {w}", self.model)?;
                }
                Ok(())
            }
        }
    }
}

/// Parses a `versions` value (entries separated by commas), grouping entries by model.
pub fn parse_versions(s: &str) -> Result<Vec<ModelVersions>, String> {
    let mut out: Vec<ModelVersions> = Vec::new();
    for entry in crate::value::parse_list(s)? {
        let (id, weight) = match entry.split_once(char::is_whitespace) {
            Some((id, w)) => {
                let w: u32 = w.trim().parse().map_err(|_| {
                    format!("`{entry}`: the weight after the model must be a whole number")
                })?;
                if w == 0 || w > MAX_VERSION_WEIGHT {
                    return Err(format!(
                        "`{entry}`: weight must be between 1 and {MAX_VERSION_WEIGHT}"
                    ));
                }
                (id, Some(w))
            }
            None => (entry, None),
        };
        let id: ModelId = id.parse().map_err(|e| format!("`{entry}`: {e}"))?;
        let Some(version) = id.version else {
            return Err(format!(
                "`{entry}`: expected NAME@VERSION [WEIGHT] or NAME@newest"
            ));
        };
        let existing = out.iter_mut().find(|m| m.model == id.name);
        match (version.as_str(), weight, existing) {
            ("newest", Some(_), _) => {
                return Err(format!("`{entry}`: `newest` takes no weight"));
            }
            ("newest", None, None) => out.push(ModelVersions {
                model: id.name,
                choice: VersionChoice::Newest,
            }),
            (_, _, Some(m)) => match &mut m.choice {
                VersionChoice::Weighted(entries) if version != "newest" => {
                    if entries.iter().any(|(v, _)| *v == version) {
                        return Err(format!("`{entry}`: version listed twice"));
                    }
                    entries.push((version, weight.unwrap_or(1)));
                }
                _ => {
                    return Err(format!(
                        "`{entry}`: model `{}` already has a rule; use either NAME@newest or \
                         weighted versions",
                        m.model
                    ))
                }
            },
            (_, w, None) => out.push(ModelVersions {
                model: id.name,
                choice: VersionChoice::Weighted(vec![(version, w.unwrap_or(1))]),
            }),
        }
    }
    Ok(out)
}

/// Orders two versions: numerically where both are numbers after an optional `v` (and dotted
/// parts, `1.10 > 1.9`), else as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(v: &str) -> Option<Vec<u64>> {
        let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
        v.split(['.', '-', '_']).map(|p| p.parse().ok()).collect()
    }
    match (parts(a), parts(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn parses_and_prints() {
        let rules = parse_versions("llama@v1 90, llama@v2 10, qwen@newest, mistral@7b").unwrap();
        assert_eq!(
            rules,
            vec![
                ModelVersions {
                    model: "llama".into(),
                    choice: VersionChoice::Weighted(vec![("v1".into(), 90), ("v2".into(), 10)]),
                },
                ModelVersions {
                    model: "qwen".into(),
                    choice: VersionChoice::Newest,
                },
                ModelVersions {
                    model: "mistral".into(),
                    choice: VersionChoice::Weighted(vec![("7b".into(), 1)]),
                },
            ]
        );
        let text: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            text.join(", "),
            "llama@v1 90, llama@v2 10, qwen@newest, mistral@7b 1"
        );
    }

    #[test]
    fn refuses_what_makes_no_sense() {
        for bad in [
            "",
            "llama",
            "llama@v1 0",
            "llama@v1 x",
            "llama@v1 20000",
            "llama@newest 5",
            "llama@newest, llama@v1",
            "llama@v1, llama@newest",
            "llama@v1, llama@v1",
            "@v1",
        ] {
            assert!(parse_versions(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_compare_as_numbers_when_they_are() {
        assert_eq!(compare_versions("v2", "v10"), Less);
        assert_eq!(compare_versions("1.10", "1.9"), Greater);
        assert_eq!(compare_versions("2", "v2"), Equal);
        assert_eq!(compare_versions("beta", "alpha"), Greater);
    }
}
