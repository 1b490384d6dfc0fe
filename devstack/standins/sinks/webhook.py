"""A loopback HTTP receiver that stores the body of every POST it gets as a file (a Slack webhook stand-in).

    python -m devstack.standins.sinks.webhook --host 127.0.0.1 --port 8026 --dir DIR [--ready-file F]

Each request becomes `NNNN.body` (the bytes as sent) and `NNNN.json` (method path, content type, length),
written to a temp file and renamed, so a reader never sees half a request. It answers `200 ok` as Slack's
incoming webhooks do, or — for tests of a rejecting endpoint — the status and text set for a path in
`responses` (`sink.responses["/services/T/B/revoked"] = (404, "invalid_token")`). Like devstack/standins/sinks/smtp.py
it listens on loopback only, for tests and the demo.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devstack import procs

MAX_BODY = 1 << 20  # Slack refuses far smaller messages; a bigger body is a bug, not a message


class WebhookSink:
    def __init__(self, host: str, port: int, directory: str | Path) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"webhook sink listens on loopback only, not {host!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.responses: dict[str, tuple[int, str]] = {}  # path → (status, body) instead of (200, "ok")
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, "too large")
                    return
                sink._store(self.path, self.headers.get("Content-Type", ""), self.rfile.read(length))
                self._answer(*sink.responses.get(self.path, (200, "ok")))

            def _answer(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet: the stored files are the record
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def _store(self, path: str, content_type: str, body: bytes) -> None:
        with self._lock:
            n = next(self._counter)
        meta = {"method": "POST", "path": path, "content_type": content_type, "length": len(body)}
        for suffix, data in ((".body", body), (".json", json.dumps(meta).encode())):
            tmp = self.directory / f".{n:04d}{suffix}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / f"{n:04d}{suffix}")  # the .json last: it marks a complete request

    def start(self) -> "WebhookSink":
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "WebhookSink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests(self) -> list[dict]:
        """Every complete request so far, oldest first: its metadata plus `body` (bytes)."""
        out = []
        for meta_file in sorted(self.directory.glob("[0-9]*.json")):
            meta = json.loads(meta_file.read_text())
            out.append({**meta, "body": meta_file.with_suffix(".body").read_bytes()})
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    sink = WebhookSink(args.host, args.port, args.dir).start()
    print(f"webhook sink on {sink.url()} storing into {args.dir}", flush=True)  # --port 0: the port it got
    procs.serve_until_signalled(sink.stop, args.ready_file)


if __name__ == "__main__":
    main()
