"""The 30-day trend: compliance % and failing hosts per audit day, as a PNG (matplotlib, headless)."""
from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import date, timedelta

from include.evidence.records import RunSummary

TREND_DAYS = 30


def trend_window(audit_date: str, days: int = TREND_DAYS) -> tuple[str, str]:
    last = date.fromisoformat(audit_date)
    return (last - timedelta(days=days - 1)).isoformat(), last.isoformat()


def trend_points(summaries: Mapping[str, RunSummary], audit_date: str, days: int = TREND_DAYS) -> list[dict]:
    """One point per calendar day of the window (`summaries`: audit day → its run summary, as
    EvidenceStore.summaries reads them); days without a summary are gaps (None), never zeros."""
    from include.core.status import Status

    first, _ = trend_window(audit_date, days)
    points = []
    for n in range(days):
        day = (date.fromisoformat(first) + timedelta(days=n)).isoformat()
        s = summaries.get(day)
        pct = s.compliance_pct if s else None
        failing = s.status_counts.get(Status.NON_COMPLIANT.value) if s else None
        points.append({"day": day, "compliance_pct": None if pct is None else float(pct),
                       "failing": None if failing is None else int(failing)})
    return points


def render_png(points: list[dict], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    days = [p["day"][5:] for p in points]
    pct = [p["compliance_pct"] for p in points]
    failing = [p["failing"] if p["failing"] is not None else 0 for p in points]
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    ax2 = ax.twinx()
    ax2.bar(days, failing, color="#cf222e", alpha=0.25, label="failing hosts")
    ax.plot(days, [float("nan") if v is None else v for v in pct], color="#1a7f37", marker="o", markersize=3,
            linewidth=1.8, label="compliance %")
    ax.set_ylim(0, 100)
    ax.set_ylabel("compliance %")
    ax2.set_ylabel("failing hosts")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xticks(range(0, len(days), max(1, len(days) // 10)))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def chart_for_day(store, audit_date: str) -> bytes:
    """The report's and the dashboard's chart: the window's run summaries (one Query) drawn for `audit_date`."""
    points = trend_points(store.summaries(*trend_window(audit_date)), audit_date)
    return render_png(points, f"Compliance, last {TREND_DAYS} days to {audit_date}")
