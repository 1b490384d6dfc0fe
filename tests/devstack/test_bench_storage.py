"""The quota bench's stored bytes (devstack/bench/quota.py: day_storage, storage): a day written by the project's own
writers (observations with a version, raw output in T_raw, a seal, a summary) is read back by kind — that day
only — and sized as DynamoDB sizes items; the per-host split and the storage cost follow from the sizes."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from devstack.bench import quota
from devstack.standins.aws import quotas as aq
from include.evidence import seals
from include.evidence.observation import RawOutput
from include.evidence.raw_store import RawOutputStore
from include.evidence.store import EvidenceStore

DAY, OTHER = "2026-12-07", "2026-12-06"


def obs(iid: str, day: str = DAY, run: str = "r1", at: str = "2026-12-07T06:00:00Z") -> dict:
    return {"instance_id": iid, "audit_date": day, "item_type": "instance", "run_id": run, "checked_at": at,
            "status": "COMPLIANT", "failed_checks": [], "trigger": "schedule", "expires_at": 1_900_000_000,
            "seq": 0, "item_sha256": ""}


def test_the_days_items_versions_raw_output_seals_and_members_are_read_back_by_kind():
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        store = EvidenceStore(resource, "ev")
        store.ensure_tables()
        store.put_observations([obs("i-1"), obs("i-2"), obs("i-3", day=OTHER)])
        store.put_observations([obs("i-1", run="r2", at="2026-12-07T07:00:00Z")])  # a rerun: i-1's first kept
        raws = RawOutputStore(resource, "ev")
        raws.put([(obs("i-1"), RawOutput.of(b"auditd active\n" * 50)), (obs("i-3", day=OTHER), RawOutput.of(b"x"))])
        seals.seal(store, DAY, "r2", "schedule", 400)
        seals.seal(store, OTHER, "r1", "schedule", 400)
        store.put_day_item("#run-summary", "run_summary", DAY, {"run_id": "r2"}, 400)

        groups = quota.day_storage(boto3.client("dynamodb", region_name="us-east-1"), "ev", DAY)

    assert {k: len(v) for k, v in groups.items()} == {
        "current": 2, "versions": 1, "raw": 1, "seals": 1, "seal_members": 1, "other": 1}
    assert sorted(it["instance_id"]["S"] for it in groups["current"]) == ["i-1", "i-2"]
    assert groups["versions"][0]["audit_date"]["S"] == f"{DAY}#v#1"
    assert groups["seals"][0]["day"]["S"] == DAY
    assert isinstance(groups["raw"][0]["data"]["B"], bytes)  # sized by its bytes, not their base64


def test_bytes_per_host_split_and_the_cost_at_100000_hosts():
    item = {"instance_id": {"S": "i-1"}, "audit_date": {"S": DAY}}  # 3 + 11 + 10 + 10 = 34 bytes
    raw = {"instance_id": {"S": "i-1"}, "data": {"B": b"\0" * 966}}  # 3 + 11 + 4 + 966 = 984 bytes
    groups = {"current": [item, item], "versions": [item], "raw": [raw], "seals": [item], "seal_members": [],
              "other": []}
    assert aq.item_size(item) == 34 and aq.item_size(raw) == 984
    kept = quota.storage(groups, hosts=2, ttl_days=400, to=100_000, usd_per_gb_month=0.25)
    assert kept["bytes"] == {"items": 102, "raw_output": 984, "seals": 34, "other": 0}
    assert kept["bytes_per_host"] == {"items": 51, "raw_output": 492, "seals": 17, "other": 0}
    assert kept["stored_bytes_per_host"] == 560
    # the evidence table's 4 items twice (the day index keeps a copy), T_raw's once, 100 B an item each time
    billed = 2 * (136 + 4 * 100) + 984 + 100
    assert kept["billed_bytes_per_host_per_day"] == billed / 2
    at = kept["at_100000"]
    assert at["gb_per_day"] == pytest.approx(billed / 2 * 100_000 / 1e9, abs=1e-3)
    assert at["usd_per_month_steady_state"] == pytest.approx(billed / 2 * 100_000 / 1e9 * 400 * 0.25, abs=0.01)
    assert at[f"usd_per_month_after_{quota.DAYS_PER_MONTH}_days"] == pytest.approx(
        billed / 2 * 100_000 / 1e9 * quota.DAYS_PER_MONTH * 0.25, abs=0.01)
    assert "0.25 per GB-month" in quota.storage_markdown(kept)
