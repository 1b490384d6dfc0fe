"""Hosts that can be tampered with (issue 28): a real sshd "fixable" host whose auditd an attacker with root
stops over SSH writes the audit record the kernel would and its agent ships it to its stream; the audit then
sees auditd stopped. Real moto server, real sshd on 127.42.16.x; run under `flock /tmp/itest.lock`."""
from __future__ import annotations

import asyncio
import itertools
import re
import time

import asyncssh
import boto3
import pytest

from devstack.stack import local_aws
from devstack.standins.hosts.host_states import AUDIT_GROUP
from devstack.standins.hosts.sshd_host import LOGIN, REMEDIATION_LOGIN, FixableState, ensure_login_user, start_sshd_host
from include.checks import parsers

REGION = "us-east-1"
ADDRESSES = itertools.cycle(f"127.42.16.{n}" for n in range(1, 10))
RECORD = r"msg=audit\(\d{10}\.\d{3}:\d+\): "


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with local_aws.moto(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(scope="module")
def keys():
    ensure_login_user(LOGIN)
    ensure_login_user(REMEDIATION_LOGIN)
    return {LOGIN: asyncssh.generate_private_key("ssh-ed25519"),
            REMEDIATION_LOGIN: asyncssh.generate_private_key("ssh-ed25519")}


@pytest.fixture
def host(keys, tmp_path, endpoint):
    instance_id = f"i-0tamper{time.time_ns() % 10**9:09d}"
    started = start_sshd_host(tmp_path / "host", next(ADDRESSES), 2222, keys[LOGIN].export_public_key().decode(),
                              "compliant", instance_id, fixable=FixableState(auditd_running=True),
                              remediation_key=keys[REMEDIATION_LOGIN].export_public_key().decode(), tamper_sudo=True)
    started.ship_audit_log(endpoint, instance_id, REGION)
    yield started, instance_id
    started.stop()


def run(host, keys, login: str, command: str) -> asyncssh.SSHCompletedProcess:
    async def go():
        async with asyncssh.connect(host.address, host.port, username=login, client_keys=[keys[login]],
                                    known_hosts=None) as conn:
            return await conn.run(command)

    return asyncio.run(go())


def stream_messages(endpoint: str, stream: str, until: str, timeout_s: float = 20) -> list[str]:
    """The stream's messages once one contains `until` (or what it has after timeout_s)."""
    logs = boto3.client("logs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")
    deadline = time.monotonic() + timeout_s
    while True:
        messages = [e["message"] for e in logs.get_log_events(logGroupName=AUDIT_GROUP, logStreamName=stream,
                                                              startFromHead=True)["events"]]
        if any(until in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.3)


@pytest.mark.needs_sshd
def test_stopping_auditd_over_ssh_ships_daemon_end_and_the_audit_sees_it_stopped(host, keys, endpoint):
    sshd, instance_id = host
    stopped = run(sshd, keys, REMEDIATION_LOGIN, "sudo -n /usr/sbin/service auditd stop")
    assert stopped.exit_status == 0, stopped.stderr
    messages = stream_messages(endpoint, instance_id, "type=DAEMON_END")
    [record] = [m for m in messages if "DAEMON_END" in m]
    assert re.fullmatch(r"type=DAEMON_END " + RECORD + "op=terminate auid=0 uid=0 ses=4294967295 pid=1 res=success",
                        record), record
    status = run(sshd, keys, LOGIN, "sudo -n /usr/sbin/auditctl -s")
    assert parsers.parse_auditctl_status(status.stdout)["pid"] == 0 and sshd.state()["auditd"] == "stopped"


@pytest.mark.needs_sshd
def test_deleting_the_rules_and_turning_the_audit_off_ship_config_changes(host, keys, endpoint):
    sshd, instance_id = host
    for command in ("sudo -n /usr/sbin/auditctl -D", "sudo -n /usr/sbin/auditctl -e 0"):
        done = run(sshd, keys, REMEDIATION_LOGIN, command)
        assert done.exit_status == 0, (command, done.stderr)
    messages = stream_messages(endpoint, instance_id, "audit_enabled=0")
    removed = [m for m in messages if "op=remove_rule" in m]
    assert removed and all(re.fullmatch(r"type=CONFIG_CHANGE " + RECORD + r'auid=0 ses=3 op=remove_rule key="[-\w]+" '
                                        r"list=4 res=1", m) for m in removed), removed
    [off] = [m for m in messages if "audit_enabled=0" in m]
    assert re.fullmatch(r"type=CONFIG_CHANGE " + RECORD + "op=set audit_enabled=0 old=1 auid=0 ses=3 res=1", off), off
    listed = run(sshd, keys, LOGIN, "sudo -n /usr/sbin/auditctl -l")
    assert listed.stdout.strip() == "No rules"
    status = run(sshd, keys, LOGIN, "sudo -n /usr/sbin/auditctl -s")
    assert parsers.parse_auditctl_status(status.stdout)["enabled"] == 0


@pytest.mark.needs_sshd
def test_the_fix_login_cannot_tamper_unless_the_test_grants_it(keys, tmp_path):
    sshd = start_sshd_host(tmp_path / "host", next(ADDRESSES), 2222, keys[LOGIN].export_public_key().decode(),
                           "compliant", "i-0notamper0000001", fixable=FixableState(auditd_running=True),
                           remediation_key=keys[REMEDIATION_LOGIN].export_public_key().decode())
    try:
        refused = run(sshd, keys, REMEDIATION_LOGIN, "sudo -n /usr/sbin/service auditd stop")
        assert refused.exit_status != 0 and "sudo:" in refused.stderr
        assert sshd.state()["auditd"] == "running" and sshd.audit_log.read_text().count("\n") == 1
    finally:
        sshd.stop()
