//! The OpenAI-compatible chat completions API (`POST /v1/chat/completions`, as vLLM and
//! llama.cpp's server speak it): the user message's content is a list of a `text` part and
//! `image_url` parts holding data URLs; sampling options are the request's own fields;
//! `response_format` asks for JSON (`json_schema` with the schema, else `json_object`). The
//! answer streams as Server-Sent Events whose `data:` is a chunk with
//! `choices[0].delta.content`, ending with `data: [DONE]`.

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
    let mut content = vec![json!({"type": "text", "text": req.prompt})];
    for i in &req.images {
        let url = format!("data:{};base64,{}", i.content_type, b64.encode(&i.bytes));
        content.push(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    messages.push(json!({"role": "user", "content": content}));
    let mut body = json!({"model": req.model, "messages": messages, "stream": true});
    for (k, v) in &req.options {
        body[k] = v.clone();
    }
    match &req.format {
        ChatFormat::Text => {}
        ChatFormat::Json(None) => body["response_format"] = json!({"type": "json_object"}),
        ChatFormat::Json(Some(schema)) => {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": true}
            })
        }
    }
    body
}

pub(crate) fn piece(line: &str) -> Result<Piece, String> {
    // Only `data:` fields carry anything: blank lines end events, `:` lines are comments
    // (keep-alives), `event:`/`id:`/`retry:` say nothing about the answer.
    let Some(data) = line.strip_prefix("data:") else {
        return Ok(Piece::skip());
    };
    let data = data.strip_prefix(' ').unwrap_or(data);
    if data.trim() == "[DONE]" {
        return Ok(Piece::done(""));
    }
    let v: Value = serde_json::from_str(data)
        .map_err(|e| format!("an event is not JSON ({e}): {data:.200}"))?;
    if let Some(m) = crate::error_message(&v) {
        return Err(format!("the server failed mid-answer: {m}"));
    }
    let text = v
        .pointer("/choices/0/delta/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(Piece::text(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_text_until_done() {
        let p = piece(
            r#"data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        );
        assert_eq!(p.unwrap(), Piece::text("Hi"));
        assert_eq!(piece(": keep-alive").unwrap(), Piece::skip());
        assert_eq!(piece("").unwrap(), Piece::skip());
        assert_eq!(piece("data: [DONE]").unwrap(), Piece::done(""));
        assert!(
            piece(r#"data: {"error":{"message":"overloaded"}}"#)
                .unwrap_err()
                .contains("overloaded")
        );
    }
}
