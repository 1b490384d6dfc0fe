"""What one verify batch returns through XCom: counts only, never per-host output (typed record, pure)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.xcom import known_fields


@dataclass(frozen=True)
class BatchResult:
    """One batch's outcome. `failed`: it failed after all retries (its hosts are coverage gaps, `error` says
    why); store_summary counts the day from DynamoDB, not from these."""

    label: str
    region: str
    hosts: int
    counts: dict[str, int] = field(default_factory=dict)  # status → hosts judged by this try
    already_recorded: int = 0  # stored by an earlier try of the batch, not checked again
    no_longer_running: int = 0  # stopped or gone since discovery
    transports: dict[str, int] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    failed: bool = False
    error: str = ""

    @classmethod
    def failure(cls, label: str, region: str, hosts: int, error: str) -> "BatchResult":
        return cls(label, region, hosts, failed=True, error=error[:300])

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "BatchResult":
        return cls(**known_fields(cls, value))
