"""The typed records the audit DAG's tasks pass through XCom: each one's plain dict survives JSON (as XCom stores
it) and reads back equal; a dict from an older payload with optional keys missing still reads; what the plan
step hands XCom holds only keys a Batch has; the asset events' extra keeps its shape."""
from __future__ import annotations

import json
from dataclasses import fields

import pytest

from include.evidence.sealed import Sealed
from include.exports.exported import Exported
from include.fleet.batching import Batch
from include.fleet.inventory import Inventory, RunFacts
from include.remediation.records import FixRun
from include.remediation.results import Answer, Applied, AppliedHost, Planned, Published, Reverified
from include.report.built import Built
from include.settings import queues
from include.settings.params import AuditParams
from include.tasks import audit as pipeline
from include.verify.result import BatchResult
from include.watch.records import Recheck, WatchPlan

DAY, RUN = "2026-11-30", "manual__x"

RECORDS = [
    RunFacts(DAY, RUN, "live"),
    Inventory(DAY, RUN, "live", instances={"us-east-1": ["i-1", "i-2"], "arn:aws:iam::222222222222:role/r|us-east-1":
                                           ["i-3"]}, states={"us-east-1": {"running": 2, "stopped": 1}}, discovered=3),
    Inventory(DAY, RUN, "rebuild"),
    Inventory(DAY, RUN, "live", instances={"us-east-1": ["i-0aaaaaaaaaaaaaaa1"]}, discovered=1, trigger="request",
              not_found=["i-0bbbbbbbbbbbbbbb2"]),  # a targeted run: an id asked for and not found running
    Batch("us-east-1", ["i-1", "i-2"], "", 1, 2, "us-east-1 batch 1/2 (2 hosts)", DAY, RUN),
    Batch("us-east-1", ["i-3"], "222222222222", 2, 2, "222222222222 us-east-1 [vpc-a] batch 1/1 (1 hosts)", DAY, RUN,
          queue="vpc-a"),
    Batch("us-east-1", ["i-1"], audit_date=DAY, run_id=RUN, trigger="tamper",
          reasons={"i-1": "tamper: rules_deleted at 2026-11-30T10:00:00Z"}),  # the watch's: why each host
    BatchResult("us-east-1 batch 1/2 (2 hosts)", "us-east-1", 2, counts={"COMPLIANT": 1, "ERROR": 1},
                already_recorded=1, no_longer_running=0, transports={"ssh": 2}, api_calls={"describe": 3}),
    BatchResult.failure("us-east-1 batch 2/2 (1 hosts)", "us-east-1", 1, "FileNotFoundError: " + "x" * 400),
    Sealed(DAY, RUN, "live", checked=4, discovered=5),
    Sealed(DAY, RUN, "rebuild"),
    Sealed(DAY, RUN, "live", checked=4, discovered=5, not_found=["i-0bbbbbbbbbbbbbbb2"]),
    Built(DAY, RUN, "live", subject=f"EC2 audit compliance {DAY}: 50.0% (1 failing)",
          paths={"html": "/r/compliance.html", "csv": "s3://b/daily/compliance.csv"}, compliance_pct=50.0,
          counts={"COMPLIANT": 1, "NON_COMPLIANT": 1}, checked=2, discovered=3, failed_batches=1),
    Built(DAY, RUN, "rebuild", compliance_pct=None),
    Exported(skipped="securityhub off"),
    Exported(accounts={"111111111111": {"product_arn": "arn:aws:securityhub:us-east-1:111111111111:product/x",
                                        "sent": 3, "failed": 0}}),
    Planned(DAY, '{"hosts": []}', "ab" * 32, "# Plan\n- i-1: auditd.start", hosts=1, fixes=2, dry_run=False,
            not_planned=3, plan_file="/r/remediation-plan.md"),
    Planned(DAY, "{}", "cd" * 32, "", hosts=0, fixes=0, dry_run=True),
    Answer(received=True, chosen_options=["Approve"], responded_by_user={"id": "alice", "name": "Alice"},
           responded_at="2026-12-01 10:05:00+00:00", plan_sha256="ab" * 32),
    Answer(received=True, chosen_options=["Reject"], responded_at="2026-12-01 10:05:00+00:00"),
    Answer(),  # the approval failed: no answer, XCom null
    Applied(DAY, "audit-trail", "Alice (id alice)", "2026-12-01 10:05:00+00:00", "ab" * 32, "ec2_audit_remediate_ssh",
            hosts={"i-1": AppliedHost("ran", "ran", True, "private_ip", [FixRun("auditd.start", ["auditd.running"], "ran",
                                                                               steps=[{"command": "true", "exit": 0}])]),
                   "i-2": AppliedHost("refused", "refused: stale evidence")}),
    Reverified(DAY, {"i-1": "fixed", "i-2": "not_fixed"}),
    Published(DAY, {"html": "/r/compliance.html"}, {"fixed": 1}),
    Published(DAY),
    WatchPlan(DAY, RUN, due=[Recheck("i-1", "us-east-1", "tamper", first_at="2026-11-30T06:00:00Z", events=3,
                                     tamper=["rules_deleted"], records=["type=CONFIG_CHANGE op=remove_rule"])],
              deferred=[Recheck("i-2", "us-east-1", "launch", not_before="2026-11-30T06:10:00Z")],
              folded=["i-3: already observed"], messages=4, events=4, rejected={"not JSON": 1}, wait_until=DAY),
    WatchPlan(DAY, RUN),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_each_record_survives_xcom_s_json_and_reads_back_equal(record):
    payload = json.loads(json.dumps(record.to_xcom()))  # XCom stores JSON: plain dicts, lists, str, numbers
    assert type(record).from_xcom(payload) == record
    if not isinstance(record, (Exported, Answer)):  # Exported: account id → counts; Answer: Airflow's HITL result
        assert set(payload) <= {f.name for f in fields(type(record))}


@pytest.mark.parametrize("cls,minimal", [
    (Inventory, {"audit_date": DAY, "run_id": RUN, "mode": "rebuild"}),
    (Batch, {"region": "us-east-1", "instance_ids": ["i-1"]}),
    (BatchResult, {"label": "b", "region": "us-east-1", "hosts": 1}),
    (Sealed, {"audit_date": DAY, "run_id": RUN, "mode": "rebuild"}),
    (Built, {"audit_date": DAY, "run_id": RUN, "mode": "live", "paths": {"html": "/r.html"}}),
])
def test_optional_keys_may_be_missing_and_unknown_keys_are_ignored(cls, minimal):
    record = cls.from_xcom({**minimal, "written_by_a_newer_version": True})
    assert {k: v for k, v in record.to_xcom().items() if k in minimal} == minimal


def test_a_required_key_missing_is_refused_not_guessed():
    with pytest.raises(TypeError):
        Sealed.from_xcom({"audit_date": DAY, "mode": "live"})  # no run_id: whose seal?


def test_a_batch_without_a_queue_carries_no_queue_key_as_before_queues_existed():
    assert "queue" not in Batch("us-east-1", ["i-1"]).to_xcom()
    assert "not_found" not in Inventory(DAY, RUN, "live").to_xcom() and "not_found" not in Sealed(DAY, RUN, "live").to_xcom()
    assert Batch.from_xcom(Batch("us-east-1", ["i-1"], queue="default").to_xcom()).queue == "default"


class Ec2:
    def get_paginator(self, name):
        class Pages:
            def paginate(self, **kw):
                yield {"Reservations": [{"OwnerId": "111111111111", "Instances": [
                    {"InstanceId": "i-a1", "VpcId": "vpc-0aaaaaaaaaaaaaaa1"},
                    {"InstanceId": "i-b1", "VpcId": "vpc-0bbbbbbbbbbbbbbb2"}]}]}
        return Pages()


@pytest.mark.parametrize("queue_map", [{}, {"vpc-0aaaaaaaaaaaaaaa1": "vpc-a"}])
def test_the_plan_hands_xcom_only_what_a_batch_has(monkeypatch, queue_map):
    """The plan once added `queue` to each batch's dict beside the record, and Batch.from_xcom dropped it: the
    verify task could not know its queue. Every key of what plan_batches returns is a Batch field, and reads
    back into the same batch."""
    monkeypatch.setenv(queues.ENV, "vpc-a")
    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": Ec2())
    inventory = Inventory(DAY, RUN, "live", instances={"us-east-1": ["i-a1", "i-b1"]}, discovered=2)
    planned = pipeline.plan(AuditParams(queue_map=queue_map, batch_size=10), inventory)
    assert planned and all(isinstance(b, Batch) for b in planned)
    names = {f.name for f in fields(Batch)}
    for batch in planned:
        payload = json.loads(json.dumps(batch.to_xcom()))
        assert set(payload) <= names, set(payload) - names
        assert Batch.from_xcom(payload) == batch
    if queue_map:
        assert {b.queue: b.instance_ids for b in planned} == {"vpc-a": ["i-a1"], "default": ["i-b1"]}
        assert [b.queue for b in queues.select(planned, "vpc-a")] == ["vpc-a"]


def test_the_asset_events_extra_keeps_its_keys_and_values():
    from include.tasks.assets import evidence_extra, report_extra

    assert evidence_extra("t", Sealed(DAY, RUN, "live", checked=4, discovered=5)) == {
        "audit_date": DAY, "evidence_table": "t", "run_id": RUN, "mode": "live", "checked": 4, "discovered": 5}
    assert evidence_extra("t", Sealed(DAY, RUN, "rebuild")) == {
        "audit_date": DAY, "evidence_table": "t", "run_id": RUN, "mode": "rebuild", "checked": None, "discovered": None}
    built = Built(DAY, RUN, "live", subject="s", paths={"html": "/r.html"}, compliance_pct=97.5)
    assert report_extra(built) == {"audit_date": DAY, "run_id": RUN, "compliance_pct": 97.5,
                                   "paths": {"html": "/r.html"}}


def test_the_export_s_xcom_keeps_its_shape():
    assert Exported(skipped="securityhub off").to_xcom() == {"skipped": "securityhub off"}
    assert Exported(accounts={"111111111111": {"sent": 1}}).to_xcom() == {"111111111111": {"sent": 1}}
    assert pipeline.export_findings(AuditParams(securityhub=False), Built(DAY, RUN, "live"),
                                    Inventory(DAY, RUN, "live")).to_xcom() == {"skipped": "securityhub off"}


def test_remediation_s_publish_rebuilds_the_day_from_a_sealed_record(monkeypatch):
    """publish hands the audit's build step a Sealed (the day, the sealing run, its mode) and reads the paths
    off the Built it returns."""
    from include.evidence.records import RunSummary
    from include.settings.params import RemediateParams
    from include.tasks import remediate

    seen = []

    class Store:
        def run_summary(self, day):
            return RunSummary(run_id="sealing-run", mode="")

    def build(params, sealed):
        seen.append(sealed)
        return Built(sealed.audit_date, sealed.run_id, sealed.mode, paths={"html": "/r.html"})

    monkeypatch.setattr(remediate, "store_of", lambda params: Store())
    monkeypatch.setattr(pipeline, "build", build)
    monkeypatch.setattr(remediate.RemediationStore, "day_remediations", lambda self, day: [])
    assert remediate.publish(RemediateParams(), Reverified(DAY)).to_xcom() == {
        "audit_date": DAY, "paths": {"html": "/r.html"}, "outcomes": {}}
    assert seen == [Sealed(DAY, "sealing-run", "live")]
