//! The `health` key of a backend: which active check runs, and its words.
//!
//! A check is a list of words separated by whitespace. A word may be quoted to hold spaces:
//! `"..."` with `\"` and `\\` as the only escapes, or `'...'` taken literally. A quote opens
//! and closes a whole word; inside a bare word, quotes and backslashes are plain characters. An INI value cannot hold a `;` or `#` after whitespace (that starts
//! an inline comment), not even inside quotes, so such checks are rejected here too and every
//! check that parses also renders to text that parses back to it.

use std::fmt;
use std::str::FromStr;

/// The longest `http` body substring accepted, in bytes (the check searches the first 64 KiB
/// of the response body for it).
pub const MAX_BODY_SUBSTRING: usize = 1024;

/// An active health check (`health = ...` in a `[backend NAME]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `tcp`: a TCP connect to the backend's address.
    Tcp,
    /// `http [METHOD] PATH [STATUS] ["BODY"]`: an HTTP request to the backend, passing when
    /// it answers `status` (and, with `body`, when the response body contains it).
    Http {
        /// Request method (GET by default).
        method: String,
        /// Request path.
        path: String,
        /// Expected status (200 by default).
        status: u16,
        /// A substring the response body must contain (searched in its first 64 KiB).
        body: Option<String>,
    },
    /// `ai` or `ai completion`: `GET /v1/models` must answer 200 with every model the backend
    /// declares; with `completion`, a one-token chat completion must answer 200 as well.
    Ai {
        /// Whether a one-token chat completion is requested too.
        completion: bool,
    },
    /// `script COMMAND [ARG...]`: runs `command` (no shell) with the backend's address in its
    /// environment; exit status 0 passes.
    Script {
        /// The program: a path, or a name looked up in `PATH`.
        command: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

const USAGE: &str = "expected `tcp`, `http [METHOD] PATH [STATUS] [\"BODY\"]`, `ai`, \
                     `ai completion` or `script COMMAND [ARG...]`, e.g. `http GET /health 200`";

/// One word of a check, and whether it was quoted.
#[derive(Debug, PartialEq, Eq)]
struct Word {
    text: String,
    quoted: bool,
}

/// Splits `s` into words (see the module documentation for the quoting rules).
fn words(s: &str) -> Result<Vec<Word>, String> {
    if let Some(i) = comment_start(s) {
        return Err(format!(
            "`{}` after whitespace would start an inline comment in the config file; \
             it cannot appear in a health check, not even quoted",
            &s[i..].chars().next().unwrap_or(';')
        ));
    }
    if s.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err("control characters are not allowed".to_string());
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(out);
        };
        let mut text = String::new();
        let quoted = first == '"' || first == '\'';
        if quoted {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    _ if c == first => {
                        closed = true;
                        break;
                    }
                    '\\' if first == '"' => match chars.next() {
                        Some(e @ ('"' | '\\')) => text.push(e),
                        Some(e) => {
                            return Err(format!(
                                "unknown escape `\\{e}` in a quoted word (only \\\" and \\\\)"
                            ))
                        }
                        None => break,
                    },
                    _ if c.is_control() => {
                        return Err("control characters are not allowed in quotes".to_string())
                    }
                    _ => text.push(c),
                }
            }
            if !closed {
                return Err(format!(
                    "unterminated {first}quote{first} (note: `;` or `#` after whitespace \
                     starts an inline comment, which cuts the value short)"
                ));
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err("a closing quote must end its word".to_string());
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                text.push(c);
            }
        }
        out.push(Word { text, quoted });
    }
}

/// Where an inline comment would start in `s`, as the INI reader sees it.
fn comment_start(s: &str) -> Option<usize> {
    let mut prev_ws = false;
    for (i, c) in s.char_indices() {
        if prev_ws && (c == ';' || c == '#') {
            return Some(i);
        }
        prev_ws = c.is_whitespace();
    }
    None
}

/// Writes `w` as a word that [`words`] reads back: bare when it can be, else double-quoted.
fn write_word(f: &mut fmt::Formatter<'_>, w: &str, always_quote: bool) -> fmt::Result {
    let bare = !always_quote
        && !w.is_empty()
        && !w.starts_with([';', '#', '"', '\''])
        && !w.chars().any(|c| c.is_whitespace() || c == '\\');
    if bare {
        return f.write_str(w);
    }
    f.write_str("\"")?;
    for c in w.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheck::Tcp => write!(f, "tcp"),
            HealthCheck::Http {
                method,
                path,
                status,
                body,
            } => {
                write!(f, "http {method} {path} {status}")?;
                if let Some(body) = body {
                    f.write_str(" ")?;
                    write_word(f, body, true)?;
                }
                Ok(())
            }
            HealthCheck::Ai { completion: false } => write!(f, "ai"),
            HealthCheck::Ai { completion: true } => write!(f, "ai completion"),
            HealthCheck::Script { command, args } => {
                f.write_str("script ")?;
                write_word(f, command, false)?;
                for a in args {
                    f.write_str(" ")?;
                    write_word(f, a, false)?;
                }
                Ok(())
            }
        }
    }
}

