"""A do-nothing OTLP/HTTP trace receiver for the telemetry-on bench target (`python -m bench.otlp_sink`).

It answers 200 with an empty `ExportTraceServiceResponse` (an empty body is a valid empty protobuf
message) to every `POST /v1/traces`, reads and drops the body, and counts: `GET /stats` answers
`{"exports": n, "bytes": m}`, `GET /health` 200. The server under test pays for building and
sending its spans; what a real collector would then do with them is not the server's cost.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Sink(BaseHTTPRequestHandler):
    exports = 0
    received_bytes = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).exports += self.path == "/v1/traces"
        type(self).received_bytes += length
        self._answer(200 if self.path == "/v1/traces" else 404, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path == "/stats":
            body = json.dumps({"exports": type(self).exports, "bytes": type(self).received_bytes})
            self._answer(200, body.encode(), "application/json")
        else:
            self._answer(200 if self.path == "/health" else 404, b"ok", "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), _Sink).serve_forever()


if __name__ == "__main__":
    main()
