"""The watch's steps (include/tasks/watch.py) on in-process moto: what a run was given becomes one re-check per
host, a launch still booting goes back on the queue, an event already answered folds into the later observation
(never a tamper record), each trigger gets its own batches carrying why, a silent stream's host is re-checked with
the canary, and the sweep queues only hosts whose last check passed and whose stream went quiet."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from include.core.clock import iso
from include.evidence.observation import observation_sha256
from include.evidence.store import EvidenceStore
from include.settings.params import AuditParams
from include.tasks import audit as pipeline
from include.tasks import watch
from include.watch.records import Recheck, WatchPlan

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
DAY = "2026-12-07"
ACCOUNT = "123456789012"
ID_A, ID_B, ID_C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


def launch(instance_id: str, at: datetime) -> dict:
    return {"version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type":
            "EC2 Instance State-change Notification", "source": "aws.ec2", "account": ACCOUNT, "time": iso(at),
            "region": "us-east-1", "resources": [f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "state": "running"}}


def _item(instance: str, status: str, checked_at: datetime, **extra) -> dict:
    item = {"instance_id": instance, "audit_date": DAY, "item_type": "instance", "seq": 1, "status": status,
            "run_id": "scheduled__r", "checked_at": iso(checked_at), "region": "us-east-1", "account_id": ACCOUNT,
            **extra}
    return {**item, "item_sha256": observation_sha256(item)}


@pytest.fixture()
def aws(monkeypatch):
    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "watch_steps")
        store.ensure_tables()
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="events")["QueueUrl"]
        monkeypatch.setattr(pipeline, "evidence_store", lambda params: store)
        monkeypatch.setattr(watch, "account_scopes", lambda params: {ACCOUNT: ""})
        monkeypatch.setattr("include.aws.clients.default_region", lambda: "us-east-1")
        monkeypatch.setenv(watch.QUEUE_ENV, url)
        yield store, sqs, url


def _queued(sqs, url) -> list[dict]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]


def test_a_launch_still_booting_goes_back_on_the_queue_and_comes_back_due(aws):
    store, sqs, url = aws
    params = AuditParams(launch_grace_minutes=10)
    plan = watch.collect(params, [(launch(ID_A, NOW - timedelta(minutes=2)), "m-1")], "run-1", now=NOW,
                         queue_client=sqs)
    assert plan.due == [] and [r.instance_id for r in plan.deferred] == [ID_A]
    delayed = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert delayed["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1" and _queued(sqs, url) == []
    body = watch.due_message(plan.deferred[0])  # what the queue hands back once the delay is over
    assert watch.read_due(body).not_before == iso(NOW + timedelta(minutes=8))
    later = watch.collect(params, [(json.dumps(body), "m-2")], "run-2", now=NOW + timedelta(minutes=9))
    assert [(r.instance_id, r.trigger) for r in later.due] == [(ID_A, "launch")]


def test_junk_and_foreign_messages_are_counted_never_fatal(aws):
    plan = watch.collect(AuditParams(launch_grace_minutes=0), [
        ("not json", "m-1"), ({"source": "aws.s3", "detail-type": "Object Created"}, "m-2"),
        (launch(ID_B, NOW), "m-3"), (launch(ID_B, NOW), "m-3")], "run", now=NOW)
    assert [r.instance_id for r in plan.due] == [ID_B]  # the duplicate folded
    assert sum(plan.rejected.values()) == 2 and plan.messages == 4


def test_an_event_already_answered_by_a_later_observation_folds_but_a_tamper_record_never_does(aws):
    store, _, _ = aws
    store.put_items([_item(ID_A, "COMPLIANT", NOW - timedelta(minutes=1))])
    plan = watch.collect(AuditParams(launch_grace_minutes=0),
                         [(launch(ID_A, NOW - timedelta(minutes=5)), "m-1")], "run", now=NOW)
    assert plan.due == [] and plan.folded and plan.folded[0].startswith(ID_A)
    tampered = Recheck(ID_A, "us-east-1", "tamper", first_at=iso(NOW - timedelta(minutes=5)),
                       last_at=iso(NOW - timedelta(minutes=5)), tamper=["daemon_stopped"])
    assert watch.already_observed(store, DAY, [tampered]) == {}


def test_each_trigger_gets_its_own_batches_and_each_host_says_why():
    plan = WatchPlan(DAY, "run", due=[
        Recheck(ID_A, "us-east-1", "tamper", first_at="2026-12-07T11:59:00Z", events=3, tamper=["rules_deleted"],
                records=["type=CONFIG_CHANGE msg=audit(1.0:1): op=remove_rule key=x list=4 res=1"]),
        Recheck(ID_B, "us-east-1", "launch", first_at="2026-12-07T11:50:00Z")])
    batches = watch.plan(AuditParams(), plan)
    assert sorted((b.trigger, tuple(b.instance_ids)) for b in batches) == [("launch", (ID_B,)), ("tamper", (ID_A,))]
    tamper = next(b for b in batches if b.trigger == "tamper")
    assert tamper.audit_date == DAY and "op=remove_rule" in tamper.reasons[ID_A] and "(3 events)" in tamper.reasons[ID_A]


def test_a_silent_stream_s_host_is_rechecked_with_the_canary():
    assert watch.params_for(AuditParams(), "silence").canary is True
    assert watch.params_for(AuditParams(), "tamper").canary is False
    assert watch.params_for(AuditParams(ssm_document="ec2-audit"), "silence").canary is False


def test_the_sweep_queues_only_passing_hosts_whose_stream_went_quiet(aws, monkeypatch):
    store, sqs, url = aws
    logs = boto3.client("logs", region_name="us-east-1")
    logs.create_log_group(logGroupName="/ec2/audit")
    for instance, age in ((ID_A, 1), (ID_B, 300), (ID_C, 300)):
        logs.create_log_stream(logGroupName="/ec2/audit", logStreamName=instance)
        logs.put_log_events(logGroupName="/ec2/audit", logStreamName=instance, logEvents=[
            {"timestamp": int((NOW - timedelta(minutes=age)).timestamp() * 1000), "message": "type=USER msg=x"}])
    store.put_items([_item(ID_A, "COMPLIANT", NOW, stream=["/ec2/audit", ID_A]),
                     _item(ID_B, "COMPLIANT", NOW, stream=["/ec2/audit", ID_B]),
                     _item(ID_C, "NON_COMPLIANT", NOW)])  # failing already: the daily alert covers it
    monkeypatch.setattr(watch, "logs_client", lambda region, account="": logs)
    said = watch.sweep(AuditParams(stream_max_age_minutes=120), now=NOW, queue_client=sqs)
    assert said["silent"] == [ID_B]
    assert all(m["detail-type"] == "Audit stream silent" for m in _queued(sqs, url))
    assert ID_C not in said["silent"]


def test_a_forged_re_check_due_cannot_name_another_account_s_role_or_a_bad_id(aws):
    forged = Recheck(ID_A, "us-east-1", "launch", account="arn:aws:iam::999999999999:role/anything")
    bad_id = {**watch.due_message(Recheck(ID_B, "us-east-1", "launch")), "detail": {"instance_id": "i-1; rm -rf /",
                                                                                   "region": "us-east-1",
                                                                                   "trigger": "launch"}}
    plan = watch.collect(AuditParams(), [(watch.due_message(forged), "m-1"), (bad_id, "m-2")], "run", now=NOW)
    assert plan.due == [] and sum(plan.rejected.values()) == 2
    audited = AuditParams(accounts=["arn:aws:iam::999999999999:role/anything"])
    assert [r.instance_id for r in watch.collect(audited, [(watch.due_message(forged), "m-1")], "run", now=NOW).due] == [ID_A]
