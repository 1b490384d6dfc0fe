"""Evidence reads never come back short without saying so: BatchGetItem keys still unprocessed after bounded,
backed-off retries fail the read (the task is retried), and the report's read of a day fails when a host the
day's digest names is not found, instead of building a report that silently lacks it."""
from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from include import day_digest, evidence, staging
from include.evidence import EvidenceStore

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
    monkeypatch.setattr(evidence.time, "sleep", slept.append)
    resource = HoldingResource()
    store = EvidenceStore(resource, "t")
    # Keys answered on a later ask are all returned, after a pause.
    assert sorted(it["instance_id"] for it in store.items_by_id(DAY, ["i-1", "i-2"])) == ["i-1", "i-2"]
    assert len(slept) == 1 and slept[0] > 0
    resource.calls, slept[:] = 0, []
    with pytest.raises(evidence.IncompleteRead, match="1 of 3 keys"):
        store.items_by_id(DAY, ["i-1", "i-2", "i-held-1"])
    assert resource.calls == evidence.READ_ATTEMPTS  # bounded
    assert len(slept) == evidence.READ_ATTEMPTS - 1 and slept[-1] > slept[0]  # backed off, growing
    with pytest.raises(evidence.IncompleteRead):  # the retry's "already recorded?" read fails the try too
        store.recorded_by_run(DAY, ["i-held-2"], "r1")


def _stored(n: int, **fields) -> dict:
    item = {"instance_id": f"i-{n:04d}", "audit_date": DAY, "item_type": "instance", "run_id": "r1",
            "status": "NON_COMPLIANT", "failed_checks": ["auditd.running"], "output_sha256": f"{n:064x}",
            "checks": {"auditd.running": {"status": "FAIL", "detail": "auditd stopped"}}, **fields}
    return {**item, day_digest.ITEM_HASH: day_digest.item_sha256(item)}


def test_a_host_the_digest_names_but_the_table_lacks_fails_the_report_read(tmp_path):
    from include.config import AuditParams
    from include.pipeline import day_items_for_report

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "reads_test")
        store.ensure_tables()
        items = [_stored(n) for n in range(1, 4)]
        store.put_items(items[:2])  # the third is named by the digest only
        store.put_digest(DAY, day_digest.build(items), 400)
        with pytest.raises(RuntimeError, match="i-0003"):
            day_items_for_report(store, AuditParams(report_dir=str(tmp_path)), DAY, "r1", "live")


def test_a_staged_copy_whose_failed_checks_differ_is_not_used(tmp_path):
    """Same run, status and output hash, other failed_checks: the report shows what DynamoDB holds."""
    from include.config import AuditParams
    from include.pipeline import day_items_for_report

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "reads_test")
        store.ensure_tables()
        stored = [_stored(1), _stored(2)]
        store.put_items(stored)
        store.put_digest(DAY, day_digest.build(stored), 400)
        other = dict(stored[0], failed_checks=["cwagent.running"])  # a copy that is not what was stored
        detail = dict(stored[1], checks={"auditd.running": {"status": "FAIL", "detail": "another detail"}})
        assert staging.matching(day_digest.build(stored), {"i-0001": other, "i-0002": detail}) == (
            [], ["i-0001", "i-0002"])
        staging.write_batch(str(tmp_path), DAY, "r1", "b", [other, detail])
        items = day_items_for_report(store, AuditParams(report_dir=str(tmp_path)), DAY, "r1", "live")
        assert [it["failed_checks"] for it in items] == [["auditd.running"], ["auditd.running"]]
        assert items[1]["checks"]["auditd.running"]["detail"] == "auditd stopped"
        # The staged copies that are exactly what was stored are used.
        assert staging.matching(day_digest.build(stored), {it["instance_id"]: it for it in stored})[0] == stored
