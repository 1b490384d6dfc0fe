"""What a run knows before it contacts a host (typed records XCom carries as plain dicts, pure)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.xcom import known_fields


@dataclass(frozen=True)
class RunFacts:
    """The run's audit day, run id and resolved mode (`live` | `rebuild`)."""

    audit_date: str
    run_id: str
    mode: str

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "RunFacts":
        return cls(**known_fields(cls, value))


@dataclass(frozen=True)
class Inventory:
    """What discovery found: running instance ids and instance-state counts per scope (include/aws/accounts.py
    scope keys), with the run's facts. A rebuild discovers nothing."""

    audit_date: str
    run_id: str
    mode: str
    instances: dict[str, list[str]] = field(default_factory=dict)
    states: dict[str, dict[str, int]] = field(default_factory=dict)
    discovered: int = 0

    @property
    def facts(self) -> RunFacts:
        return RunFacts(self.audit_date, self.run_id, self.mode)

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Inventory":
        return cls(**known_fields(cls, value))
