"""Tags are data, never shell: an instance whose tags are shell-injection strings, audited over a REAL sshd.

The simulated fleet (tests/integration/verify/test_faults.py "evil-tags") never executes the script it receives, so
it cannot notice a tag pasted into a command. Here the whole pipeline path runs for real: a moto server holds
the instance and its evil tags, `include.verify.batch.verify_batch` discovers them (DescribeInstances), opens a real
OpenSSH session to a real sshd host (devstack/standins/hosts/sshd_host.py) whose /bin/sh runs whatever it is sent, and stores
the evidence in moto's DynamoDB. Every payload would `touch` its own marker under /tmp. The sshd host's mount
namespace shares the real filesystem except /opt (a tmpfs per host), so a marker the host's login user writes
under /tmp is visible here — which the control step proves by writing one over the same kind of session.
"""
from __future__ import annotations

import asyncio
import glob
import uuid
from pathlib import Path

import pytest

from devstack import procs
from devstack.stack import local_aws
from devstack.standins.aws.seed import REGION, clients, seed_fleet
from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.sshd_host import LOGIN, ensure_login_user, start_sshd_host

pytestmark = pytest.mark.needs_sshd
ADDRESS, PORT = "127.42.8.1", 2222
RUN = uuid.uuid4().hex[:12]
MARK = f"/tmp/ec2audit-pwned-{RUN}"


def payloads() -> dict[str, str]:
    """Tag key → value; each value would create MARK-<key> if any shell ever evaluated it."""
    return {
        "Name": f"$(touch {MARK}-Name)",
        "Environment": f"`touch {MARK}-Environment`",
        "Owner": f"x; touch {MARK}-Owner; #",
        "Team": f"' ; touch {MARK}-Team ; '",
        "Project": f"\" ; touch {MARK}-Project ; \"",
        "CostCenter": f"a\ntouch {MARK}-CostCenter\n",
        "App": f"| touch {MARK}-App && touch {MARK}-App2 || touch {MARK}-App3",
        "Service": f"${{IFS}}$(touch${{IFS}}{MARK}-Service)\\'\"<script>alert(1)</script>",
    }


@pytest.fixture(scope="module")
def real_host(tmp_path_factory):
    root = tmp_path_factory.mktemp("injection")
    public = generate_client_key(root / "id")
    ensure_login_user()
    started, hosts = [], []
    try:
        moto, endpoint = local_aws.spawn_moto()
        started.append(moto)
        tags = payloads()
        entry = {"address": ADDRESS, "name": tags["Name"], "environment": tags["Environment"], "profile": "compliant"}
        instance_id = seed_fleet(endpoint, [entry], REGION)[ADDRESS]
        ec2 = clients(endpoint, REGION)[0]
        ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()
                                                        if k not in ("Name", "Environment")])
        # fake_auditctl: the kernel's audit state is not this test's subject (and is left untouched).
        hosts.append(start_sshd_host(root / "host", ADDRESS, PORT, public, "compliant", instance_id, fake_auditctl=True))
        yield {"endpoint": endpoint, "instance_id": instance_id, "key": root / "id", "tags": tags, "sshd": hosts[0]}
    finally:
        for host in hosts:
            host.stop()
        procs.stop_groups(started)
        for leftover in glob.glob(f"{MARK}*") + glob.glob(f"/tmp/ec2audit-control-{RUN}"):
            Path(leftover).unlink()


def test_control_a_marker_written_on_the_host_is_visible_here(real_host):
    """Guards the test below: the host's login user can write MARK's folder, and the file shows up here."""
    import asyncssh

    control = f"/tmp/ec2audit-control-{RUN}"

    async def touch() -> int:
        async with asyncssh.connect(ADDRESS, PORT, username=LOGIN, client_keys=[str(real_host["key"])],
                                    known_hosts=None, connect_timeout=10) as conn:
            return (await conn.run(f"touch {control}", timeout=10)).exit_status

    assert asyncio.run(touch()) == 0 and Path(control).exists()
    Path(control).unlink()


def test_shell_injection_in_tags_never_runs_on_a_real_host_and_tags_are_kept_verbatim(real_host):
    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch
    from include.reach.ssh import SshSettings
    from include.settings.params import AuditParams
    from include.verify.batch import RunContext, verify_batch

    ec2, logs, dynamodb = clients(real_host["endpoint"], REGION)
    store = EvidenceStore(dynamodb, "injection_evidence")
    store.ensure_tables()
    instance_id = real_host["instance_id"]
    ssh = SshSettings(username=LOGIN, key_file=str(real_host["key"]), port=PORT, connect_timeout=5)
    result = verify_batch(Batch(REGION, [instance_id], label="evil tags"),
                          RunContext("2031-05-05", f"injection-{RUN}", AuditParams(), ssh), ec2, logs, store)
    items = [it.to_item() for it in store.day_items("2031-05-05")]
    assert len(items) == 1 and sum(result.counts.values()) == 1
    item = items[0]
    # The session really ran the combined script on the real host (else nothing could have been injected).
    assert item["status"] in ("COMPLIANT", "NON_COMPLIANT"), (item["status"], item.get("status_detail"))
    assert item["host_key_fingerprint"] == real_host["sshd"].host_key_fingerprint
    assert item["checks"]["auditd.installed"]["status"] == "PASS" and len(item["output_sha256"]) == 64

    assert sorted(glob.glob(f"{MARK}*")) == []  # no payload ran: not on the host, not on this side either
    assert item["tags"] == real_host["tags"]  # every tag stored exactly as EC2 holds it
    assert item["name"] == real_host["tags"]["Name"]
