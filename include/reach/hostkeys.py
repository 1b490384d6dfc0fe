"""Host keys, in one place, failing closed: the policy, the tofu pins in DynamoDB, rotations, the bastion's key.

Policies (connection extra `host_key_policy`):
  tofu      (default) trust a host's key on first sight, pin it, then accept only that key;
  strict    known_hosts only (a key line, or an `@cert-authority` line: "CA" is strict with a CA); never pins;
  insecure  any key, never pins — only when the extra names it.

Fail-closed rules (docs/SECURITY.md "Host keys"):
  - a pin that could not be read (throttling) is never "first use": that host is ERROR and is not connected to;
  - a first-sight pin is a conditional write; losing the race to another key is HOST_KEY_MISMATCH;
  - every key type is offered, the trusted type first, so a host that switched type shows its new key and is
    compared (HOST_KEY_MISMATCH) instead of failing key exchange (UNREACHABLE);
  - `accept_host_keys` (an operator accepting a rotation) exists only under tofu.
Nothing here imports the transport or the evidence store: both import from here.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import asyncssh
from asyncssh.public_key import get_default_certificate_algs, get_default_public_key_algs
from botocore.exceptions import BotoCoreError, ClientError

from include.aws.tables import pins_table_name
from include.aws.tokens import request_token
from include.core.clock import iso, utc_now
from include.core.host import Host, HostOutcome
from include.core.status import Status

log = logging.getLogger(__name__)

POLICIES = ("tofu", "strict", "insecure")
# First-sight pins go to DynamoDB in groups (PinGroups): one TransactWriteItems of up to PIN_GROUP conditional
# Puts instead of one PutItem each (a first run of 10,000 hosts made 10,000 calls). A group is sent when full,
# or PIN_LINGER_S after its first pin: the sessions of a batch finish together, so groups fill.
PIN_GROUP = 25
PIN_LINGER_S = 0.05
PIN_GROUP_ATTEMPTS = 3  # a group whose hosts lost races is resent without them, at most this often
_PLAIN_ALGS = [a.decode() for a in get_default_public_key_algs()]
_CERT_ALGS = [a.decode() for a in get_default_certificate_algs()]


def parse_policy(value: object) -> str:
    """The connection extra → a policy. Missing/empty is tofu; insecure only when spelled out; the rest refused."""
    text = "" if value is None else str(value).strip().lower()
    if not text:
        return "tofu"
    if text not in POLICIES:  # "none", "off", "false", "no" … are not a way to say insecure
        raise ValueError(f"host_key_policy must be one of {', '.join(POLICIES)}, not {value!r}")
    return text


def _first_then_rest(first: Iterable[str], rest: Iterable[str]) -> list[str]:
    head = list(dict.fromkeys(first))
    return head + [a for a in dict.fromkeys(rest) if a not in head]


def describe(key: asyncssh.SSHKey | None) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" if key is not None else "no key"


@dataclass(frozen=True)
class Pin:
    """A trusted host key (tofu): OpenSSH public key text and its SHA256 fingerprint."""

    key: str
    fingerprint: str

    @property
    def kind(self) -> str:
        return self.key.split(" ", 1)[0] if self.key else "?"

    @property
    def algorithms(self) -> list[str]:
        """Host key algorithms to offer: the pinned type first (a host with several keys presents the pinned
        one), then every other type, so a host that now has only another type still shows its key and is
        judged HOST_KEY_MISMATCH, not lost in key exchange as UNREACHABLE."""
        try:
            first = [a.decode() for a in asyncssh.import_public_key(self.key).sig_algorithms]
        except (asyncssh.KeyImportError, ValueError):
            first = []
        return _first_then_rest(first, _PLAIN_ALGS)

    def matches(self, key: asyncssh.SSHKey) -> bool:
        return key.get_fingerprint("sha256") == self.fingerprint

    def describe(self) -> str:
        return f"{self.kind} {self.fingerprint}"


# A host whose pin could not be read gets this: no key matches it, so even a caller that connects anyway
# learns nothing but a mismatch (and `HostKeys.settle` turns that into the ERROR it is).
UNREADABLE = Pin(key="", fingerprint="(pin unreadable)")


# ---------------------------------------------------------------- what the transport asks

def trusts(policy: str, pin: Pin | None, key: asyncssh.SSHKey) -> bool:
    """asyncssh's validate_host_public_key: a key known_hosts did not already trust."""
    if policy != "tofu":  # strict: known_hosts (or its CA) is the only authority; insecure never asks
        return False
    return True if pin is None else pin.matches(key)


