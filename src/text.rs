//! What users read (DESIGN.md section 15): numbers and ranges written for people, not in Rust
//! syntax. Ranges are `0 to 5999` in sentences and `0–5,999` on screen; screen numbers carry
//! thousands separators; counts agree with their nouns.

/// `5999` -> `5,999`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short duration for people: `40 ms`, `1.2 s`, `3 min 5 s`.
pub fn duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// An inclusive range in a sentence: `0 to 5999` (one value: `7`).
pub fn range_words(first: impl std::fmt::Display, last: impl std::fmt::Display) -> String {
    let (a, b) = (first.to_string(), last.to_string());
    if a == b { a } else { format!("{a} to {b}") }
}

/// An inclusive range of numbers on screen: `0–5,999`.
pub fn range_screen(first: u64, last: u64) -> String {
    if first == last {
        thousands(first)
    } else {
        format!("{}–{}", thousands(first), thousands(last))
    }
}

/// `text` in at most `width` characters: cut at the end with `…` when longer.
pub fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// `text` in at most `width` characters, keeping its end (where keys that share a long prefix
/// differ): `…on/turn-00116`.
pub fn ellipsize_start(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = text.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
}

/// A bar of `width` glyphs, `ratio` of it filled: readable without colour (`███░░░░`).
pub fn bar(ratio: f64, width: usize) -> String {
    let filled = ((ratio.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let mut s = "█".repeat(filled);
    s.push_str(&"░".repeat(width - filled));
    s
}

/// `1 key`, `2 keys`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ranges_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5999), "5,999");
        assert_eq!(thousands(10_000_000), "10,000,000");
        assert_eq!(range_words(0, 5999), "0 to 5999");
        assert_eq!(range_words("@1", "@7887"), "@1 to @7887");
        assert_eq!(range_words(3, 3), "3");
        assert_eq!(range_screen(0, 5999), "0–5,999");
        assert_eq!(ellipsize("conversation/turn-00116", 8), "convers…");
        assert_eq!(ellipsize("short", 8), "short");
        assert_eq!(
            ellipsize_start("conversation/turn-00116", 12),
            "…/turn-00116"
        );
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(bar(0.0, 3), "░░░");
        assert_eq!(count(1, "key", "keys"), "1 key");
        assert_eq!(count(2, "chunk", "chunks"), "2 chunks");
    }
}
