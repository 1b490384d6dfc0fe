"""Remediation end to end on real sshd hosts, through the real scheduler and the HITL REST API.

`airflow standalone` on a local stack (moto, SMTP sink) with real sshd hosts on 127.42.12.x whose auditd and
agent state can really be fixed (devstack/standins/hosts/sshd_host.py FixableState: state files and a trap log of every
privileged change, read from outside the host). The audit DAG runs first (it pins the keys and stores the
day's evidence); then ec2_audit_remediate runs four times on that day:
dry run → rejected through the HITL API → no answer within approval_timeout → approved through the HITL API.
Only the last changes anything, and only on the approved host whose key is still the pinned one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from datetime import datetime, timezone
from pathlib import Path

import pytest

from devstack.procs import wait_for
from devstack.stack.local_stack import LocalStack
from devstack.stack.standalone import Standalone
from devstack.standins.aws.seed import REGION, clients
from devstack.standins.hosts.fleet import SSH_PORT
from include.remediation.store import RemediationStore
from include.tasks import remediate

ROOT = Path(__file__).resolve().parents[3]

AUDIT, REMEDIATE = "ec2_audit_compliance", "ec2_audit_remediate"
HOSTS = [  # profile: what the AWS side shows (a fresh stream); the sshd host's own state is FixableState
    {"address": "127.42.12.1", "name": "rem-stopped", "fixable": {"auditd_running": False}},
    {"address": "127.42.12.2", "name": "rem-rekeyed", "fixable": {"auditd_running": False}},
    {"address": "127.42.12.3", "name": "rem-healthy", "fixable": {"auditd_running": True}},
    # Its init script says "started" and exits 0, but the daemon dies: the fix ran, the check still fails.
    {"address": "127.42.12.4", "name": "rem-dies", "fixable": {"auditd_running": False, "auditd_starts": False}},
]


pytestmark = pytest.mark.needs_sshd


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import asyncssh

    from devstack.standins.hosts.sshd_host import REMEDIATION_LOGIN, FixableState, ensure_login_user, start_sshd_host

    root = tmp_path_factory.mktemp("remediation")
    fleet = [{"address": h["address"], "port": SSH_PORT, "name": h["name"], "environment": "prod",
              "profile": "compliant", "simulated": False} for h in HOSTS]
    fix_key = root / "id_fix"
    key = asyncssh.generate_private_key("ssh-ed25519")
    fix_key.write_bytes(key.export_private_key())
    fix_key.chmod(0o600)
    fix_pub = key.export_public_key().decode().strip()
    with LocalStack(root, fleet) as stack:
        ensure_login_user()
        ensure_login_user(REMEDIATION_LOGIN)
        audit_pub = Path(str(stack.client_key) + ".pub").read_text().strip()
        sshd = {}

        def start(h):
            entry = next(f for f in fleet if f["name"] == h["name"])
            sshd[h["name"]] = start_sshd_host(root / h["name"], h["address"], SSH_PORT, audit_pub, "compliant",
                                              entry["instance_id"], remediation_key=fix_pub,
                                              fixable=FixableState(**h["fixable"]))

        for h in HOSTS:
            start(h)
        conn = {"conn_type": "ssh", "login": REMEDIATION_LOGIN, "port": SSH_PORT,
                "extra": {"key_file": str(fix_key), "host_key_policy": "tofu"}}
        try:
            # Manual runs only: no scheduled audit of the same day beside the test's own.
            # Only "operator" may answer; "outsider" is an admin too, and is refused by the approval itself.
            with Standalone(stack, root, [AUDIT, REMEDIATE],
                            {"AIRFLOW_CONN_EC2_AUDIT_REMEDIATE_SSH": json.dumps(conn), "EC2_AUDIT_SCHEDULE": "none",
                             "EC2_AUDIT_REMEDIATION_APPROVERS": "operator"}, other_users=("outsider",)) as af:
                yield {"af": af, "stack": stack, "sshd": sshd, "fleet": {f["name"]: f for f in fleet},
                       "restart": lambda name: (sshd[name].stop(), start(next(h for h in HOSTS if h["name"] == name))),
                       "report_dir": root / "reports"}
        finally:
            for s in sshd.values():
                s.stop()


def _store(stack):
    from include.evidence.store import EvidenceStore

    return EvidenceStore(clients(stack.endpoint, REGION)[2], "ec2_audit_evidence")


def _approval(af, run_id: str) -> dict:
    """The approval waiting for an answer (the task parked in awaiting_input), as the HITL API shows it."""
    path = f"dags/{REMEDIATE}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
    wait_for(lambda: af.api.task_states(REMEDIATE, run_id).get("approve") == "awaiting_input", 180,
             "the approval to wait for an answer", lambda: af.api.task_failures(REMEDIATE, run_id) + af.tail())
    # Airflow 3.3.2: an answer that lands before the scheduler has processed the parked workload's executor
    # event makes the scheduler fail the resumed task ("finished with state success, but ... queued"). A person
    # takes longer than that; the test waits for the scheduler to have seen the park.
    wait_for(lambda: af.scheduler_saw("TaskInstance Finished", "task_id=approve", f"run_id={run_id},",
                                      "state=awaiting_input"), 60, "the scheduler to see the approval parked",
             af.tail, every=0.5)
    return af.api.get(path)


def _answer(af, run_id: str, option: str, shown: dict, api=None) -> None:
    """Answer as the Required Actions form does: the chosen option and the form's fields as shown (the plan hash)."""
    (api or af.api).call("PATCH", f"dags/{REMEDIATE}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
                         {"chosen_options": [option],
                          "params_input": {k: v["value"] for k, v in (shown.get("params") or {}).items()}})


