"""The security-event owner's reads and writes in the evidence table (include/notify/security_events.py), over
the table layer (include/aws/day_table.py), and the records they return: a host's stored observations of its
checks (`Observation`, from its items) and its event occurrences (`EventState`, partition `#security-event#<id>`).
Nothing here decides what is an event; no raw item leaves this module."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from boto3.dynamodb.conditions import Key

from include.aws.day_table import DayTable
from include.aws.tables import DAY_INDEX
from include.checks.catalogue import CATALOGUE
from include.core.clock import expires_at
from include.core.record import plain
from include.core.status import CheckStatus, Status
from include.evidence.records import EvidenceItem

log = logging.getLogger(__name__)

HOST_KEY = Status.HOST_KEY_MISMATCH.value
WATCHED: tuple[str, ...] = ("auditd.running", "auditd.rules_loaded",
                            *sorted(c.id for c in CATALOGUE if c.id.startswith("cwagent.")))
PARTITION_PREFIX = "#security-event#"
HISTORY_LIMIT = 25  # a host's newest observations read (items and versions): bounded, one Query
STATE_LIMIT = 50  # a host's newest event items read: at most one per kind matters
_FINGERPRINT = r"(SHA256:[A-Za-z0-9+/=]+)"


@dataclass(frozen=True)
class Observation:
    """One stored observation of a host (a current item or a version), as much as events need."""
    instance_id: str
    day: str
    run_id: str = ""
    seq: int = 0
    checked_at: str = ""
    status: str = ""
    checks: dict[str, dict[str, str]] = field(default_factory=dict)
    host_key_fingerprint: str = ""
    status_detail: str = ""
    name: str = ""

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> "Observation":
        """A stored item as DynamoDB returns it: a current item, or a version (which carries `day` and `seq`)."""
        it = plain(dict(item))
        # A version's sort key is `<day>#v#<seq>` with a `day` attribute; a current item's is the day itself.
        day = str(it.get("day") or str(it.get("audit_date", ""))[:10])
        return cls(str(it["instance_id"]), day, str(it.get("run_id", "")), int(it.get("seq") or 0),
                   str(it.get("checked_at", "")), str(it.get("status", "")), dict(it.get("checks") or {}),
                   str(it.get("host_key_fingerprint") or ""), str(it.get("status_detail") or ""),
                   str(it.get("name") or (it.get("tags") or {}).get("Name", "")))

    @classmethod
    def from_evidence(cls, item: EvidenceItem) -> "Observation":
        """A host's current evidence item (a run's candidates, the watch's re-checks), with its `seq` as stored (0
        when not written yet): a re-check later the same day comes after that day's earlier versions."""
        return cls(item.instance_id, item.audit_date[:10], item.run_id, item.seq, item.checked_at, item.status,
                   dict(item.checks), item.host_key_fingerprint, item.status_detail, item.display_name)

    @property
    def order(self) -> tuple[str, int, str]:
        """Observation order: the day, then `seq` within it, then when it was checked."""
        return self.day, self.seq, self.checked_at

    def verdict(self, check_id: str) -> str:
        return str((self.checks.get(check_id) or {}).get("status", ""))

    def detail(self, check_id: str) -> str:
        return str((self.checks.get(check_id) or {}).get("detail", ""))[:300]

    def ref(self) -> str:
        return f"{self.day} (run {self.run_id}{f', seq {self.seq}' if self.seq else ''})"

    @property
    def offered_key(self) -> str:
        found = re.search(r"presented (?:\S+ )?" + _FINGERPRINT, self.status_detail)
        return self.host_key_fingerprint or (found.group(1) if found else "")

    @property
    def pinned_key(self) -> str:
        found = re.search(r"pinned (?:\S+ )?" + _FINGERPRINT, self.status_detail)
        return found.group(1) if found else "(see the evidence)"


@dataclass(frozen=True)
class EventState:
    """One occurrence of one (host, kind): stored as an item in the host's `#security-event#` partition."""
    instance_id: str
    kind: str
    first_seen: str
    anchor: str  # what identifies the occurrence (the good observation before it, the key offered)
    before: str  # what the message says was true before, e.g. "passed on 2026-12-06 (run X)"
    last_alerted: str
    alert_id: str  # the latest alert of this occurrence; `delivered[channel] == alert_id` when that channel has it
    alert_run: str  # the run that claimed it: only its retries resend what a channel missed
    detail: str = ""
    delivered: dict[str, str] = field(default_factory=dict)

    @property
    def sort_key(self) -> str:
        return f"{self.first_seen}#{self.kind}"

    @classmethod
    def claimed(cls, event: SecurityEvent, day: str, run_id: str, alert: str) -> "EventState":
        first = event.first_seen if event.action == "reminder" else day
        return cls(event.instance_id, event.kind, first, event.anchor, event.before, day, alert, run_id,
                   event.detail)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> "EventState":
        it = plain(dict(item))
        return cls(str(it["host"]), str(it["kind"]), str(it["first_seen"]), str(it.get("anchor", "")),
                   str(it.get("before", "")), str(it.get("last_alerted", "")), str(it.get("alert_id", "")),
                   str(it.get("alert_run", "")), str(it.get("detail", "")), dict(it.get("delivered") or {}))

    def to_item(self, ttl_days: int) -> dict[str, Any]:
        return {"instance_id": PARTITION_PREFIX + self.instance_id, "audit_date": self.sort_key,
                "item_type": "security_event", "host": self.instance_id, "day": self.first_seen,
                "expires_at": expires_at(self.last_alerted, ttl_days),  # ttl_days after the alert it records
                **{k: v for k, v in asdict(self).items() if k != "instance_id"}}


