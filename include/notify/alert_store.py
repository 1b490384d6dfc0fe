"""The compliance-alert state in the evidence table (include/notify/alerts.py): one item a day holding the
open findings and what each channel was already sent."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from include.aws.day_table import DayTable
from include.core.record import Record

ALERTS_ID = "#alerts"  # instance_id of the per-day compliance-alert state


@dataclass(frozen=True)
class AlertState(Record):
    """One day's compliance-alert state (partition `#alerts`), as the alert task writes it after its sends."""

    run_id: str = ""
    open: dict[str, dict[str, str]] = field(default_factory=dict)  # finding key → {first_seen, last_alerted}
    closed: list[str] = field(default_factory=list)  # keys open the day before, gone now
    alerted: list[str] = field(default_factory=list)  # keys the email already carried (any run or try of the day)
    delivered: dict[str, list[str]] = field(default_factory=dict)  # channel → keys it already got (Slack, SNS)
    generated_at: str = ""
    alerted_at: str = ""  # when this run's email went; absent when it sent none

    def to_item(self) -> dict[str, Any]:
        item = super().to_item()
        if not item["alerted_at"]:  # written only by a run whose email went, as before
            item.pop("alerted_at")
        return item


class AlertStateStore:
    """The alert owner's reads and writes, over the table layer."""

    def __init__(self, table: DayTable) -> None:
        self.table = table

    def alert_state(self, audit_date: str) -> AlertState | None:
        item = self.table.get_day_item(ALERTS_ID, audit_date)
        return AlertState.from_item(item) if item else None

    def previous_alert_state(self, audit_date: str) -> dict[str, dict[str, str]]:
        """Open findings as of the latest day before `audit_date` that recorded alert state."""
        item = self.table.latest_day_item(ALERTS_ID, before=audit_date)
        return AlertState.from_item(item).open if item else {}

    def put_alert_state(self, audit_date: str, state: AlertState, ttl_days: int) -> None:
        self.table.put_day_item(ALERTS_ID, "alert_state", audit_date, state.to_item(), ttl_days)
