"""What `verify` decides, from what was read (pure): the stored observations of each day against the day's latest
seal, each kept raw output against its item's `output_sha256`, the seal chain link by link, and the day's run
summary against the latest seal's manifest (contract: Evidence command line; docs/EVIDENCE.md).

The reader (include/integrity/reader.py) does every AWS call and hands over plain records; nothing here does IO,
so every kind of tampering is tested with hand-built records.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.evidence.manifest import SEAL_ID, Member, Statement, manifest_sha256, seal_sha256
from include.evidence.observation import canonical_value, observation_sha256, parse_key
from include.evidence.store import SUMMARY_ID

ALTERED, MISSING, ADDED, CHAIN_BROKEN = "altered", "missing", "added", "chain broken"
KINDS = (ALTERED, MISSING, ADDED, CHAIN_BROKEN)


@dataclass(frozen=True)
class Problem:
    """One line of `verify`'s answer: `<kind> <day> <instance_id or #seal> [seq=N]`."""

    kind: str
    day: str
    who: str
    seq: int | None = None

    def line(self) -> str:
        return f"{self.kind} {self.day} {self.who}" + ("" if self.seq is None else f" seq={self.seq}")

    def sort_key(self) -> tuple:
        return self.day, self.who, -1 if self.seq is None else self.seq, KINDS.index(self.kind)


@dataclass(frozen=True)
class SealRead:
    """One stored seal: its item as read, its members (None when its chunks are missing or do not match the
    statement's members_sha256) and whether its signature verified (None: unsigned)."""

    n: int
    item: Mapping[str, Any]
    members: list[Member] | None
    signature_ok: bool | None = None

    @property
    def statement(self) -> Statement | None:
        try:
            return Statement.parse(str(self.item["statement"]))
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def day(self) -> str:
        statement = self.statement
        return statement.day if statement else str(self.item.get("day", ""))

    @property
    def signature(self) -> str:
        return str(self.item.get("signature") or "")

    def recomputed_sha256(self) -> str:
        """The seal's hash from its exact statement text and signature: what the next seal must name."""
        return seal_sha256(str(self.item.get("statement", "")), self.signature)


@dataclass(frozen=True)
class DayRead:
    """One day as stored: its current items, its versions, the SHA-256 of each kept raw output it names (keyed by
    (instance_id, output_ref, output_sha256); None when absent or unreadable) and its run summary."""

    day: str
    current: list[Mapping[str, Any]] = field(default_factory=list)
    versions: list[Mapping[str, Any]] = field(default_factory=list)
    raw: Mapping[tuple[str, str, str], str | None] = field(default_factory=dict)
    summary: Mapping[str, Any] | None = None

    @property
    def observations(self) -> list[Mapping[str, Any]]:
        return [*self.current, *self.versions]


@dataclass
class Outcome:
    problems: list[Problem]
    notes: list[str]  # `no evidence <day>`, unsealed days from before the first seal: said, not problems
    sealed_days: int
    items: int

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def lines(self) -> list[str]:
        """What `verify` prints: the notes, then one line per problem, or last `intact: N days, M items`."""
        body = [p.line() for p in sorted(self.problems, key=Problem.sort_key)]
        return [*self.notes, *(body or [f"intact: {self.sealed_days} days, {self.items} items"])]


def seq_of(item: Mapping[str, Any]) -> int:
    """An observation's seq (an item written before versions existed has none: it was the day's first)."""
    return int(item.get("seq") or 1)


def expired(item: Mapping[str, Any], now: int) -> bool:
    """Past its TTL: DynamoDB may have removed it (or what it names) already. No expires_at: never."""
    value = item.get("expires_at")
    return value is not None and now >= int(value)


def verify(days: Iterable[DayRead], seals: Iterable[SealRead], first: str, last: str, now: int,
           require_signed: bool = False) -> Outcome:
    """Every day in [first, last] (days: one DayRead each) against the chain (seals: the whole #seal partition)."""
    chain = sorted(seals, key=lambda s: s.n)
    problems = set(check_chain(chain, first, last, now, require_signed))
    by_day: dict[str, list[SealRead]] = defaultdict(list)
    for seal in chain:
        by_day[seal.day].append(seal)
    sealed_at = [s.statement.sealed_at for s in chain if s.statement]
    first_sealed_at = min(sealed_at) if sealed_at else None
    notes: list[str] = []
    sealed_days = items = 0
    for day in sorted(days, key=lambda d: d.day):
        own = by_day.get(day.day, [])
        if own:
            sealed_days += 1
            items += len(day.observations)
            problems.update(check_day(day, own, now))
        elif not day.observations:
            notes.append(f"no evidence {day.day}")
        elif first_sealed_at is None or all(str(it.get("checked_at", "")) < first_sealed_at
                                            for it in day.observations):
            # Written before the first seal ever: nothing to verify them against (docs/EVIDENCE.md).
            notes.append(f"unsealed {day.day}: {len(day.observations)} items checked before the first seal, "
                         "not verifiable")
        else:  # observed after sealing began, yet in no seal
            problems.update(Problem(ADDED, day.day, str(it["instance_id"]), seq_of(it)) for it in day.observations)
    return Outcome(sorted(problems, key=Problem.sort_key), notes, sealed_days, items)


