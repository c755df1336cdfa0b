//! Deterministic fake text generation and prompt token counting.
//!
//! The generated text depends only on the prompt text: a 64-bit FNV-1a hash
//! of the prompt seeds a splitmix64 generator that picks words from a fixed
//! vocabulary. A token is a word followed by a single space, so `n` tokens of
//! the same prompt are always the same bytes, and a shorter generation is a
//! prefix of a longer one.
//!
//! For chat requests the prompt text is [`chat_prompt`]: one `role: content`
//! line per message.

/// The fixed vocabulary; every entry is one token (a word and a space).
pub const VOCABULARY: [&str; 64] = [
    "the ", "model ", "token ", "cache ", "switch ", "yard ", "proxy ", "route ", "fast ", "slow ",
    "quiet ", "bright ", "river ", "stone ", "cloud ", "light ", "engine ", "request ", "answer ",
    "signal ", "queue ", "slot ", "batch ", "stream ", "alpha ", "beta ", "gamma ", "delta ",
    "north ", "south ", "east ", "west ", "red ", "green ", "blue ", "amber ", "one ", "two ",
    "three ", "four ", "and ", "of ", "to ", "in ", "is ", "on ", "with ", "for ", "train ",
    "track ", "wagon ", "rail ", "depot ", "car ", "load ", "balance ", "echo ", "mock ", "test ",
    "bench ", "demo ", "data ", "word ", "end ",
];

/// 64-bit FNV-1a hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Deterministic token source seeded by a prompt.
#[derive(Debug, Clone)]
pub struct TokenGenerator {
    state: u64,
}

impl TokenGenerator {
    /// A generator whose output depends only on `prompt`.
    pub fn new(prompt: &str) -> Self {
        Self {
            state: fnv1a64(prompt.as_bytes()),
        }
    }

    /// The next token: a vocabulary word followed by a space.
    pub fn next_token(&mut self) -> &'static str {
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        VOCABULARY[(z % VOCABULARY.len() as u64) as usize]
    }
}

/// The text of the first `n` tokens generated for `prompt`.
pub fn generate_text(prompt: &str, n: u32) -> String {
    let mut gen = TokenGenerator::new(prompt);
    let mut out = String::new();
    for _ in 0..n {
        out.push_str(gen.next_token());
    }
    out
}

/// Number of prompt tokens of `text`: its whitespace-separated words, at least 1.
pub fn count_prompt_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

/// Renders chat messages `(role, content)` as the prompt text: one
/// `role: content` line per message, joined by `\n`.
pub fn chat_prompt<'a>(messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (i, (role, content)) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(role);
        out.push_str(": ");
        out.push_str(content);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_prefix_stable() {
        let a = generate_text("hello world", 10);
        let b = generate_text("hello world", 10);
        assert_eq!(a, b);
        assert!(generate_text("hello world", 20).starts_with(&a));
        assert_ne!(a, generate_text("hello there", 10));
        assert_eq!(a.split(' ').filter(|w| !w.is_empty()).count(), 10);
        assert!(a.ends_with(' '));
    }

    #[test]
    fn every_token_is_word_and_space() {
        for t in VOCABULARY {
            assert!(t.ends_with(' ') && !t.trim().is_empty() && !t.trim().contains(' '));
        }
    }

    #[test]
    fn counts_words_at_least_one() {
        assert_eq!(count_prompt_tokens(""), 1);
        assert_eq!(count_prompt_tokens("  a b\tc\n"), 3);
    }

    #[test]
    fn chat_rendering() {
        let p = chat_prompt([("system", "be brief"), ("user", "hi")]);
        assert_eq!(p, "system: be brief\nuser: hi");
        assert_eq!(count_prompt_tokens(&p), 5);
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
