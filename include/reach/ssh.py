"""Asynchronous SSH fan-out with asyncssh: one session per host, the whole check script in one round trip.

Each host gets its own connect timeout, command timeout, output cap, and a retry with backoff on transient
errors only; an overall per-host budget means one bad host can never hold its batch. Failures become a
HostOutcome with a contract status (UNREACHABLE, AUTH_FAILED, HOST_KEY_MISMATCH, ERROR) instead of raising.

Host keys are checked during key exchange, before we authenticate, so nothing is sent to a host whose key
does not match its pin.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import asyncssh

from include.checks.probes import NO_TAG, frame, new_nonce
from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.reach import hostkeys
from include.reach.hostkeys import Pin  # noqa: F401 - re-exported: the host-key policy lives in include/reach/hostkeys.py

log = logging.getLogger(__name__)
# asyncssh logs three INFO lines per connection: 30,000 task-log records for a 10,000-host fleet, each shipped
# through the task supervisor. Every outcome that matters is in the evidence; its warnings still show.
logging.getLogger("asyncssh").setLevel(logging.WARNING)

SHELL_COMMAND = "/bin/sh -s"  # the script arrives on stdin: independent of the login shell
# AES-GCM first (hardware AES, MAC built in), then asyncssh's own order as fallbacks: measured 25 % less client
# CPU per host than its default chacha20-poly1305 (docs/PERFORMANCE.md). Only the preference changes.
_FAST_FIRST = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
ENCRYPTION_ALGS = _FAST_FIRST + [a.decode() for a in asyncssh.encryption.get_default_encryption_algs()
                                 if a.decode() not in _FAST_FIRST]


@dataclass(frozen=True)
class SshSettings:
    username: str
    private_key: str | None = None  # PEM/OpenSSH text
    key_file: str | None = None
    passphrase: str | None = None
    port: int = 22
    host_key_policy: str = "tofu"  # tofu | strict | insecure
    known_hosts: str | None = None  # for strict
    connect_timeout: float = 15.0
    command_timeout: float = 60.0
    host_budget: float = 90.0
    attempts: int = 2
    backoff: float = 1.0
    max_output: int = 1 << 20  # bytes; the rest is dropped without being read into memory
    proxy_jump: str | None = None  # "[user@]host[:port]" of a bastion every session is tunnelled through
    proxy_jump_host_key: str | None = None  # the bastion's OpenSSH public key (else known_hosts decides)
    # "eic": the key is made per batch (include/reach/eic.py), so the connection needs none.
    transport: str = "ssh"

    def __post_init__(self) -> None:
        if self.host_key_policy not in ("tofu", "strict", "insecure"):
            raise ValueError(f"host_key_policy must be tofu, strict or insecure, not {self.host_key_policy!r}")
        if not (self.private_key or self.key_file) and self.transport != "eic":
            raise ValueError("the SSH connection needs extra.private_key or extra.key_file "
                             "(only transport eic needs no key: it pushes a short-lived one per batch)")

    def __repr__(self) -> str:  # never print the key
        return (f"SshSettings(username={self.username!r}, port={self.port}, policy={self.host_key_policy}, "
                f"connect_timeout={self.connect_timeout}, host_budget={self.host_budget})")

    def load_key(self) -> asyncssh.SSHKey:
        if self.private_key:
            return asyncssh.import_private_key(self.private_key, self.passphrase)
        return asyncssh.read_private_key(self.key_file, self.passphrase)


class _Client(asyncssh.SSHClient):
    """Decides on keys asyncssh's known_hosts did not already trust (all of them under tofu): hostkeys.trusts."""

    def __init__(self, policy: str, pin: Pin | None) -> None:
        self.policy, self.pin = policy, pin
        self.seen: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        self.seen = key
        return hostkeys.trusts(self.policy, self.pin, key)


