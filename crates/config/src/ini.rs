//! The INI lexer: splits text into section headers and `key = value` entries with their line
//! numbers. It knows the four section types but nothing about keys or values.

use crate::error::{ConfigError, ErrorKind};
use crate::suggest::suggest;

/// The section types, as written in headers.
pub(crate) const SECTION_TYPES: [&str; 10] = [
    "server", "backend", "route", "l4", "listener", "limit", "acl", "budget", "alert", "plugin",
];

/// What a section header declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Header {
    /// `[server]`.
    Server,
    /// `[backend NAME]`.
    Backend(String),
    /// `[route NAME]`.
    Route(String),
    /// `[l4 NAME]`.
    L4(String),
    /// `[listener NAME]`.
    Listener(String),
    /// `[limit NAME]`.
    Limit(String),
    /// `[acl NAME]`.
    Acl(String),
    /// `[budget NAME]`.
    Budget(String),
    /// `[alert NAME]`.
    Alert(String),
    /// `[plugin NAME]`.
    Plugin(String),
    /// A header with an error already reported; its entries are lexed but not validated.
    /// `route` is set when it was meant to be a route (so "no routes" is not reported on top).
    Ignored {
        /// Whether the header's type was `route`.
        route: bool,
    },
}

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed, inline comment removed.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// A section header and the entries under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    /// What the header declares.
    pub header: Header,
    /// The header's contents with whitespace normalised, e.g. `backend llama-a`.
    pub label: String,
    /// 1-based line number of the header.
    pub line: usize,
    /// The entries, in file order.
    pub entries: Vec<Entry>,
}

/// The lexer's output: sections plus any syntax errors.
#[derive(Debug, Default)]
pub(crate) struct Lexed {
    /// Every section header found, in file order.
    pub sections: Vec<Section>,
    /// Problems found while lexing.
    pub errors: Vec<ConfigError>,
}

/// Whether `name` is a valid section name: `[A-Za-z0-9_.-]+`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Removes an inline comment: a `;` or `#` preceded by whitespace ends the value.
fn strip_inline_comment(s: &str) -> &str {
    let mut prev_ws = false;
    for (i, c) in s.char_indices() {
        if prev_ws && (c == ';' || c == '#') {
            return &s[..i];
        }
        prev_ws = c.is_whitespace();
    }
    s
}

fn is_comment(s: &str) -> bool {
    s.starts_with(';') || s.starts_with('#')
}

struct Lexer<'a> {
    file: &'a str,
    out: Lexed,
}

impl Lexer<'_> {
    fn error(&mut self, line: usize, section: Option<&str>, key: Option<&str>, kind: ErrorKind) {
        self.out.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            section: section.map(str::to_string),
            key: key.map(str::to_string),
            kind,
        });
    }

    fn syntax(&mut self, line: usize, section: Option<&str>, message: &str) {
        let kind = ErrorKind::Syntax {
            message: message.to_string(),
        };
        self.error(line, section, None, kind);
    }

    /// Reports a syntax error in the current section's body.
    fn body_syntax(&mut self, line: usize, message: &str) {
        let section = self.out.sections.last().map(|s| s.label.clone());
        self.syntax(line, section.as_deref(), message);
    }

    /// Handles a line starting with `[`, pushing a section (possibly `Ignored`).
    fn header(&mut self, line: usize, trimmed: &str) {
        let Some(close) = trimmed.find(']') else {
            self.syntax(line, None, "section header is missing its closing `]`");
            self.push_section(Header::Ignored { route: false }, String::new(), line);
            return;
        };
        let inner = &trimmed[1..close];
        let tokens: Vec<&str> = inner.split_whitespace().collect();
        let label = tokens.join(" ");
        let trailing = trimmed[close + 1..].trim();
        if !trailing.is_empty() && !is_comment(trailing) {
            self.syntax(
                line,
                Some(&label),
                "unexpected text after the section header's `]`",
            );
        }
        let header = self.classify(line, inner, &label, &tokens);
        self.push_section(header, label, line);
    }

    fn classify(&mut self, line: usize, inner: &str, label: &str, tokens: &[&str]) -> Header {
        let invalid = |reason: &str| ErrorKind::InvalidSectionName {
            header: inner.trim().to_string(),
            reason: reason.to_string(),
        };
        let Some(&kind) = tokens.first() else {
            self.syntax(line, None, "empty section header `[]`");
            return Header::Ignored { route: false };
        };
        let is_route = kind == "route";
        match (kind, tokens.len()) {
            ("server", 1) => Header::Server,
            ("server", _) => {
                let k = invalid("[server] takes no name");
                self.error(line, Some(label), None, k);
                Header::Ignored { route: false }
            }
            ("backend" | "route" | "l4" | "listener" | "limit" | "acl" | "budget", 1) => {
                let k = invalid(&format!("missing name; expected [{kind} NAME]"));
                self.error(line, Some(label), None, k);
                Header::Ignored { route: is_route }
            }
            (
                "backend" | "route" | "l4" | "listener" | "limit" | "acl" | "budget" | "plugin",
                2,
            ) if !is_valid_name(tokens[1]) => {
                let k = invalid("a name may only contain A-Z a-z 0-9 _ . -");
                self.error(line, Some(label), None, k);
                Header::Ignored { route: is_route }
            }
            ("backend", 2) => Header::Backend(tokens[1].to_string()),
            ("route", 2) => Header::Route(tokens[1].to_string()),
            ("l4", 2) => Header::L4(tokens[1].to_string()),
            ("listener", 2) => Header::Listener(tokens[1].to_string()),
            ("limit", 2) => Header::Limit(tokens[1].to_string()),
            ("acl", 2) => Header::Acl(tokens[1].to_string()),
            ("budget", 2) => Header::Budget(tokens[1].to_string()),
            ("alert", 2) => Header::Alert(tokens[1].to_string()),
            ("plugin", 2) => Header::Plugin(tokens[1].to_string()),
            (
                "backend" | "route" | "l4" | "listener" | "limit" | "acl" | "budget" | "alert"
                | "plugin",
                _,
            ) => {
                let k = invalid(&format!(
                    "expected [{kind} NAME] with a single name (no spaces)"
                ));
                self.error(line, Some(label), None, k);
                Header::Ignored { route: is_route }
            }
            _ => {
                let k = ErrorKind::UnknownSection {
                    kind: kind.to_string(),
                    suggestion: suggest(kind, SECTION_TYPES),
                };
                self.error(line, Some(label), None, k);
                Header::Ignored { route: false }
            }
        }
    }

    fn push_section(&mut self, header: Header, label: String, line: usize) {
        self.out.sections.push(Section {
            header,
            label,
            line,
            entries: Vec::new(),
        });
    }

    /// Handles any line that is not blank, a comment or a header.
    fn entry(&mut self, line: usize, trimmed: &str) {
        let Some((key, rest)) = trimmed.split_once('=') else {
            self.body_syntax(
                line,
                "expected `key = value`, a `[section]` header or a comment",
            );
            return;
        };
        let key = key.trim();
        if key.is_empty() {
            self.body_syntax(line, "missing key before `=`");
            return;
        }
        let value = strip_inline_comment(rest).trim();
        match self.out.sections.last_mut() {
            Some(s) => s.entries.push(Entry {
                key: key.to_string(),
                value: value.to_string(),
                line,
            }),
            None => self.error(line, None, Some(key), ErrorKind::KeyOutsideSection),
        }
    }
}

