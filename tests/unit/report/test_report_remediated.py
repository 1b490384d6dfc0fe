"""The report's "Remediated" section (issue 18): each outcome reads as what it is (a not_fixed is a failure naming
the checks still failing, never "fixed"), host-supplied text is inert, the section is absent when nothing was
remediated, the email keeps it bounded, and the day's numbers and CSV are not changed by it."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html.parser import HTMLParser

from include.checks.catalogue import check_meta
from include.core.status import Status
from include.evidence.records import EvidenceItem
from include.remediation.records import RemediationDecision, RemediationRecord
from include.report.build import build_report, write_report
from tests.factories import stored_item

DAY = "2026-11-23"
NOW = datetime(2026, 11, 23, 6, 30, tzinfo=timezone.utc)
PLAN = "ab" * 32
HEADERS = ["instance", "name", "fixes applied", "approved by", "plan sha256", "status before → after", "outcome"]
DECISION_HEADERS = ["decision", "by", "at", "plan sha256", "hosts", "fixes", "run", "detail"]


class _Tables(HTMLParser):
    """Every <table> as rows of cell texts (whitespace collapsed); each cell's raw inner HTML beside it."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(re.sub(r"[ \t]+", " ", "".join(self._cell)).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def rows_of(page: str, headers: list[str]) -> list[dict[str, str]]:
    """The rows of the table with these headers, each {header: cell text}."""
    for t in _Tables(page).tables:
        if t and t[0] == headers:
            return [dict(zip(headers, row)) for row in t[1:]]
    raise AssertionError(f"no table with headers {headers}")


def table(page: str, headers: list[str]) -> dict[str, dict[str, str]]:
    """The same, keyed by the first cell."""
    return {row[headers[0]]: row for row in rows_of(page, headers)}


def step(command: str, exit_status: int | None, output_sha256: str = "cd" * 32) -> dict:
    return {"command": command, "exit_status": exit_status, "output_sha256": output_sha256, "output": "ok"}


def record(host_id: str, outcome: str, *, fixes=None, name="web", detail="", after="NON_COMPLIANT", after_failed=(),
           after_checks=None, before_failed=("auditd.running",), **kw) -> RemediationRecord:
    fixes = fixes if fixes is not None else [
        {"fix": "auditd.start", "check_ids": ["auditd.running"], "result": "ran",
         "steps": [step("sudo systemctl start auditd", 0)]}]
    return RemediationRecord(host_id, audit_date=DAY, run_id="manual__r1", name=name, plan_sha256=PLAN,
                             approved_by="alice", approved_at="2026-11-23T09:00:00Z", fixes=fixes, outcome=outcome,
                             detail=detail, before_status="NON_COMPLIANT", before_failed=list(before_failed),
                             after_status=after, after_failed=list(after_failed), after_checks=after_checks or {},
                             **kw)


def item(iid: str, status: str = "NON_COMPLIANT", failed=("auditd.running",)) -> dict:
    return stored_item(iid, status, failed, audit_date=DAY, run_id="run-1", name=f"web-{iid}", environment="prod",
                       region="us-east-1", account_id="123456789012")


ITEMS = [item("i-1"), item("i-2", failed=("cwagent.running", "auditd.running")), item("i-3"), item("i-4"),
         item("i-5", "COMPLIANT", ())]
RECORDS = [
    record("i-1", "fixed", after="COMPLIANT"),
    record("i-2", "not_fixed", after_failed=["cwagent.running"], before_failed=["cwagent.running", "auditd.running"],
           fixes=[{"fix": "cwagent.start", "check_ids": ["cwagent.running"], "result": "ran",
                   "steps": [step("sudo systemctl start amazon-cloudwatch-agent", 0)]},
                  {"fix": "auditd.start", "check_ids": ["auditd.running"], "result": "ran",
                   "steps": [step("sudo systemctl start auditd", 0)]}],
           after_checks={"cwagent.running": {"status": "FAIL", "detail": "inactive"},
                         "auditd.running": {"status": "PASS", "detail": ""}}),
    record("i-3", "refused", detail="host key changed since the audit: nothing was run", after="", fixes=[]),
    record("i-4", "failed", fixes=[{"fix": "auditd.load_rules", "check_ids": ["auditd.rules_loaded"],
                                    "result": "failed", "steps": [step("sudo augenrules --load", 1)]}]),
]
DECISIONS = [RemediationDecision("manual__r0", "rejected", plan_sha256="ef" * 32, hosts=2, fixes=3, by="bob",
                                 at="2026-11-23T08:00:00Z", detail="not during the freeze"),
             RemediationDecision("manual__r1", "approved", plan_sha256=PLAN, hosts=4, fixes=5, by="alice",
                                 at="2026-11-23T09:00:00Z")]


