"""The watch between the daily runs, end to end under the real scheduler and triggerer (`airflow standalone`).

One stack for the module: moto (EC2, DynamoDB, Logs, SQS, EventBridge; the stand-in applies the audit group's
subscription filter and runs the forwarder Lambda's own code), a real sshd host whose auditd an attacker with root
can stop (127.42.15.201), simulated hosts (127.42.15.202-3), the SMTP sink. The daily audit runs first (every host
COMPLIANT, keys pinned); then each test makes one thing happen the way AWS would see it and waits for the
AssetWatcher on the events queue to start ec2_audit_watch, which re-checks that host through the daily path.
Deployment defaults for both DAGs come from EC2_AUDIT_PARAMS (no grace periods: a test does not wait 10 min).
"""
from __future__ import annotations

import email
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from devstack.procs import wait_for
from devstack.stack.local_stack import LocalStack
from devstack.stack.standalone import Standalone
from devstack.standins.aws.seed import REGION, clients
from devstack.standins.hosts.fleet import SSH_PORT

AUDIT, WATCH, SWEEP = "ec2_audit_compliance", "ec2_audit_watch", "ec2_audit_silence_sweep"
SECOPS = "secops@example.test"
DEFAULTS = {"alert_recipients": [SECOPS], "tamper_grace_minutes": 0, "launch_grace_minutes": 0,
            "connect_timeout": 3, "host_timeout": 20, "command_timeout": 15, "canary_wait_seconds": 30}

pytestmark = pytest.mark.needs_sshd


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import asyncssh

    from devstack.standins.hosts.sshd_host import REMEDIATION_LOGIN, FixableState, ensure_login_user, start_sshd_host

    root = tmp_path_factory.mktemp("watch")
    fleet = [{"address": "127.42.15.201", "port": SSH_PORT, "name": "watch-sshd", "environment": "prod",
              "profile": "compliant", "simulated": False},
             {"address": "127.42.15.202", "port": SSH_PORT, "name": "watch-quiet", "environment": "prod",
              "profile": "compliant"},
             {"address": "127.42.15.203", "port": SSH_PORT, "name": "watch-sim", "environment": "prod",
              "profile": "compliant"}]
    attacker = asyncssh.generate_private_key("ssh-ed25519")
    with LocalStack(root, fleet, events=True) as stack:
        ensure_login_user()
        ensure_login_user(REMEDIATION_LOGIN)
        audit_pub = Path(str(stack.client_key) + ".pub").read_text().strip()
        entry = fleet[0]
        sshd = start_sshd_host(root / "sshd", entry["address"], SSH_PORT, audit_pub, "compliant", entry["instance_id"],
                               remediation_key=attacker.export_public_key().decode(),
                               fixable=FixableState(auditd_running=True), tamper_sudo=True)
        sshd.ship_audit_log(stack.endpoint, entry["instance_id"], REGION)
        try:
            with Standalone(stack, root, [AUDIT, WATCH, SWEEP],
                            {"EC2_AUDIT_SCHEDULE": "none", "EC2_AUDIT_PARAMS": json.dumps(DEFAULTS),
                             "EC2_AUDIT_WATCH_POLL_SECONDS": "2"}) as af:
                run_id = af.api.trigger(AUDIT, {})
                assert af.finished(AUDIT, run_id) == "success", af.api.task_failures(AUDIT, run_id)
                yield {"af": af, "stack": stack, "sshd": sshd, "attacker": attacker,
                       "fleet": {f["name"]: f for f in fleet}}
        finally:
            sshd.stop()


def _store(stack):
    from include.evidence.store import EvidenceStore

    return EvidenceStore(clients(stack.endpoint, REGION)[2], "ec2_audit_evidence")


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def _observed(env, instance_id: str, trigger: str, timeout: float = 240):
    """The host's current item once a watch run stored one with `trigger` (every watch run finished by then)."""
    store, af = _store(env["stack"]), env["af"]

    def stored():
        item = next(iter(store.items_by_id(_today(), [instance_id], consistent=True)), None)
        return item if item is not None and item.trigger == trigger else None

    item = wait_for(stored, timeout, f"a {trigger} observation of {instance_id}",
                    lambda: json.dumps(af.api.runs(WATCH), default=str)[-3000:] + af.tail())
    for run in af.api.runs(WATCH):
        assert af.finished(WATCH, run["dag_run_id"]) == "success", af.api.task_failures(WATCH, run["dag_run_id"])
    return item


def test_auditd_stopped_over_ssh_is_rechecked_as_tamper_and_alerted(env):
    import asyncio

    import asyncssh

    from devstack.standins.hosts.sshd_host import REMEDIATION_LOGIN

    host = env["fleet"]["watch-sshd"]
    iid, sshd = host["instance_id"], env["sshd"]
    before = _store(env["stack"]).observations(iid, _today())
    assert [o["status"] for o in before] == ["COMPLIANT"]

    async def stop():
        async with asyncssh.connect(sshd.address, sshd.port, username=REMEDIATION_LOGIN,
                                    client_keys=[env["attacker"]], known_hosts=None) as conn:
            return await conn.run("sudo -n /usr/sbin/service auditd stop")

    assert asyncio.run(stop()).exit_status == 0  # auditd writes DAEMON_END; the agent ships it

    item = _observed(env, iid, "tamper")
    assert item.status == "NON_COMPLIANT" and "auditd.running" in item.failed_checks
    assert "DAEMON_END" in item.trigger_detail
    history = _store(env["stack"]).observations(iid, _today())
    # What the tamper re-check replaced is kept as a version, with its own trigger and seq.
    assert [(o["seq"], o["trigger"], o["status"]) for o in history] == [
        (1, "manual", "COMPLIANT"), (2, "tamper", "NON_COMPLIANT")]
    alerts = wait_for(lambda: env["stack"].security_mail_naming(iid), 60, f"a security alert naming {iid}")
    assert len(alerts) == 1 and SECOPS in email.message_from_bytes(alerts[0].read_bytes())["To"]


def test_a_launched_instance_is_checked_as_launch(env):
    iid = env["stack"].launch_host({"address": "127.42.15.204", "name": "watch-new", "profile": "compliant",
                                    "port": SSH_PORT})  # running in EC2, answering, its state change on the bus
    item = _observed(env, iid, "launch")
    assert item.status == "COMPLIANT" and item.seq == 1
    assert "running" in item.trigger_detail


def test_a_silent_stream_is_swept_and_rechecked_with_the_canary(env):
    iid = env["fleet"]["watch-quiet"]["instance_id"]
    env["stack"].silence_stream(iid, minutes=300)  # quiet for 5 h; the host itself is healthy
    run_id = env["af"].api.trigger(SWEEP, {})
    assert env["af"].finished(SWEEP, run_id) == "success", env["af"].api.task_failures(SWEEP, run_id)
    item = _observed(env, iid, "silence")
    # The canary proved delivery: a quiet but healthy host passes instead of alerting.
    assert item.checks["cwagent.canary_delivered"]["status"] == "PASS"
    assert item.status == "COMPLIANT"
