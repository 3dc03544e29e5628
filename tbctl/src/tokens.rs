//! A local token-count estimate, used only when the server reports no `usage`: one token per
//! word-like run of letters or digits (long runs count one per 6 bytes), one per other
//! non-space character. Exact for the one-word chunks streaming servers usually send; an
//! estimate elsewhere, and every record says which source its count came from.

/// Estimated tokens in `text`.
pub fn estimate(text: &str) -> u32 {
    let mut n = 0u32;
    let mut run = 0usize;
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            run += 1;
        } else {
            n += run_tokens(run);
            run = 0;
            if !b.is_ascii_whitespace() {
                n += 1;
            }
        }
    }
    n + run_tokens(run)
}

fn run_tokens(run: usize) -> u32 {
    run.div_ceil(6) as u32
}

#[cfg(test)]
mod tests {
    use super::estimate;

    #[test]
    fn one_word_chunks_count_one() {
        assert_eq!(estimate(" hello"), 1);
        assert_eq!(estimate("Hello"), 1);
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("  "), 0);
    }

    #[test]
    fn words_punctuation_and_long_runs() {
        assert_eq!(estimate("Hello, world!"), 4);
        assert_eq!(estimate("internationalization"), 4);
        assert_eq!(estimate("a b c"), 3);
    }
}
