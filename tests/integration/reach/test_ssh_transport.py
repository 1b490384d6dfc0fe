"""The asyncssh transport against real SSH servers on loopback: tofu, mismatch, refused key, caps, timeouts."""
from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest

from devstack.standins.hosts.host_states import TEST_NONCE, render_output
from include.checks.catalogue import SCRIPT
from include.checks.probes import end_mark
from include.core.host import Host
from include.core.status import Status
from include.reach.ssh import JumpHostLost, Pin, SshSettings, check_host, fan_out

ADDR = "127.42.8.1"


def free_port() -> int:
    from devstack.procs import free_port as fp

    return fp()


async def _serve(behaviour: str, port: int, host_key, client_key, cert=None):
    async def handle(proc):
        script = ""
        while "@@ec2audit-end" not in script:
            chunk = await proc.stdin.read(65536)
            if not chunk:
                break
            script += chunk
        if behaviour == "hang":
            await asyncio.sleep(3600)
        elif behaviour == "huge":
            block = "x" * 65536 + "\n"
            for _ in range(800):  # 50 MB offered; the client stops reading at its cap
                proc.stdout.write(block)
                await proc.stdout.drain()
        elif behaviour == "junk":
            proc.stdout.write(os.urandom(2048).decode("latin-1"))
        else:
            proc.stdout.write(render_output("compliant", {"hostname": "h"}))
        proc.exit(0)

    return await asyncssh.listen(
        ADDR, port, server_host_keys=[(host_key, cert) if cert else host_key], process_factory=handle,
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()))


@pytest.fixture(scope="module")
def keys():
    return asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")


def settings(client_key, port, **kw) -> SshSettings:
    return SshSettings(username="audit", private_key=client_key.export_private_key().decode(), port=port,
                       connect_timeout=kw.pop("connect_timeout", 2), backoff=0.1, **kw)


def run(coro):
    return asyncio.run(coro)


def test_tofu_pin_then_mismatch(keys):
    host_key, client_key = keys

    async def go():
        port = free_port()
        server = await _serve("ok", port, host_key, client_key)
        s = settings(client_key, port)
        host = Host("i-1", "us-east-1", "123", ADDR)
        first = await check_host(host, s, s.load_key(), SCRIPT.encode(), None)
        pin = Pin(first.host_key, first.host_key_fingerprint)
        same = await check_host(host, s, s.load_key(), SCRIPT.encode(), pin)
        other = asyncssh.generate_private_key("ssh-ed25519")
        changed = await check_host(host, s, s.load_key(), SCRIPT.encode(),
                                   Pin(other.export_public_key().decode().strip(), other.get_fingerprint("sha256")))
        server.close()
        return first, same, changed

    first, same, changed = run(go())
    assert first.transport_status is None and first.host_key_fingerprint == host_key.get_fingerprint("sha256")
    assert end_mark(TEST_NONCE).encode() in first.output
    assert same.transport_status is None
    assert changed.transport_status == Status.HOST_KEY_MISMATCH and changed.attempts == 1  # never retried
    assert changed.output == b""


def test_refused_key_is_auth_failed_and_not_retried(keys):
    host_key, client_key = keys

    async def go():
        port = free_port()
        server = await _serve("ok", port, host_key, client_key)
        wrong = asyncssh.generate_private_key("ssh-ed25519")
        outcome = await check_host(Host("i-1", "r", "a", ADDR), settings(wrong, port), wrong, SCRIPT.encode(), None)
        server.close()
        return outcome

    outcome = run(go())
    assert outcome.transport_status == Status.AUTH_FAILED and outcome.attempts == 1


def test_refused_connection_is_unreachable_after_retries(keys):
    _, client_key = keys
    s = settings(client_key, free_port(), attempts=2)
    outcome = run(check_host(Host("i-1", "r", "a", "127.42.8.2"), s, s.load_key(), SCRIPT.encode(), None))
    assert outcome.transport_status == Status.UNREACHABLE and outcome.attempts == 2


def test_hanging_command_is_error_within_budget(keys):
    host_key, client_key = keys

    async def go():
        port = free_port()
        server = await _serve("hang", port, host_key, client_key)
        s = settings(client_key, port, command_timeout=1.0, host_budget=5)
        outcome = await check_host(Host("i-1", "r", "a", ADDR), s, s.load_key(), SCRIPT.encode(), None)
        server.close()
        return outcome

    outcome = run(go())
    assert outcome.transport_status == Status.ERROR and "did not finish" in outcome.transport_detail


def test_huge_output_is_capped(keys):
    host_key, client_key = keys

    async def go():
        port = free_port()
        server = await _serve("huge", port, host_key, client_key)
        s = settings(client_key, port, max_output=256 * 1024)
        outcome = await check_host(Host("i-1", "r", "a", ADDR), s, s.load_key(), SCRIPT.encode(), None)
        server.close()
        return outcome

    outcome = run(go())
    assert outcome.truncated and len(outcome.output) == 256 * 1024


def test_fan_out_bounds_concurrency_and_keeps_going(keys):
    host_key, client_key = keys
    seen: list[tuple[str, Status | None]] = []

    async def go():
        port = free_port()
        server = await _serve("ok", port, host_key, client_key)
        hosts = [Host(f"i-{n}", "r", "a", ADDR) for n in range(12)] + [Host("i-down", "r", "a", "127.42.8.3")]

        async def on_outcome(host, outcome):
            seen.append((host.instance_id, outcome.transport_status))

        await fan_out(hosts, settings(client_key, port, attempts=1), SCRIPT, {}, 4, on_outcome)
        server.close()

    run(go())
    assert len(seen) == 13
    assert dict(seen)["i-down"] == Status.UNREACHABLE
    assert sum(1 for _, st in seen if st is None) == 12


