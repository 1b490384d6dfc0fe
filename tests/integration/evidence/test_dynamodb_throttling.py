"""DynamoDB throttling, injected by a faulting HTTP proxy on loopback in front of the moto server.

The proxy answers every third BatchWriteItem with ProvisionedThroughputExceededException and, for the
others, forwards only half the items and returns the rest as UnprocessedItems — what DynamoDB does under
load. The evidence writer must end with every item stored exactly once.
"""
from __future__ import annotations

import json
import threading

import pytest

from devstack.stack import local_aws
from devstack.standins.aws.fault_proxy import FaultProxy
from include.evidence.store import EvidenceStore

BATCH_WRITE = "DynamoDB_20120810.BatchWriteItem"


class FaultingProxy(FaultProxy):
    seen = {"throttled": 0, "unprocessed": 0, "batch_writes": 0}
    lock = threading.Lock()

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        if self.headers.get("X-Amz-Target", "") != BATCH_WRITE:
            return self.forward(body)
        with self.lock:
            self.seen["batch_writes"] += 1
            throttle = self.seen["batch_writes"] % 3 == 0
            if throttle:
                self.seen["throttled"] += 1
        if throttle:
            error = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                     "message": "injected throttle"}
            return 400, json.dumps(error).encode(), {"Content-Type": "application/x-amz-json-1.0"}
        request, forwarded, kept = json.loads(body), {}, {}
        for table, writes in request["RequestItems"].items():
            half = max(1, len(writes) // 2)
            forwarded[table], rest = writes[:half], writes[half:]
            if rest:
                kept[table] = rest
        status, data, headers = self.forward(json.dumps({**request, "RequestItems": forwarded}).encode())
        if kept and status == 200:
            reply = json.loads(data)
            reply.setdefault("UnprocessedItems", {})
            for table, rest in kept.items():
                reply["UnprocessedItems"].setdefault(table, []).extend(rest)
            with self.lock:
                self.seen["unprocessed"] += sum(len(r) for r in kept.values())
            data = json.dumps(reply).encode()
        return status, data, headers


@pytest.fixture()
def moto_and_proxy():
    with local_aws.moto_behind(FaultingProxy) as endpoints:
        yield endpoints


resource = local_aws.dynamodb


def test_throttled_and_unprocessed_writes_end_with_every_item_once(moto_and_proxy):
    direct, proxied = moto_and_proxy
    EvidenceStore(resource(direct), "evidence").ensure_tables()
    items = [{"instance_id": f"i-{n:04d}", "audit_date": "2032-04-04", "item_type": "instance", "run_id": "r",
              "status": "COMPLIANT", "failed_checks": []} for n in range(120)]
    written = EvidenceStore(resource(proxied), "evidence").put_items(items, base_delay=0.01)
    assert written == 120
    assert FaultingProxy.seen["throttled"] > 0 and FaultingProxy.seen["unprocessed"] > 0
    stored = EvidenceStore(resource(direct), "evidence").day_items("2032-04-04")
    assert sorted(it.instance_id for it in stored) == [it["instance_id"] for it in items]


# ---------------------------------------------------------------- reads: BatchGetItem left with UnprocessedKeys

BATCH_GET = "DynamoDB_20120810.BatchGetItem"


class HoldingReads(FaultProxy):
    """BatchGetItem: keys of i-held-* always come back as UnprocessedKeys; of the others, only the first half of
    each request is forwarded, the rest handed back unprocessed (answered on a later ask)."""

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        if self.headers.get("X-Amz-Target", "") != BATCH_GET:
            return self.forward(body)
        request = json.loads(body)
        (table, spec), = request["RequestItems"].items()
        free = [k for k in spec["Keys"] if not k["instance_id"]["S"].startswith("i-held")]
        passed = free[:max(1, len(free) // 2)] if free else []
        held = [k for k in spec["Keys"] if k not in passed]
        reply = {"Responses": {table: []}}
        status, headers = 200, {"Content-Type": "application/x-amz-json-1.0"}
        if passed:
            status, data, headers = self.forward(json.dumps(
                {**request, "RequestItems": {table: {**spec, "Keys": passed}}}).encode())
            reply = json.loads(data)
        if held and status == 200:
            reply["UnprocessedKeys"] = {table: {**spec, "Keys": held}}
        return status, json.dumps(reply).encode(), headers


def test_evidence_reads_left_with_unprocessed_keys_fail_instead_of_dropping_hosts(tmp_path, monkeypatch):
    from include.aws import day_table
    from include.evidence import digest as day_digest
    from include.evidence.records import EvidenceItem
    from include.settings.params import AuditParams
    from include.tasks.audit import day_items_for_report

    monkeypatch.setattr(day_table, "READ_BASE_DELAY_S", 0.001)
    day = "2032-04-05"
    with local_aws.moto_behind(HoldingReads) as (direct, proxied):
        EvidenceStore(resource(direct), "evidence").ensure_tables()
        items = [{"instance_id": f"i-{n:04d}", "audit_date": day, "item_type": "instance", "run_id": "r",
                  "status": "COMPLIANT", "failed_checks": []} for n in range(30)]
        items.append({**items[0], "instance_id": "i-held-1"})
        items = [{**it, day_digest.ITEM_HASH: day_digest.item_sha256(it)} for it in items]
        writer = EvidenceStore(resource(direct), "evidence")
        writer.put_items(items)
        writer.put_digest(day, day_digest.build(map(EvidenceItem.from_item, items)), 400)
        reader = EvidenceStore(resource(proxied), "evidence")
        ids = [it["instance_id"] for it in items]
        # Unprocessed keys answered on a later ask: every item comes back.
        assert sorted(it.instance_id for it in reader.items_by_id(day, ids[:30])) == ids[:30]
        # Keys never answered: the read fails, naming how many, instead of returning 30 of 31.
        with pytest.raises(day_table.IncompleteRead, match="1 of 31 keys"):
            reader.items_by_id(day, ids)
        # So does the report's read of the day (nothing staged: every host by key): no report lacking a host.
        with pytest.raises(day_table.IncompleteRead):
            day_items_for_report(reader, AuditParams(report_dir=str(tmp_path)), day, "r", "live")
