"""A faulting HTTP proxy on loopback in front of the moto server: tests inject AWS failures through it.

Subclass `FaultProxy`, override `answer(body)` to return a made-up reply or to change the request and
`forward` it, then `start(upstream)`. Everything else reaches moto unchanged — every method botocore uses
(POST for the query and JSON protocols; GET, PUT, PATCH, DELETE and HEAD for REST ones: S3 objects, Security
Hub's PATCH /findings/batchupdate and GET /accounts).

`QuotaProxy` is the quota mode: each API's published per-account-and-Region rate (devstack/standins/aws/quotas.py)
enforced with a token bucket per (access key, Region, service, API) — DynamoDB's as request units per table
and per day-index key — and an empty bucket answered exactly as that service answers (EC2 503
RequestLimitExceeded XML; Logs and SSM 400 ThrottlingException; DynamoDB 400
ProvisionedThroughputExceededException with ThrottlingReasons, or a BatchWriteItem that writes what it can and
hands back the rest as UnprocessedItems, or a TransactWriteItems cancelled whole — 400
TransactionCanceledException, CancellationReasons "ThrottlingError" on the actions that did not fit, "None" on
the others; Security Hub 429 TooManyRequestsException). Every call and every
throttle is counted per API:

    server, endpoint = QuotaProxy.start(moto_endpoint)            # published rates
    server, endpoint = QuotaProxy.start(moto_endpoint, scale=0.01)  # every quota a hundredth
    ... point clients at endpoint ...
    server.ledger.report()   # {"logs:DescribeLogStreams": {"calls": 310, "throttled": 12, ...}, ...}
"""
from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack.standins.aws import quotas as aws_quotas
from devstack.standins.aws.quotas import Call, Ledger

HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "x-amz-crc32", "server", "date")


class FaultProxy(BaseHTTPRequestHandler):
    upstream = ""

    def log_message(self, *args):  # keep test output quiet
        pass

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        return self.forward(body)

    def forward(self, body: bytes) -> tuple[int, bytes, dict]:
        """This request (its method, path and headers; `body` as given) to the upstream; its reply."""
        has_body = self.command not in ("GET", "HEAD", "DELETE") or bool(body)
        request = urllib.request.Request(self.upstream + self.path, data=body if has_body else None,
                                         method=self.command, headers={
                                             k: v for k, v in self.headers.items()
                                             if k.lower() not in ("host", "content-length", "expect")})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def _serve(self) -> None:
        status, body, headers = self.answer(self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)))
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        if self.command == "HEAD":  # the upstream's length, no body
            self.send_header("Content-Length", headers.get("Content-Length", headers.get("content-length", "0")))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))  # botocore verifies it (DynamoDB)
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815 - http.server's naming

    @classmethod
    def start(cls, upstream: str, **attrs) -> tuple[ThreadingHTTPServer, str]:
        """Serve on a free loopback port in a daemon thread; `attrs` become class attributes of the handler."""
        handler = type(cls.__name__, (cls,), {"upstream": upstream, **attrs})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"


