"""Compliance alerts: an immediate email, apart from the daily report, when something needs action now.

Two kinds of finding raise an alert:
- a critical check failing on a host (`<instance_id>|<check_id>`), for hosts that are NON_COMPLIANT (a waived
  failure is WAIVED, not a finding);
- the fleet's compliance below `alert_threshold_pct` (`#fleet|compliance_below_threshold`).

A finding alerts the first day it is seen; while it stays open it is quiet, and alerts again only once it has
been open `alert_repeat_days` since its last alert. A finding that disappears is closed; if it comes back it is
new again. The open findings and when each was first seen and last alerted are kept per audit day in the
evidence table (item `#alerts`), so the decision survives workers, reruns and restarts. Pure functions here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from include.core.clock import days_between
from include.core.status import Status
from include.evidence.records import EvidenceItem
from include.report.rendering import render

THRESHOLD_KEY = "#fleet|compliance_below_threshold"
MAX_ROWS = 200  # an email lists at most this many findings; the count is always complete


@dataclass(frozen=True)
class Finding:
    key: str
    instance_id: str
    check_id: str
    detail: str


@dataclass
class AlertDecision:
    alert: list[Finding] = field(default_factory=list)  # new, or reminders of long-open ones
    reminders: set[str] = field(default_factory=set)  # keys in `alert` that are reminders
    closed: list[str] = field(default_factory=list)  # open the previous time, gone now
    state: dict[str, dict[str, str]] = field(default_factory=dict)  # key → {first_seen, last_alerted}


def current_findings(items: list[EvidenceItem], critical_checks: set[str], compliance_pct: float | None,
                     threshold_pct: float) -> list[Finding]:
    found = []
    for item in items:
        if item.status != Status.NON_COMPLIANT:
            continue
        for check_id in sorted(set(item.failed_checks) & critical_checks):
            detail = str((item.checks.get(check_id) or {}).get("detail", ""))[:200]
            found.append(Finding(f"{item.instance_id}|{check_id}", item.instance_id, check_id, detail))
    if threshold_pct > 0 and compliance_pct is not None and compliance_pct < threshold_pct:
        found.append(Finding(THRESHOLD_KEY, "fleet", "compliance_below_threshold",
                             f"compliance {compliance_pct}% is below the alert threshold {threshold_pct}%"))
    return found



def decide(findings: list[Finding], previous_state: dict[str, dict[str, str]], day: str,
           repeat_after_days: int) -> AlertDecision:
    decision = AlertDecision()
    for f in findings:
        before = previous_state.get(f.key)
        if before is None:
            decision.alert.append(f)
            decision.state[f.key] = {"first_seen": day, "last_alerted": day}
        elif repeat_after_days > 0 and days_between(before["last_alerted"], day) >= repeat_after_days:
            decision.alert.append(f)
            decision.reminders.add(f.key)
            decision.state[f.key] = {"first_seen": before["first_seen"], "last_alerted": day}
        else:
            decision.state[f.key] = dict(before)
    now = {f.key for f in findings}
    decision.closed = sorted(k for k in previous_state if k not in now)
    return decision


@dataclass(frozen=True)
class AlertRow:
    """One alerted finding as every channel shows it (the email's table row, Slack's line, SNS's JSON entry)."""
    instance_id: str
    name: str
    check_id: str
    state: str  # "new", or "still open since <first seen>"
    detail: str
    reminder: bool
    first_seen: str

    def cells(self) -> list[str]:
        return [self.instance_id, self.name, self.check_id, self.state, self.detail]


def alert_rows(decision: AlertDecision, names: dict[str, str], limit: int = MAX_ROWS) -> list[AlertRow]:
    """The first `limit` alerted findings, in the decision's order (the count is len(decision.alert))."""
    rows = []
    for f in decision.alert[:limit]:
        reminder = f.key in decision.reminders
        first_seen = decision.state.get(f.key, {}).get("first_seen", "")
        rows.append(AlertRow(f.instance_id, names.get(f.instance_id, ""), f.check_id,
                             f"still open since {first_seen}" if reminder else "new", f.detail, reminder,
                             first_seen))
    return rows


def alerted_hosts(decision: AlertDecision, new_only: bool = False) -> list[str]:
    """Hosts with an alerted critical finding (the fleet threshold is not a host); `new_only`: hosts with a
    finding alerting for the first time, i.e. newly failing, not only reminded of."""
    return sorted({f.instance_id for f in decision.alert if f.key != THRESHOLD_KEY
                   and not (new_only and f.key in decision.reminders)})


def subject(day: str, decision: AlertDecision, compliance_pct: float | None) -> str:
    hosts = len(alerted_hosts(decision))
    parts = []
    if any(f.key == THRESHOLD_KEY for f in decision.alert):
        parts.append(f"compliance {compliance_pct}% below threshold")
    if hosts:
        parts.append(f"critical checks failing on {hosts} host{'s' if hosts != 1 else ''}")
    return f"ALERT EC2 audit compliance {day}: " + "; ".join(parts)


def render_html(day: str, decision: AlertDecision, names: dict[str, str], report_hint: str) -> str:
    rows = [row.cells() for row in alert_rows(decision, names)]
    return render("alert.html", day=day, total=len(decision.alert), report_hint=report_hint, rows=rows,
                  more=len(decision.alert) - MAX_ROWS, closed=len(decision.closed))
