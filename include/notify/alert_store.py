"""The compliance-alert state in the evidence table (include/notify/alerts.py): one item a day holding the
open findings and what each channel was already sent."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.aws.day_table import DayTable

ALERTS_ID = "#alerts"  # instance_id of the per-day compliance-alert state


class AlertStateStore:
    """The alert owner's reads and writes, over the table layer."""

    def __init__(self, table: DayTable) -> None:
        self.table = table

    def alert_state(self, audit_date: str) -> dict | None:
        return self.table.get_day_item(ALERTS_ID, audit_date)

    def previous_alert_state(self, audit_date: str) -> dict[str, dict[str, str]]:
        """Open findings as of the latest day before `audit_date` that recorded alert state."""
        item = self.table.latest_day_item(ALERTS_ID, before=audit_date)
        return dict(item.get("open") or {}) if item else {}

    def put_alert_state(self, audit_date: str, state: Mapping[str, Any], ttl_days: int) -> None:
        self.table.put_day_item(ALERTS_ID, "alert_state", audit_date, state, ttl_days)
