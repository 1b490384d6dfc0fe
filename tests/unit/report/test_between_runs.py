"""The report's "Checks between runs" (issue 28): every event-driven observation of the day (launch, tamper,
silence, request, remediation) with when, why and the verdict before → after; a daily rerun is not one; the
rows are capped so a storm of events cannot blow up the email; read from the day's current items and versions."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from include.checks.catalogue import check_meta
from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore
from include.report import between_runs
from include.report.build import build_report, write_report
from tests.factories import stored_item
from tests.unit.report.test_report_remediated import rows_of

DAY = "2026-12-03"
NOW = datetime(2026, 12, 3, 23, 0, tzinfo=timezone.utc)
HEADERS = ["checked at", "instance", "name", "why", "verdict before → after", "failed checks", "run"]


def obs(iid, seq, status, trigger, at, *, current=False, failed=(), detail=None, run=None):
    """One observation as the store returns it: a version ("<day>#v#<seq>", `day`) or the current item."""
    item = stored_item(iid, status, failed, seq=seq, trigger=trigger, checked_at=at, run_id=run or f"{trigger}-{seq}",
                       audit_date=DAY if current else f"{DAY}#v#{seq}", item_type="instance" if current else "version",
                       **({} if current else {"day": DAY}), **({"trigger_detail": detail} if detail else {}))
    return item


def test_a_tamper_recheck_shows_the_daily_verdict_before_and_its_own_after():
    day = [obs("i-1", 1, "COMPLIANT", "schedule", f"{DAY}T06:01:00Z"),
           obs("i-1", 2, "NON_COMPLIANT", "tamper", f"{DAY}T10:15:00Z", current=True, failed=["auditd.running"],
               detail="daemon_stopped: type=DAEMON_END")]
    table = between_runs.checks_between_runs(day)
    (row,) = table.rows
    assert (row.instance_id, row.seq, row.trigger, row.checked_at) == ("i-1", 2, "tamper", f"{DAY}T10:15:00Z")
    assert row.change == "COMPLIANT → NON_COMPLIANT"
    assert row.why == "tamper: daemon_stopped: type=DAEMON_END"
    assert row.failed_checks == ("auditd.running",)
    assert table.total == 1 and table.by_trigger == {"tamper": 1}


def test_a_host_supplied_detail_is_capped_and_escaped():
    evil = "<script>alert(1)</script>" + "x" * 1000
    day = [obs("i-1", 1, "NON_COMPLIANT", "tamper", f"{DAY}T10:15:00Z", current=True, detail=evil)]
    table = between_runs.checks_between_runs(day)
    assert len(table.rows[0].trigger_detail) == between_runs.DETAIL_CHARS
    html = build_report([EvidenceItem.from_item(day[0])], audit_date=DAY, discovered=1, run_id="r", mode="live",
                        generated_at=NOW, check_meta=check_meta(), between_runs=table).html
    assert "<script>alert(1)" not in html and "tamper: &lt;script&gt;alert(1)&lt;/script&gt;xxx" in html


def test_a_launch_first_observation_has_no_verdict_before():
    (row,) = between_runs.checks_between_runs([obs("i-new", 1, "COMPLIANT", "launch", f"{DAY}T12:00:00Z",
                                                   current=True)]).rows
    assert row.change == "— → COMPLIANT" and row.why == "launch"


def test_a_daily_rerun_is_not_a_check_between_runs_but_is_the_before_of_one():
    day = [obs("i-1", 1, "COMPLIANT", "schedule", f"{DAY}T06:01:00Z"),
           obs("i-1", 2, "NON_COMPLIANT", "manual", f"{DAY}T07:00:00Z", failed=["cwagent.running"]),
           obs("i-1", 3, "COMPLIANT", "silence", f"{DAY}T09:00:00Z"),
           obs("i-1", 4, "COMPLIANT", "schedule", f"{DAY}T11:00:00Z", current=True),
           obs("i-2", 1, "COMPLIANT", "schedule", f"{DAY}T06:01:00Z", current=True)]
    table = between_runs.checks_between_runs(reversed(day))  # any order in: the host's seq decides "before"
    assert [(r.instance_id, r.seq, r.change) for r in table.rows] == [("i-1", 3, "NON_COMPLIANT → COMPLIANT")]
    assert table.total == 1


def test_rows_are_capped_and_a_failing_check_is_never_crowded_out_by_a_storm():
    storm = [obs(f"i-{n:04d}", 1, "COMPLIANT", "launch", f"{DAY}T08:{n // 60:02d}:{n % 60:02d}Z", current=True)
             for n in range(30)]
    bad = obs("i-bad", 1, "NON_COMPLIANT", "tamper", f"{DAY}T09:00:00Z", current=True, failed=["auditd.running"])
    table = between_runs.checks_between_runs([*storm, bad], limit=10)
    assert table.total == 31 and len(table.rows) == 10 and table.more == 21
    assert "i-bad" in [r.instance_id for r in table.rows]
    assert [r.checked_at for r in table.rows] == sorted(r.checked_at for r in table.rows)  # shown in time order
    assert table.by_trigger == {"launch": 30, "tamper": 1}


def test_the_report_has_the_section_in_the_file_and_the_email_and_counts_in_the_json(tmp_path):
    day = [obs("i-1", 1, "COMPLIANT", "schedule", f"{DAY}T06:01:00Z"),
           obs("i-1", 2, "NON_COMPLIANT", "tamper", f"{DAY}T10:15:00Z", current=True, failed=["auditd.running"],
               detail="rules_deleted")]
    current = [EvidenceItem.from_item({**day[1], "name": "web-1"})]
    report = build_report(current, audit_date=DAY, discovered=1, run_id="scheduled__x", mode="live", generated_at=NOW,
                          check_meta=check_meta(), between_runs=between_runs.checks_between_runs(day))
    for page in (report.html, report.email_html):
        assert "Checks between runs (1)" in page
        (row,) = rows_of(page, HEADERS)
        assert row["why"] == "tamper: rules_deleted" and row["verdict before → after"] == "COMPLIANT → NON_COMPLIANT"
        assert row["checked at"] == f"{DAY}T10:15:00Z" and row["failed checks"] == "auditd.running"
    assert report.csv.count("\n") == 2  # the CSV stays one row per instance
    machine = json.loads(Path(write_report(report, tmp_path, DAY)["json"]).read_text())
    checks = machine["checks_between_runs"]
    assert (checks["total"], checks["by_trigger"], checks["listed"]) == (1, {"tamper": 1}, 1)
    assert checks["rows"] == [{"instance_id": "i-1", "seq": 2, "checked_at": f"{DAY}T10:15:00Z", "trigger": "tamper",
                               "trigger_detail": "rules_deleted", "before": "COMPLIANT", "after": "NON_COMPLIANT",
                               "failed_checks": ["auditd.running"], "run_id": "tamper-2", "name": ""}]
    quiet = build_report(current, audit_date=DAY, discovered=1, run_id="r", mode="live", generated_at=NOW,
                         check_meta=check_meta())
    assert "Checks between runs (0)" in quiet.html


@pytest.fixture
def store():
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "between_runs_test")
        s.ensure_tables()
        yield s


def test_read_takes_the_versions_from_the_day_index_and_the_current_items_as_given(store):
    def item(run, trigger, at, status="COMPLIANT", **kw):
        return stored_item("i-1", status, audit_date=DAY, run_id=run, trigger=trigger, checked_at=at, **kw)

    store.put_observations([item("daily", "schedule", f"{DAY}T06:00:00Z")])
    store.put_observations([item("watch-1", "tamper", f"{DAY}T10:00:00Z", "NON_COMPLIANT",
                                 trigger_detail="audit_disabled")])
    store.put_observations([item("watch-2", "silence", f"{DAY}T11:00:00Z")])
    current = store.items_by_id(DAY, ["i-1"])
    table = between_runs.checks_between_runs(between_runs.read(store, DAY, current))
    assert [(r.run_id, r.change, r.why) for r in table.rows] == [
        ("watch-1", "COMPLIANT → NON_COMPLIANT", "tamper: audit_disabled"),
        ("watch-2", "NON_COMPLIANT → COMPLIANT", "silence")]


def test_the_email_lists_fewer_rows_than_the_file_and_says_how_many_more(monkeypatch):
    from include.report import build

    monkeypatch.setattr(build, "EMAIL_MAX_ROWS", 5)
    launches = [obs(f"i-{n}", 1, "COMPLIANT", "launch", f"{DAY}T08:00:0{n}Z", current=True) for n in range(8)]
    report = build_report([EvidenceItem.from_item(o) for o in launches], audit_date=DAY, discovered=8, run_id="r",
                          mode="live", generated_at=NOW, check_meta=check_meta(),
                          between_runs=between_runs.checks_between_runs(launches))
    assert len(rows_of(report.html, HEADERS)) == 8 and "more not listed here" not in report.html
    assert len(rows_of(report.email_html, HEADERS)) == 5
    assert "… 3 more not listed here (5 of 8 shown" in report.email_html
