"""The one clock helper: the wall clock in UTC, its stored text form, an item's TTL from its audit day, and the
days between two audit days."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """Second precision, `Z`: the form every stored timestamp takes."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_moment(text: object) -> datetime | None:
    """An ISO-8601 moment (`Z`, an offset, fractions) as an aware UTC datetime, a naive one read as UTC; None when
    it is not one. Every reader of a stored or received timestamp parses it here."""
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def expires_at(audit_date: str, ttl_days: int) -> int:
    """Epoch seconds `ttl_days` after the audit day's midnight UTC: DynamoDB TTL's `expires_at`."""
    day = datetime.strptime(audit_date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int((day + timedelta(days=ttl_days)).timestamp())


def days_between(first: str, second: str) -> int:
    """Whole days from audit day `first` to audit day `second` (YYYY-MM-DD): how long a finding has been open."""
    return (date.fromisoformat(second) - date.fromisoformat(first)).days
