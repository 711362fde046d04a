//! Server-sent-events framing: bytes in, `(event, data)` records out. Kept apart from the Gradio
//! message types because every SSE protocol version (and `/call`) frames the same way.

/// One SSE record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRecord {
    /// The `event:` field, when the server sent one (`/call` does; `/queue/data` does not).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser: feed chunks as they arrive, take complete records.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns the records they completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseRecord> {
        self.buf.extend_from_slice(chunk);
        let mut out = vec![];
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(rec) = self.line(&line) {
                out.push(rec);
            }
        }
        out
    }

    /// Whether a partial record is pending (bytes or fields not yet ended by a blank line).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || !self.data.is_empty()
    }

    fn line(&mut self, line: &str) -> Option<SseRecord> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_none() {
                return None;
            }
            return Some(SseRecord {
                event: self.event.take(),
                data: std::mem::take(&mut self.data).join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_across_chunks_are_joined() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: {\"msg\":\"heart").is_empty());
        assert!(p.has_partial());
        let recs = p.feed(b"beat\",\"event_id\":null}\n\ndata: {\"msg\":\"close_stream\"}\n\n");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data, r#"{"msg":"heartbeat","event_id":null}"#);
        assert_eq!(recs[1].data, r#"{"msg":"close_stream"}"#);
        assert!(!p.has_partial());
    }

    #[test]
    fn named_events_and_crlf_are_understood() {
        let mut p = SseParser::new();
        let recs = p.feed(b"event: complete\r\ndata: [1, 2]\r\n\r\n: comment\n\n");
        assert_eq!(
            recs,
            vec![SseRecord {
                event: Some("complete".into()),
                data: "[1, 2]".into()
            }]
        );
    }
}
