"""Nothing observed is overwritten (issue 27, item 1): a new observation of (instance, day) becomes the current
item, the one it replaces is kept as a version with every attribute and its seq, in one transaction conditioned
on the seq read; throttled writes are retried (bounded), then raise; a resent observation is stored once."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from include.aws import day_table
from include.evidence import store as evidence_store
from include.evidence.observation import observation_sha256, version_key
from include.evidence.store import EvidenceStore, ObservationsNotStored, replacement
from include.fleet.inventory import RunFacts, trigger_of
from include.verify.writer import EvidenceWriter

DAY = "2026-12-03"


def obs(iid: str = "i-1", run: str = "r1", at: str = "2026-12-03T06:00:00Z", **fields) -> dict:
    """An item as instance_item builds it: seq 0 and no hash yet (the store sets both)."""
    return {"instance_id": iid, "audit_date": DAY, "item_type": "instance", "run_id": run, "checked_at": at,
            "status": "COMPLIANT", "failed_checks": [], "trigger": "schedule", "expires_at": 1_900_000_000,
            "seq": 0, "item_sha256": "", **fields}


# ------------------------------------------------------------------ pure: how one observation is written

def test_the_first_observation_is_seq_1_written_only_where_none_is():
    planned = replacement("T", obs(), None)
    assert planned.item["seq"] == 1 and planned.item["item_sha256"] == observation_sha256(planned.item)
    (put,) = planned.actions
    assert put["Put"]["ConditionExpression"] == "attribute_not_exists(instance_id)"
    assert put["Put"]["Item"]["seq"] == 1 and put["Put"]["TableName"] == "T"


def test_a_replacement_keeps_the_current_as_a_version_and_is_conditioned_on_its_seq():
    current = {**obs(run="r0", status="NON_COMPLIANT"), "seq": 3}
    current["item_sha256"] = observation_sha256(current)
    planned = replacement("T", obs(), current)
    keep, new = (a["Put"] for a in planned.actions)
    assert keep["Item"] == {**current, "audit_date": version_key(DAY, 3), "item_type": "version", "day": DAY}
    assert keep["ConditionExpression"] == "attribute_not_exists(instance_id)"  # a version is never rewritten
    assert (new["Item"]["seq"], new["ConditionExpression"], new["ExpressionAttributeValues"]) == (
        4, "#seq = :seq", {":seq": 3})
    # The hash covers the seq: the same observation stored as seq 4 hashes otherwise than as seq 1.
    assert planned.item["item_sha256"] == observation_sha256(planned.item) != replacement("T", obs(), None).item[
        "item_sha256"]
    assert observation_sha256(keep["Item"]) == current["item_sha256"]  # the version hashes as it did when current


def test_an_item_from_before_versions_becomes_version_1_with_its_canonical_hash():
    legacy = {k: v for k, v in obs(run="r0").items() if k not in ("seq", "trigger")}
    legacy["item_sha256"] = "an older form of hash"
    planned = replacement("T", obs(), legacy)
    keep, new = (a["Put"] for a in planned.actions)
    assert keep["Item"]["seq"] == 1 and keep["Item"]["item_sha256"] == observation_sha256(keep["Item"])
    assert new["Item"]["seq"] == 2 and "attribute_not_exists(#seq)" in new["ConditionExpression"]


def test_transactions_hold_at_most_100_actions_and_one_observation_of_a_host():
    items = [obs(f"i-{n}") for n in range(120)] + [obs("i-7", run="r2")]
    chunks = evidence_store._rounds(items)
    assert all(len(c) <= 50 for c in chunks) and sum(len(c) for c in chunks) == 121
    assert all(len({(it["instance_id"], it["audit_date"]) for it in c}) == len(c) for c in chunks)
    big = [obs(f"i-{n}", blob="x" * 300_000) for n in range(12)]  # 12 × 2 × 300 KB > 4 MB: split
    assert len(evidence_store._rounds(big)) > 1


# ------------------------------------------------------------------ a fake client: throttling

class Throttled:
    """A DynamoDB resource with no current items whose TransactWriteItems is refused `refusals` times with
    `error` (then accepted); records every transaction and its token."""

    def __init__(self, refusals: int, error: dict) -> None:
        self.refusals, self.error, self.sent = refusals, error, []
        self.meta = SimpleNamespace(client=self)

    def Table(self, name):  # noqa: N802 - boto3's name
        return SimpleNamespace(name=name)

    def batch_get_item(self, RequestItems):  # noqa: N803 - boto3's name
        (spec,) = RequestItems.values()
        assert spec["ConsistentRead"] is True  # a replaced seq read stale would lose the race silently
        return {"Responses": {}}

    def transact_write_items(self, TransactItems, ClientRequestToken):  # noqa: N803 - boto3's names
        self.sent.append((TransactItems, ClientRequestToken))
        if len(self.sent) <= self.refusals:
            raise ClientError(self.error, "TransactWriteItems")
        return {}


THROTTLE = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
CANCELLED_THROTTLED = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                       "CancellationReasons": [{"Code": "ThrottlingError"}, {"Code": "None"}]}


@pytest.fixture
def slept(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(day_table.time, "sleep", pauses.append)
    return pauses


@pytest.mark.parametrize("error", [THROTTLE, CANCELLED_THROTTLED], ids=["throttled", "cancelled-throttled"])
def test_throttled_transactions_are_backed_off_and_sent_again(slept, error):
    client = Throttled(3, error)
    stored = EvidenceStore(client, "T").put_observations([obs("i-1"), obs("i-2")])
    assert [(it["instance_id"], it["seq"]) for it in stored] == [("i-1", 1), ("i-2", 1)]
    assert len(client.sent) == 4 and len(slept) == 3 and slept[-1] > slept[0]  # backed off, growing
    assert len({token for _, token in client.sent}) == 1  # the same request, the same token


def test_transactions_throttled_every_time_raise_after_bounded_attempts(slept):
    client = Throttled(10**6, THROTTLE)
    with pytest.raises(ObservationsNotStored, match="2 observations"):
        EvidenceStore(client, "T").put_observations([obs("i-1"), obs("i-2")])
    assert len(client.sent) == evidence_store.WRITE_ATTEMPTS


def test_an_invalid_transaction_raises_at_once(slept):
    client = Throttled(10**6, {"Error": {"Code": "ValidationException", "Message": "bad"}})
    with pytest.raises(ClientError, match="bad"):
        EvidenceStore(client, "T").put_observations([obs()])
    assert len(client.sent) == 1 and slept == []


# ------------------------------------------------------------------ in-process moto: the write protocol

@pytest.fixture
def store():
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "obs_test")
        s.ensure_tables()
        yield s


def test_a_resent_observation_is_stored_once(store):
    first = store.put_observations([obs()])
    again = store.put_observations([obs()])  # a task retry whose first write went through
    assert again == first and len(store.observations("i-1", DAY)) == 1


def test_a_rerun_keeps_the_replaced_observation_and_the_day_reads_see_current_items_only(store):
    store.put_observations([obs("i-1"), obs("i-2")])
    store.put_observations([obs("i-1", run="r2", at="2026-12-03T09:00:00Z", status="NON_COMPLIANT")])
    assert {it.instance_id: it.run_id for it in store.day_items(DAY)} == {"i-1": "r2", "i-2": "r1"}
    assert [v["run_id"] for v in store.day_versions(DAY)] == ["r1"]
    assert [(o["seq"], o["run_id"], o["item_type"]) for o in store.observations("i-1", DAY)] == [
        (1, "r1", "version"), (2, "r2", "instance")]


def test_versions_never_crowd_days_out_of_a_host_s_history(store):
    for n, day in enumerate(("2026-12-01", "2026-12-02", DAY)):
        store.put_observations([{**obs(run=f"d{n}"), "audit_date": day}])
    for k in range(4):  # the newest day re-checked four times: four versions sort before its current item
        store.put_observations([obs(run=f"again-{k}", at=f"2026-12-03T1{k}:00:00Z")])
    assert [(it.audit_date, it.run_id) for it in store.host_history("i-1", limit=2)] == [
        (DAY, "again-3"), ("2026-12-02", "d1")]


def test_two_observations_of_a_host_in_one_call_are_both_kept_in_order(store):
    stored = store.put_observations([obs(), obs(run="r2", at="2026-12-03T07:00:00Z")])
    assert [it["seq"] for it in stored] == [1, 2]
    assert [o["run_id"] for o in store.observations("i-1", DAY)] == ["r1", "r2"]


# ------------------------------------------------------------------ the writer stages what was stored

def test_the_writer_stages_the_items_as_the_store_returned_them():
    class Store:
        def put_observations(self, items):
            return [{**it, "seq": 5, "item_sha256": "h"} for it in items]

    writer = EvidenceWriter(Store(), keep=True)
    writer.add(obs())
    writer.close()
    assert [(it["seq"], it["item_sha256"]) for it in writer.written] == [(5, "h")]


# ------------------------------------------------------------------ what asked for the check

@pytest.mark.parametrize("run_type, instance_ids, triggered_by, trigger", [
    ("scheduled", None, None, "schedule"),
    ("backfill", None, None, "backfill"),
    ("manual", None, None, "manual"),
    ("manual", ["i-1"], None, "request"),  # a targeted run
    ("scheduled", None, "operator", "request"),  # another DAG started it
    ("operator_triggered", None, None, "request"),
    ("asset_triggered", None, None, "request"),
    ("something_new", None, None, "manual"),  # never passed off as the schedule
    (None, None, None, "manual"),
])
def test_a_run_s_trigger_comes_from_its_dag_run(run_type, instance_ids, triggered_by, trigger):
    assert trigger_of(run_type, instance_ids, triggered_by) == trigger


def test_run_facts_read_the_trigger_from_the_dag_run():
    from airflow.sdk.api.datamodels._generated import DagRunType

    from include.tasks.audit import run_facts

    when = datetime(2026, 12, 3, tzinfo=timezone.utc)
    for run_type, conf, want in ((DagRunType.SCHEDULED, None, "schedule"), (DagRunType.MANUAL, {}, "manual"),
                                 (DagRunType.MANUAL, {"instance_ids": ["i-0123456789abcdef0"]}, "request")):
        dag_run = SimpleNamespace(run_id="r", run_type=run_type, conf=conf, logical_date=when, run_after=when)
        # Airflow resolves the run's params with its conf over the DAG's defaults: the param is what is read.
        facts = run_facts({"dag_run": dag_run, "params": {"mode": "rebuild", **(conf or {})}, "logical_date": when})
        assert facts.trigger == want
        assert RunFacts.from_xcom(facts.to_xcom()) == facts
