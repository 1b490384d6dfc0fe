"""Waivers: scope, expiry, partial coverage, bad files."""
from __future__ import annotations

import json
from datetime import date

import pytest

from include.core.host import Host
from include.core.status import Status
from include.report.build import build_report
from include.tasks.params import audit_params
from include.verify.waivers import Waiver, apply_waivers, load_waivers, waiver_status

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
    from include.evidence.records import EvidenceItem

    report = build_report([EvidenceItem("i-dev", status="WAIVED", name="<b>x</b>")], audit_date="2026-11-23",
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


# ------------------------------------------------------------------ the file's schema and dates as dates

GOOD = {"tags": {"Environment": "dev"}, "check_id": "auditd.immutable", "justification": "j", "approver": "a",
        "expires": "2027-01-31"}


def _file(tmp_path, data) -> str:
    path = tmp_path / "waivers.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_basic_format_date_is_refused_naming_the_field(tmp_path):
    """`date.fromisoformat("20260101")` accepts it on Python 3.11; a string compare then keeps it active all year."""
    path = _file(tmp_path, [GOOD, {**GOOD, "expires": "20260101"}])
    with pytest.raises(ValueError) as caught:
        load_waivers(path)
    assert f"waivers_file {path}: entry #2, field expires: '20260101' is not a date written YYYY-MM-DD" in str(caught.value)
    with pytest.raises(ValueError, match="expires"):
        Waiver("*", "j", "a", "20260101", instance_id="i-0123456789abcdef0")


def test_a_waiver_expiring_2026_01_01_never_covers_2026_06_01(tmp_path):
    """False PASS #6: "expires": "20260101" loaded, and "2026-06-01" <= "20260101" as strings kept it active."""
    for expires in ("20260101", "2026-01-01"):
        path = _file(tmp_path, [{**GOOD, "expires": expires}])
        try:
            waivers = load_waivers(path)
        except ValueError:
            waivers = []  # refused at the start of the run: also never active
        assert not any(w.active_on("2026-06-01") for w in waivers), expires
        assert apply_waivers(DEV, Status.NON_COMPLIANT, ["auditd.immutable"], waivers, "2026-06-01")[0] \
            == Status.NON_COMPLIANT


def test_expiry_compares_dates_not_strings():
    waiver = Waiver("*", "j", "a", "2026-01-01", instance_id="i-dev")
    assert waiver.expires == date(2026, 1, 1)
    assert not waiver.active_on("2026-06-01") and not waiver.active_on(date(2026, 6, 1))
    assert waiver.active_on("2026-01-01") and waiver.active_on(date(2025, 12, 31))
    with pytest.raises(ValueError, match="audit date"):
        waiver.active_on("20260601")
    assert apply_waivers(DEV, Status.NON_COMPLIANT, ["x"], [waiver], "2026-06-01")[0] == Status.NON_COMPLIANT
    assert waiver_status([waiver], "2026-06-01")["expired"] == [waiver]


@pytest.mark.parametrize("expires", ["2026-1-1", "2026-02-30", "2026-01-01T00:00", "2026/01/01", "01-01-2026",
                                     "2026-01-01 ", "", 20260101, None, "２０２６-01-01"])
def test_any_other_date_form_is_refused(tmp_path, expires):
    path = _file(tmp_path, [{**GOOD, "expires": expires}])
    with pytest.raises(ValueError, match=r"entry #1, field expires: "):
        load_waivers(path)


@pytest.mark.parametrize("entry,expected", [
    ({k: v for k, v in GOOD.items() if k != "approver"}, "entry #1, field approver: missing"),
    ({k: v for k, v in GOOD.items() if k != "tags"}, "entry #1: needs instance_id or tags"),
    ({**GOOD, "tags": {}}, "entry #1, field tags: must map at least one tag name"),
    ({**GOOD, "tags": ["Environment"]}, "entry #1, field tags: must be an object, not a list"),
    ({**GOOD, "tags": {"Environment": 1}}, "entry #1, field tags.Environment: must be a string"),
    ({**GOOD, "justification": "  "}, "entry #1, field justification: '  ' must not be empty"),
    ({**GOOD, "check_id": ["auditd.immutable"]}, "entry #1, field check_id: must be a string, not a list"),
    ({**GOOD, "check_id": "auditd.immutible"}, "entry #1, field check_id: 'auditd.immutible' is not a known check"),
    ({**GOOD, "instance_id": "web-1"}, "entry #1, field instance_id: 'web-1' is not an EC2 instance id"),
    ({**GOOD, "expiry": "2027-01-31"}, "entry #1, field expiry: not a known field"),
    ("not an object", "entry #1: must be an object, not a string"),
])
def test_malformed_entries_are_refused_naming_file_entry_and_field(tmp_path, entry, expected):
    path = _file(tmp_path, [GOOD, entry] if isinstance(entry, dict) else [entry])
    expected = expected.replace("entry #1", "entry #2") if isinstance(entry, dict) else expected
    with pytest.raises(ValueError) as caught:
        load_waivers(path)
    assert str(caught.value).startswith(f"waivers_file {path}: ") and expected in str(caught.value), str(caught.value)


def test_file_level_problems(tmp_path):
    with pytest.raises(ValueError, match="must be a JSON list of waivers, not an object"):
        load_waivers(_file(tmp_path, GOOD))
    with pytest.raises(ValueError, match=r"not valid JSON \(line 1"):
        load_waivers(_file(tmp_path, "[{"))
    with pytest.raises(ValueError, match="no such file"):
        load_waivers(str(tmp_path / "nope.json"))
    assert load_waivers(_file(tmp_path, [])) == [] and load_waivers(None) == []
    wild = load_waivers(_file(tmp_path, [{**GOOD, "check_id": "*", "instance_id": "i-0123456789abcdef0"}]))
    assert wild[0].covers("anything") and wild[0].expires.isoformat() == "2027-01-31"


def test_a_bad_waivers_file_fails_the_params_check_in_discover(tmp_path):
    """discover (the first task) builds AuditParams.from_params: the file's error surfaces there, whole."""

    path = _file(tmp_path, [{**GOOD, "expires": "20260101"}])
    with pytest.raises(ValueError, match=r"^invalid params: waivers_file .*entry #1, field expires"):
        audit_params({"waivers_file": path})
