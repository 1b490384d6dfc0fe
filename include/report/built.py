"""What build_report returns: where the day's report files are and its headline numbers (typed record XCom
carries as a plain dict, pure). The send, alert, export and confirm steps read it."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.xcom import known_fields


@dataclass(frozen=True)
class Built:
    audit_date: str
    run_id: str
    mode: str
    subject: str = ""  # the email's subject
    paths: dict[str, str] = field(default_factory=dict)  # kind (html, csv, json, ocsf, ...) → path or s3:// URL
    compliance_pct: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    checked: int = 0
    discovered: int = 0
    failed_batches: int = 0  # batches that failed after all retries: confirm_complete fails the run

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Built":
        return cls(**known_fields(cls, value))