@dataclass(frozen=True)
class SecurityEvent:
    instance_id: str
    kind: str  # HOST_KEY_MISMATCH or a check id
    action: str  # new | reminder | quiet (already alerted, not yet due again)
    anchor: str
    before: str
    detail: str  # what is wrong now
    first_seen: str = ""  # the occurrence's first day (reminders, quiet)
    name: str = ""
    state: EventState | None = None  # the stored occurrence this continues, if any

    @property
    def key(self) -> str:
        return f"{self.instance_id}|{self.kind}"

    def line(self) -> str:
        """What every channel says about the event: the instance id and what changed."""
        if self.kind == HOST_KEY:
            if self.action == "reminder":
                return f"{self.instance_id}: host key still mismatched since {self.first_seen}: {self.detail}"
            return f"{self.instance_id}: host key changed: {self.detail}"
        if self.action == "reminder":
            return (f"{self.instance_id}: {self.kind} still failing since {self.first_seen} ({self.before}): "
                    f"{self.detail}")
        return f"{self.instance_id}: {self.kind} {self.before}, fails now: {self.detail}"


class SecurityEventStore:
    """The security-event owner's reads and writes, over the table layer (the evidence table)."""

    def __init__(self, table: DayTable) -> None:
        self.table = table

    def candidates(self, day: str, run_id: str) -> list[EvidenceItem]:
        """This run's items of the day that fail a watched check or mismatch (filtered server-side)."""
        names = {"#checks": "checks", "#st": "status", **{f"#c{n}": check for n, check in enumerate(WATCHED)}}
        fails = " OR ".join(f"#checks.#c{n}.#st = :fail" for n in range(len(WATCHED)))
        # boto3's Attr cannot address a map key with a dot in it (a check id): the filter is written out by hand.
        found = self.table.query_all({
            "IndexName": DAY_INDEX, "KeyConditionExpression": "audit_date = :d",
            "FilterExpression": f"item_type = :instance AND run_id = :r AND (#st = :mismatch OR {fails})",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":d": day, ":instance": "instance", ":r": run_id,
                                          ":fail": CheckStatus.FAIL.value, ":mismatch": HOST_KEY}})
        return [EvidenceItem.from_item(it) for it in found]

    def history(self, instance_id: str, day: str) -> list[Observation]:
        """The host's newest observations up to `day` (today's current item and versions included): one Query."""
        names = ["instance_id", "audit_date", "day", "run_id", "seq", "checked_at", "status", "checks",
                 "host_key_fingerprint", "status_detail", "item_type"]
        # The resource's client, not the Table resource: a client is thread-safe (due_events reads several hosts at
        # once) and carries the same high-level transformations (Python types in and out, Key conditions).
        response = self.table.client.query(
            TableName=self.table.table_name,
            KeyConditionExpression=Key("instance_id").eq(instance_id) & Key("audit_date").lt(f"{day}~"),
            ScanIndexForward=False, Limit=HISTORY_LIMIT,
            ProjectionExpression=", ".join(f"#p{i}" for i in range(len(names))),
            ExpressionAttributeNames={f"#p{i}": n for i, n in enumerate(names)})
        return [Observation.from_item(it) for it in response.get("Items", [])
                if it.get("status") and it.get("item_type", "instance") != "run_summary"]

    def states(self, instance_id: str) -> dict[str, EventState]:
        """kind → the host's latest stored occurrence: one Query on its event partition, newest first."""
        response = self.table.client.query(  # thread-safe: see history()
            TableName=self.table.table_name,
            KeyConditionExpression=Key("instance_id").eq(PARTITION_PREFIX + instance_id),
            ScanIndexForward=False, Limit=STATE_LIMIT)
        found: dict[str, EventState] = {}
        for item in response.get("Items", []):
            state = EventState.from_item(item)
            if state.kind not in found or state.first_seen > found[state.kind].first_seen:
                found[state.kind] = state
        return found

    def claim(self, new: EventState, old: EventState | None, ttl_days: int) -> bool:
        """Store `new` unless another worker or run did first: over `old` only while it is still the alert read
        (a reminder, or a new occurrence the same day), else only where there is none. False: lost the race."""
        from botocore.exceptions import ClientError

        item = new.to_item(ttl_days)
        try:
            if old is not None and old.sort_key == new.sort_key:
                self.table.table.put_item(Item=item, ConditionExpression="alert_id = :old",
                                          ExpressionAttributeValues={":old": old.alert_id})
            else:
                self.table.table.put_item(Item=item, ConditionExpression="attribute_not_exists(instance_id)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def mark_delivered(self, state: EventState, channel: str) -> None:
        """Record that `channel` got the state's alert, unless a newer alert re-armed it meanwhile."""
        from botocore.exceptions import ClientError

        try:
            self.table.table.update_item(
                Key={"instance_id": PARTITION_PREFIX + state.instance_id, "audit_date": state.sort_key},
                UpdateExpression="SET delivered.#ch = :id", ConditionExpression="alert_id = :id",
                ExpressionAttributeNames={"#ch": channel}, ExpressionAttributeValues={":id": state.alert_id})
        except ClientError as exc:  # re-armed by a newer alert meanwhile: that one's sender records it
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
