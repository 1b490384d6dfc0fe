"""A faulting HTTP proxy on loopback in front of the moto server: tests inject AWS failures through it.

Subclass `FaultProxy`, override `answer(body)` to return a made-up reply or to change the request and
`forward` it, then `start(upstream)`. Everything else reaches moto unchanged.
"""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "x-amz-crc32", "server", "date")


class FaultProxy(BaseHTTPRequestHandler):
    upstream = ""

    def log_message(self, *args):  # keep test output quiet
        pass

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        return self.forward(body)

    def forward(self, body: bytes) -> tuple[int, bytes, dict]:
        request = urllib.request.Request(self.upstream + self.path, data=body, method="POST", headers={
            k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def do_POST(self):  # noqa: N802 - http.server's naming
        status, body, headers = self.answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))  # botocore verifies it (DynamoDB)
        self.end_headers()
        self.wfile.write(body)

    @classmethod
    def start(cls, upstream: str) -> tuple[ThreadingHTTPServer, str]:
        handler = type(cls.__name__, (cls,), {"upstream": upstream})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"
