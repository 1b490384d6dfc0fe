"""The report, its email, its JSON and the dashboard show the manifest hash they were built from: the day's
latest seal as its run summary names it (include/report/build.py: Sealing)."""
from __future__ import annotations

import json

from include.evidence.records import RunSummary
from include.report import dashboard
from include.report.build import Sealing, write_report
from tests.unit.report.test_dashboard import ITEMS as DASHBOARD_ITEMS
from tests.unit.report.test_dashboard import summary_of
from tests.unit.report.test_report import build

MANIFEST, EARLIER = "ab" * 32, "cd" * 32
SUMMARY = RunSummary(run_id="run-1", manifest_sha256=MANIFEST, previous_manifest_sha256=EARLIER, seal_seq=7)
LINE = f"Evidence manifest {MANIFEST} (seal #7)"


def test_the_report_and_its_email_carry_the_manifest_of_the_stored_summary():
    report = build(seal=Sealing.of(SUMMARY))
    assert LINE in report.html and LINE in report.email_html


def test_the_json_carries_the_manifest_its_seal_and_the_days_earlier_manifest(tmp_path):
    paths = write_report(build(seal=Sealing.of(SUMMARY)), tmp_path, "2026-11-23", run_id="run-1", mode="live")
    machine = json.loads(open(paths["json"]).read())
    assert (machine["manifest_sha256"], machine["seal_seq"], machine["previous_manifest_sha256"]) == \
        (MANIFEST, 7, EARLIER)
    assert LINE in open(paths["email_html"]).read()


def test_a_day_never_sealed_says_so_rather_than_showing_a_hash(tmp_path):
    assert Sealing.of(RunSummary(run_id="old")) is None and Sealing.of(None) is None
    report = build()
    assert "Evidence manifest: none" in report.html and "Evidence manifest: none" in report.email_html
    machine = json.loads(open(write_report(report, tmp_path, "2026-11-23")["json"]).read())
    assert (machine["manifest_sha256"], machine["seal_seq"]) == ("", 0)


def test_the_dashboard_shows_the_days_manifest():
    stored = summary_of(DASHBOARD_ITEMS)
    stored = RunSummary(**{**stored.__dict__, "manifest_sha256": MANIFEST, "seal_seq": 7})
    page = dashboard.fleet_page("2026-11-23", stored, DASHBOARD_ITEMS, None, {})
    assert LINE in page
