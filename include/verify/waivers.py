"""Waivers: an approved, expiring exception for one check on some hosts (pure functions).

File format (JSON list), param `waivers_file`:
    [{"instance_id": "i-0abc…"  or  "tags": {"Environment": "dev"},
      "check_id": "auditd.immutable" (or "*"), "justification": "…", "approver": "…", "expires": "2026-12-31"}]
A waiver applies through its `expires` day (inclusive). A host whose every failed check is covered is WAIVED;
otherwise it stays NON_COMPLIANT with only the uncovered checks in failed_checks.

The file is checked against WAIVERS_SCHEMA (include/settings/schema.py) and each `expires` must be exactly
YYYY-MM-DD and a real day; expiry is compared as dates. (Python's `date.fromisoformat` also accepts the basic
format "20260101", and a string compare then keeps that waiver active all year: both are refused here.)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from include.core.host import Host
from include.core.status import Status
from include.settings.schema import WAIVERS_SCHEMA, file_problems, read_json_file


def parse_day(value: str | date, what: str = "date") -> date:
    """A day written exactly YYYY-MM-DD (a `date` passes through); ValueError naming `what` otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        day = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        day = None
    if day is None or day.isoformat() != value:  # refuses "20260101", "2026-1-1", "2026-01-01T00:00"
        raise ValueError(f"{what}: {value!r} is not a date written YYYY-MM-DD (e.g. 2026-01-01)")
    return day


@dataclass(frozen=True)
class Waiver:
    check_id: str
    justification: str
    approver: str
    expires: date  # the last day it applies; a "YYYY-MM-DD" string is parsed (strictly) into a date
    instance_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "expires", parse_day(self.expires, "expires"))

    def label(self) -> str:
        scope = self.instance_id or ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return f"{self.check_id} on {scope} until {self.expires} (approved by {self.approver})"

    def selects(self, host: Host) -> bool:
        if self.instance_id:
            return host.instance_id == self.instance_id
        return bool(self.tags) and all(host.tags.get(k) == v for k, v in self.tags.items())

    def covers(self, check_id: str) -> bool:
        return self.check_id in ("*", check_id)

    def active_on(self, audit_date: str | date) -> bool:
        return parse_day(audit_date, "audit date") <= self.expires


def load_waivers(path: str | None) -> list[Waiver]:
    """The waivers file (param `waivers_file`; None or "" = no waivers), checked against WAIVERS_SCHEMA.

    One ValueError lists every problem, each naming the file, the entry (#n, from 1) and the field."""
    if not path:
        return []
    what = "waivers_file"
    data = read_json_file(what, path)
    problems = file_problems(what, path, data, WAIVERS_SCHEMA)
    if not problems:
        known = _known_check_ids()
        for n, w in enumerate(data, 1):
            try:
                parse_day(w["expires"], f"{what} {path}: entry #{n}, field expires")
            except ValueError as exc:
                problems.append(str(exc))
            if known and w["check_id"] != "*" and w["check_id"] not in known:
                problems.append(f"{what} {path}: entry #{n}, field check_id: {w['check_id']!r} is not a known check "
                                "(see docs/CHECKS.md) or \"*\"")
    if problems:
        raise ValueError("; ".join(problems))
    return [Waiver(w["check_id"], w["justification"], w["approver"], w["expires"], w.get("instance_id"),
                   dict(w.get("tags") or {})) for w in data]


def _known_check_ids() -> set[str]:
    from include.checks.catalogue import CATALOGUE

    return {c.id for c in CATALOGUE}


def apply_waivers(host: Host, status: Status, failed: list[str], waivers: list[Waiver],
                  audit_date: str) -> tuple[Status, list[str], list[str]]:
    """(status, still-failing checks, waived checks with the waiver that covers each)."""
    if status != Status.NON_COMPLIANT or not waivers:
        return status, failed, []
    active = [w for w in waivers if w.active_on(audit_date) and w.selects(host)]
    waived, remaining = [], []
    for check in failed:
        cover = next((w for w in active if w.covers(check)), None)
        (waived.append(f"{check}: {cover.label()}") if cover else remaining.append(check))
    if waived and not remaining:
        return Status.WAIVED, [], waived
    return status, remaining, waived


def waiver_status(waivers: list[Waiver], audit_date: str, soon_days: int = 14) -> Mapping[str, list[Waiver]]:
    """Waivers in force, expiring within `soon_days`, and expired — for the report."""
    soon = parse_day(audit_date, "audit date") + timedelta(days=soon_days)
    return {
        "in_force": [w for w in waivers if w.active_on(audit_date)],
        "expiring_soon": [w for w in waivers if w.active_on(audit_date) and w.expires <= soon],
        "expired": [w for w in waivers if not w.active_on(audit_date)],
    }
