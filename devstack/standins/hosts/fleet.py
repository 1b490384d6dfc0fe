"""A simulated SSH fleet in one process: a real asyncssh SSH server on each host's loopback address.

Each host answers the audit script (`/bin/sh -s`, script on stdin) with the output its health profile
implies (devstack/standins/hosts/host_states.py), or misbehaves as its `behaviour` says:

  ok · down (no listener) · auth_reject (no client key accepted) · hang_banner (TCP accepted, never a byte)
  hang_command (session opens, command never answers) · drop (half the output, then the connection dies)
  junk (random non-UTF-8 bytes) · huge (50 MB of output, flow-controlled)
  large (its profile's output with ~40 KB of extra valid audit rules: parseable, same verdicts, just big)
  ssm_only (no SSH listener, like down, but its SSM agent listener runs: a host with no inbound SSH)

A host with `"agent_port": N` also listens on (address, N) for the SSM Run Command stand-in's "agent"
(devstack/standins/hosts/ssm_agents.py): that listener accepts only the agent key (`--ssm-agent-key`) and answers the script
exactly as the host's normal listener does (same profile, behaviour, nonce and canary handling).

Host keys persist in the state dir (one per address) so tofu pins stay valid across restarts.

A host's profile can change while the fleet runs (issue 28: a host tampered with answers auditd stopped from
then on): `set_profile(state_dir, address, profile)` writes control/<address>.json, read at each session.

    python -m devstack.standins.hosts.fleet --spec spec.json --state-dir DIR --authorized-key id.pub [--latency-ms 20] [--ready-file F]
                             [--ssm-agent-key agent.pub]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncssh

from include.checks.probes import CANARY_TOKEN, NONCE_VAR, SCRIPT_END, TAG_VAR, end_mark, section_mark

Responder = Callable[[str, dict], "str | bytes"]
SSH_PORT = 2222  # every simulated (and real sshd) host listens on its own address, this port
SSH_LOGIN = "ec2audit"
SSM_AGENT_PORT = 2299  # a simulated host's SSM "agent" listener (ssm_agents.py)
HUGE_BYTES = 50 * 1024 * 1024
LARGE_PAD_RULES = 1600  # ~40 KB of `-w /etc/ec2audit-padN -p wa -k pad` lines


def generate_client_key(path: str | Path) -> str:
    """Write an ed25519 OpenSSH private key (0600) and its .pub; return the public key line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="ec2-audit-demo")
    path.write_bytes(key.export_private_key())
    os.chmod(path, 0o600)
    public = key.export_public_key().decode().strip()
    Path(str(path) + ".pub").write_text(public + "\n")
    return public


def host_key(state_dir: Path, address: str, rotated: bool = False) -> asyncssh.SSHKey:
    """The persistent key of an address (a second one when rotated: a rebuilt host)."""
    path = state_dir / "host_keys" / f"{address}{'.rotated' if rotated else ''}.key"
    if path.exists():
        return asyncssh.read_private_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key())
    os.chmod(path, 0o600)
    return key


def _default_responder(profile: str, identity: dict) -> str:
    from devstack.standins.hosts.host_states import render_output

    return render_output(profile, identity)


class _Server(asyncssh.SSHServer):
    """Public-key auth against a set of fingerprints; None accepts no key at all (auth_reject).

    With an EC2 Instance Connect key directory (devstack/standins/hosts/eic_keys.py) it also accepts, like an instance with
    eic_run_authorized_keys, a key the stand-in received for this host's instance id and the login user and
    that has not expired — looked up at each authentication."""

    def __init__(self, allowed: set[str] | None, instance_id: str | None = None,
                 eic_key_dir: Path | None = None) -> None:
        self.allowed = allowed
        self.instance_id, self.eic_key_dir = instance_id, eic_key_dir

    def begin_auth(self, username: str) -> bool:
        return True  # always require auth

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.allowed is None:
            return False
        fingerprint = key.get_fingerprint("sha256")
        if fingerprint in self.allowed:
            return True
        from devstack.standins.hosts.eic_keys import valid_keys

        pushed = valid_keys(self.eic_key_dir, self.instance_id, username)
        return any(asyncssh.import_public_key(k).get_fingerprint("sha256") == fingerprint for k in pushed)


