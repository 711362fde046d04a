//! Ollama's chat API (`POST /api/chat`, see its docs/api.md): images as base64 strings on the
//! user message, sampling under `options`, `format` as `"json"` or a JSON Schema; the answer
//! streams as NDJSON objects with `message.content`, the last one with `"done": true`, and an
//! error mid-stream as `{"error": "…"}`.

use base64::Engine;
use serde_json::{Value, json};
use spaceport_core::ports::{ChatFormat, ChatRequest};

use crate::Piece;

pub(crate) fn body(req: &ChatRequest) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut messages = vec![];
    if let Some(s) = &req.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let mut user = json!({"role": "user", "content": req.prompt});
    if !req.images.is_empty() {
        user["images"] = req.images.iter().map(|i| b64.encode(&i.bytes)).collect();
    }
    messages.push(user);
    let mut body = json!({"model": req.model, "messages": messages, "stream": true});
    if !req.options.is_empty() {
        body["options"] = Value::Object(req.options.clone());
    }
    match &req.format {
        ChatFormat::Text => {}
        ChatFormat::Json(None) => body["format"] = json!("json"),
        ChatFormat::Json(Some(schema)) => body["format"] = schema.clone(),
    }
    body
}

pub(crate) fn piece(line: &str) -> Result<Piece, String> {
    if line.trim().is_empty() {
        return Ok(Piece::skip());
    }
    let v: Value = serde_json::from_str(line)
        .map_err(|e| format!("a stream line is not JSON ({e}): {line:.200}"))?;
    if let Some(m) = crate::error_message(&v) {
        return Err(format!("the server failed mid-answer: {m}"));
    }
    let text = v
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The final object may carry the last piece of text too.
    Ok(if v.get("done").and_then(Value::as_bool) == Some(true) {
        Piece::done(text)
    } else {
        Piece::text(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines_become_text_until_done() {
        let p =
            piece(r#"{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}"#);
        assert_eq!(p.unwrap(), Piece::text("Hi"));
        let p = piece(
            r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}"#,
        );
        assert_eq!(p.unwrap(), Piece::done(""));
        assert!(
            piece(r#"{"error":"model crashed"}"#)
                .unwrap_err()
                .contains("model crashed")
        );
        assert!(piece("not json").is_err());
    }
}
