"""The writers and the auditors' command line together, on a real moto server: three days written through the
code's own paths (the batch's EvidenceWriter with raw output, put_observations, the seals and reseal_day), a
rerun of one day, two writers racing on one host and a remediation's re-check; then `history` shows every
observation (the current one last), `verify` says intact, and after tampering names exactly what changed.

(tests/integration/integrity/ checks the verifier against a layout built by hand; this one checks that what the
writers store is what the verifier expects.)"""
from __future__ import annotations

import io
import json
import threading
from datetime import datetime, timezone

import pytest

from devstack.stack import local_aws
from include.core.status import Status
from include.evidence.observation import RawOutput, raw_chunk_key, raw_table_name, version_key
from include.evidence.raw_store import RawOutputStore
from include.evidence.store import SUMMARY_ID, EvidenceStore, instance_item
from include.integrity.cli import main as integrity
from include.tasks.audit import reseal_day
from include.verify.writer import EvidenceWriter
from tests.factories import host, outcome

TABLE, TTL = "written_then_verified", 400
D1, D2, D3 = "2031-04-01", "2031-04-02", "2031-04-03"
HOSTS = ("i-a", "i-b", "i-c")


@pytest.fixture(scope="module")
def store(moto):
    s = EvidenceStore(local_aws.dynamodb(moto), TABLE)
    s.ensure_tables()
    return s


@pytest.fixture()
def conn(moto, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": moto, "region_name": "us-east-1"}}))


def observe(store: EvidenceStore, day: str, run_id: str, trigger: str, ids=HOSTS, status=Status.COMPLIANT) -> None:
    """One run's observations as a batch stores them: raw output first, then the items as observations."""
    raws = RawOutputStore.open(store.resource, store.table_name, None)
    writer = EvidenceWriter(store, raws=raws)
    for iid in ids:
        output = f"=== {iid} {day} {run_id} ===\nenabled 1\npid 4242\n".encode()
        raw = RawOutput.of(output)
        writer.add(instance_item(
            host=host(iid), outcome=outcome(iid, output=output), status=status, failed=[], verdicts={},
            detail="", audit_date=day, run_id=run_id, checked_at=datetime.now(timezone.utc), ttl_days=TTL,
            trigger=trigger, output_ref=raws.ref(iid, day, raw.sha256)), raw)
    writer.close()


def cli(*args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    return integrity(list(args), out=out), out.getvalue().splitlines()


def test_what_the_writers_store_verifies_and_tampering_is_named_exactly(store, conn):
    observe(store, D1, "day1", "schedule")
    reseal_day(store, D1, "day1", "schedule", TTL)
    observe(store, D2, "day2", "schedule")
    reseal_day(store, D2, "day2", "schedule", TTL)
    observe(store, D2, "day2-rerun", "manual", status=Status.NON_COMPLIANT)  # a rerun of the day
    reseal_day(store, D2, "day2-rerun", "manual", TTL)
    observe(store, D3, "day3", "schedule")
    # Two DAGs writing one host at once (each with its own store): both observations are kept.
    racers = [threading.Thread(target=observe, args=(EvidenceStore(store.resource, TABLE), D3, f"race-{n}",
                                                     "request", ("i-a",))) for n in (1, 2)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    observe(store, D3, "fix-run", "remediation", ("i-b",))  # a remediation's re-check
    reseal_day(store, D3, "fix-run", "remediation", TTL)

    code, lines = cli("history", "--table", TABLE, "--instance", "i-a", "--day", D3)
    seen = [json.loads(line) for line in lines]
    assert code == 0 and [o["seq"] for o in seen] == [1, 2, 3] and [o["current"] for o in seen] == [False, False, True]
    assert [o["run_id"] for o in seen][0] == "day3" and {o["run_id"] for o in seen[1:]} == {"race-1", "race-2"}
    assert {o["trigger"] for o in seen[1:]} == {"request"}
    code, lines = cli("history", "--table", TABLE, "--instance", "i-b", "--day", D2)
    assert [(json.loads(x)["run_id"], json.loads(x)["status"]) for x in lines] == [
        ("day2", "COMPLIANT"), ("day2-rerun", "NON_COMPLIANT")]
    # 3 + 6 + (3 + 2 racing + 1 re-check) observations
    assert cli("verify", "--table", TABLE, "--from", D1, "--to", D3) == (0, ["intact: 3 days, 15 items"])

    table = store.resource.Table(TABLE)
    table.update_item(Key={"instance_id": "i-a", "audit_date": D1}, UpdateExpression="SET #s = :s",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "NON_COMPLIANT"})
    table.delete_item(Key={"instance_id": "i-b", "audit_date": version_key(D2, 1)})
    forged = table.get_item(Key={"instance_id": "i-c", "audit_date": D3})["Item"]
    table.put_item(Item={**forged, "instance_id": "i-forged"})
    edited = table.get_item(Key={"instance_id": "i-c", "audit_date": D2})["Item"]
    store.resource.Table(raw_table_name(TABLE)).put_item(Item={
        **store.resource.Table(raw_table_name(TABLE)).get_item(Key={
            "instance_id": "i-c", "output_key": raw_chunk_key(D2, edited["output_sha256"], 0)})["Item"],
        "data": RawOutput.of(b"=== i-c edited ===\nenabled 1\n").gz})
    table.delete_item(Key={"instance_id": SUMMARY_ID, "audit_date": D1})

    code, lines = cli("verify", "--table", TABLE, "--from", D1, "--to", D3)
    assert code == 1
    assert sorted(lines) == sorted([f"altered {D1} i-a seq=1", f"missing {D1} #run-summary",
                                    f"missing {D2} i-b seq=1", f"altered {D2} i-c seq=2",
                                    f"added {D3} i-forged seq=1"])
