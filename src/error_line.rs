//! An error and its causes as one line (DESIGN.md section 9: every error a user can cause is a
//! clear one-line message). Causes that an earlier message already quotes are left out.

/// Joins `causes` (outermost first) with ": ", dropping any already contained in the line.
/// A message's own line breaks stay (a state mismatch lists one key per line).
pub fn join_causes(causes: impl IntoIterator<Item = String>) -> String {
    let mut line = String::new();
    for c in causes {
        if !line.contains(c.as_str()) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&c);
        }
    }
    line
}

/// `e` and its `source()` chain as one line (a library's multi-line message folded).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    join_causes(std::iter::successors(Some(e), |e| e.source()).map(|c| c.to_string()))
        .replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_causes_are_dropped_and_lines_folded() {
        let line = join_causes(
            ["reading a.mcap: short read", "short read", "disk\nfull"].map(String::from),
        );
        assert_eq!(line, "reading a.mcap: short read: disk\nfull");
        let io = std::io::Error::other("connection\nrefused");
        assert_eq!(one_line(&io), "connection refused");
    }
}
