"""The SSM stand-in's registry and its "agent" (devstack/standins/hosts/ssm_agents.py), the fleet's `large` output and its
agent listener (devstack/standins/hosts/fleet.py). No AWS: a local `sh` channel and an in-process fleet."""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import asyncssh
import pytest

from devstack.standins.hosts import ssm_agents
from devstack.standins.hosts.fleet import _padded, generate_client_key, start_fleet
from devstack.standins.hosts.host_states import EXPECTED_FAILED, TEST_NONCE, render_output
from include.checks.probes import frame, new_nonce
from include.core.host import Host, HostOutcome
from include.settings.params import AuditParams
from include.verify.judge import judge_host

SH = {"kind": "sh"}
IID = "i-0123456789abcdef0"


def test_registry_round_trip(tmp_path):
    path = ssm_agents.register(tmp_path, IID, SH, computer_name="web-1")
    assert path == tmp_path / f"{IID}.json"
    record = ssm_agents.registration(tmp_path, IID)
    assert record == {"ping_status": "Online", "agent_version": ssm_agents.DEFAULT_AGENT_VERSION,
                      "platform_name": "Amazon Linux", "platform_version": "2023", "ip_address": "",
                      "computer_name": "web-1", "deny_send": False, "channel": SH}
    ssm_agents.register_fleet_host(tmp_path, "i-0b", "127.42.10.7", 2223, "/k/agent", deny_send=True)
    ssm_agents.set_ping_status(tmp_path, IID, "ConnectionLost")
    found = ssm_agents.registrations(tmp_path)
    assert list(found) == ["i-0123456789abcdef0", "i-0b"]
    assert found[IID]["ping_status"] == "ConnectionLost" and found[IID]["computer_name"] == "web-1"
    assert found["i-0b"]["channel"] == {"kind": "ssh", "address": "127.42.10.7", "port": 2223, "user": "ssm-agent",
                                        "key_file": "/k/agent"}
    assert found["i-0b"]["deny_send"] is True and found["i-0b"]["ip_address"] == "127.42.10.7"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{IID}.json", "i-0b.json"]  # no temp file left
    assert ssm_agents.registration(tmp_path, "i-0c") is None  # not registered: not SSM-managed
    assert ssm_agents.registrations(tmp_path / "absent") == {} and ssm_agents.registration(None, IID) is None


def test_sshd_host_registers_its_namespace_pid(tmp_path):
    class FakeSshd:
        address, pid = "127.42.10.9", 4242

    ssm_agents.register_sshd_host(tmp_path, IID, FakeSshd())
    assert ssm_agents.registration(tmp_path, IID)["channel"] == {"kind": "nsenter", "pid": 4242}


@pytest.mark.parametrize("bad", ["", "../i-0abc", "i-0ABC", "i-0abc/x", "x-0abc", "i-0abc.json"])
def test_instance_ids_are_validated(tmp_path, bad):
    with pytest.raises(ValueError):
        ssm_agents.register(tmp_path, bad, SH)
    assert ssm_agents.registration(tmp_path, bad) is None
    assert not list(tmp_path.iterdir())


def test_bad_fields_are_refused(tmp_path):
    with pytest.raises(ValueError):
        ssm_agents.register(tmp_path, IID, {"kind": "telnet"})
    with pytest.raises(ValueError):
        ssm_agents.register(tmp_path, IID, SH, ping_status="Sleepy")
    with pytest.raises(KeyError):
        ssm_agents.set_ping_status(tmp_path, IID, "Online")
    ssm_agents.register(tmp_path, IID, SH)
    with pytest.raises(ValueError):
        ssm_agents.set_ping_status(tmp_path, IID, "Sleepy")


def test_run_on_host_gives_stdout_and_exit_code():
    out, code, timed_out = ssm_agents.run_on_host(SH, b"echo hello\necho oops >&2\nexit 3\n", 30, 1 << 20)
    assert (out, code, timed_out) == (b"hello\n", 3, False)
    run = ssm_agents.run_script(SH, b"echo oops >&2\n", 30, 1 << 20)
    assert (run.stdout, run.stderr, run.exit_code) == (b"", b"oops\n", 0)


def test_run_on_host_cuts_output_at_the_cap_and_still_waits_for_the_exit():
    run = ssm_agents.run_script(SH, b"seq 1 100000\nexit 7\n", 30, 1000)
    assert len(run.stdout) == 1000 and run.stdout.startswith(b"1\n2\n3\n") and run.cut
    assert (run.exit_code, run.timed_out) == (7, False)  # read past the cap: the script ran to its end


