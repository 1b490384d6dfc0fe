"""Which instances the SSM Run Command stand-in manages, and how its "SSM agent" runs a script on each: one
registry directory shared by the tests/devstack (write) and the moto server (read, devstack/standins/aws/ssm.py).

Layout: `<dir>/<instance_id>.json`, one managed instance a file, written whole then renamed (a reader never
sees half a file). An instance without a file is not SSM-managed. Fields: `ping_status` (Online |
ConnectionLost | Inactive), `agent_version`, `platform_name`, `platform_version`, `ip_address`,
`computer_name`, `deny_send` (SendCommand naming it is refused, as an IAM policy scoped to instance ARNs
would) and `channel`, how a script reaches the host:

  {"kind": "ssh", "address", "port", "user", "key_file"}  the simulated fleet's agent listener for that host
      (devstack/standins/hosts/fleet.py `agent_port`): `/bin/sh -s`, script on stdin, answered like its normal listener;
  {"kind": "nsenter", "pid"}  a real sshd host (devstack/standins/hosts/sshd_host.py) in its own mount namespace:
      `nsenter -t PID -m -- /bin/sh -s` as root — really on that host, as root, as the SSM agent runs it;
  {"kind": "sh"}  this machine's own `/bin/sh -s` (unit tests only: a host that is just a local shell).

The directory comes from `EC2AUDIT_SSM_DIR`.
"""
from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

SSM_DIR_ENV = "EC2AUDIT_SSM_DIR"
AGENT_USER = "ssm-agent"
DEFAULT_AGENT_VERSION = "3.3.1957.0"
PING_STATUSES = ("Online", "ConnectionLost", "Inactive")
CHANNEL_KINDS = ("ssh", "nsenter", "sh")
_INSTANCE = re.compile(r"^i-[0-9a-f]{1,32}$")
# What AWS-RunShellScript's environment looks like: root's, minimal (not the moto server's own).
_AGENT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
              "LANG": "C.UTF-8"}
_RUNNING: set[subprocess.Popen] = set()  # scripts in flight: ended with this process (their own sessions)
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _end_running() -> None:
    with _RUNNING_LOCK:
        for proc in _RUNNING:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def ssm_dir_from_env() -> Path | None:
    value = os.environ.get(SSM_DIR_ENV)
    return Path(value) if value else None


def _checked(instance_id: str) -> str:
    if not _INSTANCE.match(instance_id or ""):
        raise ValueError(f"not an instance id: {instance_id!r}")
    return instance_id


def _write(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)


