"""EC2 Instance Connect transport, without AWS or hosts: the push hook, its error mapping, the settings, the
param, and the stand-in's key directory (devstack/standins/hosts/eic_keys.py)."""
from __future__ import annotations

import asyncio
import subprocess

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from devstack.standins.hosts import eic_keys
from include.core.host import Host
from include.core.status import Status
from include.reach.eic import EicBatch
from include.reach.ssh import PreconnectFailed, SshSettings, check_host

HOST = Host(instance_id="i-0123456789abcdef0", region="us-east-1", account_id="123456789012",
            address="127.42.9.250")  # nothing listens there: a host that got past its hook would be UNREACHABLE


class FakeEic:
    def __init__(self, error: Exception | None = None, success: bool = True) -> None:
        self.calls, self.error, self.success = [], error, success

    def send_ssh_public_key(self, **kwargs):
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return {"RequestId": "r-1", "Success": self.success}


def client_error(code: str, message: str = "nope") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "SendSSHPublicKey")


def connection(**kw) -> SshSettings:
    return SshSettings(username="ec2audit", port=2299, connect_timeout=1, attempts=2, backoff=0, transport="eic", **kw)


def run(batch: EicBatch, host: Host = HOST):
    settings = batch.settings
    return asyncio.run(check_host(host, settings, settings.load_key(), b"true\n", None, None, batch.push))


def test_one_in_memory_key_per_batch_replaces_any_connection_key():
    standing = SshSettings(username="ec2audit", private_key="-----BEGIN OPENSSH PRIVATE KEY----- standing",
                           key_file="/etc/ssh/standing", passphrase="pw", port=2299, host_key_policy="strict")
    batch = EicBatch.start(standing, FakeEic())
    s = batch.settings
    assert s.key_file is None and s.passphrase is None and "standing" not in s.private_key
    assert s.username == "ec2audit" and s.port == 2299 and s.host_key_policy == "strict"  # the connection's
    assert batch.public_key.startswith("ssh-ed25519 ")
    assert s.load_key().export_public_key("openssh").decode().strip() == batch.public_key
    assert EicBatch.start(standing, FakeEic()).public_key != batch.public_key  # a new one each batch
    assert "PRIVATE" not in repr(batch) and "PRIVATE" not in repr(s)


def test_each_attempt_pushes_the_key_for_that_instance_and_login_first():
    fake = FakeEic()
    outcome = run(EicBatch.start(connection(), fake))
    assert outcome.transport_status == Status.UNREACHABLE  # pushed, then nothing listened
    assert len(fake.calls) == 2  # pushed again before the retry (a pushed key lives only 60 s)
    public = fake.calls[0]["SSHPublicKey"]
    assert fake.calls == [{"InstanceId": HOST.instance_id, "InstanceOSUser": "ec2audit", "SSHPublicKey": public}] * 2


@pytest.mark.parametrize("code", ["AccessDeniedException", "AccessDenied", "UnauthorizedOperation"])
def test_a_denied_push_is_auth_failed_with_the_reason_and_no_connection(code):
    fake = FakeEic(client_error(code, "not authorized to perform ec2-instance-connect:SendSSHPublicKey"))
    outcome = run(EicBatch.start(connection(), fake))
    assert outcome.transport_status == Status.AUTH_FAILED
    assert code in outcome.transport_detail and "SendSSHPublicKey" in outcome.transport_detail
    assert HOST.instance_id in outcome.transport_detail and len(fake.calls) == 1  # final: not retried


def test_a_throttled_push_is_retried_then_unreachable():
    fake = FakeEic(client_error("ThrottlingException", "Rate exceeded"))
    outcome = run(EicBatch.start(connection(), fake))
    assert outcome.transport_status == Status.UNREACHABLE and "ThrottlingException" in outcome.transport_detail
    assert len(fake.calls) == 2