def mismatch_detail(policy: str, pin: Pin | None, seen: asyncssh.SSHKey | None, reason: str = "") -> str:
    if pin == UNREADABLE:
        return "host-key pin could not be read: not connected"
    if policy == "tofu" and pin is not None:
        detail = (f"host presented {describe(seen)}, pinned {pin.describe()}: the key changed (or a man in "
                  "the middle); if the rotation is expected, list the instance in accept_host_keys")
    else:
        detail = f"host presented {describe(seen)}, which known_hosts (or its @cert-authority) does not trust"
    return f"{detail} ({reason})" if reason else detail


@functools.lru_cache(maxsize=8)
def _read_known_hosts(path: str, mtime: float) -> asyncssh.SSHKnownHosts:  # mtime: re-read when it changes
    return asyncssh.read_known_hosts(path)


def _known_hosts(path: str | None) -> asyncssh.SSHKnownHosts | None:
    """Parsed once per file (asyncssh would re-read it per connection); None when there is none to read."""
    path = os.path.expanduser(path or "~/.ssh/known_hosts")
    try:
        return _read_known_hosts(path, os.stat(path).st_mtime)
    except OSError:
        return None


def known_hosts_arg(policy: str, known_hosts: str | None):
    if policy == "insecure":
        return None
    if policy == "strict":
        # No file → nothing is trusted (asyncssh's "()" would also fall back to ~/.ssh/known_hosts).
        return _known_hosts(known_hosts) or ([], [], [])
    return ([], [], [])  # tofu: trust nothing up front, decide in trusts()


def _strict_algorithms(known_hosts: str | None, host: str, port: int) -> list[str] | None:
    """known_hosts' types for this host first (CA → certificates first), then every other type."""
    parsed = _known_hosts(known_hosts)
    if parsed is None:
        return None
    keys, cas, *_ = asyncssh.match_known_hosts(parsed, host, host, None if port == 22 else port)
    first = (_CERT_ALGS if cas else []) + [a.decode() for k in keys for a in k.sig_algorithms]
    return _first_then_rest(first, (_CERT_ALGS if cas else []) + _PLAIN_ALGS)


def key_exchange_options(policy: str, pin: Pin | None, known_hosts: str | None, host: str, port: int) -> dict:
    """asyncssh options for one host: what it trusts and which key types it offers (trusted type first)."""
    options: dict = {"known_hosts": known_hosts_arg(policy, known_hosts)}
    if policy == "tofu" and pin is not None:
        options["server_host_key_algs"] = pin.algorithms
    elif policy == "strict" and host:
        algs = _strict_algorithms(known_hosts, host, port)
        if algs:
            options["server_host_key_algs"] = algs
    return options


def jump_options(policy: str, known_hosts: str | None, jump_host_key: str | None, host: str, port: int) -> dict:
    """The bastion: its pinned key (extra proxy_jump_host_key) if given, else known_hosts; never tofu."""
    if jump_host_key:
        pin = asyncssh.import_public_key(jump_host_key)
        return {"known_hosts": ([pin], [], []),
                "server_host_key_algs": _first_then_rest([a.decode() for a in pin.sig_algorithms], _PLAIN_ALGS)}
    if policy == "insecure":
        return {"known_hosts": None}
    return key_exchange_options("strict", None, known_hosts, host, port)


# ---------------------------------------------------------------- the pins table

@dataclass
class PinLoad:
    pins: dict[str, Pin] = field(default_factory=dict)  # read and present
    unread: dict[str, str] = field(default_factory=dict)  # instance id → why its pin could not be read


