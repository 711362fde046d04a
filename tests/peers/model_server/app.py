"""A model server mirror for the tests: speaks Ollama's chat API and the OpenAI-compatible chat
completions API exactly as their docs describe the request and the stream, and answers
deterministically from the images and the prompt, so a test can tell which images went into
which request, in which order.

  POST /api/chat               Ollama: {"model", "messages": [{"role", "content", "images": [b64]}],
                               "stream", "options", "format"} -> NDJSON chunks
                               {"model", "created_at", "message": {"role", "content"}, "done": false},
                               then one with "done": true, "done_reason": "stop" and the counts
                               (or one JSON object when "stream": false)
  GET  /api/tags               Ollama: the models served
  POST /v1/chat/completions    OpenAI: {"model", "messages": [{"role", "content": str | [{"type": "text"},
                               {"type": "image_url", "image_url": {"url": "data:...;base64,..."}}]}],
                               "stream", "response_format", ...} -> SSE `data: {chunk}` lines with
                               choices[0].delta.content, then `data: [DONE]`
  GET  /v1/models              OpenAI: the models served
  POST /_fail?n=N&status=S&mode=M   the next N chat requests fail: answered S (default 503,
                               with Retry-After: 1), or with mode=cut the stream stops mid-answer,
                               or with mode=stall it never answers
  GET  /_requests              every chat request received (protocol, model, prompt, system,
                               image sha256s, options, format), as JSON
  GET  /_ready                 200 once listening

The answer to a request with images names each image by the first 12 hex digits of its sha256:
"Batch of N image(s): [1] <sha12> [2] <sha12> ... Prompt: <the prompt's first line>." A request
that asks for JSON (Ollama's "format", OpenAI's "response_format") is answered with
{"events": [...]}: one event per numbered line ("[k] ...") of its prompt, the first a
"task_start" and the last a "task_end", the others "progress". Unknown models get the server's
404. Tokens are words, one every MIRROR_TOKEN_DELAY_S (default 0.02) seconds.

Run: python app.py --port 11434
"""

import argparse
import base64
import hashlib
import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MODELS = [m for m in os.environ.get("MIRROR_MODELS", "llava:7b,llama3.2:3b").split(",") if m]
TOKEN_DELAY = float(os.environ.get("MIRROR_TOKEN_DELAY_S", "0.02"))
LOCK = threading.Lock()
REQUESTS = []
FAILURES = []  # one entry per chat request still to fail: (status, mode)


def now_iso():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def sha12(data):
    return hashlib.sha256(data).hexdigest()[:12]


def answer_for(prompt, images, wants_json):
    if wants_json:
        lines = [l for l in prompt.splitlines() if re.match(r"^\[\d+\] ", l)]
        events = []
        for i, line in enumerate(lines):
            k = int(line[1 : line.index("]")])
            kind = "task_start" if i == 0 else ("task_end" if i == len(lines) - 1 else "progress")
            events.append({"batch": k, "event": kind, "description": line[line.index("]") + 2 :][:80]})
        return json.dumps({"events": events})
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    if images:
        named = " ".join(f"[{i + 1}] {sha12(b)}" for i, b in enumerate(images))
        return f"Batch of {len(images)} image(s): {named} Prompt: {first}."
    return f"No images. Prompt: {first}."


