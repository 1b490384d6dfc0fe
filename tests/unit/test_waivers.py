"""Waivers: scope, expiry, partial coverage, bad files."""
from __future__ import annotations

import json

import pytest

from include.models import Host, Status
from include.report import build_report
from include.waivers import Waiver, apply_waivers, load_waivers, waiver_status

DEV = Host("i-dev", "r", "a", "10.0.0.1", tags={"Environment": "dev", "Name": "d"})
PROD = Host("i-prod", "r", "a", "10.0.0.2", tags={"Environment": "prod", "Name": "p"})
WAIVERS = [Waiver("auditd.immutable", "kernel 4.x fleet, reboot window in Q1", "alice", "2026-12-31", tags={"Environment": "dev"}),
           Waiver("auditd.boot_params", "legacy AMI", "bob", "2026-11-01", instance_id="i-dev"),
           Waiver("*", "decommissioning", "carol", "2026-11-30", instance_id="i-prod")]


def test_fully_covered_failure_is_waived():
    status, failed, waived = apply_waivers(DEV, Status.NON_COMPLIANT, ["auditd.immutable"], WAIVERS, "2026-11-23")
    assert status == Status.WAIVED and failed == [] and "alice" in waived[0]


def test_partial_cover_stays_non_compliant_with_uncovered_checks():
    status, failed, waived = apply_waivers(DEV, Status.NON_COMPLIANT, ["auditd.immutable", "cwagent.running"],
                                           WAIVERS, "2026-11-23")
    assert status == Status.NON_COMPLIANT and failed == ["cwagent.running"] and len(waived) == 1


def test_expired_waiver_stops_applying():
    status, failed, _ = apply_waivers(DEV, Status.NON_COMPLIANT, ["auditd.boot_params"], WAIVERS, "2026-11-23")
    assert status == Status.NON_COMPLIANT and failed == ["auditd.boot_params"]
    # …but it applied through its last day.
    assert apply_waivers(DEV, Status.NON_COMPLIANT, ["auditd.boot_params"], WAIVERS, "2026-11-01")[0] == Status.WAIVED


def test_wildcard_and_other_statuses():
    assert apply_waivers(PROD, Status.NON_COMPLIANT, ["a", "b"], WAIVERS, "2026-11-23")[0] == Status.WAIVED
    assert apply_waivers(PROD, Status.UNREACHABLE, [], WAIVERS, "2026-11-23")[0] == Status.UNREACHABLE  # not a failure


def test_waiver_status_and_report_section():
    states = waiver_status(WAIVERS, "2026-11-23")
    assert [w.approver for w in states["expired"]] == ["bob"]
    assert [w.approver for w in states["expiring_soon"]] == ["carol"]
    report = build_report([{"instance_id": "i-dev", "status": "WAIVED", "name": "<b>x</b>"}], audit_date="2026-11-23",
                          discovered=1, run_id="r", mode="live", generated_at=__import__("datetime").datetime(2026, 11, 23),
                          waivers=states)
    assert "expired" in report.html and "legacy AMI" in report.html and report.summary.compliance_pct is None


def test_load_waivers_file(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps([{"tags": {"Environment": "dev"}, "check_id": "auditd.immutable",
                                 "justification": "j", "approver": "a", "expires": "2027-01-31"}]))
    assert load_waivers(str(path))[0].tags == {"Environment": "dev"}
    path.write_text(json.dumps([{"check_id": "x", "justification": "j", "approver": "a", "expires": "2027-01-31"}]))
    with pytest.raises(ValueError, match="instance_id or tags"):
        load_waivers(str(path))
    assert load_waivers("") == []