class PinStore:
    """The tofu pins: table `<evidence_table>_host_keys`, key `instance_id`.

    Takes a boto3 DynamoDB resource (as EvidenceStore does) and calls its client — thread-safe, unlike the
    resource's Table objects, so sessions can settle from threads — with plain Python values (the resource's
    client converts them to DynamoDB's typed form and back).
    """

    def __init__(self, resource, evidence_table: str, *, load_budget_s: float = 30.0,
                 base_delay: float = 0.05, max_delay: float = 2.0, max_rounds: int = 40,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = resource.meta.client
        self.table_name = pins_table_name(evidence_table)
        self.load_budget_s, self.base_delay, self.max_delay, self.max_rounds = load_budget_s, base_delay, max_delay, max_rounds
        self.sleep, self.clock = sleep, clock

    @staticmethod
    def _pin_of(item: Mapping) -> Pin:
        return Pin(key=item["host_key"], fingerprint=item["fingerprint"])

    def load(self, instance_ids: Iterable[str]) -> PinLoad:
        """Every requested pin, or the reason it could not be read. Absent from the result = not pinned yet.

        DynamoDB hands back UnprocessedKeys under throttling (and botocore may give up with an error): those
        are asked again with exponential backoff and jitter, within `load_budget_s`/`max_rounds`.
        """
        pending = list(dict.fromkeys(instance_ids))
        result, last_error, round_ = PinLoad(), "", 0
        deadline = self.clock() + self.load_budget_s
        for round_ in range(max(1, self.max_rounds)):
            retry: list[str] = []
            for start in range(0, len(pending), 100):  # BatchGetItem takes 100 keys
                chunk = pending[start:start + 100]
                try:
                    response = self.client.batch_get_item(RequestItems={self.table_name: {
                        "Keys": [{"instance_id": i} for i in chunk], "ConsistentRead": True}})
                except (ClientError, BotoCoreError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"[:200]
                    retry += chunk
                    continue
                for item in response.get("Responses", {}).get(self.table_name, []):
                    result.pins[item["instance_id"]] = self._pin_of(item)
                left = response.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
                if left:
                    last_error = "DynamoDB returned the key unprocessed (throttled)"
                    retry += [k["instance_id"] for k in left]
            pending = [i for i in retry if i not in result.pins]
            if not pending:
                return result
            delay = min(self.max_delay, self.base_delay * 2 ** round_) * random.uniform(0.5, 1.0)
            if self.clock() + delay > deadline:
                break
            self.sleep(delay)
        reason = f"{last_error}; gave up after {round_ + 1} rounds"
        log.warning("%d host-key pins of %s could not be read: %s", len(pending), self.table_name, reason)
        result.unread = {i: reason for i in pending}
        return result

    def get(self, instance_id: str) -> Pin | None:
        item = self.client.get_item(TableName=self.table_name, Key={"instance_id": instance_id},
                                    ConsistentRead=True).get("Item")
        return self._pin_of(item) if item else None

    @staticmethod
    def _item(instance_id: str, key: str, fingerprint: str, address: str | None, **extra: str) -> dict:
        return {"instance_id": instance_id, "host_key": key, "fingerprint": fingerprint,
                "address": address or "", "pinned_at": iso(utc_now()), **extra}

    def _put(self, item: dict, condition: str, values: dict | None = None) -> bool:
        kwargs = {"TableName": self.table_name, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self.client.put_item(**kwargs)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def pin(self, instance_id: str, key: str, fingerprint: str, address: str | None) -> bool:
        """Pin on first sight; False when a pin already exists (another worker won: re-read it)."""
        return self._put(self._item(instance_id, key, fingerprint, address), "attribute_not_exists(instance_id)")

    def pin_many(self, firsts: list[tuple[str, str, str, str | None]]) -> dict[str, bool | Exception]:
        """First-sight pins of several hosts (instance id, key, fingerprint, address), each conditional as pin()
        is, in one TransactWriteItems (≤ PIN_GROUP): instance id → pinned, False when a pin already existed
        (another worker won), or the error that kept it from being written. A refused transaction writes
        nothing: the hosts whose own condition failed are False, the rest are sent again; anything else the
        transaction cannot say per host falls back to one conditional PutItem each (pin())."""
        result: dict[str, bool | Exception] = {}
        left = list(dict.fromkeys(firsts))
        for attempt in range(PIN_GROUP_ATTEMPTS):
            if not left:
                return result
            items = [self._item(*first) for first in left]
            actions = [{"Put": {"TableName": self.table_name, "Item": it,
                                "ConditionExpression": "attribute_not_exists(instance_id)"}} for it in items]
            try:  # the token: botocore's resend of a transaction whose reply was lost is applied once
                self.client.transact_write_items(TransactItems=actions, ClientRequestToken=request_token(items))
                result.update({first[0]: True for first in left})
                return result
            except ClientError as exc:
                reasons = [r.get("Code") or "None" for r in exc.response.get("CancellationReasons") or []]
                if len(reasons) != len(left) or not set(reasons) <= {"None", "ConditionalCheckFailed"}:
                    break  # throttled, conflicting, or not a cancellation: host by host below
                result.update({first[0]: False for first, why in zip(left, reasons) if why != "None"})
                left = [first for first, why in zip(left, reasons) if why == "None"]
            except BotoCoreError:
                break
        for first in left:
            try:
                result[first[0]] = self.pin(*first)
            except (ClientError, BotoCoreError) as exc:
                result[first[0]] = exc
        return result

    def repin(self, instance_id: str, key: str, fingerprint: str, address: str | None, previous: str | None,
              run_id: str) -> bool:
        """An operator accepted a rotated key: replace the pin we read (or none), keeping who/what/when.
        False when the pin changed under us to a third key since we read it."""
        item = self._item(instance_id, key, fingerprint, address, previous_fingerprint=previous or "",
                          accepted_by_run=run_id)
        condition = "attribute_not_exists(instance_id) OR fingerprint = :new"
        values = {":new": fingerprint}
        if previous:
            condition += " OR fingerprint = :old"
            values[":old"] = previous
        return self._put(item, condition, values)


# ---------------------------------------------------------------- the policy the batch verifier drives

class HostKeys:
    """One batch's host-key decisions: prepare() before connecting, pin_for() while, settle() after."""

    def __init__(self, policy: str, store: PinStore | None, accept: Iterable[str] = (), run_id: str = "",
                 known_hosts: str | None = None) -> None:
        self.policy = parse_policy(policy)
        if self.policy == "tofu" and store is None:
            raise ValueError("tofu needs a pin store")
        self.store, self.run_id, self.known_hosts = store, run_id, known_hosts
        self.accept = set(accept)
        if self.accept and self.policy != "tofu":
            # Ignored, not refused: a leftover param must not stop the audit, and nothing gets pinned.
            log.warning("accept_host_keys ignored under host_key_policy=%s (%d ids): only tofu pins keys",
                        self.policy, len(self.accept))
        self.pins: dict[str, Pin] = {}
        self.unread: dict[str, str] = {}
        self._previous: dict[str, Pin | None] = {}  # accepted hosts: the pin being replaced

    def prepare(self, instance_ids: list[str]) -> dict[str, str]:
        """Load the pins. Returns {instance_id: detail} for hosts to record ERROR without connecting."""
        if self.policy != "tofu":
            return {}
        loaded = self.store.load(instance_ids)
        self.pins.update(loaded.pins)
        self.unread = {i: f"host-key pin could not be read: {why}" for i, why in loaded.unread.items()}
        for i in self.accept.intersection(instance_ids) - set(self.unread):
            self._previous[i] = self.pins.pop(i, None)  # connect without the old pin; settle() replaces it
        return dict(self.unread)

    def pin_for(self, instance_id: str) -> Pin | None:
        """What the transport checks the host's key against (None: first use or an accepted rotation)."""
        if instance_id in self.unread:
            return UNREADABLE
        return self.pins.get(instance_id)

    @property
    def transport_pins(self) -> Mapping[str, Pin]:
        """For fan_out(pins=...): pin_for() as a mapping (unreadable pins included, so they never match)."""
        return {**self.pins, **{i: UNREADABLE for i in self.unread}}

    def first_sight(self, host: Host, outcome: HostOutcome) -> tuple[str, str, str, str | None] | None:
        """What settle() would pin on first use (instance id, key, fingerprint, address), else None."""
        iid = host.instance_id
        if (self.policy != "tofu" or iid in self.unread or iid in self._previous or iid in self.pins
                or outcome.transport_status == Status.HOST_KEY_MISMATCH or not outcome.host_key):
            return None
        return iid, outcome.host_key, outcome.host_key_fingerprint or "", host.address

    def settle(self, host: Host, outcome: HostOutcome, pinned: bool | Exception | None = None) -> None:
        """After a session: pin a first-sight key, apply an accepted rotation, re-read a lost race.
        `pinned`: what a PinGroups write already answered for this host's first-sight pin (else it is
        written here). Blocking (DynamoDB): call it in a thread, before judging the outcome."""
        iid = host.instance_id
        if self.policy != "tofu":
            if iid in self.accept:
                outcome.host_key_note = f"accept_host_keys ignored: host_key_policy={self.policy} never pins"
            elif self.policy == "insecure":
                outcome.host_key_note = "host key not verified (host_key_policy=insecure)"
            return
        if iid in self.unread:  # a verifier that connected anyway: still never trusted
            self._fail(outcome, Status.ERROR, self.unread[iid])
            return
        if outcome.transport_status == Status.HOST_KEY_MISMATCH or not outcome.host_key:
            if iid in self._previous:
                outcome.host_key_note = "accept_host_keys: no session, pin unchanged"
            return
        key, fingerprint = outcome.host_key, outcome.host_key_fingerprint or ""
        try:
            if iid in self._previous:
                self._accept(host, outcome, key, fingerprint)
            elif iid in self.pins:
                if self.pins[iid].fingerprint != fingerprint:  # the transport compared already; belt and braces
                    self._fail(outcome, Status.HOST_KEY_MISMATCH,
                               f"host presented {fingerprint}, pinned {self.pins[iid].describe()}")
            elif self._pinned(pinned, iid, key, fingerprint, host.address):
                self.pins[iid] = Pin(key, fingerprint)
                outcome.host_key_note = "pinned on first use"
            else:
                self._race(outcome, iid, fingerprint, "another worker pinned this host first")
        except (ClientError, BotoCoreError) as exc:  # unrecorded first sight = unverified key: not a verdict
            self._fail(outcome, Status.ERROR, f"host-key pin could not be written: {type(exc).__name__}: {exc}"[:300])

    def _pinned(self, pinned: bool | Exception | None, *first) -> bool:
        if pinned is None:
            return self.store.pin(*first)
        if isinstance(pinned, Exception):
            raise pinned
        return pinned

    def _accept(self, host: Host, outcome: HostOutcome, key: str, fingerprint: str) -> None:
        old = self._previous[host.instance_id]
        if self.store.repin(host.instance_id, key, fingerprint, host.address, old.fingerprint if old else None,
                            self.run_id):
            self.pins[host.instance_id] = Pin(key, fingerprint)
            outcome.host_key_note = (f"re-pinned by accept_host_keys (was {old.fingerprint})" if old
                                     else "pinned by accept_host_keys")
        else:
            self._race(outcome, host.instance_id, fingerprint, "the pin changed while accept_host_keys ran")

    def _race(self, outcome: HostOutcome, iid: str, fingerprint: str, what: str) -> None:
        stored = self.store.get(iid)
        if stored is not None and stored.fingerprint == fingerprint:
            self.pins[iid] = stored
            outcome.host_key_note = f"{what}, with the same key"
        elif stored is None:
            self._fail(outcome, Status.ERROR, f"{what}, but no pin can be read back")
        else:
            self.pins[iid] = stored
            self._fail(outcome, Status.HOST_KEY_MISMATCH,
                       f"{what} with {stored.describe()}; this session saw {fingerprint}: two different keys "
                       "answered for this instance (a man in the middle on one path?)")

    @staticmethod
    def _fail(outcome: HostOutcome, status: Status, detail: str) -> None:
        # Nothing an untrusted session said is judged or kept.
        outcome.transport_status, outcome.transport_detail = status, detail
        outcome.output, outcome.truncated = b"", False


class PinGroups:
    """A batch's first-sight pins, written in groups (PinStore.pin_many) as its sessions finish: `await
    pin(first)` answers what pin() would for that host. Lives on one event loop."""

    def __init__(self, store: PinStore, group: int = PIN_GROUP, linger_s: float = PIN_LINGER_S) -> None:
        self.store, self.group, self.linger_s = store, group, linger_s
        self._pending: list[tuple[tuple[str, str, str, str | None], asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task] = set()

    async def pin(self, first: tuple[str, str, str, str | None]) -> bool | Exception:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((first, future))
        if len(self._pending) >= self.group:
            self._send()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._send)
        return await future

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        taken, self._pending = self._pending, []
        if taken:
            task = asyncio.get_running_loop().create_task(self._write(taken))
            self._writes.add(task)  # held until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._writes.discard)

    async def _write(self, taken: list[tuple[tuple[str, str, str, str | None], asyncio.Future]]) -> None:
        try:
            answers = await asyncio.to_thread(self.store.pin_many, [first for first, _ in taken])
        except Exception as exc:  # noqa: BLE001 - every waiter gets it: its host's pin is not written
            answers = {first[0]: exc for first, _ in taken}
        for first, future in taken:
            if not future.done():
                future.set_result(answers.get(first[0], RuntimeError("pin not answered")))