fn http(words: &[Word]) -> Result<HealthCheck, String> {
    let usage = || {
        "expected `http [METHOD] PATH [STATUS] [\"BODY\"]`, e.g. `http GET /health 200` or `http /health 200 \"ok\"`".to_string()
    };
    let (words, body) = match words {
        [rest @ .., last] if last.quoted => (rest, Some(last.text.as_str())),
        _ => (words, None),
    };
    if words.iter().any(|w| w.quoted) {
        return Err(format!(
            "only the body substring may be quoted; {}",
            usage()
        ));
    }
    let w: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    let (method, rest) = match w.as_slice() {
        [m, rest @ ..] if !m.starts_with('/') => (*m, rest),
        _ => ("GET", &w[..]),
    };
    let (path, status) = match rest {
        [p] => (*p, 200),
        [p, st] => (*p, st.parse::<u16>().map_err(|_| usage())?),
        _ => return Err(usage()),
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    let path_ok = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
    if !method_ok || !path_ok || !(100..=599).contains(&status) {
        return Err(usage());
    }
    if let Some(b) = body {
        if b.is_empty() {
            return Err(
                "the body substring is empty; leave it out to check the status only".into(),
            );
        }
        if b.len() > MAX_BODY_SUBSTRING {
            return Err(format!(
                "the body substring is {} bytes; at most {MAX_BODY_SUBSTRING}",
                b.len()
            ));
        }
    }
    Ok(HealthCheck::Http {
        method: method.to_string(),
        path: path.to_string(),
        status,
        body: body.map(str::to_string),
    })
}

impl FromStr for HealthCheck {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let words = words(s)?;
        let Some((kind, rest)) = words.split_first() else {
            return Err(USAGE.to_string());
        };
        if kind.quoted {
            return Err(USAGE.to_string());
        }
        let bare = |w: &[Word]| -> Option<Vec<String>> {
            w.iter()
                .map(|w| (!w.quoted).then(|| w.text.clone()))
                .collect()
        };
        match kind.text.as_str() {
            "tcp" if rest.is_empty() => Ok(HealthCheck::Tcp),
            "http" => http(rest),
            "ai" => match bare(rest).as_deref() {
                Some([]) => Ok(HealthCheck::Ai { completion: false }),
                Some([c]) if c == "completion" => Ok(HealthCheck::Ai { completion: true }),
                _ => Err("expected `ai` or `ai completion`".to_string()),
            },
            "script" => match rest.split_first() {
                Some((command, args)) if !command.text.is_empty() => Ok(HealthCheck::Script {
                    command: command.text.clone(),
                    args: args.iter().map(|a| a.text.clone()).collect(),
                }),
                _ => Err(
                    "expected `script COMMAND [ARG...]`, e.g. `script /usr/local/bin/check-gpu`"
                        .to_string(),
                ),
            },
            _ => Err(USAGE.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> HealthCheck {
        let check: HealthCheck = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(check.to_string().parse(), Ok(check.clone()), "{text}");
        check
    }

    #[test]
    fn tcp_and_http() {
        assert_eq!(round_trip("tcp"), HealthCheck::Tcp);
        assert_eq!(
            round_trip("http HEAD /healthz 204").to_string(),
            "http HEAD /healthz 204"
        );
        assert_eq!(
            round_trip("http /health").to_string(),
            "http GET /health 200"
        );
        for bad in [
            "",
            "udp",
            "tcp x",
            "http",
            "http get /x",
            "http GET x",
            "http GET /x 99",
            "http GET /x 200 extra",
            "http GET /h\u{e9}",
            "\"tcp\"",
        ] {
            assert!(bad.parse::<HealthCheck>().is_err(), "{bad}");
        }
    }

    #[test]
    fn http_body_substrings() {
        let c = round_trip("http GET /health 200 \"ok\"");
        assert_eq!(
            c,
            HealthCheck::Http {
                method: "GET".into(),
                path: "/health".into(),
                status: 200,
                body: Some("ok".into()),
            }
        );
        assert_eq!(c.to_string(), "http GET /health 200 \"ok\"");
        let c = round_trip("http /ready 'status: \"up\"'");
        assert_eq!(c.to_string(), r#"http GET /ready 200 "status: \"up\"""#);
        round_trip(r#"http /x "a\\b""#);
        round_trip("http /x \"  spaced  \"");
        for bad in [
            "http /x \"\"",
            "http /x ok",
            "http \"/x\" \"ok\"",
            "http /x \"unterminated",
            "http /x \"a\"b",
            "http /x \"a ;b\"",
            "http /x \"a #b\"",
            "http /x \"a\\nb\"",
            "http /x \"tab\there\"",
        ] {
            assert!(bad.parse::<HealthCheck>().is_err(), "{bad}");
        }
        let long = format!("http /x \"{}\"", "a".repeat(MAX_BODY_SUBSTRING + 1));
        assert!(long.parse::<HealthCheck>().is_err());
    }

    #[test]
    fn ai() {
        assert_eq!(round_trip("ai"), HealthCheck::Ai { completion: false });
        assert_eq!(
            round_trip("ai  completion"),
            HealthCheck::Ai { completion: true }
        );
        for bad in ["ai models", "ai completion x", "ai \"completion\""] {
            assert!(bad.parse::<HealthCheck>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scripts() {
        let c = round_trip("script /bin/sh -c 'test \"$SWITCHYARD_BACKEND_PORT\" = 1234'");
        assert_eq!(
            c,
            HealthCheck::Script {
                command: "/bin/sh".into(),
                args: vec![
                    "-c".into(),
                    "test \"$SWITCHYARD_BACKEND_PORT\" = 1234".into()
                ],
            }
        );
        assert_eq!(
            c.to_string(),
            r#"script /bin/sh -c "test \"$SWITCHYARD_BACKEND_PORT\" = 1234""#
        );
        let c = round_trip("script check-gpu '' ';x' a;b c\\d");
        assert_eq!(c.to_string(), r#"script check-gpu "" ";x" a;b "c\\d""#);
        let c = round_trip("script a b'c' d\"");
        assert_eq!(c.to_string(), "script a b'c' d\"");
        for bad in [
            "script",
            "script ''",
            "script a 'b",
            "script a 'b'c",
            "script a #x",
        ] {
            assert!(bad.parse::<HealthCheck>().is_err(), "{bad}");
        }
    }
}
