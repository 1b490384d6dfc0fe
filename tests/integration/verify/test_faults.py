"""Fault injection on the real local stack: every bad host gets the right status, every other host is checked
normally, and the evidence table holds exactly one item per instance for the day (counted).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.procs import PROJECT
from devstack.stack.local_stack import LocalStack
from devstack.standins.aws.seed import clients
from devstack.standins.hosts.fleet import SSH_PORT
from include.evidence.store import EvidenceStore
from include.fleet.batching import Batch
from include.reach.ssh import SshSettings
from include.settings.params import AuditParams
from include.verify.batch import RunContext, verify_batch

EVIL_NAME = "$(touch /tmp/ec2audit-pwned)`id`;rm -rf / #\n<script>alert(1)</script>"
EVIL_ENV = "=cmd|' /C calc'!A0"

FAULTS = {  # name: (behaviour, profile, expected status, extras)
    "ok-1": ("ok", "compliant", "COMPLIANT", {}),
    "ok-2": ("ok", "compliant_fragment", "COMPLIANT", {}),
    "ok-3": ("ok", "no_rules", "NON_COMPLIANT", {}),
    "no-banner": ("hang_banner", "compliant", "UNREACHABLE", {}),
    "hangs-in-command": ("hang_command", "compliant", "ERROR", {}),
    "drops-mid-output": ("drop", "compliant", "ERROR", {}),
    "junk-bytes": ("junk", "compliant", "ERROR", {}),
    "50mb-output": ("huge", "compliant", "ERROR", {}),
    "refuses-key": ("auth_reject", "compliant", "AUTH_FAILED", {}),
    "changed-host-key": ("ok", "compliant", "HOST_KEY_MISMATCH", {"pinned_other_key": True}),
    "sudo-wants-password": ("ok", "sudo_password", "ERROR", {}),
    "refused-connection": ("down", "compliant", "UNREACHABLE", {}),
    "evil-tags": ("ok", "compliant", "COMPLIANT", {"name": EVIL_NAME, "environment": EVIL_ENV}),
}


def fault_fleet() -> list[dict]:
    hosts = []
    for n, (name, (behaviour, profile, expected, extras)) in enumerate(FAULTS.items()):
        address = f"127.42.5.{n + 10}"
        hosts.append({"address": address, "port": SSH_PORT, "name": name, "environment": "prod", "profile": profile,
                      "behaviour": behaviour, "expected": expected, "identity": {"hostname": name}, "label": name,
                      **extras})
    return hosts


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    local = LocalStack(tmp_path_factory.mktemp("faults"), fault_fleet()).start()
    yield local
    local.stop()


def ssh(stack, **kw) -> SshSettings:
    return SshSettings(username="ec2audit", key_file=str(stack.client_key), port=SSH_PORT,
                       **{"connect_timeout": 2, "command_timeout": 4, "host_budget": 12, "max_output": 256 * 1024, **kw})


@pytest.fixture(scope="module")
def fault_run(stack):
    """One batch over the whole faulty fleet (as in production: the faults share a batch with healthy hosts)."""
    ec2, logs, dynamodb = clients(stack.endpoint)
    store = EvidenceStore(dynamodb, "ec2_audit_evidence")
    ids = [h["instance_id"] for h in stack.fleet]
    batch = Batch("us-east-1", ids, label="faults")
    result = verify_batch(batch, RunContext("2032-01-01", "faults", AuditParams(), ssh(stack)), ec2, logs, store)
    items = [it.to_item() for it in store.day_items("2032-01-01")]
    label = {h["instance_id"]: h["label"] for h in stack.fleet}
    return {"ids": ids, "result": result, "items": items, "by_name": {label[it["instance_id"]]: it for it in items}}


def test_the_fault_batch_stores_exactly_one_item_per_instance(fault_run):
    items, ids = fault_run["items"], fault_run["ids"]
    assert len(items) == len({it["instance_id"] for it in items}) == len(ids)  # counted: one each, none missing
    assert sum(fault_run["result"].counts.values()) == len(ids)


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_gets_its_status_and_the_rest_are_checked_normally(fault_run, name):
    item = fault_run["by_name"][name]
    assert item["status"] == FAULTS[name][2], item.get("status_detail")


def test_a_command_that_hangs_is_cut_by_the_host_budget(fault_run):
    assert "did not finish" in fault_run["by_name"]["hangs-in-command"]["status_detail"]


def test_50mb_of_output_is_capped_not_read_whole(fault_run):
    item = fault_run["by_name"]["50mb-output"]
    assert item["output_truncated"] and int(item["output_bytes"]) == 256 * 1024


def test_the_capped_output_is_kept_whole_up_to_the_cap_and_nothing_of_an_untrusted_session(stack, fault_run):
    import hashlib

    from include.evidence.raw_store import RawOutputStore

    raws = RawOutputStore(clients(stack.endpoint)[2], "ec2_audit_evidence")
    capped = fault_run["by_name"]["50mb-output"]
    kept = raws.get(capped["instance_id"], "2032-01-01", capped["output_sha256"], capped["output_ref"])
    assert kept is not None and len(kept) == 256 * 1024 == int(capped["output_bytes"])
    assert hashlib.sha256(kept).hexdigest() == capped["output_sha256"]
    untrusted = fault_run["by_name"]["changed-host-key"]
    assert untrusted["output_ref"] == "" and raws.get(untrusted["instance_id"], "2032-01-01", "ab" * 32,
                                                      untrusted["output_ref"]) is None


def test_sudo_asking_for_a_password_is_named(fault_run):
    assert "sudo -n refused" in fault_run["by_name"]["sudo-wants-password"]["status_detail"]


def test_nothing_is_sent_to_a_host_whose_key_changed(fault_run):
    assert fault_run["by_name"]["changed-host-key"]["output_sha256"] == ""  # no command ran on it


def test_malicious_tags_are_stored_as_data_and_never_executed(fault_run):
    # The simulated fleet never runs the script it is sent, so only the storage half is proven here; the
    # never-executed half needs a host that runs it: tests/integration/verify/test_tag_injection_real_sshd.py.
    assert fault_run["by_name"]["evil-tags"]["name"] == EVIL_NAME
    assert not Path("/tmp/ec2audit-pwned").exists()


VERIFY_IN_A_SUBPROCESS = """
import json, sys
from include.settings.params import AuditParams
from include.evidence.store import EvidenceStore
from include.reach.ssh import SshSettings
from include.fleet.batching import Batch
from include.verify.batch import RunContext, verify_batch
from devstack.standins.aws.seed import clients
endpoint, key, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ec2, logs, dynamodb = clients(endpoint)
ssh = SshSettings(username="ec2audit", key_file=key, port=2222, connect_timeout=2)
verify_batch(Batch("us-east-1", ids, label="kill"),
             RunContext("2032-02-02", "killed-run", AuditParams(concurrency=4), ssh), ec2, logs,
             EvidenceStore(dynamodb, "ec2_audit_evidence"))
