//! Splits a byte stream into lines, holding at most `max` bytes of an unfinished one: both
//! protocols stream one JSON document per line (NDJSON, or SSE `data:` lines), and a server
//! that never ends a line must not fill memory.

/// The lines of a stream, as chunks arrive.
pub(crate) struct Lines {
    partial: Vec<u8>,
    max: usize,
}

impl Lines {
    pub(crate) fn new(max: usize) -> Lines {
        Lines {
            partial: Vec::new(),
            max,
        }
    }

    /// The lines `chunk` completes (without their `\n` or `\r\n`).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        let mut out = vec![];
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..i]);
            out.push(self.take()?);
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > self.max {
            return Err(format!("a stream line is longer than {} bytes", self.max));
        }
        Ok(out)
    }

    /// What is left once the stream ended, if anything.
    pub(crate) fn rest(&mut self) -> Option<String> {
        if self.partial.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        self.take().ok()
    }

    fn take(&mut self) -> Result<String, String> {
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line).map_err(|_| "a stream line is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks_and_bounded() {
        let mut l = Lines::new(16);
        assert_eq!(l.push(b"ab").unwrap(), Vec::<String>::new());
        assert_eq!(l.push(b"c\r\nde\nf").unwrap(), vec!["abc", "de"]);
        assert_eq!(l.rest().as_deref(), Some("f"));
        assert_eq!(l.rest(), None);
        assert!(l.push(&[b'x'; 17]).is_err());
    }
}
