"""A verify batch whose last try hits its execution_timeout still hands its hosts on: Airflow's timeout raises
AirflowTaskTimeout (a BaseException, from the SIGALRM handler, wherever the batch is), and the final try must
return `failed` as for any other error, so the day's report and email go out with the hosts it did not store
as coverage gaps. What the batch stored before the timeout is counted once, not lost, not duplicated."""
from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import boto3
import pytest
from airflow.sdk.exceptions import AirflowTaskTimeout
from moto import mock_aws

from include.core.host import HostOutcome
from include.core.status import Status
from include.evidence.store import EvidenceStore
from include.fleet.inventory import Inventory
from include.reach import choice
from include.settings.params import AuditParams
from include.tasks import audit as pipeline

DAY = "2026-12-03"


class TimesOutAfterTwo:
    """Reports two hosts (refused connections), then the batch's time is up: what Airflow's SIGALRM handler
    raises in the task's main thread, here mid-fan-out."""

    name = "ssh"

    async def run(self, hosts, script, on_outcome) -> None:
        for host in hosts[:2]:
            await on_outcome(host, HostOutcome(host.instance_id, Status.UNREACHABLE, "connection refused",
                                               transport="none"))
        raise AirflowTaskTimeout("Timeout, PID: 4242")


class AlarmAfterTwo:
    """Reports two hosts, then waits on the rest (sessions that hang) while the alarm Airflow's own timeout
    handler (airflow.sdk.execution_time.timeout) set goes off: the real SIGALRM, raised in the event loop."""

    name = "ssh"

    async def run(self, hosts, script, on_outcome) -> None:
        for host in hosts[:2]:
            await on_outcome(host, HostOutcome(host.instance_id, Status.UNREACHABLE, "connection refused",
                                               transport="none"))
        signal.setitimer(signal.ITIMER_REAL, 0.05)  # the task's execution_timeout, reached now
        await asyncio.Event().wait()


@pytest.fixture()
def real_alarm():
    """Airflow's timeout handler for the test, then pytest-timeout's handler and timer back as they were."""
    from airflow.sdk.execution_time.timeout import timeout

    handler, left = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    try:
        with timeout(3600):
            yield
    finally:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, *left)


@pytest.fixture()
def aws(monkeypatch, tmp_path):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        image = next(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                     if i.get("Platform") != "windows" and "Windows" not in i.get("PlatformDetails", "Linux"))
        ids = sorted(i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=5, MaxCount=5)["Instances"])
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "timeout_test")
        store.ensure_tables()
        monkeypatch.setattr(pipeline, "evidence_store", lambda params: store)
        monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": ec2)
        monkeypatch.setattr(pipeline, "logs_client", lambda region, account="": boto3.client("logs", region_name=region))
        monkeypatch.setattr(pipeline, "ssh_settings", lambda params: None)
        monkeypatch.setattr(choice.BatchTransports, "ssh_transport", lambda self, keys: TimesOutAfterTwo())
        yield store, ids


def test_a_batch_timing_out_on_its_last_try_still_gives_the_report_with_gaps(aws, tmp_path):
    store, ids = aws
    params = AuditParams(report_dir=str(tmp_path), create_table=False)
    inventory = Inventory.from_xcom({"audit_date": DAY, "run_id": "timeout-run", "mode": "live", "discovered": 5,
                                     "instances": {"us-east-1": ids}, "states": {"us-east-1": {"running": 5}}})
    (batch,) = pipeline.plan(params, inventory)
    with pytest.raises(AirflowTaskTimeout):
        pipeline.verify(params, batch, final_try=False)  # an early try: Airflow retries it
    result = pipeline.verify(params, batch, final_try=True)  # skips the two stored, stores two more, times out
    assert result.failed and "AirflowTaskTimeout" in result.error
    stored = sorted(it.instance_id for it in store.day_items(DAY))
    assert stored == ids[:4]  # each stored host once, none lost
    sealed = pipeline.store_summary(params, inventory, [result])
    assert (sealed.checked, sealed.discovered) == (4, 5)
    built = pipeline.build(params, sealed)
    summary = json.loads(Path(built.paths["json"]).read_text())
    assert summary["coverage_gaps"] == ids[4:] and summary["checked"] == 4
    assert "AirflowTaskTimeout" in Path(built.paths["html"]).read_text()
    with pytest.raises(RuntimeError, match="coverage gaps"):
        pipeline.confirm_complete(built)


def test_the_real_alarm_mid_batch_on_the_last_try_keeps_what_was_stored(aws, tmp_path, monkeypatch, real_alarm):
    store, ids = aws
    monkeypatch.setattr(choice.BatchTransports, "ssh_transport", lambda self, keys: AlarmAfterTwo())
    params = AuditParams(report_dir=str(tmp_path), create_table=False)
    inventory = Inventory.from_xcom({"audit_date": DAY, "run_id": "alarm-run", "mode": "live", "discovered": 5,
                                     "instances": {"us-east-1": ids}, "states": {"us-east-1": {"running": 5}}})
    (batch,) = pipeline.plan(params, inventory)
    result = pipeline.verify(params, batch, final_try=True)
    assert result.failed and "AirflowTaskTimeout" in result.error
    assert sorted(it.instance_id for it in store.day_items(DAY)) == ids[:2]
    sealed = pipeline.store_summary(params, inventory, [result])
    assert (sealed.checked, sealed.discovered) == (2, 5)