@pytest.mark.parametrize("error, retried", [
    (client_error("EC2InstanceNotFoundException", "Instance not found"), False),
    (EndpointConnectionError(endpoint_url="https://ec2-instance-connect.us-east-1.amazonaws.com"), True),
])
def test_other_push_failures_are_unreachable_with_the_reason(error, retried):
    fake = FakeEic(error)
    outcome = run(EicBatch.start(connection(), fake))
    assert outcome.transport_status == Status.UNREACHABLE and outcome.transport_detail
    assert len(fake.calls) == (2 if retried else 1)


def test_an_unaccepted_push_and_a_crashing_hook_stay_the_hosts_outcome():
    assert run(EicBatch.start(connection(), FakeEic(success=False))).transport_status == Status.UNREACHABLE

    async def broken(host):
        raise RuntimeError("boom")

    settings = EicBatch.start(connection(), FakeEic()).settings
    outcome = asyncio.run(check_host(HOST, settings, settings.load_key(), b"true\n", None, None, broken))
    assert outcome.transport_status == Status.UNREACHABLE and "boom" in outcome.transport_detail

    async def denied(host):
        raise PreconnectFailed(Status.AUTH_FAILED, "denied by policy")

    outcome = asyncio.run(check_host(HOST, settings, settings.load_key(), b"true\n", None, None, denied))
    assert (outcome.transport_status, outcome.transport_detail, outcome.attempts) == (Status.AUTH_FAILED,
                                                                                     "denied by policy", 1)


def test_the_connection_needs_no_key_only_with_eic():
    assert SshSettings(username="ec2audit", transport="eic").private_key is None
    with pytest.raises(ValueError, match="only transport eic needs no key"):
        SshSettings(username="ec2audit")


def test_eic_refuses_a_bastion_it_cannot_authorize_on():
    with pytest.raises(ValueError, match="proxy_jump"):
        EicBatch.start(connection(proxy_jump="bastion:22"), FakeEic())


# ------------------------------------------------------------------ the stand-in's key directory

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVpYy10ZXN0LWtleS1mb3ItdGhlLXN0YW5kLWlu test"


def test_a_pushed_key_authorizes_only_its_instance_and_user_until_it_expires(tmp_path):
    eic_keys.push(tmp_path, "i-0aaa", "ec2audit", KEY, ttl_s=60, now=1000)
    assert eic_keys.valid_keys(tmp_path, "i-0aaa", "ec2audit", now=1059) == [KEY]
    assert eic_keys.valid_keys(tmp_path, "i-0aaa", "ec2audit", now=1060) == []  # 60 s, then gone
    assert eic_keys.valid_keys(tmp_path, "i-0bbb", "ec2audit", now=1000) == []  # another instance
    assert eic_keys.valid_keys(tmp_path, "i-0aaa", "root", now=1000) == []  # another user
    assert eic_keys.valid_keys(None, "i-0aaa", "ec2audit", now=1000) == []
    for bad in (("../x", "ec2audit"), ("i-0aaa", "../../etc")):
        with pytest.raises(ValueError):
            eic_keys.push(tmp_path, *bad, KEY)
    with pytest.raises(ValueError):
        eic_keys.push(tmp_path, "i-0aaa", "ec2audit", KEY + "\nssh-ed25519 AAAA second")


def test_the_sshd_authorized_keys_command_prints_the_same_keys(tmp_path):
    import time

    keys = tmp_path / "keys"
    now = time.time()
    eic_keys.push(keys, "i-0aaa", "ec2audit", KEY, ttl_s=3600, now=now)
    eic_keys.push(keys, "i-0aaa", "ec2audit", KEY.replace("test", "expired"), ttl_s=-3600, now=now)
    eic_keys.push(keys, "i-0bbb", "ec2audit", KEY.replace("test", "other"), ttl_s=3600, now=now)
    script = tmp_path / "cmd"
    script.write_text(eic_keys.authorized_keys_command(keys, "i-0aaa"))

    def listed(user: str) -> str:
        return subprocess.run(["/bin/sh", str(script), user], capture_output=True, text=True, check=True).stdout

    assert listed("ec2audit") == KEY + "\n"
    assert listed("root") == "" and listed("../ec2audit") == "" and listed("") == ""
