//! ACME HTTP-01 challenges (RFC 8555 section 8.3): a plain-HTTP `GET
//! /.well-known/acme-challenge/TOKEN` is answered with the contents of `CHALLENGE_DIR/TOKEN`,
//! the file an ACME client such as `certbot --webroot` writes there.
//!
//! The token comes from the network, so it is checked before it comes near the file system:
//! 1 to [`MAX_TOKEN_BYTES`] characters of the base64url alphabet `[A-Za-z0-9_-]` (what ACME
//! tokens are made of), as the path arrived, so there is no `/`, no `.`, no `%` escape and
//! nothing to decode: the file read is always a direct child of the directory. It must be a
//! regular file (not a symlink, not a directory) of at most [`MAX_FILE_BYTES`].

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};

/// The path prefix of HTTP-01 challenges.
pub const PREFIX: &str = "/.well-known/acme-challenge/";
/// The longest token accepted (ACME tokens are 43 characters in practice).
pub const MAX_TOKEN_BYTES: usize = 128;
/// The largest challenge file served (a key authorization is under 200 bytes).
pub const MAX_FILE_BYTES: u64 = 4096;

/// What a request path is, as far as ACME goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge<'a> {
    /// Not under [`PREFIX`]: routed as usual.
    NotAcme,
    /// A well-formed token.
    Token(&'a str),
    /// Under [`PREFIX`] but not a valid token: refused, without touching the file system.
    Invalid,
}

/// Whether `token` is 1 to [`MAX_TOKEN_BYTES`] characters of `[A-Za-z0-9_-]`.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Classifies a request path (as received, percent-escapes and all, without the query).
pub fn classify(path: &str) -> Challenge<'_> {
    match path.strip_prefix(PREFIX) {
        None => Challenge::NotAcme,
        Some(token) if valid_token(token) => Challenge::Token(token),
        Some(_) => Challenge::Invalid,
    }
}

/// Reads `dir/token` if it is a regular file of at most [`MAX_FILE_BYTES`]; `None` otherwise.
fn read_token(dir: &Path, token: &str) -> Option<Vec<u8>> {
    let path = dir.join(token);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    (bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes)
}

/// The answer to a request for `path` with `method` on a listener serving challenges from
/// `dir`: `None` if it is no challenge request (route it as usual); else 200 with the token
/// file, 404 if there is no such token, 400 if the token is malformed.
pub async fn answer(dir: &Arc<Path>, method: &Method, path: &str) -> Option<(StatusCode, Bytes)> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let token = match classify(path) {
        Challenge::NotAcme => return None,
        Challenge::Invalid => {
            return Some((
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"invalid ACME challenge token\n"),
            ))
        }
        Challenge::Token(t) => t.to_string(),
    };
    let dir = Arc::clone(dir);
    // File reads block: off the reactor thread.
    let read = tokio::task::spawn_blocking(move || read_token(&dir, &token)).await;
    Some(match read {
        Ok(Some(bytes)) => (StatusCode::OK, Bytes::from(bytes)),
        _ => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"no such ACME challenge token\n"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_base64url_of_bounded_length() {
        assert!(valid_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(valid_token("a"));
        assert!(valid_token(&"a".repeat(MAX_TOKEN_BYTES)));
        for bad in [
            "", "..", ".", "a.b", "a/b", "%2e%2e", "a%2fb", "a b", "a\\b", "a\0b", "é", "a=", "a+b",
        ] {
            assert!(!valid_token(bad), "{bad:?}");
        }
        assert!(!valid_token(&"a".repeat(MAX_TOKEN_BYTES + 1)));
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(classify("/v1/chat"), Challenge::NotAcme);
        assert_eq!(classify("/.well-known/acme-challenge"), Challenge::NotAcme);
        assert_eq!(
            classify("/.well-known/acme-challenge/abc_-9"),
            Challenge::Token("abc_-9")
        );
        assert_eq!(classify("/.well-known/acme-challenge/"), Challenge::Invalid);
        assert_eq!(
            classify("/.well-known/acme-challenge/../../etc/passwd"),
            Challenge::Invalid
        );
        assert_eq!(
            classify("/.well-known/acme-challenge/%2e%2e%2fpasswd"),
            Challenge::Invalid
        );
        assert_eq!(
            classify("/.well-known/acme-challenge/a/b"),
            Challenge::Invalid
        );
    }

    proptest::proptest! {
        #[test]
        fn a_valid_token_never_leaves_the_directory(token in "\\PC{0,200}") {
            if valid_token(&token) {
                let p = Path::new("/acme").join(&token);
                proptest::prop_assert_eq!(p.parent(), Some(Path::new("/acme")));
                proptest::prop_assert!(p.components().count() == 3);
            }
        }
    }
}
