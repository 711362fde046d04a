//! Server-sent-events framing: bytes in, `(event, data)` records out. Kept apart from the Gradio
//! message types because every SSE protocol version (and `/call`) frames the same way. A line
//! and a record's data are capped (`MAX_SSE_BYTES`): a Space that never ends a line costs that
//! much, then fails the stream, and each byte is scanned once however it is chunked.

use spaceport_core::Error;

use crate::bounds::MAX_SSE_BYTES;
use crate::protocol::protocol_error;

/// One SSE record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRecord {
    /// The `event:` field, when the server sent one (`/call` does; `/queue/data` does not).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser: feed chunks as they arrive, take complete records.
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    event: Option<String>,
    data: Vec<String>,
    data_len: usize,
    limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::with_limit(MAX_SSE_BYTES)
    }
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser whose lines and records may be at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            buf: vec![],
            scanned: 0,
            event: None,
            data: vec![],
            data_len: 0,
            limit,
        }
    }

    /// Adds bytes and returns the records they completed; a line or record over the limit is
    /// a `space_protocol` error.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseRecord>, Error> {
        self.buf.extend_from_slice(chunk);
        let mut out = vec![];
        let mut start = 0;
        while let Some(off) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + off;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            self.scanned = start;
            if let Some(rec) = self.line(&line)? {
                out.push(rec);
            }
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > self.limit {
            return Err(protocol_error(format!(
                "the Space sent an event-stream line longer than {} bytes",
                self.limit
            )));
        }
        Ok(out)
    }

    /// Whether a partial record is pending (bytes or fields not yet ended by a blank line).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || !self.data.is_empty()
    }

    fn line(&mut self, line: &str) -> Result<Option<SseRecord>, Error> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_none() {
                return Ok(None);
            }
            self.data_len = 0;
            return Ok(Some(SseRecord {
                event: self.event.take(),
                data: std::mem::take(&mut self.data).join("\n"),
            }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data_len += value.len() + 1;
                if self.data_len > self.limit {
                    return Err(protocol_error(format!(
                        "the Space sent an event-stream record larger than {} bytes",
                        self.limit
                    )));
                }
                self.data.push(value.to_string());
            }
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_across_chunks_are_joined() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: {\"msg\":\"heart").unwrap().is_empty());
        assert!(p.has_partial());
        let recs = p
            .feed(b"beat\",\"event_id\":null}\n\ndata: {\"msg\":\"close_stream\"}\n\n")
            .unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data, r#"{"msg":"heartbeat","event_id":null}"#);
        assert_eq!(recs[1].data, r#"{"msg":"close_stream"}"#);
        assert!(!p.has_partial());
    }

    #[test]
    fn named_events_and_crlf_are_understood() {
        let mut p = SseParser::new();
        let recs = p
            .feed(b"event: complete\r\ndata: [1, 2]\r\n\r\n: comment\n\n")
            .unwrap();
        assert_eq!(
            recs,
            vec![SseRecord {
                event: Some("complete".into()),
                data: "[1, 2]".into()
            }]
        );
    }

    #[test]
    fn a_line_or_record_over_the_limit_fails_and_chunking_does_not_matter() {
        let mut p = SseParser::with_limit(64);
        // A line that never ends, in small pieces: fails once past the limit.
        let mut failed = None;
        for i in 0..100 {
            match p.feed(b"data: xxxxxxxx") {
                Ok(recs) => assert!(recs.is_empty()),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        let (i, e) = failed.expect("an endless line fails");
        assert!(i * 14 <= 64 + 14, "failed late, after {i} chunks");
        assert!(
            !e.retryable() && e.to_string().contains("line longer"),
            "{e}"
        );
        // Many short data lines adding up past the limit in one record.
        let mut p = SseParser::with_limit(64);
        let e = p.feed(&b"data: 0123456789\n".repeat(8)).unwrap_err();
        assert!(e.to_string().contains("record larger"), "{e}");
        // Under the limit, a byte at a time gives what one chunk gives.
        let text = b"data: a\n\nevent: e\ndata: b\ndata: c\n\n";
        let whole = SseParser::with_limit(64).feed(text).unwrap();
        let mut p = SseParser::with_limit(64);
        let bytewise: Vec<SseRecord> = text.iter().flat_map(|b| p.feed(&[*b]).unwrap()).collect();
        assert_eq!(whole, bytewise);
        assert_eq!(whole[1].data, "b\nc");
    }
}
