"""The one clock of devstack: UTC now, today's audit date, and the millisecond timestamps AWS APIs write.

The stand-ins (SSM, Security Hub), the e2e drivers and the benches all read the time here, so "today" and
"now" mean the same everywhere (UTC, as the audit's dates are).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def today(days_ago: int = 0) -> str:
    """The UTC date (YYYY-MM-DD) `days_ago` days before now: the audit date a run started now writes."""
    return (now() - timedelta(days=days_ago)).strftime("%Y-%m-%d")


def aws_millis(moment: datetime | None) -> str:
    """`2026-12-01T06:00:00.123Z`, as SSM's GetCommandInvocation and Security Hub write dates; "" for None."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
