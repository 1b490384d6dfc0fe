"""A targeted run (`instance_ids`): discovery lists only those instances (an `instance-id` filter, ≤ 200 values a
call: an unknown id must not fail the call), names every id not found running in the log, the Inventory and the
report; the report is emailed only when the run's own conf names recipients."""
from __future__ import annotations

from dataclasses import replace

import pytest

from include.fleet import discovery
from include.fleet.inventory import Inventory, RunFacts
from include.report.built import Built
from include.settings.params import AuditParams
from include.tasks import audit as pipeline

RUNNING, STOPPED, UNKNOWN = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


class Ec2:
    """DescribeInstances as EC2 answers it: filters applied, an unknown id in a filter is simply not listed."""

    def __init__(self, instances: dict[str, str]):
        self.instances, self.calls = instances, []

    def get_paginator(self, name):
        ec2 = self

        class Pages:
            def paginate(self, **kw):
                ec2.calls.append((name, kw))
                assert "InstanceIds" not in kw  # an unknown id would fail the whole call (InvalidInstanceID.NotFound)
                wanted = None
                for f in kw.get("Filters", []):
                    if f["Name"] == "instance-id":
                        wanted = set(f["Values"])
                if name == "describe_instance_status":
                    yield {"InstanceStatuses": [{"InstanceId": i, "InstanceState": {"Name": s}}
                                                for i, s in ec2.instances.items()]}
                    return
                yield {"Reservations": [{"OwnerId": "111111111111", "Instances": [
                    {"InstanceId": i, "State": {"Name": s}} for i, s in ec2.instances.items()
                    if wanted is None or i in wanted]}]}
        return Pages()


def test_discovery_of_named_instances_filters_by_instance_id_in_chunks_of_at_most_200():
    ids = [f"i-{n:017x}" for n in range(450)]
    ec2 = Ec2({i: "running" for i in ids[::2]} | {"i-0ffffffffffffffff": "running"})
    inventory = discovery.discover_region(ec2, "us-east-1", {"Team": ["a"]}, instance_ids=ids)
    assert inventory.running == sorted(ids[::2])  # not the unrequested one
    assert [c[0] for c in ec2.calls] == ["describe_instances"] * 3
    chunks = [next(f["Values"] for f in kw["Filters"] if f["Name"] == "instance-id") for _, kw in ec2.calls]
    assert [len(c) for c in chunks] == [200, 200, 50] and sum(chunks, []) == ids
    assert all({"Name": "tag:Team", "Values": ["a"]} in kw["Filters"] for _, kw in ec2.calls)


def test_a_targeted_discover_checks_only_the_named_running_hosts_and_names_the_rest(monkeypatch):
    ec2 = Ec2({RUNNING: "running", STOPPED: "stopped", "i-0ddddddddddddddd4": "running"})
    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": ec2)
    params = AuditParams(regions=["us-east-1"], create_table=False, instance_ids=[UNKNOWN, RUNNING, STOPPED])
    warned = []  # Airflow's structlog may own the root logger (caplog sees nothing then): the task's logger, recorded
    monkeypatch.setattr(pipeline.log, "warning", lambda message, *args: warned.append(message % args))
    inventory = pipeline.discover(params, RunFacts("2026-12-09", "r", "live", "request"))
    assert inventory.instances == {"us-east-1": [RUNNING]} and inventory.discovered == 1
    assert inventory.not_found == [STOPPED, UNKNOWN]
    assert inventory.states == {"us-east-1": {"running": 1, "stopped": 1}}
    assert warned == [f"Requested but not running/found: {STOPPED}, {UNKNOWN}"]
    assert Inventory.from_xcom(inventory.to_xcom()) == inventory


def test_an_id_running_in_another_region_is_found_there(monkeypatch):
    by_region = {"us-east-1": Ec2({RUNNING: "running"}), "eu-west-1": Ec2({STOPPED: "running"})}
    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": by_region[region])
    params = AuditParams(regions=["us-east-1", "eu-west-1"], create_table=False, instance_ids=[RUNNING, STOPPED])
    inventory = pipeline.discover(params, RunFacts("2026-12-09", "r", "live", "request"))
    assert inventory.instances == {"us-east-1": [RUNNING], "eu-west-1": [STOPPED]} and inventory.not_found == []


def test_a_daily_discover_is_unchanged_and_carries_no_not_found_key(monkeypatch):
    ec2 = Ec2({RUNNING: "running", STOPPED: "stopped"})
    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": ec2)
    inventory = pipeline.discover(AuditParams(regions=["us-east-1"], create_table=False),
                                  RunFacts("2026-12-09", "r", "live", "schedule"))
    assert [c[0] for c in ec2.calls] == ["describe_instance_status"]
    assert inventory.instances == {"us-east-1": [RUNNING]} and "not_found" not in inventory.to_xcom()


# ------------------------------------------------------------------ the day after a targeted run

DAY = "2026-12-09"


def _item(instance: str, status: str, run_id: str) -> dict:
    from include.evidence.observation import observation_sha256

    item = {"instance_id": instance, "audit_date": DAY, "item_type": "instance", "seq": 1, "status": status,
            "run_id": run_id, "checked_at": f"{DAY}T06:00:00Z", "region": "us-east-1", "trigger": "schedule"}
    return {**item, "item_sha256": observation_sha256(item)}


