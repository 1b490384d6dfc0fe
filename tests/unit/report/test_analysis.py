"""Breakdowns and drift, against counts computed by hand here."""
from __future__ import annotations

import pandas as pd

from include.report.analysis import breakdown, drift


def frame(rows):
    return pd.DataFrame(rows, columns=["instance_id", "environment", "region", "account_id", "status"])


def test_breakdown_by_environment():
    f = frame([("i-1", "prod", "r", "a", "COMPLIANT"), ("i-2", "prod", "r", "a", "NON_COMPLIANT"),
               ("i-3", "prod", "r", "a", "NOT_APPLICABLE"), ("i-4", "dev", "r", "a", "COMPLIANT"),
               ("i-5", "", "r", "a", "UNREACHABLE")])
    table = breakdown(f, "environment").set_index("environment")
    assert table.loc["prod", "checked"] == 3 and table.loc["prod", "compliance_pct"] == 50.0
    assert table.loc["dev", "compliance_pct"] == 100.0
    assert table.loc["(none)", "compliance_pct"] == 0.0 and table.loc["(none)", "failing"] == 0
    assert list(table.index)[0] == "(none)"  # worst first


def test_breakdown_nothing_scorable_is_nan_not_zero():
    table = breakdown(frame([("i-1", "win", "r", "a", "NOT_APPLICABLE")]), "environment")
    assert pd.isna(table.loc[0, "compliance_pct"])
    assert breakdown(frame([]), "region").empty


def test_drift_lists():
    from include.evidence.records import EvidenceItem

    previous = [{"instance_id": "i-1", "status": "COMPLIANT"}, {"instance_id": "i-2", "status": "NON_COMPLIANT"},
                {"instance_id": "i-3", "status": "COMPLIANT"}, {"instance_id": "i-4", "status": "UNREACHABLE"}]
    today = [{"instance_id": "i-1", "status": "NON_COMPLIANT"}, {"instance_id": "i-2", "status": "COMPLIANT"},
             {"instance_id": "i-4", "status": "NON_COMPLIANT"}, {"instance_id": "i-5", "status": "COMPLIANT"}]
    today, previous = [EvidenceItem.from_item(it) for it in today], [EvidenceItem.from_item(it) for it in previous]
    d = drift(today, previous, "2026-11-22")
    assert d.newly_failing == ["i-1", "i-4"] and d.fixed == ["i-2"] and d.new == ["i-5"] and d.vanished == ["i-3"]
    first = drift(today, [], None)
    assert not first.has_baseline and first.new == ["i-1", "i-2", "i-4", "i-5"]
