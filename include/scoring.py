"""Pure scoring: check verdicts → host status, host statuses → fleet numbers."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from include.models import CheckStatus, Status, Verdict


def host_status(verdicts: Mapping[str, Verdict]) -> tuple[Status, list[str]]:
    """Status of a host whose session ran, and the ids of its failed checks.

    A definite failure outranks an error elsewhere: the host is known to be non-compliant even if another
    check could not be evaluated (the error stays visible in the per-check detail).
    """
    failed = sorted(cid for cid, v in verdicts.items() if v.status == CheckStatus.FAIL)
    if failed:
        return Status.NON_COMPLIANT, failed
    if any(v.status == CheckStatus.ERROR for v in verdicts.values()):
        return Status.ERROR, []
    return Status.COMPLIANT, []


@dataclass(frozen=True)
class FleetSummary:
    discovered: int
    checked: int
    counts: dict[str, int]
    compliance_pct: float | None  # None when nothing is scorable
    coverage_pct: float | None

    @property
    def failing(self) -> int:
        return self.counts.get(Status.NON_COMPLIANT.value, 0)


def fleet_summary(statuses: Iterable[str], discovered: int) -> FleetSummary:
    """Compliance % = COMPLIANT / (checked − NOT_APPLICABLE − WAIVED); coverage = checked / discovered."""
    counts = Counter(str(s) for s in statuses)
    checked = sum(counts.values())
    scorable = checked - counts[Status.NOT_APPLICABLE.value] - counts[Status.WAIVED.value]
    compliance = round(100.0 * counts[Status.COMPLIANT.value] / scorable, 1) if scorable else None
    coverage = round(100.0 * checked / discovered, 1) if discovered else None
    full = {s.value: counts.get(s.value, 0) for s in Status}
    return FleetSummary(discovered, checked, full, compliance, coverage)