class QuotaProxy(FaultProxy):
    """Quota mode: published rates enforced per account and Region, throttles answered as AWS does."""

    ledger: Ledger

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        call = aws_quotas.identify(self.command, self.path, self.headers, body)
        if call.service == "dynamodb" and call.action in aws_quotas.DYNAMODB_WRITES | aws_quotas.DYNAMODB_READS:
            self.ledger.count(call)
            return self._dynamodb(call, body)
        if not self.ledger.admit(call):
            return aws_quotas.throttle_reply(call)
        return self.forward(body)

    # -- DynamoDB: request units per table and per day-index key
    def _arn(self, call: Call, table: str, index: str = "") -> str:
        return f"arn:aws:dynamodb:{call.region}:123456789012:table/{table}" + (f"/index/{index}" if index else "")

    def _refuse(self, call: Call, reason: str, table: str, index: str = "") -> tuple[int, bytes, dict]:
        self.ledger.throttled(call)
        return aws_quotas.throttle_reply(call, reason, self._arn(call, table, index))

    def _dynamodb(self, call: Call, body: bytes) -> tuple[int, bytes, dict]:
        request = json.loads(body or b"{}")
        if call.action == "BatchWriteItem":
            return self._batch_write(call, request)
        if call.action == "TransactWriteItems":
            return self._transact_write(call, request, body)
        if call.action in ("PutItem", "UpdateItem", "DeleteItem"):
            item = request.get("Item") or request.get("Key") or {}
            done, reason = self.ledger.admit_writes(call, request.get("TableName", ""), [item])
            if not done:
                return self._refuse(call, reason, request.get("TableName", ""))
            return self.forward(body)
        return self._read(call, request, body)

    def _batch_write(self, call: Call, request: dict) -> tuple[int, bytes, dict]:
        """DynamoDB writes what the buckets allow, in order, and hands the rest back as UnprocessedItems; with
        nothing written the whole call is throttled (BatchWriteItem, API Reference)."""
        forwarded, kept, reason, where = {}, {}, "", ""
        for table, writes in request.get("RequestItems", {}).items():
            items = [w.get("PutRequest", {}).get("Item") or w.get("DeleteRequest", {}).get("Key") or {}
                     for w in writes]
            done, why = self.ledger.admit_writes(call, table, items)
            if done:
                forwarded[table] = writes[:done]
            if done < len(writes):
                kept[table] = writes[done:]
                reason, where = reason or why, where or table
        if not forwarded:
            return self._refuse(call, reason, where, "by_audit_date" if reason.startswith("Index") else "")
        status, data, headers = self.forward(json.dumps({**request, "RequestItems": forwarded}).encode())
        if kept and status == 200:
            reply = json.loads(data)
            for table, rest in kept.items():
                reply.setdefault("UnprocessedItems", {}).setdefault(table, []).extend(rest)
            self.ledger.unprocessed(call, sum(len(r) for r in kept.values()))
            data = json.dumps(reply).encode()
        return status, data, headers

    def _transact_write(self, call: Call, request: dict, body: bytes) -> tuple[int, bytes, dict]:
        """All or nothing: forwarded when the buckets take every action (quotas.TRANSACT_FACTOR), else
        cancelled as DynamoDB cancels it, nothing written. The size charged is the Put's item, or the key of an
        Update, Delete or ConditionCheck (the stored item, which DynamoDB would size, is not read here)."""
        actions = []
        for entry in request.get("TransactItems", []):
            (kind, action), = entry.items()
            actions.append((kind, action.get("TableName", ""),
                            action.get("Item") if kind == "Put" else action.get("Key", {})))
        reasons = self.ledger.admit_transaction(call, actions)
        if any(r["Code"] != "None" for r in reasons):
            return aws_quotas.transaction_cancelled(reasons)
        return self.forward(body)

    @staticmethod
    def _day(request: dict) -> str | None:
        """The day-index key a Query on an index reads (the values its key condition names)."""
        if not request.get("IndexName"):
            return None
        names = sorted(set(re.findall(r":\w+", request.get("KeyConditionExpression", ""))))
        values = request.get("ExpressionAttributeValues", {})
        return "|".join(json.dumps(values.get(n), sort_keys=True) for n in names) or None

    def _read(self, call: Call, request: dict, body: bytes) -> tuple[int, bytes, dict]:
        if call.action == "BatchGetItem":
            tables = list(request.get("RequestItems", {}))
        else:
            tables = [request.get("TableName", "")]
        day = self._day(request)
        for table in tables:
            if not self.ledger.admit_read(call, table, day):
                reason = "IndexReadKeyRangeThroughputExceeded" if day else "TableReadAccountLimitExceeded"
                return self._refuse(call, reason, table, request.get("IndexName", ""))
        status, data, headers = self.forward(body)
        if status == 200:
            reply = json.loads(data or b"{}")
            consistent = bool(request.get("ConsistentRead"))
            if call.action == "BatchGetItem":  # ConsistentRead is per table here, inside RequestItems
                left = reply.get("UnprocessedKeys") or {}
                for table, spec in request.get("RequestItems", {}).items():
                    asked = len(spec.get("Keys", [])) - len(left.get(table, {}).get("Keys", []))
                    self.ledger.charge_read(call, table, aws_quotas.batch_read_units(
                        reply.get("Responses", {}).get(table, []), asked, bool(spec.get("ConsistentRead"))))
            else:
                items = reply.get("Items") or ([reply["Item"]] if reply.get("Item") else [])
                self.ledger.charge_read(call, tables[0], aws_quotas.read_units(items, consistent), day)
        return status, data, headers

    @classmethod
    def start(cls, upstream: str, ledger: Ledger | None = None, **ledger_args) -> tuple[ThreadingHTTPServer, str]:
        """A quota proxy with its own Ledger (or the one given): `scale`, `enforce`, `clock`, `quotas`."""
        ledger = ledger or Ledger(**ledger_args)
        server, endpoint = super().start(upstream, ledger=ledger)
        server.ledger = ledger
        return server, endpoint