"""


def test_verify_killed_mid_batch_then_retried_loses_and_duplicates_nothing(tmp_path_factory):
    import json

    hosts = [{"address": f"127.42.6.{n + 10}", "port": SSH_PORT, "name": f"slow-{n}", "environment": "prod",
              "profile": "compliant", "behaviour": "ok", "identity": {"hostname": f"slow-{n}"}} for n in range(60)]
    # 600 ms per host at 4 sessions: ~9 s for the batch; killed after ~5 s, past the first flush of 25.
    with LocalStack(tmp_path_factory.mktemp("kill"), hosts, latency_ms=600) as local:
        ec2, logs, dynamodb = clients(local.endpoint)
        store = EvidenceStore(dynamodb, "ec2_audit_evidence")
        store.ensure_tables()
        ids = [h["instance_id"] for h in hosts]
        proc = subprocess.Popen([sys.executable, "-c", VERIFY_IN_A_SUBPROCESS, local.endpoint, str(local.client_key),
                                 json.dumps(ids)], cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(store.day_items("2032-02-02")) < 25:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # what an OOM-killed or evicted worker looks like
        proc.wait(timeout=10)
        recorded = len(store.day_items("2032-02-02"))
        assert 25 <= recorded < len(ids), "the kill should land mid-batch"

        ssh_settings = SshSettings(username="ec2audit", key_file=str(local.client_key), port=SSH_PORT, connect_timeout=2)
        retry = verify_batch(Batch("us-east-1", ids, label="kill"),
                             RunContext("2032-02-02", "killed-run", AuditParams(concurrency=20), ssh_settings),
                             ec2, logs, store)
        items = [it.to_item() for it in store.day_items("2032-02-02")]
        assert retry.already_recorded == recorded
        assert sum(retry.counts.values()) == len(ids) - recorded
        assert sorted(it["instance_id"] for it in items) == sorted(ids)  # all there, each once
        assert {it["status"] for it in items} == {"COMPLIANT"}


def test_smtp_down_then_retried_sends_exactly_one_email(stack, tmp_path, monkeypatch):
    import json

    from devstack.procs import free_port
    from include.report.built import Built
    from include.tasks import audit as pipeline

    env = stack.airflow_env()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", env["AIRFLOW_CONN_AWS_DEFAULT"])
    html, csv_path = tmp_path / "r.html", tmp_path / "r.csv"
    html.write_text("<html><body>report</body></html>")
    csv_path.write_text("instance_id,status\ni-1,COMPLIANT\n")
    built = Built.from_xcom({"audit_date": "2032-03-03", "run_id": "smtp-run", "mode": "live",
                             "subject": "EC2 audit compliance 2032-03-03: 100.0% (0 failing)",
                             "paths": {"html": str(html), "csv": str(csv_path)}})
    params = AuditParams(recipients=["secops@example.test"])
    EvidenceStore(clients(stack.endpoint)[2], "ec2_audit_evidence").ensure_tables()
    before = len(stack.received_mail())

    down = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
    down["port"] = free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(down))
    with pytest.raises(Exception) as failure:
        pipeline.send(params, built)
    assert "refused" in str(failure.value).lower() or "connect" in str(failure.value).lower()
    assert html.exists() and len(stack.received_mail()) == before  # the report stays; the failure is visible

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", env["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert pipeline.send(params, built).startswith("emailed")  # the task retry
    assert "already emailed" in pipeline.send(params, built)  # a second retry of a task that had succeeded
    deadline = time.monotonic() + 5
    while len(stack.received_mail()) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stack.received_mail()) == before + 1


def test_batch_failing_after_all_retries_still_yields_a_report_with_gaps_then_fails_the_run(stack, tmp_path,
                                                                                            monkeypatch):
    import json

    from include.fleet.inventory import Inventory
    from include.tasks import audit as pipeline

    env = stack.airflow_env()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", env["AIRFLOW_CONN_AWS_DEFAULT"])
    broken = json.loads(env["AIRFLOW_CONN_EC2_AUDIT_SSH"])
    broken["extra"]["key_file"] = str(tmp_path / "no-such-key")  # every try of this batch fails
    monkeypatch.setenv("AIRFLOW_CONN_EC2_AUDIT_SSH", json.dumps(broken))
    ids = sorted(h["instance_id"] for h in stack.fleet if h["behaviour"] == "ok")[:3]
    params = AuditParams(report_dir=str(tmp_path))
    inventory = Inventory.from_xcom({"audit_date": "2032-05-05", "run_id": "gap-run", "mode": "live", "discovered": 3,
                                     "instances": {"us-east-1": ids}, "states": {"us-east-1": {"running": 3}}})
    batch = pipeline.plan(params, inventory)[0]
    with pytest.raises(FileNotFoundError):
        pipeline.verify(params, batch, final_try=False)  # early tries raise: Airflow retries them
    result = pipeline.verify(params, batch, final_try=True)
    assert result.failed and "FileNotFoundError" in result.error
    built = pipeline.build(params, pipeline.store_summary(params, inventory, [result]))
    summary = json.loads(Path(built.paths["json"]).read_text())
    assert summary["coverage_gaps"] == ids and summary["checked"] == 0 and summary["compliance_pct"] is None
    assert "failed after all retries" in Path(built.paths["html"]).read_text()
    with pytest.raises(RuntimeError, match="coverage gaps"):
        pipeline.confirm_complete(built)
