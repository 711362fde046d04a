"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks reference
library (`standardwebhooks`) against the secrets it is given, records it, and answers as its path
asks, so the suites can drive every behaviour a real receiver has.

Paths (the last segment names the receiver, so tests keep their deliveries apart):
  POST /ok/<name>                 200
  POST /flaky/<name>?fail=N       500 for the first N requests to that path, then 200
  POST /slow/<name>?s=S           answers 200 after S seconds (past the sender's timeout)
  POST /moved/<name>              301 to /ok/<name> (redirects must not be followed)
  POST /gone/<name>               410
  POST /limited/<name>?n=N&after=A   429 with Retry-After: A for the first N requests, then 200
  GET  /_records                  every request received, as JSON
  GET  /_ready                    200 once listening

Secrets: WEBHOOK_SECRETS, comma-separated whsec_… values; a delivery is `verified` when one of
them verifies it (a receiver holding either the old or the new secret during a rotation).

Run: python app.py --port 7870
"""

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from standardwebhooks.webhooks import Webhook

SECRETS = [s for s in os.environ.get("WEBHOOK_SECRETS", "").split(",") if s]
LOCK = threading.Lock()
RECORDS = []
COUNTS = {}


def verified(body, headers):
    for secret in SECRETS:
        try:
            Webhook(secret).verify(body, headers)
            return True
        except Exception:
            pass
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers=None, body=b"{}"):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_ready":
            return self.answer(200)
        if self.path == "/_records":
            with LOCK:
                body = json.dumps(RECORDS).encode()
            return self.answer(200, {"Content-Type": "application/json"}, body)
        self.answer(404)

    def do_POST(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        wanted = {k: headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        with LOCK:
            COUNTS[url.path] = COUNTS.get(url.path, 0) + 1
            n = COUNTS[url.path]
        kind = url.path.strip("/").split("/")[0]
        status, extra = 200, {}
        if kind == "flaky" and n <= int(query.get("fail", "1")):
            status = 500
        elif kind == "slow":
            time.sleep(float(query.get("s", "20")))
        elif kind == "moved":
            status, extra = 301, {"Location": url.path.replace("/moved/", "/ok/", 1)}
        elif kind == "gone":
            status = 410
        elif kind == "limited" and n <= int(query.get("n", "1")):
            status, extra = 429, {"Retry-After": query.get("after", "1")}
        record = {
            "path": url.path,
            "at": time.time(),
            "id": wanted["webhook-id"],
            "timestamp": wanted["webhook-timestamp"],
            "signature": wanted["webhook-signature"],
            "body": body,
            "verified": verified(body, wanted),
            "status": status,
        }
        with LOCK:
            RECORDS.append(record)
        try:
            self.answer(status, extra)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"RECEIVER READY {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
