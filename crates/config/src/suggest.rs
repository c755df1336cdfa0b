//! "Did you mean" suggestions by edit distance.

/// The largest edit distance at which a candidate is suggested.
const MAX_DISTANCE: usize = 2;

/// Levenshtein distance between `a` and `b`, counted in chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word` if it is within edit distance 2 (the first one on ties).
pub(crate) fn suggest<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    // Bound the work on absurdly long input (the distance would exceed 2 anyway).
    if word.chars().count() > 256 {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        let better = match best {
            Some((bd, _)) => d < bd,
            None => true,
        };
        if better && d <= MAX_DISTANCE && d < c.chars().count() {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("lisen", "listen"), 1);
        assert_eq!(edit_distance("Listen", "listen"), 1);
    }

    #[test]
    fn suggests_closest_within_two() {
        let keys = ["listen", "threads", "admin_listen"];
        assert_eq!(suggest("lisen", keys), Some("listen".to_string()));
        assert_eq!(suggest("thread", keys), Some("threads".to_string()));
        assert_eq!(suggest("completely_else", keys), None);
    }

    #[test]
    fn does_not_suggest_for_tiny_candidates() {
        // "x" -> "ab" is distance 2 but equal to the candidate's length: not a real match.
        assert_eq!(suggest("x", ["ab"]), None);
    }
}