async def _read_script(proc: asyncssh.SSHServerProcess) -> tuple[bool, str, str]:
    """Read stdin until the script's last line (the client may not close stdin) or EOF.

    Returns whether the script carries the canary probe, the nonce its markers must carry and the canary tag
    (probes.frame's first two lines)."""
    seen, head, canary = "", "", False
    while SCRIPT_END not in seen:
        chunk = await proc.stdin.read(65536)
        if not chunk:
            break
        head = head or chunk[:200]
        seen = (seen + chunk)[-8192:]
        canary = canary or CANARY_TOKEN in seen
    first, second = (head.split("\n", 2) + ["", ""])[:2]
    nonce = first[len(NONCE_VAR) + 1:] if first.startswith(NONCE_VAR + "=") else ""
    tag = second[len(TAG_VAR) + 1:] if second.startswith(TAG_VAR + "=") else ""
    return canary, nonce, tag


class CanaryShipper:
    """Plays the CloudWatch agent for canaries: puts the audit record into the host's stream in moto."""

    def __init__(self, endpoint: str | None, region: str = "us-east-1") -> None:
        self.client = None
        if endpoint:
            import boto3

            self.client = boto3.client("logs", endpoint_url=endpoint, region_name=region,
                                       aws_access_key_id="testing", aws_secret_access_key="testing")

    async def ship(self, host: dict, token: str) -> None:
        if self.client is None:
            return
        await asyncio.sleep(1 + random.random())  # the agent's flush interval
        import time

        message = f"type=USER msg=audit({time.time():.3f}:4242): pid=1 uid=0 auid=1000 ses=3 msg='{token} exe=\"/usr/sbin/auditctl\" res=success'"
        await asyncio.to_thread(self.client.put_log_events, logGroupName="/ec2/audit",
                                logStreamName=host.get("identity", {}).get("stream") or host["instance_id"],
                                logEvents=[{"timestamp": int(time.time() * 1000), "message": message}])


def control_path(state_dir: Path, address: str) -> Path:
    return Path(state_dir) / "control" / f"{address}.json"


def set_profile(state_dir: str | Path, address: str, profile: str) -> None:
    """From now on the host at `address` answers as `profile` (host_states.PROFILES), e.g. auditd_stopped."""
    import json

    from devstack.standins.hosts.host_states import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    path = control_path(Path(state_dir), address)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"profile": profile}))
    temporary.replace(path)  # a session reads the old or the new control, never half of one


def identities_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "identities.json"


def set_identities(state_dir: str | Path, instance_ids: dict[str, str]) -> None:
    """From now on the host at each address answers with that instance id (address → id): for a bench that
    starts its fleet before it seeds EC2 with the same hosts. Without it a host that has no instance_id in its
    spec names none, and its agent config names no stream of its own (every log_stream_fresh FAILs)."""
    import json

    path = identities_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(instance_ids))
    partial.replace(path)  # whole or not at all: sessions read it while it is written


_IDENTITIES: dict[str, object] = {}  # the identities file as last read, and its mtime


def instance_id_of(host: dict, state_dir: Path | None) -> str | None:
    """The host's instance id: its spec's, else the identities file's (set_identities), re-read when it changes."""
    import json

    if host.get("instance_id") or state_dir is None:
        return host.get("instance_id")
    path = identities_path(state_dir)
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    if _IDENTITIES.get("stamp") != stamp:
        _IDENTITIES.update(stamp=stamp, ids=json.loads(path.read_text()))
    return _IDENTITIES["ids"].get(host["address"])


def current_profile(host: dict, state_dir: Path | None) -> str:
    """The host's profile: its control file's, else the spec's."""
    import json

    if state_dir is not None:
        try:
            return json.loads(control_path(state_dir, host["address"]).read_text())["profile"]
        except FileNotFoundError:
            pass
    return host.get("profile", "compliant")


