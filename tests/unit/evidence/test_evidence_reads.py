"""Evidence reads never come back short without saying so: BatchGetItem keys still unprocessed after bounded,
backed-off retries fail the read (the task is retried), and the report's read of a day fails when a host the
day's digest names is not found, instead of building a report that silently lacks it."""
from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from include.aws import day_table
from include.evidence import digest as day_digest
from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore
from include.fleet.inventory import Inventory
from include.report import staging
from tests.factories import hashed, stored_item

DAY = "2026-12-02"


class HoldingResource:
    """A DynamoDB resource whose BatchGetItem answers keys of i-held-* as UnprocessedKeys, every time, and
    every other key on a second ask only (as DynamoDB does under load)."""

    def __init__(self) -> None:
        self.meta = SimpleNamespace(client=None)
        self.calls = 0
        self.asked: set[str] = set()

    def Table(self, name):  # noqa: N802 - boto3's name
        return SimpleNamespace(name=name)

    def batch_get_item(self, RequestItems):  # noqa: N803 - boto3's name
        self.calls += 1
        (table, spec), = RequestItems.items()
        answered, held = [], []
        for key in spec["Keys"]:
            iid = key["instance_id"]
            if iid.startswith("i-held") or iid not in self.asked:
                held.append(key)
            else:
                answered.append({**key, "item_type": "instance", "run_id": "r1"})
            self.asked.add(iid)
        return {"Responses": {table: answered}, "UnprocessedKeys": {table: {**spec, "Keys": held}} if held else {}}


def test_a_read_left_with_unprocessed_keys_fails_after_backed_off_retries(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(day_table.time, "sleep", slept.append)
    resource = HoldingResource()
    store = EvidenceStore(resource, "t")
    # Keys answered on a later ask are all returned, after a pause.
    assert sorted(it.instance_id for it in store.items_by_id(DAY, ["i-1", "i-2"])) == ["i-1", "i-2"]
    assert len(slept) == 1 and slept[0] > 0
    resource.calls, slept[:] = 0, []
    with pytest.raises(day_table.IncompleteRead, match="1 of 3 keys"):
        store.items_by_id(DAY, ["i-1", "i-2", "i-held-1"])
    assert resource.calls == day_table.READ_ATTEMPTS  # bounded
    assert len(slept) == day_table.READ_ATTEMPTS - 1 and slept[-1] > slept[0]  # backed off, growing
    with pytest.raises(day_table.IncompleteRead):  # the retry's "already recorded?" read fails the try too
        store.recorded_by_run(DAY, ["i-held-2"], "r1")


def _stored(n: int, **fields) -> dict:
    return hashed(stored_item(f"i-{n:04d}", "NON_COMPLIANT", ["auditd.running"], detail="auditd stopped", audit_date=DAY,
                              item_type="instance", run_id="r1", output_sha256=f"{n:064x}", **fields))


def test_a_host_the_digest_names_but_the_table_lacks_fails_the_report_read(tmp_path):
    from include.settings.params import AuditParams
    from include.tasks.audit import day_items_for_report

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "reads_test")
        store.ensure_tables()
        items = [_stored(n) for n in range(1, 4)]
        store.put_items(items[:2])  # the third is named by the digest only
        store.put_digest(DAY, day_digest.build(map(EvidenceItem.from_item, items)), 400)
        with pytest.raises(RuntimeError, match="i-0003"):
            day_items_for_report(store, AuditParams(report_dir=str(tmp_path)), DAY, "r1", "live")


def _built(n: int) -> dict:
    """An item as a verify batch builds it (evidence.instance_item: tags, checks, output hash; the store adds
    seq and the item hash)."""
    from datetime import datetime, timezone

    from include.core.host import Host, HostOutcome
    from include.core.status import Status, Verdict
    from include.evidence.store import instance_item

    host = Host(f"i-{n:04d}", "us-east-1", "123456789012", "10.0.0.1", private_ip="10.0.0.1",
                tags={"Name": f"web-{n}", "Environment": "prod", "Team": "é ünïcode"})
    return instance_item(host=host, outcome=HostOutcome(host.instance_id, None, output=b"out %d" % n, attempts=1),
                         status=Status.NON_COMPLIANT, failed=["auditd.running"],
                         verdicts={"auditd.running": Verdict.failed("auditd stopped"),
                                   "cwagent.running": Verdict.passed("running")},
                         detail="1 failed", audit_date=DAY, run_id="r1",
                         checked_at=datetime(2026, 12, 2, 6, tzinfo=timezone.utc), ttl_days=400)


def test_a_staged_copy_whose_failed_checks_differ_is_not_used(tmp_path, caplog, monkeypatch):
    """Same run, status and output hash, other failed_checks (or check detail): the report shows what DynamoDB
    holds; copies that are exactly what was stored are used."""
    from include.settings.params import AuditParams
    from include.tasks import audit as pipeline
    from include.tasks.audit import day_items_for_report

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "reads_test")
        store.ensure_tables()
        monkeypatch.setattr(pipeline, "evidence_store", lambda params: store)
        stored = store.put_observations([_built(n) for n in range(1, 5)])  # as stored: seq and item hash set
        params = AuditParams(report_dir=str(tmp_path))
        ids = [it["instance_id"] for it in stored]
        pipeline.store_summary(params, Inventory.from_xcom({"audit_date": DAY, "run_id": "r1", "mode": "live",
                                                            "states": {}, "instances": {"us-east-1": ids}}), [])  # seals the day: the digest
        digest = store.digest(DAY)
        other = dict(stored[0], failed_checks=["cwagent.running"])  # a copy that is not what was stored
        detail = dict(stored[1], checks={**stored[1]["checks"], "auditd.running": {"status": "FAIL", "detail": "x"}})
        assert staging.matching(digest, {"i-0001": other, "i-0002": detail})[0] == []
        staging.write_batch(str(tmp_path), DAY, "r1", "b", [other, detail, *stored[2:]])
        with caplog.at_level("INFO", logger="include.tasks.audit"):
            items = day_items_for_report(store, params, DAY, "r1", "live")
        assert [it.failed_checks for it in items] == [["auditd.running"]] * 4
        assert items[1].checks["auditd.running"]["detail"] == "auditd stopped"
        # The staged copies that are exactly what was stored (JSON and back) are used: two read by key.
        assert "2 items from the batches' staging, 2 read from DynamoDB" in caplog.text


def test_the_store_reads_return_evidence_records():
    """day_items, items_by_id and host_history give EvidenceItem records (built once, at the store), projected
    reads too (what was not projected reads as its default); the item hash read back is the one written."""
    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "reads_test")
        store.ensure_tables()
        written = store.put_observations([_built(n) for n in range(1, 3)])
        reads = [store.day_items(DAY), store.day_items(DAY, fields=["status"]), store.items_by_id(DAY, ["i-0001"]),
                 store.host_history("i-0002")]
        for read in reads:
            assert read and all(isinstance(it, EvidenceItem) for it in read)
        full = {it.instance_id: it for it in reads[0]}
        assert full["i-0001"] == EvidenceItem.from_item(written[0])
        assert day_digest.item_sha256(full["i-0002"].to_item()) == written[1][day_digest.ITEM_HASH]
        assert {it.status for it in reads[1]} == {"NON_COMPLIANT"} and reads[1][0].checks == {}
