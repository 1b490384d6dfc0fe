"""What the watch passes between its steps (CONTRACT "Security events and checks between runs").

A message on the events queue (an EventBridge EC2 state change, a CloudWatch Logs subscription payload sent on by
the forwarder, a silence sweep's own message, or one replayed by hand) becomes zero or more `WatchEvent`s
(include/watch/messages.py); what cannot be read becomes a `Rejected`, logged and counted, never retried. The
events of one run fold into one `Recheck` per host (include/watch/plan.py): the host is checked once, through the
daily path, with the trigger of its most serious event.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from include.core.record import plain

# The watch's triggers (include/evidence/observation.py TRIGGERS has them too), most serious first: a host with
# several events in one run is re-checked once, as its most serious one.
LAUNCH, TAMPER, SILENCE = "launch", "tamper", "silence"
PRIORITY = (TAMPER, SILENCE, LAUNCH)

# What an audit record of tampering says (include/watch/tamper.py classifies a record into one of these).
RULES_DELETED = "rules_deleted"  # CONFIG_CHANGE ... op=remove_rule: alerts at once
AUDIT_DISABLED = "audit_disabled"  # CONFIG_CHANGE ... audit_enabled=0: alerts at once
DAEMON_STOPPED = "daemon_stopped"  # DAEMON_END / DAEMON_ABORT / SERVICE_STOP unit=auditd: alerts only if the re-check fails
CONFIG_CHANGED = "config_changed"  # another CONFIG_CHANGE of the audit configuration: re-checked, no alert of its own
TAMPER_KINDS = (RULES_DELETED, AUDIT_DISABLED, DAEMON_STOPPED, CONFIG_CHANGED)
ALERT_AT_ONCE = (RULES_DELETED, AUDIT_DISABLED)


class _Plain:
    """XCom as plain dicts, read back ignoring keys a newer or older payload has."""

    def to_xcom(self) -> dict[str, Any]:
        return plain(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]):
        return cls(**{k: value[k] for k in cls.__dataclass_fields__ if k in value})  # type: ignore[attr-defined]


@dataclass(frozen=True)
class WatchEvent(_Plain):
    """One thing that happened to one host (or to one log stream whose owner is still to be proven)."""

    trigger: str  # launch | tamper | silence
    region: str
    at: str  # ISO-8601 UTC: when it happened (EventBridge `time`, the log event's timestamp, the sweep's moment)
    instance_id: str = ""  # "" until the stream's owner is proven (tamper records from a stream not named by id)
    account: str = ""  # the audited account ("" = the aws_default connection's own)
    tamper: str = ""  # one of TAMPER_KINDS for trigger tamper
    record: str = ""  # what happened, as AWS or the host said it (the audit record line, capped), for the alert
    log_group: str = ""
    log_stream: str = ""
    source: str = ""  # which message shape: ec2-state | audit-log | sweep | replay
    message_id: str = ""  # the SQS MessageId (or "replay-<n>"): duplicates of one message fold by it


@dataclass(frozen=True)
class Rejected(_Plain):
    """A message (or one part of it) the watch could not use: why, and a short excerpt for the log."""

    reason: str  # e.g. "not JSON", "foreign: source aws.s3", "no host owns stream /ec2/audit web-1"
    excerpt: str = ""
    message_id: str = ""
    ignored: bool = False  # expected and harmless (a `stopped` state, a non-tamper record): counted, not warned


@dataclass(frozen=True)
class Recheck(_Plain):
    """One host to re-check in this run: its events folded (a burst of 1,000 records is one Recheck)."""

    instance_id: str
    region: str
    trigger: str  # the most serious of its events' triggers (PRIORITY)
    account: str = ""
    first_at: str = ""  # the earliest event's moment
    last_at: str = ""  # the latest event's moment: an observation started after it already answers the events
    not_before: str = ""  # ISO-8601 UTC: a launch waits launch_grace_minutes for the host to boot
    events: int = 0  # how many events folded into it
    tamper: list[str] = field(default_factory=list)  # the tamper kinds seen, in PRIORITY order of TAMPER_KINDS
    records: list[str] = field(default_factory=list)  # up to 5 distinct records (the alert quotes the first)
    look: int = 1  # 1 = the re-check the events asked for; 2 = the second look after tamper_grace_minutes


@dataclass(frozen=True)
class WatchPlan:
    """What one watch run was given and what it will do (include/tasks/watch.py: collect)."""

    audit_date: str  # the UTC day the re-checks start: they belong to it (CONTRACT, Evidence)
    run_id: str
    due: list[Recheck] = field(default_factory=list)  # checked by this run
    deferred: list[Recheck] = field(default_factory=list)  # sent back to the queue until their not_before
    folded: list[str] = field(default_factory=list)  # "<id>: already observed at <checked_at>, after its events"
    messages: int = 0
    events: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason → count (logged, never retried)
    alerted: str = ""  # what alert_at_once said
    wait_until: str = ""  # ISO-8601 UTC: when the due re-checks may start (a replayed launch's boot), else now

    def to_xcom(self) -> dict[str, Any]:
        return plain(asdict(self))

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "WatchPlan":
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        for key in ("due", "deferred"):
            known[key] = [Recheck.from_xcom(r) for r in known.get(key, [])]
        return cls(**known)