def check_day(day: DayRead, own: list[SealRead], now: int) -> list[Problem]:
    """One sealed day: its observations against the latest seal's members, the kept raw outputs, the earlier
    seals of the day (each covered by the latest) and the run summary."""
    latest = own[-1]
    statement = latest.statement
    if latest.members is None or statement is None:
        return []  # the chain check names this seal broken; there is nothing sound to compare against
    members = {(m.instance_id, m.seq): m.sha256 for m in latest.members}
    gone_ok = expired(latest.item, now)
    problems: list[Problem] = []

    def problem(kind: str, item_or_id: Any, seq: int | None) -> None:
        who = item_or_id if isinstance(item_or_id, str) else str(item_or_id["instance_id"])
        problems.append(Problem(kind, day.day, who, seq))

    seen: set[tuple[str, int]] = set()
    highest_version: dict[str, int] = {}
    for item in day.versions:
        seq = seq_of(item)
        highest_version[str(item["instance_id"])] = max(seq, highest_version.get(str(item["instance_id"]), 0))
        if parse_key(str(item.get("audit_date", "")))[1] != seq:  # its key names another seq than it carries
            problem(ALTERED, item, seq)
    for item in day.observations:
        key = (str(item["instance_id"]), seq_of(item))
        if key in seen:  # two observations with one seq: one of them is not what was observed
            problem(ALTERED, item, key[1])
        seen.add(key)
        recomputed = observation_sha256(item)
        want = members.get(key)
        if want is None:  # in no seal: one line says so (its raw output, if any, is as unvouched for)
            problem(ADDED, item, key[1])
            continue
        if want != recomputed or str(item.get("item_sha256") or recomputed) != recomputed:
            problem(ALTERED, item, key[1])
        ref = str(item.get("output_ref") or "")
        if ref:
            sha = str(item.get("output_sha256") or "")
            if day.raw.get((key[0], ref, sha)) != sha:
                problem(ALTERED, item, key[1])
    for item in day.current:  # the current item is the host's newest observation of the day
        if highest_version.get(str(item["instance_id"]), 0) >= seq_of(item):
            problem(ALTERED, item, seq_of(item))
    if not gone_ok:
        for instance_id, seq in members.keys() - seen:
            problem(MISSING, instance_id, seq)
    for earlier in own[:-1]:  # a later seal of a day covers all that the earlier one did
        for m in earlier.members or []:
            now_hash = members.get((m.instance_id, m.seq))
            if now_hash is None and not gone_ok:
                problem(MISSING, m.instance_id, m.seq)
            elif now_hash is not None and now_hash != m.sha256:
                problem(ALTERED, m.instance_id, m.seq)
    if day.summary is None:
        if not gone_ok:
            problem(MISSING, SUMMARY_ID, None)
    elif str(day.summary.get("manifest_sha256") or "") != statement.manifest_sha256:
        problem(ALTERED, SUMMARY_ID, None)
    return problems


def _fields_match(statement: Statement, item: Mapping[str, Any]) -> bool:
    """The attributes beside the statement say what the statement says (readers show them)."""
    return all(canonical_value(item.get(name)) == canonical_value(value) for name, value in asdict(statement).items())


def seal_is_sound(seal: SealRead, require_signed: bool) -> bool:
    """One seal on its own: statement, attributes, own hash, members and signature agree."""
    statement = seal.statement
    if statement is None or statement.seq != seal.n or not _fields_match(statement, seal.item):
        return False
    if str(seal.item.get("seal_sha256", "")) != seal.recomputed_sha256():
        return False
    if seal.members is None or len(seal.members) != statement.items \
            or manifest_sha256(seal.members) != statement.manifest_sha256:
        return False
    if seal.signature:
        return seal.signature_ok is True
    return not require_signed


def check_chain(chain: list[SealRead], first: str, last: str, now: int, require_signed: bool = False) -> list[Problem]:
    """Every seal and its link to the one before (chain: sorted by n). A broken seal or link is named when the
    seal's day is in [first, last] or the link connects into it."""
    problems = []
    previous: SealRead | None = None
    latest_of_day: dict[str, SealRead] = {}
    for seal in chain:
        statement = seal.statement
        sound = seal_is_sound(seal, require_signed) and statement is not None
        if sound:
            if previous is not None and previous.n == seal.n - 1:
                sound = statement.previous_seal_sha256 == previous.recomputed_sha256() and (
                    not statement.previous_expires_at or previous.item.get("expires_at") is None
                    or int(previous.item["expires_at"]) == statement.previous_expires_at)
            elif seal.n == 1:
                sound = statement.previous_seal_sha256 == ""
            else:  # the seal before is absent: only TTL may have taken it
                sound = bool(statement.previous_expires_at) and now >= statement.previous_expires_at
            earlier = latest_of_day.get(statement.day)
            if sound and earlier is not None and earlier.statement is not None:
                sound = statement.previous_manifest_sha256 == earlier.statement.manifest_sha256
            elif sound and earlier is None and statement.previous_manifest_sha256:
                # it names an earlier seal of its day that is not there: only TTL (same day, same expiry) may
                # have taken it
                sound = expired(seal.item, now)
        linked_in = previous is not None and first <= previous.day <= last
        if not sound and (first <= seal.day <= last or linked_in):
            problems.append(Problem(CHAIN_BROKEN, seal.day, SEAL_ID, seal.n))
        previous = seal
        latest_of_day[seal.day] = seal
    return problems
