"""Report numbers, escaping and CSV safety, computed independently here."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

from include.checks.catalogue import check_meta
from include.evidence.records import EvidenceItem
from include.report.build import build_report, safe_cell, write_report
from tests.factories import stored_item

NOW = datetime(2026, 11, 23, 6, 30, tzinfo=timezone.utc)


def item(iid, status, failed=(), name="host", env="prod", detail=""):
    return stored_item(iid, status, failed, detail=lambda c: f"{c} is off", audit_date="2026-11-23", run_id="run-1",
                       name=name, environment=env, region="us-east-1", account_id="123456789012",
                       private_ip="10.0.0.1", status_detail=detail, expires_at=Decimal(1799999999))


ITEMS = [item("i-1", "COMPLIANT"), item("i-2", "COMPLIANT"), item("i-3", "COMPLIANT"),
         item("i-4", "NON_COMPLIANT", ["auditd.running", "cwagent.log_stream_fresh"]),
         item("i-5", "UNREACHABLE", detail="connection refused"), item("i-6", "NOT_APPLICABLE"),
         item("i-7", "AUTH_FAILED", detail="key refused")]


def build(items=ITEMS, **kw):
    args = dict(audit_date="2026-11-23", discovered=8, run_id="run-1", mode="live", generated_at=NOW,
                check_meta=check_meta())
    args.update(kw)
    if args.get("previous_items"):
        args["previous_items"] = [EvidenceItem.from_item(i) for i in args["previous_items"]]
    return build_report([EvidenceItem.from_item(i) for i in items], **args)  # as the store's reads give them


def test_numbers_match_an_independent_count():
    report = build()
    compliant = sum(i["status"] == "COMPLIANT" for i in ITEMS)
    scorable = sum(i["status"] not in ("NOT_APPLICABLE", "WAIVED") for i in ITEMS)
    assert report.summary.compliance_pct == round(100 * compliant / scorable, 1) == 50.0
    assert report.summary.coverage_pct == round(100 * 7 / 8, 1)
    assert report.subject == "EC2 audit compliance 2026-11-23: 50.0% (1 failing)"


def test_csv_has_one_row_per_instance_sorted_by_severity():
    rows = list(csv.DictReader(io.StringIO(build().csv)))
    assert [r["instance_id"] for r in rows][:3] == ["i-4", "i-7", "i-5"]
    assert len(rows) == len(ITEMS)
    assert rows[0]["failed_checks"] == "auditd.running;cwagent.log_stream_fresh"


def test_hostile_values_are_escaped_and_formula_safe():
    evil = [item("i-9", "NON_COMPLIANT", ["auditd.running"], name="<script>alert(1)</script>",
                 env="=HYPERLINK(\"http://x\")"), item("i-8", "COMPLIANT", name="@SUM(A1)", env="+1-2")]
    report = build(evil, discovered=2)
    assert "<script>" not in report.html and "&lt;script&gt;" in report.html
    rows = {r["instance_id"]: r for r in csv.DictReader(io.StringIO(report.csv))}
    assert rows["i-9"]["environment"].startswith("'=") and rows["i-8"]["name"] == "'@SUM(A1)"
    assert rows["i-8"]["environment"] == "'+1-2"
    assert safe_cell("-cmd") == "'-cmd" and safe_cell("web-1") == "web-1"


def test_failing_hosts_show_severity_and_remediation_and_unverified_are_separate():
    html = build().html
    assert "Failing hosts (1)" in html and "Could not be verified (2)" in html
    assert "systemctl start auditd" in html  # remediation of auditd.running
    assert "(critical)" in html and "connection refused" in html


def test_rebuild_banner_and_nothing_scorable():
    report = build([item("i-6", "NOT_APPLICABLE")], discovered=1, mode="rebuild",
                   notes=["No evidence is stored for this day: it is a gap, not a result."])
    assert "Rebuilt from stored evidence" in report.html and "gap, not a result" in report.html
    assert report.subject == "[rebuild] EC2 audit compliance 2026-11-23: n/a (0 failing)"


def test_write_report_files(tmp_path):
    paths = write_report(build(), tmp_path / "out", "2026-11-23", run_id="run-1", mode="live")
    assert sorted(p.rsplit("/", 1)[1] for p in paths.values()) == [
        "compliance-2026-11-23.csv", "compliance-2026-11-23.email.html", "compliance-2026-11-23.html",
        "compliance-2026-11-23.json"]
    summary = json.loads(open(paths["json"]).read())
    assert summary["checked"] == 7 and summary["compliance_pct"] == 50.0 and summary["run_id"] == "run-1"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_drift_and_breakdowns_in_the_report():
    previous = [dict(ITEMS[0], status="NON_COMPLIANT"), dict(ITEMS[3], status="COMPLIANT"), item("i-0", "COMPLIANT")]
    report = build(previous_items=previous, previous_day="2026-11-22")
    assert report.drift.fixed == ["i-1"] and report.drift.newly_failing == ["i-4"] and report.drift.vanished == ["i-0"]
    assert "since 2026-11-22" in report.html and "What changed" in report.html
    assert "Compliance by environment, region and account" in report.html and "123456789012" in report.html
    first = build()
    assert "nothing to compare with" in first.html


def test_trend_png_embedded_in_the_page_and_referenced_by_cid_in_the_mail(tmp_path):
    from include.report.trend import render_png, trend_points
    from tests.factories import run_summaries

    summaries = [{"audit_date": f"2026-11-{d:02d}", "compliance_pct": Decimal(str(80 + d / 3)),
                  "status_counts": {"NON_COMPLIANT": Decimal(30 - d)}} for d in range(1, 24) if d != 12]
    points = trend_points(run_summaries(summaries), "2026-11-23")
    assert len(points) == 30 and abs(points[-1]["compliance_pct"] - (80 + 23 / 3)) < 1e-6
    assert next(p for p in points if p["day"] == "2026-11-12")["compliance_pct"] is None  # a gap, not a zero
    png = render_png(points, "trend")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    report = build(trend_png=png)
    assert 'src="data:image/png;base64,' in report.html
    assert 'src="cid:compliance-2026-11-23-trend.png"' in report.email_html
    paths = write_report(report, tmp_path, "2026-11-23")
    assert open(paths["trend_png"], "rb").read() == png


def test_email_page_caps_long_tables_but_the_file_keeps_every_row():
    many = [item(f"i-{n:04d}", "NON_COMPLIANT", ["auditd.running"]) for n in range(350)]
    report = build(many, discovered=350)
    assert report.html.count("auditd.running</b>") == 350
    assert report.email_html.count("auditd.running</b>") == 300
    assert "50 more rows in the attached CSV" in report.email_html
    assert len(list(csv.DictReader(io.StringIO(report.csv)))) == 350
