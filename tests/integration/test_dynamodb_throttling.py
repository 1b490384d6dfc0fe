"""DynamoDB throttling, injected by a faulting HTTP proxy on loopback in front of the moto server.

The proxy answers every third BatchWriteItem with ProvisionedThroughputExceededException and, for the
others, forwards only half the items and returns the rest as UnprocessedItems — what DynamoDB does under
load. The evidence writer must end with every item stored exactly once.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from devstack.stack import PROJECT, _http_ok, free_port
from include.evidence import EvidenceStore

BATCH_WRITE = "DynamoDB_20120810.BatchWriteItem"


class FaultingProxy(BaseHTTPRequestHandler):
    upstream = ""
    seen = {"throttled": 0, "unprocessed": 0, "batch_writes": 0}
    lock = threading.Lock()

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "x-amz-crc32", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))  # botocore verifies it
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        kept: dict = {}
        if target == BATCH_WRITE:
            with self.lock:
                self.seen["batch_writes"] += 1
                throttle = self.seen["batch_writes"] % 3 == 0
                if throttle:
                    self.seen["throttled"] += 1
            if throttle:
                error = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                         "message": "injected throttle"}
                return self._reply(400, json.dumps(error).encode(), {"Content-Type": "application/x-amz-json-1.0"})
            request = json.loads(body)
            forwarded = {}
            for table, writes in request["RequestItems"].items():
                half = max(1, len(writes) // 2)
                forwarded[table], rest = writes[:half], writes[half:]
                if rest:
                    kept[table] = rest
            body = json.dumps({**request, "RequestItems": forwarded}).encode()
        upstream = urllib.request.Request(self.upstream + self.path, data=body, method="POST",
                                          headers={k: v for k, v in self.headers.items() if k.lower() != "content-length"})
        try:
            with urllib.request.urlopen(upstream, timeout=30) as response:
                status, data, headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, data, headers = exc.code, exc.read(), dict(exc.headers)
        if kept and status == 200:
            reply = json.loads(data)
            reply.setdefault("UnprocessedItems", {})
            for table, rest in kept.items():
                reply["UnprocessedItems"].setdefault(table, []).extend(rest)
            with self.lock:
                self.seen["unprocessed"] += sum(len(r) for r in kept.values())
            data = json.dumps(reply).encode()
        self._reply(status, data, headers)


@pytest.fixture()
def moto_and_proxy():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=PROJECT)
    direct = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _http_ok(f"{direct}/moto-api/"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    FaultingProxy.upstream = direct
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultingProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield direct, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    proc.terminate()
    proc.wait(timeout=10)


def resource(endpoint: str):
    return boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")


def test_throttled_and_unprocessed_writes_end_with_every_item_once(moto_and_proxy):
    direct, proxied = moto_and_proxy
    EvidenceStore(resource(direct), "evidence").ensure_tables()
    items = [{"instance_id": f"i-{n:04d}", "audit_date": "2032-04-04", "item_type": "instance", "run_id": "r",
              "status": "COMPLIANT", "failed_checks": []} for n in range(120)]
    written = EvidenceStore(resource(proxied), "evidence").put_items(items, base_delay=0.01)
    assert written == 120
    assert FaultingProxy.seen["throttled"] > 0 and FaultingProxy.seen["unprocessed"] > 0
    stored = EvidenceStore(resource(direct), "evidence").day_items("2032-04-04")
    assert sorted(it["instance_id"] for it in stored) == [it["instance_id"] for it in items]