def test_strict_policy_known_hosts_and_certificate_authority(keys, tmp_path):
    host_key, client_key = keys
    ca = asyncssh.generate_private_key("ssh-ed25519")
    cert = ca.generate_host_certificate(host_key, "fleet-host", principals=[ADDR])

    async def go():
        port = free_port()
        server = await _serve("ok", port, host_key, client_key)
        cert_port = free_port()
        cert_server = await _serve("ok", cert_port, host_key, client_key, cert)
        known = tmp_path / "known_hosts"
        known.write_text(f"[{ADDR}]:{port} {host_key.export_public_key().decode().strip()}\n")
        ca_known = tmp_path / "ca_known_hosts"
        ca_known.write_text(f"@cert-authority 127.42.8.* {ca.export_public_key().decode().strip()}\n")
        empty = tmp_path / "empty"
        empty.write_text("")
        results = {}
        for name, path, p in (("listed", known, port), ("unlisted", empty, port), ("ca", ca_known, cert_port)):
            s = settings(client_key, p, host_key_policy="strict", known_hosts=str(path))
            results[name] = await check_host(Host("i-1", "r", "a", ADDR), s, s.load_key(), SCRIPT.encode(), None)
        server.close()
        cert_server.close()
        return results

    results = run(go())
    assert results["listed"].transport_status is None
    assert results["unlisted"].transport_status == Status.HOST_KEY_MISMATCH
    assert results["ca"].transport_status is None, results["ca"].transport_detail


class _Bastion(asyncssh.SSHServer):
    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        return dest_host.startswith("127.42.")  # a bastion that only reaches the fleet


def test_proxy_jump_tunnels_every_session_through_one_bastion(keys):
    host_key, client_key = keys
    bastion_key = asyncssh.generate_private_key("ssh-ed25519")
    seen: dict[str, Status | None] = {}

    async def go():
        port, bastion_port = free_port(), free_port()
        server = await _serve("ok", port, host_key, client_key)
        bastion = await asyncssh.listen(
            "127.42.8.9", bastion_port, server_host_keys=[bastion_key], server_factory=_Bastion,
            authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()))
        s = settings(client_key, port, proxy_jump=f"jumper@127.42.8.9:{bastion_port}",
                     proxy_jump_host_key=bastion_key.export_public_key().decode().strip())
        hosts = [Host(f"i-{n}", "r", "a", ADDR) for n in range(3)]

        async def on_outcome(host, outcome):
            seen[host.instance_id] = outcome.transport_status

        await fan_out(hosts, s, SCRIPT, {}, 3, on_outcome)
        wrong = SshSettings(**{**s.__dict__, "proxy_jump_host_key": host_key.export_public_key().decode().strip()})
        try:
            await fan_out([Host("i-bad", "r", "a", ADDR)], wrong, SCRIPT, {}, 1, on_outcome)
        except JumpHostLost as exc:
            seen["jump"] = str(exc)
        server.close()
        bastion.close()

    run(go())
    assert [seen[f"i-{n}"] for n in range(3)] == [None, None, None]
    # A bastion with the wrong key is never trusted, and its failure is the batch's (retried), not the host's:
    # nothing is recorded for the host behind it.
    assert "i-bad" not in seen and "jump host" in seen["jump"]


class _DroppingBastion(asyncssh.SSHServer):
    """Tunnels the first session, then goes down (its connection aborted) when the next is asked for."""

    def __init__(self) -> None:
        self.conn, self.tunnels = None, 0

    def connection_made(self, conn) -> None:
        self.conn = conn

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        self.tunnels += 1
        if self.tunnels > 1:
            self.conn.abort()
            return False
        return True


def test_a_bastion_that_drops_mid_batch_fails_the_batch_instead_of_recording_hosts(keys):
    host_key, client_key = keys
    bastion_key = asyncssh.generate_private_key("ssh-ed25519")
    seen: dict[str, Status | None] = {}
    raised: list[str] = []

    async def go():
        port, bastion_port = free_port(), free_port()
        server = await _serve("ok", port, host_key, client_key)
        bastion = await asyncssh.listen(
            "127.42.8.9", bastion_port, server_host_keys=[bastion_key], server_factory=_DroppingBastion,
            authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()))
        s = settings(client_key, port, attempts=1, proxy_jump=f"jumper@127.42.8.9:{bastion_port}",
                     proxy_jump_host_key=bastion_key.export_public_key().decode().strip())

        async def on_outcome(host, outcome):
            seen[host.instance_id] = outcome.transport_status

        try:  # one session at a time, so the first host is done before the bastion drops
            await fan_out([Host(f"i-{n}", "r", "a", ADDR) for n in range(4)], s, SCRIPT, {}, 1, on_outcome)
        except JumpHostLost as exc:
            raised.append(str(exc))
        finally:
            server.close()
            bastion.close()

    run(go())
    assert raised and "dropped" in raised[0]
    assert seen == {"i-0": None}  # the host judged before the drop; none recorded as UNREACHABLE after it
