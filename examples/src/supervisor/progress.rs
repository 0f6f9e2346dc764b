//! Reads progress figures out of a child's output lines.

/// Parses `line` as a progress line: after optional leading whitespace, `prefix`, then
/// `POSITION/TOTAL` or `PERCENT%` (both unsigned integers, `TOTAL` > 0, position at most
/// total). Returns `(position, total)`; anything else is not a progress line.
///
/// With prefix `"progress:"`: `progress: 3/10` gives `(3, 10)`, `  progress:42%` gives
/// `(42, 100)`.
pub(crate) fn parse_progress(line: &[u8], prefix: &str) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(line).ok()?.trim();
    let figures = text.strip_prefix(prefix)?.trim();
    let (position, total) = if let Some(percent) = figures.strip_suffix('%') {
        (percent.trim().parse().ok()?, 100)
    } else {
        let (position, total) = figures.split_once('/')?;
        (position.trim().parse().ok()?, total.trim().parse().ok()?)
    };
    (total > 0 && position <= total).then_some((position, total))
}

#[cfg(test)]
mod tests {
    use super::parse_progress;

    #[test]
    fn fractions_and_percentages() {
        assert_eq!(
            parse_progress(b"progress: 3/10", "progress:"),
            Some((3, 10))
        );
        assert_eq!(
            parse_progress(b"  progress:42%\r", "progress:"),
            Some((42, 100))
        );
        assert_eq!(
            parse_progress(b"progress: 10 / 10", "progress:"),
            Some((10, 10))
        );
    }

    #[test]
    fn anything_else_is_a_plain_line() {
        for line in [
            &b"progress: 11/10"[..],
            b"progress: 1/0",
            b"progress: x/10",
            b"progress: -1/10",
            b"progress: 101%",
            b"progress:",
            b"building 3/10",
            b"progress: 3/10 files",
            b"\xffprogress: 1/2",
        ] {
            assert_eq!(parse_progress(line, "progress:"), None, "{line:?}");
        }
    }
}
