"""Pure scoring: check verdicts → host status, host statuses → fleet numbers."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from include.core.status import CheckStatus, Status, Verdict


@dataclass(frozen=True)
class HostScore:
    status: Status
    failed: list[str]  # the profile's failing checks (contract: failed_checks)
    advisory: list[str]  # failing checks outside the profile (contract: advisory_failed)


def score_host(verdicts: Mapping[str, Verdict], decides: Callable[[str], bool] = lambda _: True,
               complete: bool = True) -> HostScore:
    """Status of a host whose session ran, under a profile (`decides(check_id)`).

    A definite failure of a profile check outranks an error elsewhere: the host is known to be non-compliant
    even if another check could not be evaluated (the error stays visible in the per-check detail). Output
    that was cut short or not recognised is never COMPLIANT: what could not be seen is ERROR, not PASS.
    Checks outside the profile never change the status; their failures are reported as advisory.
    """
    failing = sorted(cid for cid, v in verdicts.items() if v.status == CheckStatus.FAIL)
    failed = [c for c in failing if decides(c)]
    advisory = [c for c in failing if not decides(c)]
    if failed:
        return HostScore(Status.NON_COMPLIANT, failed, advisory)
    errors = any(v.status == CheckStatus.ERROR for cid, v in verdicts.items() if decides(cid))
    if errors or not complete or not any(decides(cid) for cid in verdicts):
        return HostScore(Status.ERROR, [], advisory)
    return HostScore(Status.COMPLIANT, [], advisory)


TRUNCATED_DETAIL = "output exceeded the size cap and was truncated: the checks it cut off are ERROR"
INCOMPLETE_DETAIL = "script output incomplete or unrecognised"


def scored(verdicts: Mapping[str, Verdict], decides: Callable[[str], bool], profile_name: str,
           complete: bool = True, truncated: bool = False) -> tuple[HostScore, str]:
    """score_host and its one-line status detail: the one place a judged host's status is decided (the verify
    batch, and the run-level step that corrects a verdict afterwards: include/verify/name_claims.py)."""
    score = score_host(verdicts, decides, complete and not truncated)
    if truncated:
        return score, TRUNCATED_DETAIL
    if not complete:
        return score, INCOMPLETE_DETAIL
    if score.status == Status.ERROR:
        return score, "; ".join(f"{c}: {v.detail}" for c, v in verdicts.items()
                                if v.status == CheckStatus.ERROR and decides(c)) or "no profile check evaluated"
    passed = sum(v.status == CheckStatus.PASS for c, v in verdicts.items() if decides(c))
    not_applicable = sum(v.status == CheckStatus.NOT_APPLICABLE for c, v in verdicts.items() if decides(c))
    return score, f"{profile_name}: {passed} passed, {len(score.failed)} failed, {not_applicable} not applicable"


def host_status(verdicts: Mapping[str, Verdict]) -> tuple[Status, list[str]]:
    """score_host with every check deciding (status, failed ids)."""
    score = score_host(verdicts)
    return score.status, score.failed


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
    scorable = checked - sum(n for s, n in counts.items() if (st := Status.parse(s)) is not None and not st.scorable)
    compliance = round(100.0 * counts[Status.COMPLIANT.value] / scorable, 1) if scorable else None
    coverage = round(100.0 * checked / discovered, 1) if discovered else None
    full = {s.value: counts.get(s.value, 0) for s in Status}
    return FleetSummary(discovered, checked, full, compliance, coverage)


@dataclass(frozen=True)
class HardeningSummary:
    """Hardening depth beside the audit-trail answer: hosts meeting every hardening check, and the gaps."""

    assessed: int  # hosts whose hardening checks were all evaluated (PASS/FAIL)
    hardened: int
    pct: float | None
    gaps: dict[str, int]  # check id → hosts failing it, most common first


def hardening_summary(items: Iterable[Mapping], checks: Iterable[str]) -> HardeningSummary:
    checks = tuple(checks)
    assessed = hardened = 0
    gaps: Counter[str] = Counter()
    for item in items:
        results = item.get("checks") or {}
        states = [str((results.get(c) or {}).get("status", "")) for c in checks]
        if not checks or not all(s in ("PASS", "FAIL") for s in states):
            continue
        assessed += 1
        failing = [c for c, s in zip(checks, states) if s == "FAIL"]
        gaps.update(failing)
        hardened += not failing
    pct = round(100.0 * hardened / assessed, 1) if assessed else None
    return HardeningSummary(assessed, hardened, pct, dict(gaps.most_common()))


def judged_under(items: Iterable[Mapping]) -> tuple[str, ...]:
    """The profile(s) the items' statuses were judged under (each item records its run's profile)."""
    return tuple(sorted({str(it.get("profile")) for it in items if it.get("profile")}))