def gone(pid: int) -> bool:
    """Whether the process has ended (a bounded wait: a killed orphan is reaped by init shortly after)."""
    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_hung_host_times_out_and_its_processes_are_ended():
    out, code, timed_out = ssm_agents.run_on_host(SH, b"sleep 600 &\necho $!\nwait\necho never\n", 0.5, 1 << 20)
    assert (code, timed_out) == (-1, True)
    assert out.decode().strip().isdigit() and gone(int(out))


def test_a_background_child_holding_the_output_open_does_not_hang_the_agent():
    out, code, timed_out = ssm_agents.run_on_host(SH, b"sleep 600 &\necho $!\n", 60, 1 << 20)
    assert (code, timed_out) == (0, False)
    assert gone(int(out))  # its session was ended once the script itself had exited


NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
HOST = Host("i-0abc", "us-east-1", "123", "10.0.0.5", private_ip="10.0.0.5")


class FreshStream:
    def describe(self, group, stream):
        return {"logStreamName": stream, "lastIngestionTime": int(NOW.timestamp() * 1000 - 5 * 60000)}


def verdicts(text: str) -> tuple[str, dict[str, str]]:
    out = HostOutcome("i-0abc", None, output=text.encode(), nonce=TEST_NONCE)
    judged = judge_host(HOST, out, FreshStream(), AuditParams(), now=lambda: NOW)
    return judged.status.value, {c: v.status.value for c, v in judged.verdicts.items()}


@pytest.mark.parametrize("profile", sorted(EXPECTED_FAILED))
def test_large_output_is_big_but_judged_as_the_normal_output(profile):
    normal = render_output(profile, {"hostname": "h", "instance_id": "i-0abc"})
    large = _padded(normal, TEST_NONCE)
    assert len(large) - len(normal) > 40_000 and len(large) > 24_000
    assert verdicts(large) == verdicts(normal)


def test_large_compliant_host_stays_compliant():
    large = _padded(render_output("compliant", {"hostname": "h", "instance_id": "i-0abc"}), TEST_NONCE)
    assert "-w /etc/ec2audit-pad1599 -p wa -k pad" in large
    assert verdicts(large)[0] == "COMPLIANT"


A, B = "127.42.10.201", "127.42.10.202"  # this file's own addresses (the integration test uses .1–.99)


def test_the_agent_listener_takes_only_the_agent_key_and_answers_as_the_host(tmp_path):
    user_public = generate_client_key(tmp_path / "user")
    agent_public = generate_client_key(tmp_path / "agent")
    hosts = [{"address": A, "port": 2222, "agent_port": 2223, "instance_id": "i-0a", "profile": "compliant"},
             {"address": B, "port": 2222, "agent_port": 2223, "instance_id": "i-0b", "profile": "agent_stopped",
              "behaviour": "ssm_only"}]
    nonce = new_nonce()
    script = frame("echo ignored-by-the-simulator\n", nonce)

    async def session(address, port, key):
        try:
            async with asyncssh.connect(address, port, username="someone", client_keys=[asyncssh.read_private_key(key)],
                                        known_hosts=None, agent_path=None, config=None, connect_timeout=5) as conn:
                result = await conn.run("/bin/sh -s", input=script.decode(), timeout=20)
                return result.stdout
        except asyncssh.PermissionDenied:
            return "denied"
        except OSError:
            return "refused"

    async def scenario():
        fleet = await start_fleet(hosts, tmp_path / "state", [user_public], ssm_agent_key=agent_public)
        try:
            return [await session(A, 2222, tmp_path / "user"), await session(A, 2223, tmp_path / "agent"),
                    await session(A, 2223, tmp_path / "user"), await session(A, 2222, tmp_path / "agent"),
                    await session(B, 2222, tmp_path / "user"), await session(B, 2223, tmp_path / "agent")]
        finally:
            await fleet.close()

    normal, via_agent, user_on_agent, agent_on_normal, b_normal, b_agent = asyncio.run(scenario())
    expected = render_output("compliant", {"instance_id": "i-0a", "nonce": nonce})
    assert normal == via_agent == expected
    assert (user_on_agent, agent_on_normal) == ("denied", "denied")
    assert b_normal == "refused"  # ssm_only: no inbound SSH at all
    assert b_agent == render_output("agent_stopped", {"instance_id": "i-0b", "nonce": nonce})
    assert json.loads(json.dumps(hosts))  # the spec stays plain JSON (what the CLI reads)
