"""What store_evidence returns once it sealed a day (typed record XCom carries as a plain dict, pure)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
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

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Sealed":
        return cls(**known_fields(cls, value))