@pytest.fixture()
def store(monkeypatch):
    import boto3
    from moto import mock_aws

    from include.evidence.store import EvidenceStore

    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "targeted_runs")
        s.ensure_tables()
        monkeypatch.setattr(pipeline, "evidence_store", lambda params: s)
        yield s


def test_a_targeted_run_does_not_shrink_the_day_and_its_report_names_the_ids_not_found(store, tmp_path):
    import json

    params = AuditParams(report_dir=str(tmp_path), create_table=False)
    store.put_items([_item(i, "COMPLIANT", "daily") for i in (RUNNING, "i-0ddddddddddddddd4", "i-0eeeeeeeeeeeeeee5")])
    pipeline.store_summary(params, Inventory(DAY, "daily", "live", instances={"us-east-1": [
        RUNNING, "i-0ddddddddddddddd4", "i-0eeeeeeeeeeeeeee5"]}, states={"us-east-1": {"running": 3, "stopped": 4}},
        discovered=3, trigger="schedule"), [])
    # The patch pipeline asks for one host (now failing), one stopped and one unknown.
    store.put_observations([{**_item(RUNNING, "NON_COMPLIANT", "targeted"), "seq": 0, "trigger": "request"}])
    targeted = Inventory(DAY, "targeted", "live", instances={"us-east-1": [RUNNING]}, discovered=1,
                         states={"us-east-1": {"running": 1, "stopped": 1}}, trigger="request",
                         not_found=[STOPPED, UNKNOWN])
    sealed = pipeline.store_summary(replace(params, instance_ids=[RUNNING, STOPPED, UNKNOWN]), targeted, [])
    summary = store.run_summary(DAY)
    assert (summary.discovered, summary.checked, summary.missing_evidence) == (3, 3, [])
    assert summary.not_running == {"stopped": 4}  # the daily listing's count, not the targeted run's one stopped host
    assert {k: n for k, n in summary.status_counts.items() if n} == {"COMPLIANT": 2, "NON_COMPLIANT": 1}
    assert sealed.not_found == [STOPPED, UNKNOWN]
    built = pipeline.build(params, type(sealed).from_xcom(json.loads(json.dumps(sealed.to_xcom()))))
    assert built.discovered == 3 and built.checked == 3
    line = f"Requested but not running/found: {STOPPED}, {UNKNOWN}"
    html = (tmp_path / f"compliance-{DAY}.html").read_text()
    assert line in html
    machine = json.loads((tmp_path / f"compliance-{DAY}.json").read_text())
    assert machine["requested_not_found"] == [STOPPED, UNKNOWN] and machine["discovered"] == 3


# ------------------------------------------------------------------ who gets a targeted run's report

BUILT = Built(DAY, "r", "live", subject="s", paths={"html": "/r/compliance.html"})


@pytest.mark.parametrize("params,conf,emailed", [
    ({"recipients": ["ops@example.test"]}, {}, True),  # the daily run: the deployment's recipients
    ({"recipients": ["ops@example.test"], "instance_ids": [RUNNING]}, {"instance_ids": [RUNNING]}, False),
    ({"recipients": ["dev@example.test"], "instance_ids": [RUNNING]},
     {"instance_ids": [RUNNING], "recipients": ["dev@example.test"]}, True),
    ({"recipients": [], "instance_ids": [RUNNING]}, {"instance_ids": [RUNNING], "recipients": []}, False),
])
def test_a_targeted_run_emails_its_report_only_when_its_conf_names_recipients(monkeypatch, params, conf, emailed):
    from include.notify import email as notify

    sent = []

    class Store:
        def emailed_by(self, day):
            return ""

        def mark_emailed(self, day, run_id):
            sent.append(("marked", run_id))

    monkeypatch.setattr(pipeline, "evidence_store", lambda p: Store())
    monkeypatch.setattr(notify, "send_report_email", lambda **kw: sent.append(kw["recipients"]))
    monkeypatch.setattr("include.report.storage.read_bytes", lambda path: b"<html></html>")
    result = pipeline.send(AuditParams(**params), BUILT, conf=conf)
    assert bool(sent) is emailed, result
    if emailed:
        assert sent[0] == params["recipients"]
    elif params["recipients"]:
        assert "conf names no recipients" in result


def test_without_a_conf_given_send_reads_the_running_task_s_dag_run_conf(monkeypatch):
    """The DAG's send_report passes no conf: what counts is the run's own dag_run.conf, not its params."""
    from types import SimpleNamespace

    import airflow.sdk

    from include.notify import email as notify

    sent = []

    class Store:
        def emailed_by(self, day):
            return ""

        def mark_emailed(self, day, run_id):
            pass

    monkeypatch.setattr(pipeline, "evidence_store", lambda p: Store())
    monkeypatch.setattr(notify, "send_report_email", lambda **kw: sent.append(kw["recipients"]))
    monkeypatch.setattr("include.report.storage.read_bytes", lambda path: b"<html></html>")
    params = AuditParams(recipients=["ops@example.test"], instance_ids=[RUNNING])  # recipients: a deployment default
    for conf, emailed in (({"instance_ids": [RUNNING]}, False), (None, False),
                          ({"instance_ids": [RUNNING], "recipients": ["ops@example.test"]}, True)):
        sent.clear()
        context = {"dag_run": SimpleNamespace(conf=conf)}
        monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
        pipeline.send(params, BUILT)
        assert bool(sent) is emailed, conf