def _make_handler(host: dict, latency_s: float, responder: Responder, shipper: "CanaryShipper | None" = None,
                  state_dir: Path | None = None):
    behaviour = host.get("behaviour", "ok")

    async def handle(proc: asyncssh.SSHServerProcess) -> None:
        try:
            if proc.command and proc.command.strip() != "/bin/sh -s":
                # One probe as its own command (how SSHHook / SSHOperator would run checks): one round trip.
                if latency_s:
                    await asyncio.sleep(latency_s)
                proc.stdout.write(f"{proc.command.split()[0]}: ok\n")
                proc.exit(0)
                return
            canary, nonce, tag = await _read_script(proc)
            if latency_s:
                await asyncio.sleep(latency_s)
            if behaviour == "hang_command":
                await asyncio.sleep(3600)
            elif behaviour == "junk":
                proc.stdout.write(os.urandom(2048).decode("latin-1"))
            elif behaviour == "huge":
                block = ("A" * 1023 + "\n") * 64
                for _ in range(HUGE_BYTES // len(block)):
                    proc.stdout.write(block)
                    await proc.stdout.drain()
            else:
                instance_id = instance_id_of(host, state_dir)
                identity = {"instance_id": instance_id, **host.get("identity", {}), "nonce": nonce}
                profile = current_profile(host, state_dir)
                text = responder(profile, identity)
                text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
                if behaviour == "large":
                    text = _padded(text, nonce)
                if canary:
                    text = _with_canary(text, {**host, "profile": profile, "instance_id": instance_id}, shipper,
                                        nonce, tag)
                if behaviour == "drop":
                    proc.stdout.write(text[: len(text) // 2])
                    await proc.stdout.drain()
                    proc.channel.get_connection().abort()
                    return
                proc.stdout.write(text)
            proc.exit(0)
        except (asyncssh.Error, BrokenPipeError, ConnectionError):
            pass  # the client went away (e.g. output cap reached): nothing to do

    return handle


def _padded(text: str, nonce: str) -> str:
    """Extra watch rules at the top of the `auditctl -l` section (valid rules on paths no check names), or,
    where that section lists no rules (adding some would change its verdicts), filler lines in host_identity,
    whose parser reads only its `hostname:` line."""
    rules_at = f"\n{section_mark(nonce)} auditctl_rules\n"
    start = text.find(rules_at)
    body = text[start + len(rules_at):].split("\n", 1)[0] if start >= 0 else ""
    if body.startswith(("-a ", "-w ")):
        pad = "".join(f"-w /etc/ec2audit-pad{i} -p wa -k pad\n" for i in range(LARGE_PAD_RULES))
        return text.replace(rules_at, rules_at + pad, 1)
    identity_at = f"\n{section_mark(nonce)} host_identity\n"
    pad = "".join(f"PAD_{i}=ec2audit-padding-line\n" for i in range(LARGE_PAD_RULES))
    return text.replace(identity_at, identity_at + pad, 1)


def _with_canary(text: str, host: dict, shipper: "CanaryShipper | None", nonce: str, tag: str) -> str:
    from devstack.standins.hosts.host_states import canary_line, delivers_canary

    profile = host.get("profile", "compliant")
    token = f"{CANARY_TOKEN} {tag} {uuid.uuid4()}"
    if shipper is not None and host.get("instance_id") and delivers_canary(profile):
        asyncio.get_running_loop().create_task(shipper.ship(host, token))
    section = f"\n{section_mark(nonce)} canary\n{canary_line(profile, token)}\n"
    return text.replace(f"\n{end_mark(nonce)}\n", section + f"\n{end_mark(nonce)}\n")


class Fleet:
    def __init__(self) -> None:
        self.servers: list = []
        self.tarpit_sockets: set = set()

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for writer in list(self.tarpit_sockets):
            writer.close()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
        self.servers.clear()


async def start_fleet(hosts: list[dict], state_dir: str | Path, authorized_keys: list[str] | str,
                      latency_ms: int = 0, responder: Responder | None = None,
                      aws_endpoint: str | None = None, eic_key_dir: str | Path | None = None,
                      ssm_agent_key: str | None = None) -> Fleet:
    """eic_key_dir: where the EC2 Instance Connect stand-in records pushed keys (None: no EIC keys).
    ssm_agent_key: the SSM stand-in's agent public key; hosts with an `agent_port` listen there for it only."""
    state_dir = Path(state_dir)
    eic_key_dir = Path(eic_key_dir) if eic_key_dir else None
    if isinstance(authorized_keys, str):
        authorized_keys = [authorized_keys]
    allowed = {asyncssh.import_public_key(k).get_fingerprint("sha256") for k in authorized_keys if k.strip()}
    fleet = Fleet()
    respond = responder or _default_responder
    shipper = CanaryShipper(aws_endpoint)

    agent_allowed = {asyncssh.import_public_key(ssm_agent_key).get_fingerprint("sha256")} if ssm_agent_key else None

    for host in hosts:
        behaviour = host.get("behaviour", "ok")
        if behaviour == "down":
            continue
        handler = _make_handler(host, latency_ms / 1000, respond, shipper, state_dir)
        key = host_key(state_dir, host["address"], rotated=host.get("host_key_seed") == "rotated")
        if host.get("agent_port") and agent_allowed:
            # The agent runs on the host: the same handler, so the same output as an SSH session gets.
            fleet.servers.append(await asyncssh.listen(
                host["address"], host["agent_port"], server_host_keys=[key],
                server_factory=(lambda: _Server(agent_allowed)), process_factory=handler,
                encoding="utf-8", allow_scp=False, agent_forwarding=False, x11_forwarding=False,
                login_timeout=30, keepalive_interval=0))
        if behaviour == "ssm_only":
            continue
        if behaviour == "hang_banner":
            async def tarpit(reader, writer):
                fleet.tarpit_sockets.add(writer)
                await reader.read()  # never answer; wait for the client to give up
                fleet.tarpit_sockets.discard(writer)
                writer.close()

            fleet.servers.append(await asyncio.start_server(tarpit, host["address"], host["port"]))
            continue
        accepted = None if behaviour == "auth_reject" else allowed
        server = await asyncssh.listen(
            host["address"], host["port"], server_host_keys=[key],
            server_factory=(lambda a=accepted, i=host.get("instance_id"): _Server(a, i, eic_key_dir)),
            process_factory=handler,
            encoding="utf-8", allow_scp=False, agent_forwarding=False, x11_forwarding=False,
            login_timeout=30, keepalive_interval=0)
        fleet.servers.append(server)
    return fleet


async def _serve(args: argparse.Namespace) -> None:
    import json

    hosts = json.loads(Path(args.spec).read_text())
    keys = [line for line in Path(args.authorized_key).read_text().splitlines() if line.strip()]
    fleet = await start_fleet(hosts, args.state_dir, keys, args.latency_ms, aws_endpoint=args.aws_endpoint,
                              eic_key_dir=args.eic_key_dir,
                              ssm_agent_key=Path(args.ssm_agent_key).read_text().strip() if args.ssm_agent_key else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.ready_file:
        Path(args.ready_file).write_text(str(os.getpid()))
    print(f"fleet: {len(fleet.servers)} listeners up", flush=True)
    await stop.wait()
    await fleet.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--authorized-key", required=True)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--ready-file")
    parser.add_argument("--aws-endpoint", help="moto server URL: simulated agents ship canaries there")
    parser.add_argument("--eic-key-dir", help="where the EC2 Instance Connect stand-in records pushed keys "
                                              "(devstack/standins/hosts/eic_keys.py): hosts also accept those")
    parser.add_argument("--ssm-agent-key", help="the SSM stand-in agent's public key file: hosts with an "
                                                "agent_port accept it (only it) there (devstack/standins/hosts/ssm_agents.py)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
