"""The day's digest and the batches' staged items: the report takes a staged item only when the digest (read
from DynamoDB when the day was sealed) vouches for it; everything else is read from DynamoDB."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from include.aws import chunks
from include.evidence import digest as day_digest
from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore
from include.report import staging
from tests.factories import hashed

DAY = "2026-12-01"


def _item(n: int, run: str = "r1", status: str = "COMPLIANT", sha: str | None = None) -> dict:
    return hashed({"instance_id": f"i-{n:04d}", "audit_date": DAY, "item_type": "instance", "run_id": run,
                   "status": status, "output_sha256": sha if sha is not None else f"{n:064x}",
                   "checks": {"auditd.running": {"status": "PASS"}}})


def test_the_digest_round_trips_in_chunks_and_refuses_a_missing_chunk(monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 200)
    digest = day_digest.build([EvidenceItem.from_item(_item(n, run=f"r{n % 3}")) for n in range(200)])
    parts, sha = day_digest.encode(digest)
    assert len(parts) > 2
    assert day_digest.decode(parts, sha) == digest
    with pytest.raises(ValueError, match="hash"):
        day_digest.decode(parts[:-1], sha)


def test_a_staged_item_is_used_only_when_the_digest_names_the_same_run_status_and_output():
    stored = [_item(1), _item(2), _item(3), _item(4, sha="")]
    digest = day_digest.build(map(EvidenceItem.from_item, stored))
    staged = {it["instance_id"]: dict(it) for it in stored}
    staged["i-0002"]["run_id"] = "r0"  # an earlier run's copy
    staged["i-0003"]["output_sha256"] = "f" * 64  # another write than the stored one
    del staged["i-0001"]  # a try whose file was lost
    found, missing = staging.matching(digest, staged)
    assert [it["instance_id"] for it in found] == ["i-0004"]
    assert missing == ["i-0001", "i-0002", "i-0003"]


def test_the_report_s_items_are_the_stored_ones_staged_or_read_by_key(tmp_path):
    from include.settings.params import AuditParams
    from include.tasks.audit import day_items_for_report

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "digest_test")
        store.ensure_tables()
        stored = [_item(n) for n in range(1, 6)]
        store.put_items(stored)
        store.put_digest(DAY, day_digest.build(map(EvidenceItem.from_item, stored)), 400)
        params = AuditParams(report_dir=str(tmp_path))
        forged = dict(stored[0], status="NON_COMPLIANT")  # a staged copy that disagrees with DynamoDB
        staging.write_batch(str(tmp_path), DAY, "r1", "batch 1", [forged] + stored[1:3])
        items = day_items_for_report(store, params, DAY, "r1", "live")
        assert [(it.instance_id, it.status) for it in items] == [(it["instance_id"], "COMPLIANT") for it in stored]
        assert "NON_COMPLIANT" not in {it.status for it in items}
        staging.clear(str(tmp_path), DAY, "r1")
        assert not (tmp_path / ".staging").exists()  # nothing left behind in the report folder
        assert len(day_items_for_report(store, params, DAY, "r1", "live")) == 5  # nothing staged: all by key


def test_a_worker_removes_its_own_old_staging_days_and_keeps_recent_ones(tmp_path):
    for day in ("2026-11-20", "2026-11-27", "2026-11-29", "2026-12-01"):
        staging.write_batch(str(tmp_path), day, "r1", "b", [_item(1)])
    staging.write_batch(str(tmp_path), DAY, "r2", "b", [_item(2)])  # writing today prunes the old days
    assert sorted(p.name for p in (tmp_path / ".staging").iterdir()) == ["2026-11-29", "2026-12-01"]


def test_a_digest_of_the_old_format_still_gives_statuses_but_vouches_for_no_staged_item():
    """Version 1 kept an output-hash prefix: equal outputs say nothing of failed_checks or details."""
    stored = [_item(1), _item(2, sha="")]
    parts, sha = chunks.pack({"v": 1, "runs": ["r1"], "hosts": {it["instance_id"]: [
        it["status"], 0, it["output_sha256"][:16]] for it in stored}})
    digest = day_digest.decode(parts, sha)
    assert {i: e.status for i, e in digest.items()} == {"i-0001": "COMPLIANT", "i-0002": "COMPLIANT"}
    assert staging.matching(digest, {it["instance_id"]: it for it in stored}) == ([], ["i-0001", "i-0002"])