def tokens(text):
    # Words with their following space, so the pieces join back into the text exactly.
    return re.findall(r"\S+\s*|\s+", text)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, value, headers=()):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self):
        path = urlparse(self.path).path
        if path == "/_ready":
            return self.send_json(200, {"ok": True})
        if path == "/_requests":
            with LOCK:
                return self.send_json(200, list(REQUESTS))
        if path == "/api/tags":
            return self.send_json(200, {"models": [{"name": m, "model": m} for m in MODELS]})
        if path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
        self.send_json(404, {"error": "not found"})

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if url.path == "/_fail":
            q = parse_qs(url.query)
            n = int(q.get("n", ["1"])[0])
            status = int(q.get("status", ["503"])[0])
            mode = q.get("mode", ["status"])[0]
            with LOCK:
                FAILURES.extend([(status, mode)] * n)
            return self.send_json(200, {"failing": n})
        if url.path not in ("/api/chat", "/v1/chat/completions"):
            return self.send_json(404, {"error": "not found"})
        ollama = url.path == "/api/chat"
        try:
            req = json.loads(raw)
            model, messages = req["model"], req["messages"]
            prompt, system, images = self.read_messages(messages, ollama)
        except (ValueError, KeyError, TypeError) as e:
            return self.refuse(ollama, 400, f"invalid request: {e}")
        if ollama:
            wants_json = req.get("format") is not None
            options = req.get("options", {})
        else:
            wants_json = req.get("response_format", {}).get("type") in ("json_object", "json_schema")
            options = {k: v for k, v in req.items() if k not in ("model", "messages", "stream", "response_format")}
        record = {
            "protocol": "ollama" if ollama else "openai",
            "model": model,
            "prompt": prompt,
            "system": system,
            "images": [hashlib.sha256(b).hexdigest() for b in images],
            "options": options,
            "format": req.get("format") if ollama else req.get("response_format"),
            "at": time.time(),
        }
        with LOCK:
            REQUESTS.append(record)
            failure = FAILURES.pop(0) if FAILURES else None
        if model not in MODELS:
            if ollama:
                return self.refuse(ollama, 404, f'model "{model}" not found, try pulling it first')
            return self.refuse(ollama, 404, f"The model `{model}` does not exist.")
        if failure and failure[1] == "status":
            return self.refuse(ollama, failure[0], "the server is overloaded", [("Retry-After", "1")])
        if failure and failure[1] == "stall":
            time.sleep(3600)
            return
        text = answer_for(prompt, images, wants_json)
        cut = failure is not None and failure[1] == "cut"
        if ollama:
            self.stream_ollama(model, text, cut, req.get("stream", True))
        else:
            self.stream_openai(model, text, cut, req.get("stream", False))

    def read_messages(self, messages, ollama):
        prompt, system, images = "", None, []
        for m in messages:
            role, content = m["role"], m["content"]
            if role == "system":
                system = content
                continue
            if role != "user":
                continue
            if ollama:
                prompt = content
                images += [base64.b64decode(i, validate=True) for i in m.get("images", [])]
            elif isinstance(content, str):
                prompt = content
            else:
                for part in content:
                    if part["type"] == "text":
                        prompt = part["text"]
                    elif part["type"] == "image_url":
                        data_url = part["image_url"]["url"]
                        head, b64 = data_url.split(",", 1)
                        if not (head.startswith("data:image/") and head.endswith(";base64")):
                            raise ValueError(f"not a base64 image data URL: {head}")
                        images.append(base64.b64decode(b64, validate=True))
                    else:
                        raise ValueError(f"unknown content part {part['type']}")
        return prompt, system, images

    def refuse(self, ollama, status, message, headers=()):
        if ollama:
            return self.send_json(status, {"error": message}, headers)
        return self.send_json(
            status, {"error": {"message": message, "type": "invalid_request_error", "code": status}}, headers
        )

    def stream_ollama(self, model, text, cut, stream):
        if not stream:
            return self.send_json(200, {"model": model, "created_at": now_iso(),
                                        "message": {"role": "assistant", "content": text},
                                        "done": True, "done_reason": "stop"})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = tokens(text)
        for i, t in enumerate(pieces):
            if cut and i == len(pieces) // 2:
                self.close_connection = True
                return
            line = {"model": model, "created_at": now_iso(), "message": {"role": "assistant", "content": t}, "done": False}
            self.chunk(json.dumps(line).encode() + b"\n")
            time.sleep(TOKEN_DELAY)
        last = {"model": model, "created_at": now_iso(), "message": {"role": "assistant", "content": ""},
                "done": True, "done_reason": "stop", "total_duration": 1, "eval_count": len(pieces)}
        self.chunk(json.dumps(last).encode() + b"\n")
        self.chunk(b"")

    def stream_openai(self, model, text, cut, stream):
        created = int(time.time())
        if not stream:
            return self.send_json(200, {"id": "chatcmpl-mirror", "object": "chat.completion", "created": created,
                                        "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                                     "finish_reason": "stop"}]})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(delta, finish=None):
            chunk = {"id": "chatcmpl-mirror", "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        event({"role": "assistant", "content": ""})
        self.chunk(b": keep-alive\n\n")
        pieces = tokens(text)
        for i, t in enumerate(pieces):
            if cut and i == len(pieces) // 2:
                self.close_connection = True
                return
            event({"content": t})
            time.sleep(TOKEN_DELAY)
        event({}, "stop")
        self.chunk(b"data: [DONE]\n\n")
        self.chunk(b"")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=11434)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"model server mirror on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