/// Splits `text` into sections. `file` is only used in error messages.
pub(crate) fn lex(text: &str, file: &str) -> Lexed {
    let mut lexer = Lexer {
        file,
        out: Lexed::default(),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || is_comment(trimmed) {
            continue;
        }
        if trimmed.starts_with('[') {
            lexer.header(line, trimmed);
        } else {
            lexer.entry(line, trimmed);
        }
    }
    lexer.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str, line: usize) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
            line,
        }
    }

    #[test]
    fn lexes_sections_entries_and_comments() {
        let text = "\u{feff}; top comment\r\n\
                    [server]\r\n\
                    \tlisten =  127.0.0.1:1 ; inline\r\n\
                    # hash comment\r\n\
                    \r\n\
                    [backend  a]  ; trailing comment\n\
                    address=h:1 # x\n\
                    weight = 2;3\n";
        let lexed = lex(text, "f");
        assert!(lexed.errors.is_empty(), "{:?}", lexed.errors);
        assert_eq!(lexed.sections.len(), 2);
        let s = &lexed.sections[0];
        assert_eq!((s.header.clone(), s.line), (Header::Server, 2));
        assert_eq!(s.entries, vec![entry("listen", "127.0.0.1:1", 3)]);
        let b = &lexed.sections[1];
        assert_eq!(b.header, Header::Backend("a".into()));
        assert_eq!(b.label, "backend a");
        assert_eq!(b.line, 6);
        assert_eq!(
            b.entries,
            vec![entry("address", "h:1", 7), entry("weight", "2;3", 8)]
        );
    }

    #[test]
    fn inline_comments_need_preceding_whitespace() {
        assert_eq!(strip_inline_comment(" a ; b"), " a ");
        assert_eq!(strip_inline_comment(" a\t# b"), " a\t");
        assert_eq!(strip_inline_comment("a;b#c"), "a;b#c");
        assert_eq!(strip_inline_comment(" ; b"), " ");
    }

    #[test]
    fn reports_bad_lines() {
        let lexed = lex(
            "k = v\n[server\n[]\n[server x]\n[backend]\n[route a b]\n[backend a!]\n\
             [upstream x]\njunk\n= v\n[route r] junk\n",
            "f",
        );
        let lines: Vec<usize> = lexed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(matches!(lexed.errors[0].kind, ErrorKind::KeyOutsideSection));
        assert_eq!(lexed.errors[0].key.as_deref(), Some("k"));
        assert!(matches!(
            lexed.errors[7].kind,
            ErrorKind::UnknownSection { .. }
        ));
        // A header with trailing junk still opens its section.
        assert_eq!(
            lexed.sections.last().map(|s| s.header.clone()),
            Some(Header::Route("r".into()))
        );
    }

    #[test]
    fn valid_names() {
        assert!(is_valid_name("llama-a_1.x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("\u{e9}"));
    }
}