def register(ssm_dir: str | Path, instance_id: str, channel: dict, **fields) -> Path:
    """Make `instance_id` SSM-managed, reached through `channel`; returns its file."""
    _checked(instance_id)
    if channel.get("kind") not in CHANNEL_KINDS:
        raise ValueError(f"unknown channel kind: {channel.get('kind')!r}")
    record = {"ping_status": "Online", "agent_version": DEFAULT_AGENT_VERSION, "platform_name": "Amazon Linux",
              "platform_version": "2023", "ip_address": "", "computer_name": "", "deny_send": False,
              **fields, "channel": channel}
    if record["ping_status"] not in PING_STATUSES:
        raise ValueError(f"ping_status must be one of {PING_STATUSES}")
    folder = Path(ssm_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{instance_id}.json"
    _write(path, record)
    return path


def registration(ssm_dir: str | Path | None, instance_id: str) -> dict | None:
    """The instance's record, or None when it is not SSM-managed (or the id is not an instance id)."""
    if ssm_dir is None or not _INSTANCE.match(instance_id or ""):
        return None
    try:
        return json.loads((Path(ssm_dir) / f"{instance_id}.json").read_text())
    except FileNotFoundError:
        return None


def registrations(ssm_dir: str | Path | None) -> dict[str, dict]:
    """Every managed instance's record, by instance id (sorted)."""
    if ssm_dir is None or not Path(ssm_dir).is_dir():
        return {}
    found = {}
    for path in sorted(Path(ssm_dir).glob("i-*.json")):
        record = registration(ssm_dir, path.stem)
        if record is not None:
            found[path.stem] = record
    return found


def set_ping_status(ssm_dir: str | Path, instance_id: str, status: str) -> None:
    record = registration(ssm_dir, instance_id)
    if record is None:
        raise KeyError(f"{instance_id} is not registered")
    if status not in PING_STATUSES:
        raise ValueError(f"ping_status must be one of {PING_STATUSES}")
    _write(Path(ssm_dir) / f"{instance_id}.json", {**record, "ping_status": status})


def register_sshd_host(ssm_dir: str | Path, instance_id: str, sshd_host, **fields) -> Path:
    """A devstack.standins.hosts.sshd_host.SshdHost. Its pid is the `unshare` process, which execs (the wrapper, then sshd)
    inside the new mount namespace, so nsenter into that pid enters the host's namespace."""
    fields.setdefault("ip_address", sshd_host.address)
    return register(ssm_dir, instance_id, {"kind": "nsenter", "pid": sshd_host.pid}, **fields)


def register_fleet_host(ssm_dir: str | Path, instance_id: str, address: str, agent_port: int,
                        agent_key_file: str | Path, **fields) -> Path:
    """A simulated fleet host listening for the agent key on (address, agent_port)."""
    fields.setdefault("ip_address", address)
    channel = {"kind": "ssh", "address": address, "port": int(agent_port), "user": AGENT_USER,
               "key_file": str(agent_key_file)}
    return register(ssm_dir, instance_id, channel, **fields)


@dataclass
class HostRun:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = -1
    timed_out: bool = False
    cut: bool = False  # stdout went past the cap (the rest was read and dropped)


@dataclass
class _Sink:
    cap: int
    data: bytearray = field(default_factory=bytearray)
    cut: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.cut = True
        if room > 0:
            self.data += chunk[:room]


def run_on_host(channel: dict, script: bytes, timeout_s: float, cap_bytes: int) -> tuple[bytes, int, bool]:
    """Run `script` on the host behind `channel`: (stdout, exit code, timed out). Bounded by `timeout_s`;
    stdout past `cap_bytes` is dropped. Exit code -1: no exit status (timed out, channel lost)."""
    run = run_script(channel, script, timeout_s, cap_bytes)
    return run.stdout, run.exit_code, run.timed_out


def run_script(channel: dict, script: bytes, timeout_s: float, cap_bytes: int,
               stderr_cap: int = 1 << 20) -> HostRun:
    """run_on_host with stderr and whether stdout was cut: what the moto stand-in records."""
    kind = channel.get("kind")
    if kind == "ssh":
        return asyncio.run(_run_ssh(channel, script, timeout_s, cap_bytes, stderr_cap))
    if kind == "nsenter":
        pid = int(channel["pid"])
        return _run_process(["nsenter", "-t", str(pid), "-m", "--", "/bin/sh", "-s"], script, timeout_s,
                            cap_bytes, stderr_cap)
    if kind == "sh":
        return _run_process(["/bin/sh", "-s"], script, timeout_s, cap_bytes, stderr_cap)
    raise ValueError(f"unknown channel kind: {kind!r}")


def _run_process(argv: list[str], script: bytes, timeout_s: float, cap: int, stderr_cap: int) -> HostRun:
    # Its own session: on timeout the whole group (the script's children too) is killed, by our pid.
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_AGENT_ENV, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        return _collect(proc, script, timeout_s, cap, stderr_cap)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)


def _collect(proc: subprocess.Popen, script: bytes, timeout_s: float, cap: int, stderr_cap: int) -> HostRun:
    out, err = _Sink(cap), _Sink(stderr_cap)

    def pump(stream, sink: _Sink) -> None:
        while chunk := stream.read1(65536):
            sink.add(chunk)  # keep reading past the cap: the script must not block on a full pipe

    def feed() -> None:
        try:
            proc.stdin.write(script)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the script exited without reading all of its stdin

    threads = [threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err), daemon=True),
               threading.Thread(target=feed, daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    if timed_out or any(t.is_alive() for t in threads[:2]):
        # Timed out, or exited with a background child still holding the pipes: end the group.
        for t in threads[:2]:
            t.join(0 if timed_out else 1)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    for t in threads:
        t.join(5)
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    return HostRun(bytes(out.data), bytes(err.data), -1 if timed_out else proc.returncode, timed_out, out.cut)


async def _run_ssh(channel: dict, script: bytes, timeout_s: float, cap: int, stderr_cap: int) -> HostRun:
    import asyncssh

    out, err = _Sink(cap), _Sink(stderr_cap)
    result = HostRun()

    async def pump(stream, sink: _Sink) -> None:
        while chunk := await stream.read(65536):
            sink.add(chunk)

    async def session() -> None:
        key = asyncssh.read_private_key(channel["key_file"])
        # The agent is on the host itself: no host key to check, no client config or agent.
        async with asyncssh.connect(channel["address"], int(channel["port"]), username=channel.get("user", AGENT_USER),
                                    client_keys=[key], known_hosts=None, agent_path=None, config=None,
                                    connect_timeout=max(1.0, min(timeout_s, 30))) as conn:
            proc = await conn.create_process("/bin/sh -s", encoding=None)
            proc.stdin.write(script)
            proc.stdin.write_eof()
            await asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err))
            await proc.wait(check=False)
            result.exit_code = -1 if proc.exit_status is None else proc.exit_status

    try:
        await asyncio.wait_for(session(), timeout_s)
    except asyncio.TimeoutError:
        result.timed_out, result.exit_code = True, -1
    except (OSError, asyncssh.Error) as exc:  # the agent lost its channel: no exit status
        err.add(f"ssm stand-in: channel failed: {exc}\n".encode())
        result.exit_code = -1
    result.stdout, result.stderr, result.cut = bytes(out.data), bytes(err.data), out.cut
    return result
