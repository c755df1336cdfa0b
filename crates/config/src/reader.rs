//! Reading one section's entries as typed values, recording every problem.

use crate::error::{ConfigError, ErrorKind};
use crate::ini::{Entry, Section};
use crate::suggest::suggest;

/// One section's entries, checked for unknown and repeated keys, with typed accessors that
/// record invalid values instead of stopping.
pub(crate) struct SectionReader<'a> {
    file: &'a str,
    section: &'a Section,
    /// The first entry for each known key, in file order.
    entries: Vec<&'a Entry>,
    /// Keys whose value was rejected.
    failed: Vec<&'static str>,
    /// How many problems this section has had.
    own_errors: usize,
    /// Where problems are recorded.
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> SectionReader<'a> {
    /// Checks `section`'s keys against `known`, recording unknown and repeated keys.
    pub fn new(
        file: &'a str,
        section: &'a Section,
        known: &[&'static str],
        errors: &'a mut Vec<ConfigError>,
    ) -> Self {
        let mut reader = SectionReader {
            file,
            section,
            entries: Vec::new(),
            failed: Vec::new(),
            own_errors: 0,
            errors,
        };
        for entry in &section.entries {
            if !known.contains(&entry.key.as_str()) {
                let kind = ErrorKind::UnknownKey {
                    suggestion: suggest(&entry.key, known.iter().copied()),
                    valid: known.iter().map(|k| k.to_string()).collect(),
                };
                reader.error(entry.line, Some(&entry.key), kind);
            } else if let Some(first) = reader.get(&entry.key) {
                let kind = ErrorKind::DuplicateKey {
                    first_line: first.line,
                };
                reader.error(entry.line, Some(&entry.key), kind);
            } else {
                reader.entries.push(entry);
            }
        }
        reader
    }

    /// The (first) entry for `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().copied().find(|e| e.key == key)
    }

    /// The line of `key` if given, else the section header's line.
    pub fn line_of(&self, key: &str) -> usize {
        self.get(key).map_or(self.section.line, |e| e.line)
    }

    /// Whether `key` was given and its value rejected.
    pub fn failed(&self, key: &str) -> bool {
        self.failed.contains(&key)
    }

    /// Whether any problem was recorded for this section.
    pub fn had_errors(&self) -> bool {
        self.own_errors > 0
    }

    /// Records a problem in this section.
    pub fn error(&mut self, line: usize, key: Option<&str>, kind: ErrorKind) {
        self.own_errors += 1;
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            section: Some(self.section.label.clone()),
            key: key.map(str::to_string),
            kind,
        });
    }

    /// Parses `key` with `parse`, or returns `default` if absent (or invalid, after recording
    /// the problem).
    pub fn value<T>(
        &mut self,
        key: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        self.optional(key, parse).unwrap_or(default)
    }

    /// Parses `key` with `parse`; `None` if absent or invalid (the latter recorded).
    pub fn optional<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let entry = self.get(key)?;
        let result = if entry.value.is_empty() {
            Err("empty value".to_string())
        } else {
            parse(&entry.value)
        };
        match result {
            Ok(v) => Some(v),
            Err(reason) => {
                self.failed.push(key);
                let kind = ErrorKind::InvalidValue {
                    value: entry.value.clone(),
                    reason,
                };
                self.error(entry.line, Some(key), kind);
                None
            }
        }
    }

    /// Parses required `key` with `parse`; `None` if invalid or missing (both recorded; a
    /// missing key is reported on the header's line).
    pub fn required<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.get(key).is_none() {
            let kind = ErrorKind::MissingKey {
                key: key.to_string(),
            };
            self.error(self.section.line, Some(key), kind);
            return None;
        }
        self.optional(key, parse)
    }
}
