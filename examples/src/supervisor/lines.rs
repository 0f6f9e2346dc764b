//! Cuts a byte stream into lines, with a bound on how much one line may buffer.

/// One line out of a [`LineSplitter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) bytes: Vec<u8>,
    /// Cut at the length limit; the rest of the line follows.
    pub(crate) truncated: bool,
}

/// Accumulates the bytes of one stream and hands out complete lines (without their `\n`).
///
/// A line longer than `max_line` is handed out in pieces of `max_line` bytes marked
/// `truncated`, so a child that never writes a newline cannot make the supervisor buffer
/// without bound.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    pub(crate) fn new(max_line: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Appends `data` and pushes every line it completes onto `lines`.
    pub(crate) fn push(&mut self, mut data: &[u8], lines: &mut Vec<Line>) {
        while !data.is_empty() {
            let room = self.max_line - self.pending.len();
            // One byte past the room: a newline right after a full line ends it normally.
            let window = &data[..data.len().min(room + 1)];
            if let Some(newline) = window.iter().position(|&b| b == b'\n') {
                self.pending.extend_from_slice(&window[..newline]);
                lines.push(Line {
                    bytes: std::mem::take(&mut self.pending),
                    truncated: false,
                });
                data = &data[newline + 1..];
            } else if window.len() > room {
                // More than fits, and no newline: cut here.
                self.pending.extend_from_slice(&window[..room]);
                lines.push(Line {
                    bytes: std::mem::take(&mut self.pending),
                    truncated: true,
                });
                data = &data[room..];
            } else {
                self.pending.extend_from_slice(window);
                data = &[];
            }
        }
    }

    /// The unterminated last line, if the stream ended in the middle of one.
    pub(crate) fn finish(&mut self) -> Option<Line> {
        (!self.pending.is_empty()).then(|| Line {
            bytes: std::mem::take(&mut self.pending),
            truncated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut splitter = LineSplitter::new(max);
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut lines);
        }
        lines.extend(splitter.finish());
        lines.into_iter().map(|l| (l.bytes, l.truncated)).collect()
    }

    #[test]
    fn lines_across_chunks_keep_their_bytes() {
        let lines = split(64, &[b"he", b"llo\nwor", b"ld\n\0x\xff\n", b"tail"]);
        assert_eq!(
            lines,
            vec![
                (b"hello".to_vec(), false),
                (b"world".to_vec(), false),
                (b"\0x\xff".to_vec(), false),
                (b"tail".to_vec(), false),
            ]
        );
    }

    #[test]
    fn empty_lines_are_lines() {
        assert_eq!(
            split(8, &[b"\n\na\n"]),
            vec![(vec![], false), (vec![], false), (b"a".to_vec(), false)]
        );
    }

    #[test]
    fn long_lines_are_cut_at_the_limit() {
        let lines = split(4, &[b"abcdefghij\nxy", b"z\n"]);
        assert_eq!(
            lines,
            vec![
                (b"abcd".to_vec(), true),
                (b"efgh".to_vec(), true),
                (b"ij".to_vec(), false),
                (b"xyz".to_vec(), false),
            ]
        );
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_not_cut() {
        assert_eq!(split(4, &[b"abcd\n"]), vec![(b"abcd".to_vec(), false)]);
        assert_eq!(
            split(4, &[b"ab", b"cd", b"\n"]),
            vec![(b"abcd".to_vec(), false)]
        );
    }
}
