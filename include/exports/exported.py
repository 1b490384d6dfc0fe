"""What export_findings returns through XCom: why it exported nothing, or each account's counts (typed record,
pure). The XCom dict keeps its shape: `{"skipped": reason}` or `{account_id: counts}`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SKIPPED = "skipped"


@dataclass(frozen=True)
class Exported:
    skipped: str = ""  # why nothing was exported (securityhub off, a rebuild); "" when it ran
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # account id → export_day's counts

    def to_xcom(self) -> dict[str, Any]:
        return {SKIPPED: self.skipped} if self.skipped else dict(self.accounts)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Exported":
        # An account id is 12 digits, never "skipped".
        if value.get(SKIPPED):
            return cls(skipped=str(value[SKIPPED]))
        return cls(accounts={k: dict(v) for k, v in value.items() if k != SKIPPED})