def build(items=ITEMS, **kw):
    args = dict(audit_date=DAY, discovered=len(items), run_id="run-1", mode="live", generated_at=NOW,
                check_meta=check_meta())
    return build_report([EvidenceItem.from_item(i) for i in items], **(args | kw))  # as the store reads them


def test_each_outcome_reads_as_what_it_is_and_a_not_fixed_is_a_failure():
    report = build(remediations=RECORDS, decisions=DECISIONS)
    for page in (report.html, report.email_html):
        rows = table(page, HEADERS)
        assert rows["i-1"]["outcome"] == "fixed"
        assert rows["i-2"]["outcome"] == "fix failed: cwagent.running still failing"  # auditd.running passes now
        assert rows["i-3"]["outcome"] == ("refused (nothing was changed): host key changed since the audit: "
                                          "nothing was run")
        assert rows["i-4"]["outcome"] == "failed: auditd.load_rules: sudo augenrules --load exited 1"
        assert rows["i-2"]["fixes applied"] == "cwagent.start\nauditd.start"
        assert rows["i-4"]["fixes applied"] == "auditd.load_rules (failed)"
        assert rows["i-1"]["approved by"] == "alice\n2026-11-23T09:00:00Z"
        assert rows["i-1"]["plan sha256"] == PLAN[:12] and f'title="{PLAN}"' in page
        assert rows["i-1"]["status before → after"] == "NON_COMPLIANT (auditd.running) → COMPLIANT"
        assert rows["i-2"]["status before → after"] == ("NON_COMPLIANT (cwagent.running, auditd.running) → "
                                                        "NON_COMPLIANT (cwagent.running)")
        assert rows["i-3"]["status before → after"] == "NON_COMPLIANT (auditd.running) → not re-verified"
        # failures first, the one success last
        assert list(rows) == ["i-2", "i-4", "i-3", "i-1"]
    # only "fixed" gets the success colour: the not_fixed cell is in the failure colour, bold
    cell = re.search(r"<span style=\"color:([^;]+);font-weight:(\d+)\">fix failed", report.html)
    assert cell and cell.groups() == (Status.NON_COMPLIANT.colour, "700")
    assert report.html.count(f'color:{Status.COMPLIANT.colour};font-weight:600">fixed</span>') == 1
    assert "1 fixed, <b>1 fix failed</b>" in report.html and "1 refused" in report.html and "1 failed." in report.html
    assert "Remediated (4 hosts)" in report.html


def test_a_not_fixed_names_the_checks_not_seen_passing_even_when_the_record_lists_none_failing():
    # the re-verify did not evaluate the addressed check: not confirmed, so still failing
    unseen = record("i-2", "not_fixed", after_checks={"auditd.enabled": {"status": "PASS"}})
    bare = record("i-3", "not_fixed", fixes=[])  # nothing to go on: still a failure, never "fixed"
    rows = table(build(remediations=[unseen, bare]).html, HEADERS)
    assert rows["i-2"]["outcome"] == "fix failed: auditd.running still failing"
    assert rows["i-3"]["outcome"] == "fix failed: the checks still fail"
    assert all("fixed" != r["outcome"] for r in rows.values())


def test_decisions_are_listed_with_who_when_and_which_plan():
    report = build(remediations=RECORDS, decisions=DECISIONS)
    rows = table(report.html, DECISION_HEADERS)
    assert rows["rejected"] == {"decision": "rejected", "by": "bob", "at": "2026-11-23T08:00:00Z",
                                "plan sha256": "ef" * 6, "hosts": "2", "fixes": "3", "run": "manual__r0",
                                "detail": "not during the freeze"}
    assert rows["approved"]["by"] == "alice" and rows["approved"]["hosts"] == "4"
    assert "Decisions (2)" in report.html


