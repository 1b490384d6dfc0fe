"""What store_evidence returns once it sealed a day (typed record XCom carries as a plain dict, pure)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.xcom import known_fields


@dataclass(frozen=True)
class Sealed:
    """The run's facts and the day's counts as its run summary stored them. A rebuild seals nothing: its
    counts are None (the asset event's extra says so too)."""

    audit_date: str
    run_id: str
    mode: str
    checked: int | None = None
    discovered: int | None = None
    # A targeted run's ids not found running (include/fleet/inventory.py Inventory.not_found), for the report.
    not_found: list[str] = field(default_factory=list)

    def to_xcom(self) -> dict[str, Any]:
        value = asdict(self)
        if not value["not_found"]:  # the XCom of any other run is what it was
            del value["not_found"]
        return value

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Sealed":
        return cls(**known_fields(cls, value))