def _untouched(env) -> None:
    for name, host in env["sshd"].items():
        assert host.trap_log() == [], (name, host.trap_log())
    assert env["sshd"]["rem-stopped"].state()["auditd"] == "stopped"


def test_plan_then_dry_run_reject_timeout_change_nothing_and_approval_fixes_and_proves(env):
    af, stack = env["af"], env["stack"]
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    report_dir = str(env["report_dir"])

    # ---- the day's audit: the stopped hosts are NON_COMPLIANT, their keys pinned.
    audit_run = af.api.trigger(AUDIT, {"report_dir": report_dir, "connect_timeout": 3, "host_timeout": 20,
                                       "command_timeout": 15})
    assert af.finished(AUDIT, audit_run) == "success", af.api.task_failures(AUDIT, audit_run)
    store = _store(stack)
    items = {it.name if it.name else it.tags["Name"]: it.to_item() for it in store.day_items(day)}
    assert items["rem-stopped"]["status"] == "NON_COMPLIANT", items["rem-stopped"]["checks"]
    assert items["rem-stopped"]["failed_checks"] == ["auditd.running"]
    assert items["rem-healthy"]["status"] == "COMPLIANT", items["rem-healthy"]["checks"]
    env["restart"]("rem-rekeyed")  # its host key changes after the evidence was taken
    base = {"audit_date": day, "report_dir": report_dir}

    # ---- dry run (the default): shows the plan, asks nothing, touches nothing.
    dry = af.api.trigger(REMEDIATE, {"report_dir": report_dir})
    assert af.finished(REMEDIATE, dry) == "success", af.api.task_failures(REMEDIATE, dry)
    states = af.api.task_states(REMEDIATE, dry)
    assert states["approve"] == "skipped" and states["apply_fixes"] == "skipped", states
    plan_text = Path(report_dir, remediate.plan_file_name(day, dry)).read_text()
    for name in ("rem-stopped", "rem-rekeyed", "rem-dies"):
        assert items[name]["instance_id"] in plan_text
    assert items["rem-healthy"]["instance_id"] not in plan_text
    assert "/usr/sbin/service auditd start" in plan_text  # exactly what would run
    _untouched(env)

    # ---- rejected through the HITL API: nothing runs on any host.
    rejected = af.api.trigger(REMEDIATE, {**base, "dry_run": False})
    shown = _approval(af, rejected)
    assert shown["options"] == ["Approve", "Reject"]
    plan_sha = next(line.split("`")[1] for line in shown["body"].splitlines() if "Plan sha256" in line)
    assert len(plan_sha) == 64 and "rem-stopped" in shown["body"]
    assert shown["params"][remediate.PLAN_HASH_PARAM]["value"] == plan_sha  # the form carries the shown hash
    assert [u["id"] for u in shown["assigned_users"]] == ["operator"]
    _answer(af, rejected, "Reject", shown)
    assert af.finished(REMEDIATE, rejected) == "success", af.api.task_failures(REMEDIATE, rejected)
    assert af.api.task_states(REMEDIATE, rejected)["apply_fixes"] == "skipped"
    _untouched(env)

    # ---- no answer within approval_timeout: the default (Reject) is taken, nothing runs.
    timed_out = af.api.trigger(REMEDIATE, {**base, "dry_run": False, "approval_timeout": 0.1})
    _approval(af, timed_out)
    assert af.finished(REMEDIATE, timed_out, timeout=180) == "success", af.api.task_failures(REMEDIATE, timed_out)
    assert af.api.task_states(REMEDIATE, timed_out)["apply_fixes"] == "skipped"
    _untouched(env)

    # ---- approved through the HITL API: the fix runs where the key is the pinned one, and is proven.
    approved = af.api.trigger(REMEDIATE, {**base, "dry_run": False})
    shown = _approval(af, approved)
    # An admin who is not in EC2_AUDIT_REMEDIATION_APPROVERS: refused by the API, nothing recorded, still waiting.
    with pytest.raises(urllib.error.HTTPError) as refused:
        _answer(af, approved, "Approve", shown, api=af.api_as("outsider"))
    assert refused.value.code == 403
    assert af.api.task_states(REMEDIATE, approved)["approve"] == "awaiting_input"
    assert af.api.get(f"dags/{REMEDIATE}/dagRuns/{approved}/taskInstances/approve/-1/hitlDetails")[
        "response_received"] is False
    _answer(af, approved, "Approve", shown)
    assert af.finished(REMEDIATE, approved) == "success", af.api.task_failures(REMEDIATE, approved) + af.tail()

    fixed, rekeyed, healthy = (env["sshd"][n] for n in ("rem-stopped", "rem-rekeyed", "rem-healthy"))
    assert fixed.state()["auditd"] == "running"
    trap = fixed.trap_log()
    assert len(trap) == 1 and "service auditd start" in trap[0], trap
    assert rekeyed.trap_log() == [] and rekeyed.state()["auditd"] == "stopped"  # refused: its key changed
    assert healthy.trap_log() == []  # compliant: never planned

    records = {r.name: r for r in RemediationStore(store).day_remediations(day)}
    ok = records["rem-stopped"]
    assert (ok.outcome, ok.before_status, ok.after_status) == ("fixed", "NON_COMPLIANT", "COMPLIANT"), ok
    assert ok.run_id == approved and ok.plan_sha256 == shown["params"][remediate.PLAN_HASH_PARAM]["value"]
    assert ok.approved_by.startswith("operator")
    assert ok.approved_at and ok.host_key_fingerprint == items["rem-stopped"]["host_key_fingerprint"]
    assert ok.after_checks["auditd.running"]["status"] == "PASS" and len(ok.after_output_sha256) == 64
    (fix,) = ok.fixes
    assert fix["fix"] == "auditd.start" and fix["result"] == "ran"
    assert [s["exit_status"] for s in fix["steps"]] == [0] and len(fix["steps"][0]["output_sha256"]) == 64
    bad = records["rem-rekeyed"]
    assert bad.outcome == "refused" and "HOST_KEY_MISMATCH" in bad.detail and bad.after_status == "", bad
    assert "rem-healthy" not in records
    dies = records["rem-dies"]  # the fix ran (exit 0) and did not make the check pass: reported as failed
    assert (dies.outcome, dies.after_status) == ("not_fixed", "NON_COMPLIANT"), dies
    assert dies.fixes[0]["steps"][0]["exit_status"] == 0 and "auditd.running" in dies.detail
    assert len(env["sshd"]["rem-dies"].trap_log()) == 1

    # The re-check is an observation of the day it ran (today, here: the audited day), trigger remediation; what
    # the audit saw is kept as a version of it. The decisions say who answered what.
    *before, after = store.observations(ok.host_id, day)
    assert (after["run_id"], after["trigger"], after["status"], after["seq"]) == (approved, "remediation", "COMPLIANT",
                                                                                   ok.after_seq)
    assert ok.after_day == day and "NON_COMPLIANT" in [o["status"] for o in before if o["trigger"] != "remediation"]
    decisions = [(d.run_id, d.decision) for d in RemediationStore(store).decisions(day)]
    assert decisions == [(dry, "dry_run"), (rejected, "rejected"), (timed_out, "timed_out"), (approved, "approved")]
    by = {d.run_id: d for d in RemediationStore(store).decisions(day)}
    assert by[rejected].by.startswith("operator") and by[timed_out].by == ""
    assert by[approved].plan_sha256 == ok.plan_sha256

    # The re-check resealed the day and brought its summary in step: the auditors' command line finds every
    # observation (the audit's, the reruns', the re-checks') sealed and the chain whole.
    summary = store.run_summary(day)
    assert summary.manifest_sha256 and summary.seal_seq >= 2
    verified = subprocess.run([sys.executable, "-m", "include.integrity", "verify", "--table", "ec2_audit_evidence",
                               "--from", day, "--to", day], capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env={**os.environ, "AIRFLOW_CONN_AWS_DEFAULT":
                                   env["stack"].airflow_env()["AIRFLOW_CONN_AWS_DEFAULT"]})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines()[-1].startswith("intact: 1 days, ")

    # The day's report, rebuilt, carries the Remediated section.
    html = Path(report_dir, f"compliance-{day}.html").read_text()
    assert "Remediated" in html and ok.host_id in html and "fix failed" in html
    assert json.loads(Path(report_dir, f"compliance-{day}.json").read_text())["remediated"]["not_fixed"] == 1