def test_host_supplied_text_is_inert_in_the_file_and_the_email():
    evil = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
    hostile = [record("i-1", "not_fixed", name=evil, detail=evil, after_failed=["auditd.running"],
                      fixes=[{"fix": evil, "check_ids": ["auditd.running"], "result": evil, "steps": []}],
                      earlier=[{"run_id": evil, "outcome": evil, "approved_by": evil}]),
               RemediationRecord("i-2", audit_date=DAY, name=evil, approved_by=evil, approved_at=evil,
                                 plan_sha256=evil, outcome="refused", detail=evil, before_status=evil)]
    decisions = [RemediationDecision(evil, evil, plan_sha256=evil, by=evil, at=evil, detail=evil)]
    report = build(remediations=hostile, decisions=decisions)
    for page in (report.html, report.email_html):
        assert "<script" not in page and "<img src=x" not in page
        assert page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;") >= 12
        rows = table(page, HEADERS)
        assert rows["i-1"]["name"] == evil and rows["i-2"]["approved by"].startswith(evil)


def test_no_records_and_no_decisions_no_section():
    for report in (build(), build(remediations=[], decisions=[])):
        assert "Remediated" not in report.html and "Remediated" not in report.email_html
    only_decisions = build(decisions=[RemediationDecision("manual__r0", "timed_out", plan_sha256=PLAN, hosts=1)])
    assert "Remediated (0 hosts)" in only_decisions.html
    assert table(only_decisions.html, DECISION_HEADERS)["timed_out"]["hosts"] == "1"


def test_remediation_changes_no_number_no_subject_and_no_csv_row():
    plain, remediated = build(), build(remediations=RECORDS, decisions=DECISIONS)
    assert remediated.summary == plain.summary and remediated.subject == plain.subject
    assert remediated.csv == plain.csv and remediated.hardening == plain.hardening
    assert "Failing hosts (4)" in remediated.html  # what the audit saw, fixed or not


def test_stored_items_are_read_like_records():
    stored = [RemediationRecord.from_item(r.to_item()) for r in RECORDS]  # as RemediationStore reads them
    assert table(build(remediations=stored).html, HEADERS) == table(build(remediations=RECORDS).html, HEADERS)


def test_json_counts_per_outcome_and_decision(tmp_path):
    paths = write_report(build(remediations=[*RECORDS, record("i-5", "fixed", after="COMPLIANT")],
                               decisions=DECISIONS), tmp_path, DAY, run_id="run-1", mode="live")
    machine = json.loads(open(paths["json"]).read())
    assert machine["remediated"] == {"hosts": 5, "fixed": 2, "not_fixed": 1, "refused": 1, "failed": 1,
                                     "decisions": {"approved": 1, "rejected": 1}}
    assert {k: v for k, v in machine["counts"].items() if v} == {"NON_COMPLIANT": 4, "COMPLIANT": 1}  # the audit's, not the remediation's
    nothing = json.loads(open(write_report(build(), tmp_path / "none", DAY)["json"]).read())
    assert nothing["remediated"] == {"hosts": 0, "fixed": 0, "not_fixed": 0, "refused": 0, "failed": 0,
                                     "decisions": {}}


def test_email_bounds_the_section_but_the_file_keeps_every_row():
    long = "x" * 2000
    many = [record(f"i-{n:04d}", "refused", detail=long, fixes=[], after="") for n in range(350)]
    decisions = [RemediationDecision(f"manual__{n}", "rejected", detail=long) for n in range(320)]
    report = build(remediations=many, decisions=decisions)
    assert len(table(report.html, HEADERS)) == 350 and len(table(report.email_html, HEADERS)) == 300
    assert len(rows_of(report.html, DECISION_HEADERS)) == 320
    assert len(rows_of(report.email_html, DECISION_HEADERS)) == 300
    assert f"… 50 more in the report file compliance-{DAY}.html" in report.email_html
    assert f"… 20 more in the report file compliance-{DAY}.html" in report.email_html
    assert report.html.count(long) == 350 + 320 and long not in report.email_html
    assert table(report.email_html, HEADERS)["i-0000"]["outcome"].endswith("x" * 300 + " …")
