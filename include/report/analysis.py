"""Pure report analytics on evidence items: compliance by dimension and drift since the previous day."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from include.core.scoring import fleet_summary
from include.core.status import Status


def breakdown(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Compliance per value of `by` (environment, region, account_id), worst first."""
    if frame.empty:
        return pd.DataFrame(columns=[by, "checked", "compliant", "failing", "compliance_pct"])
    data = frame.assign(
        _compliant=frame["status"].eq(Status.COMPLIANT.value),
        _failing=frame["status"].eq(Status.NON_COMPLIANT.value),
    )
    data[by] = data[by].replace("", "(none)")
    grouped = data.groupby(by, dropna=False).agg(
        checked=("status", "size"), compliant=("_compliant", "sum"),
        failing=("_failing", "sum")).reset_index()
    # The one compliance formula (include/core/scoring.py), per group.
    pcts = data.groupby(by, dropna=False)["status"].apply(lambda g: fleet_summary(g, len(g)).compliance_pct)
    grouped["compliance_pct"] = grouped[by].map(pcts).astype(float)
    return grouped.sort_values(["compliance_pct", by], na_position="last").reset_index(drop=True)


@dataclass
class Drift:
    previous_day: str | None
    newly_failing: list[str] = field(default_factory=list)  # not NON_COMPLIANT before, NON_COMPLIANT now
    fixed: list[str] = field(default_factory=list)  # NON_COMPLIANT before, COMPLIANT now
    new: list[str] = field(default_factory=list)  # no item the previous day
    vanished: list[str] = field(default_factory=list)  # an item the previous day, none today

    @property
    def has_baseline(self) -> bool:
        return self.previous_day is not None


def drift(today: list[dict], previous: list[dict], previous_day: str | None) -> Drift:
    if previous_day is None or not previous:
        return Drift(None, new=sorted(it["instance_id"] for it in today))
    now = {it["instance_id"]: it.get("status") for it in today}
    before = {it["instance_id"]: it.get("status") for it in previous}
    return Drift(
        previous_day,
        newly_failing=sorted(i for i, s in now.items() if s == "NON_COMPLIANT" and i in before
                             and before[i] != "NON_COMPLIANT"),
        fixed=sorted(i for i, s in now.items() if s == "COMPLIANT" and before.get(i) == "NON_COMPLIANT"),
        new=sorted(set(now) - set(before)),
        vanished=sorted(set(before) - set(now)),
    )