class SessionError(Exception):
    """A session that failed, with the status it gives the host."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class SessionFailed(SessionError):
    """Final: key mismatch, key refused, checks timed out."""


class SessionRetry(SessionError):
    """Worth retrying: refused, timed out, dropped."""


class PreconnectFailed(Exception):
    """Raised by a `before_connect` hook (e.g. EC2 Instance Connect's key push): the host gets `status` and
    `detail` without being contacted; `retry` says whether the next attempt may do better (throttling)."""

    def __init__(self, status: Status, detail: str, retry: bool = False) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry = status, detail, retry


BeforeConnect = Callable[[Host], Awaitable[None]]


async def _prepare(host: Host, before_connect: BeforeConnect | None) -> None:
    """Run the hook before one attempt; its failure is the host's outcome, never the batch's."""
    if before_connect is None:
        return
    try:
        await before_connect(host)
    except PreconnectFailed as exc:
        raise (SessionRetry if exc.retry else SessionFailed)(exc.status, exc.detail) from exc
    except Exception as exc:  # noqa: BLE001 - any other failure of the hook: the host was not reached
        raise SessionRetry(Status.UNREACHABLE, f"before connecting: {type(exc).__name__}: {exc}"[:300]) from exc


def parse_jump(spec: str, default_user: str) -> tuple[str, str, int]:
    """"[user@]host[:port]" → (user, host, port)."""
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    return user or default_user, host, int(port or 22)


async def open_jump(settings: SshSettings, key: asyncssh.SSHKey) -> asyncssh.SSHClientConnection:
    """One bastion connection per batch; every host session is a direct-tcpip channel inside it."""
    user, host, port = parse_jump(settings.proxy_jump, settings.username)
    trust = hostkeys.jump_options(settings.host_key_policy, settings.known_hosts, settings.proxy_jump_host_key,
                                  host, port)
    return await asyncio.wait_for(asyncssh.connect(
        host, port, username=user, client_keys=[key], **trust, agent_path=None, config=None,
        connect_timeout=settings.connect_timeout, keepalive_interval=30), settings.connect_timeout + 1)


async def connect(host: Host, settings: SshSettings, key: asyncssh.SSHKey, pin: Pin | None, outcome: HostOutcome,
                  tunnel=None) -> asyncssh.SSHClientConnection:
    """One authenticated session, the host key checked during key exchange (before we authenticate).
    Failures raise SessionFailed / SessionRetry with the host's status; the key seen is put on `outcome`.
    Also the remediation path's way in (include/remediation/runner.py): the same checks, another login."""
    options = dict(
        username=settings.username, client_keys=[key],
        connect_timeout=settings.connect_timeout, login_timeout=settings.connect_timeout,
        agent_path=None, config=None, preferred_auth="publickey", encryption_algs=ENCRYPTION_ALGS,
    )
    # known_hosts, and every key type offered (the trusted one first): a host that switched type is compared.
    options.update(hostkeys.key_exchange_options(settings.host_key_policy, pin, settings.known_hosts,
                                                 host.address, settings.port))
    if tunnel is not None:
        options["tunnel"] = tunnel
    client = _Client(settings.host_key_policy, pin)
    try:
        conn, _ = await asyncio.wait_for(
            asyncssh.create_connection(lambda: client, host.address, settings.port, **options),
            settings.connect_timeout + 1,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        outcome.host_key_fingerprint = client.seen.get_fingerprint("sha256") if client.seen else None
        raise SessionFailed(Status.HOST_KEY_MISMATCH,
                     hostkeys.mismatch_detail(settings.host_key_policy, pin, client.seen, exc.reason)) from exc
    except asyncssh.PermissionDenied as exc:
        raise SessionFailed(Status.AUTH_FAILED, f"key refused for user {settings.username!r}: {exc.reason}") from exc
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise SessionRetry(Status.UNREACHABLE, f"no SSH session within {settings.connect_timeout:g}s") from exc
    except ConnectionRefusedError as exc:
        raise SessionRetry(Status.UNREACHABLE, f"connection refused on port {settings.port}") from exc
    except (OSError, asyncssh.Error) as exc:
        raise SessionRetry(Status.UNREACHABLE, f"connect failed: {type(exc).__name__}: {exc}"[:200]) from exc
    server_key = conn.get_server_host_key()
    if server_key is not None:
        outcome.host_key_fingerprint = server_key.get_fingerprint("sha256")
        outcome.host_key = server_key.export_public_key("openssh").decode().strip()
    return conn


async def _run_once(host: Host, settings: SshSettings, key: asyncssh.SSHKey, script: bytes,
                    pin: Pin | None, outcome: HostOutcome, tunnel=None) -> None:
    conn = await connect(host, settings, key, pin, outcome, tunnel)
    async with conn:
        try:
            output, truncated = await asyncio.wait_for(
                _run_script(conn, script, settings.max_output), settings.command_timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise SessionFailed(Status.ERROR, f"checks did not finish within {settings.command_timeout:g}s") from exc
        except (asyncssh.Error, OSError) as exc:
            raise SessionRetry(Status.ERROR, f"session dropped: {type(exc).__name__}: {exc}"[:200]) from exc
    outcome.output, outcome.truncated = output, truncated


async def _run_script(conn: asyncssh.SSHClientConnection, script: bytes, cap: int) -> tuple[bytes, bool]:
    async with conn.create_process(SHELL_COMMAND, encoding=None, stderr=asyncssh.DEVNULL) as proc:
        proc.stdin.write(script)
        proc.stdin.write_eof()
        buf = bytearray()
        while True:
            chunk = await proc.stdout.read(65536)
            if not chunk:
                return bytes(buf), False
            buf += chunk
            if len(buf) > cap:  # stop reading: the channel is closed with the process
                del buf[cap:]
                proc.close()
                return bytes(buf), True


async def check_host(host: Host, settings: SshSettings, key: asyncssh.SSHKey, script: bytes,
                     pin: Pin | None, tunnel=None, before_connect: BeforeConnect | None = None) -> HostOutcome:
    """Never raises: every failure is a status on the outcome. `before_connect` runs before every attempt
    (a retry too), inside the host's budget."""
    outcome = HostOutcome(instance_id=host.instance_id, transport_status=None, transport=settings.transport)
    started = time.monotonic()

    async def attempts() -> None:
        for attempt in range(1, settings.attempts + 1):
            outcome.attempts = attempt
            try:
                await _prepare(host, before_connect)
                await _run_once(host, settings, key, script, pin, outcome, tunnel)
                outcome.transport_status, outcome.transport_detail = None, ""
                return
            except SessionFailed as exc:
                outcome.transport_status, outcome.transport_detail = exc.status, exc.detail
                return
            except SessionRetry as exc:
                outcome.transport_status, outcome.transport_detail = exc.status, exc.detail
                if attempt < settings.attempts:
                    await asyncio.sleep(settings.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))

    if not host.address:
        outcome.transport_status, outcome.transport_detail = Status.UNREACHABLE, "instance has no address of the chosen kind"
        return outcome
    try:
        await asyncio.wait_for(attempts(), settings.host_budget)
    except (asyncio.TimeoutError, TimeoutError):
        outcome.transport_status = outcome.transport_status or Status.ERROR
        outcome.transport_detail = f"host budget of {settings.host_budget:g}s exhausted; last: {outcome.transport_detail or '-'}"
    except Exception as exc:  # noqa: BLE001 - a bug for one host must not cost the batch
        log.exception("unexpected failure checking %s", host.instance_id)
        outcome.transport_status, outcome.transport_detail = Status.ERROR, f"internal error: {type(exc).__name__}"
    outcome.elapsed_s = round(time.monotonic() - started, 3)
    return outcome


class JumpHostLost(RuntimeError):
    """The bastion is down or dropped: the batch fails (and is retried) instead of recording its hosts as
    UNREACHABLE — nothing about them was learned. Hosts already judged stay stored; the retry skips them."""


async def fan_out(hosts: Iterable[Host], settings: SshSettings, script: str, pins: Mapping[str, Pin],
                  concurrency: int, on_outcome: Callable[[Host, HostOutcome], Awaitable[None]],
                  before_connect: BeforeConnect | None = None, tag: str = NO_TAG) -> None:
    """Check hosts with at most `concurrency` sessions open; hand each outcome over as soon as it is ready.

    Each host gets its own random nonce in its section markers (probes.frame), kept on its outcome, and the
    batch's canary `tag`.
    `before_connect(host)` runs inside the gate just before each attempt to connect (include/reach/eic.py pushes
    the batch's key there); raising PreconnectFailed (or anything) makes that host's outcome, not the batch's."""
    key = settings.load_key()
    gate = asyncio.Semaphore(max(1, concurrency))
    hosts = list(hosts)
    jump = None
    if settings.proxy_jump:
        try:
            jump = await open_jump(settings, key)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise JumpHostLost(f"jump host {settings.proxy_jump}: {type(exc).__name__}: {exc}"[:300]) from exc

    async def one(host: Host) -> None:
        nonce = new_nonce()
        async with gate:
            outcome = await check_host(host, settings, key, frame(script, nonce, tag), pins.get(host.instance_id), jump,
                                       before_connect)
        outcome.nonce = nonce
        if jump is not None and outcome.transport_status is not None and jump.is_closed():
            # The failure may be the bastion's, not the host's: never record it as the host's.
            raise JumpHostLost(f"jump host {settings.proxy_jump} dropped during the batch")
        await on_outcome(host, outcome)

    try:
        await asyncio.gather(*(one(h) for h in hosts))
    finally:
        if jump is not None:
            jump.close()
