"""Waivers: an approved, expiring exception for one check on some hosts (pure functions).

File format (JSON list), param `waivers_file`:
    [{"instance_id": "i-0abc…"  or  "tags": {"Environment": "dev"},
      "check_id": "auditd.immutable" (or "*"), "justification": "…", "approver": "…", "expires": "2026-12-31"}]
A waiver applies through its `expires` day (inclusive). A host whose every failed check is covered is WAIVED;
otherwise it stays NON_COMPLIANT with only the uncovered checks in failed_checks.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from include.models import Host, Status


@dataclass(frozen=True)
class Waiver:
    check_id: str
    justification: str
    approver: str
    expires: str  # YYYY-MM-DD
    instance_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def label(self) -> str:
        scope = self.instance_id or ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return f"{self.check_id} on {scope} until {self.expires} (approved by {self.approver})"

    def selects(self, host: Host) -> bool:
        if self.instance_id:
            return host.instance_id == self.instance_id
        return bool(self.tags) and all(host.tags.get(k) == v for k, v in self.tags.items())

    def covers(self, check_id: str) -> bool:
        return self.check_id in ("*", check_id)

    def active_on(self, audit_date: str) -> bool:
        return audit_date <= self.expires


def load_waivers(path: str) -> list[Waiver]:
    if not path:
        return []
    data = json.loads(Path(path).read_text())
    waivers = []
    for n, w in enumerate(data):
        missing = [k for k in ("check_id", "justification", "approver", "expires") if not w.get(k)]
        if missing or not (w.get("instance_id") or w.get("tags")):
            raise ValueError(f"waiver #{n + 1} in {path}: needs instance_id or tags, and {missing or 'more'}")
        date.fromisoformat(w["expires"])  # a clear error for a bad date
        waivers.append(Waiver(w["check_id"], w["justification"], w["approver"], w["expires"],
                              w.get("instance_id"), dict(w.get("tags") or {})))
    return waivers


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
    soon = (date.fromisoformat(audit_date) + timedelta(days=soon_days)).isoformat()
    return {
        "in_force": [w for w in waivers if w.active_on(audit_date)],
        "expiring_soon": [w for w in waivers if w.active_on(audit_date) and w.expires <= soon],
        "expired": [w for w in waivers if not w.active_on(audit_date)],
    }
