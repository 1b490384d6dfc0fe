"""Nothing observed is overwritten, against a real moto server (issue 27, item 1): a rerun keeps the replaced item
as a version with every attribute and its seq; two writers racing on one host both keep their observation; a
host's observations of a day come back with one Query, oldest first, the current one last."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from devstack.stack import local_aws
from include.core.host import Host, HostOutcome
from include.core.record import plain
from include.core.status import Status, Verdict
from include.evidence.observation import observation_sha256, version_key
from include.evidence.store import EvidenceStore, instance_item

DAY = "2033-03-03"


@pytest.fixture(scope="module")
def table(moto):
    EvidenceStore(local_aws.dynamodb(moto), "observations").ensure_tables()
    return moto


def store(endpoint: str) -> EvidenceStore:
    """Each writer its own store (its own boto3 resource): as two tasks, two DAGs, write."""
    return EvidenceStore(local_aws.dynamodb(endpoint), "observations")


def item(iid: str, run: str, minute: int, status: Status = Status.COMPLIANT, trigger: str = "schedule") -> dict:
    host = Host(iid, "us-east-1", "123456789012", "10.0.0.9", private_ip="10.0.0.9",
                tags={"Name": "web-9", "Environment": "prod"})
    failed = ["auditd.running"] if status == Status.NON_COMPLIANT else []
    return instance_item(host=host, outcome=HostOutcome(iid, None, output=f"out {run}".encode(), attempts=1),
                         status=status, failed=failed,
                         verdicts={"auditd.running": Verdict.failed("down") if failed else Verdict.passed("up")},
                         detail=f"{run}", audit_date=DAY, run_id=run, ttl_days=400, trigger=trigger,
                         checked_at=datetime(2033, 3, 3, 6, minute, tzinfo=timezone.utc))


def test_a_rerun_keeps_the_replaced_item_as_a_version_with_every_attribute_and_its_seq(table):
    writer = store(table)
    (first,) = writer.put_observations([item("i-rerun", "scheduled__1", 0, Status.NON_COMPLIANT)])
    (second,) = writer.put_observations([item("i-rerun", "manual__2", 5, trigger="manual")])
    raw = writer.table.get_item(Key={"instance_id": "i-rerun", "audit_date": version_key(DAY, 1)},
                                ConsistentRead=True)["Item"]
    version = {k: v for k, v in raw.items() if k not in ("audit_date", "item_type", "day")}
    assert plain(version) == {k: v for k, v in first.items() if k not in ("audit_date", "item_type")}
    assert (raw["item_type"], raw["day"], raw["seq"], raw["expires_at"]) == ("version", DAY, 1, first["expires_at"])
    assert raw["item_sha256"] == first["item_sha256"] == observation_sha256(raw)  # hashes as it did when current
    current = writer.table.get_item(Key={"instance_id": "i-rerun", "audit_date": DAY}, ConsistentRead=True)["Item"]
    assert (current["seq"], current["run_id"], current["trigger"]) == (2, "manual__2", "manual")
    assert current["item_sha256"] == second["item_sha256"] == observation_sha256(current)
    # The day index sees the current item only; the day's versions are listed from their own partitions.
    assert [(it.run_id, it.seq) for it in writer.day_items(DAY) if it.instance_id == "i-rerun"] == [("manual__2", 2)]
    assert [(v["instance_id"], v["seq"]) for v in writer.day_versions(DAY) if v["instance_id"] == "i-rerun"] == [
        ("i-rerun", 1)]


def test_two_writers_racing_on_one_host_both_keep_their_observation(table, monkeypatch):
    """Writer A reads the current (seq 1); before its transaction lands, writer B replaces it (seq 2): A's
    transaction is refused on the seq condition, A re-reads and stores its observation as seq 3."""
    a, b = store(table), store(table)
    a.put_observations([item("i-race", "daily", 0)])
    sent = a._transact
    raced = []

    def b_first(actions):
        if not raced:
            raced.append(b.put_observations([item("i-race", "watch", 2, trigger="tamper")]))
        return sent(actions)

    monkeypatch.setattr(a, "_transact", b_first)
    (stored,) = a.put_observations([item("i-race", "daily-rerun", 3)])
    assert stored["seq"] == 3 and raced[0][0]["seq"] == 2
    history = a.observations("i-race", DAY)
    assert [(o["seq"], o["run_id"], o["item_type"]) for o in history] == [
        (1, "daily", "version"), (2, "watch", "version"), (3, "daily-rerun", "instance")]


def test_writers_in_threads_lose_no_observation(table):
    rounds = 4
    errors: list[BaseException] = []

    def write(name: str) -> None:
        own = store(table)
        try:
            for n in range(rounds):
                own.put_observations([item("i-threads", f"{name}-{n}", n)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    names = ("dag-a", "dag-b", "dag-c", "watch-a", "watch-b", "remediate")  # six writers racing on one host
    threads = [threading.Thread(target=write, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = store(table).observations("i-threads", DAY)
    assert [o["seq"] for o in history] == list(range(1, len(names) * rounds + 1))
    assert sorted(o["run_id"] for o in history) == sorted(f"{d}-{n}" for d in names for n in range(rounds))


def test_history_is_one_query_oldest_first_the_current_last(table):
    writer = store(table)
    for n in range(11):  # seq 10 and 11 sort before seq 2 as text: the order is by seq
        writer.put_observations([item("i-history", f"run-{n}", n)])
    writer.put_observations([{**item("i-history", "other-day", 0), "audit_date": "2033-03-04"}])
    history = writer.observations("i-history", DAY)
    assert [o["seq"] for o in history] == list(range(1, 12))
    assert [o["run_id"] for o in history] == [f"run-{n}" for n in range(11)]
    assert [o["item_type"] for o in history] == ["version"] * 10 + ["instance"]
