"""The dashboard host page's "Remediation" section (issue 18): each record with its outcome (a not_fixed reads as
a failure), who approved it when, before → after, and every step's command, exit status and output sha256;
host-supplied text escaped; and the plugin's host route hands the page the store's records for that host."""
from __future__ import annotations

import pytest

from include.evidence.records import EvidenceItem, RunSummary
from include.remediation.records import RemediationRecord
from include.report import dashboard
from tests.unit.report.test_report_remediated import rows_of, table

HOST = "i-0123456789abcdef0"
DAY, EARLIER_DAY = "2026-11-23", "2026-11-20"
OUT_A, OUT_B, STDIN = "a1" * 32, "b2" * 32, "5e" * 32
SUMMARY = ["Day", "Outcome", "Fixes", "Approved by", "Status before → after", "Plan sha256", "Run"]
STEPS = ["Fix", "Result", "Command", "Exit status", "Output sha256", "Stdin sha256"]


def history() -> list[EvidenceItem]:
    return [EvidenceItem(HOST, audit_date=DAY, status="NON_COMPLIANT", failed_checks=["cwagent.running"],
                         tags={"Name": "web-1"})]


def records() -> list[RemediationRecord]:
    """Newest day first, as RemediationStore.host_remediations returns them."""
    return [
        RemediationRecord(HOST, audit_date=DAY, run_id="manual__r2", ran_at="2026-11-23T09:05:00Z", name="web-1",
                          plan_sha256="ab" * 32, approved_by="alice", approved_at="2026-11-23T09:00:00Z",
                          connection="ec2_audit_remediate_ssh", host_key_fingerprint="SHA256:pin",
                          fixes=[{"fix": "cwagent.audit_log_fragment", "check_ids": ["cwagent.ships_audit_log"],
                                  "result": "ran", "steps": [
                                      {"command": "sudo tee /opt/aws/fragment.json", "stdin_sha256": STDIN,
                                       "exit_status": 0, "output_sha256": OUT_A},
                                      {"command": "sudo amazon-cloudwatch-agent-ctl -a fetch-config",
                                       "exit_status": 3, "output_sha256": OUT_B},
                                      {"command": "sudo systemctl restart amazon-cloudwatch-agent",
                                       "exit_status": None}]}],
                          outcome="not_fixed", before_status="NON_COMPLIANT",
                          before_failed=["cwagent.ships_audit_log"], after_status="NON_COMPLIANT",
                          after_failed=["cwagent.ships_audit_log"]),
        RemediationRecord(HOST, audit_date=EARLIER_DAY, run_id="manual__r1", name="web-1", plan_sha256="cd" * 32,
                          approved_by="bob", approved_at="2026-11-20T10:00:00Z",
                          fixes=[{"fix": "auditd.start", "check_ids": ["auditd.running"], "result": "ran",
                                  "steps": [{"command": "sudo systemctl start auditd", "exit_status": 0,
                                             "output_sha256": OUT_A}]}],
                          outcome="fixed", before_status="NON_COMPLIANT", before_failed=["auditd.running"],
                          after_status="COMPLIANT"),
    ]


def test_host_page_lists_each_record_with_its_outcome_approval_and_before_after():
    page = dashboard.host_page(HOST, history(), records())
    rows = table(page, SUMMARY)
    assert list(rows) == [DAY, EARLIER_DAY] and "Remediation (2)" in page
    assert rows[DAY]["Outcome"] == "fix failed: cwagent.ships_audit_log still failing"  # never "fixed"
    assert rows[EARLIER_DAY]["Outcome"] == "fixed"
    assert rows[DAY]["Fixes"] == "cwagent.audit_log_fragment"
    assert rows[DAY]["Approved by"] == "alice\n2026-11-23T09:00:00Z"
    assert rows[DAY]["Status before → after"] == ("NON_COMPLIANT (cwagent.ships_audit_log) → "
                                                  "NON_COMPLIANT (cwagent.ships_audit_log)")
    assert rows[EARLIER_DAY]["Status before → after"] == "NON_COMPLIANT (auditd.running) → COMPLIANT"
    assert rows[DAY]["Plan sha256"] == "ab" * 8 and f'title="{"ab" * 32}"' in page
    assert rows[DAY]["Run"] == "manual__r2"


def test_host_page_shows_every_step_command_exit_status_and_output_hash():
    page = dashboard.host_page(HOST, history(), records())
    steps = rows_of(page, STEPS)  # the first steps table is the newest day's
    assert [(s["Command"], s["Exit status"], s["Output sha256"]) for s in steps] == [
        ("sudo tee /opt/aws/fragment.json", "0", OUT_A),
        ("sudo amazon-cloudwatch-agent-ctl -a fetch-config", "3", OUT_B),
        ("sudo systemctl restart amazon-cloudwatch-agent", "not run", "—")]
    assert steps[0]["Stdin sha256"] == STDIN[:16] and steps[1]["Stdin sha256"] == "—"
    assert f"{DAY}: steps (ran 2026-11-23T09:05:00Z through ec2_audit_remediate_ssh, host key SHA256:pin)" in page
    assert f"{EARLIER_DAY}: steps" in page and page.count("sudo systemctl start auditd") == 1


def test_no_records_no_section_and_records_without_evidence_still_shown():
    assert "Remediation" not in dashboard.host_page(HOST, history())
    assert "Remediation" not in dashboard.host_page(HOST, history(), [])
    page = dashboard.host_page(HOST, [], [RemediationRecord.from_item(r.to_item()) for r in records()])  # as stored
    assert "No evidence stored for this instance." in page and list(table(page, SUMMARY)) == [DAY, EARLIER_DAY]


def test_host_supplied_text_is_escaped():
    evil = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
    hostile = RemediationRecord(HOST, audit_date=DAY, name=evil, approved_by=evil, approved_at=evil, run_id=evil,
                                plan_sha256=evil, connection=evil, host_key_fingerprint=evil, ran_at=evil,
                                fixes=[{"fix": evil, "result": evil, "detail": evil, "check_ids": [evil],
                                        "steps": [{"command": evil, "output_sha256": evil, "stdin_sha256": evil,
                                                   "exit_status": 1, "output": evil}]}],
                                outcome="not_fixed", detail=evil, before_status=evil, after_status=evil,
                                before_failed=[evil], after_failed=[evil],
                                earlier=[{"run_id": evil, "outcome": evil, "approved_by": evil}])
    page = dashboard.host_page(HOST, history(), [hostile])
    assert "<script" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;") >= 15
    assert rows_of(page, STEPS)[0]["Command"] == evil


def test_the_plugin_host_route_passes_the_hosts_remediation_records(monkeypatch):
    plugin = pytest.importorskip("plugins.ec2_audit_dashboard")
    asked = []

    class Store:
        def host_history(self, instance_id):
            asked.append(("history", instance_id))
            return history()

        def host_remediations(self, instance_id):
            asked.append(("remediations", instance_id))
            return records()

        def observations(self, instance_id, day):
            asked.append(("observations", instance_id, day))
            return []

    monkeypatch.setattr(plugin, "_store", Store)
    monkeypatch.setattr(plugin, "_remediations", lambda store: store)  # the fake answers for both owners
    page = plugin._host(HOST)
    assert asked == [("history", HOST), ("remediations", HOST), ("observations", HOST, DAY)]
    assert list(table(page, SUMMARY)) == [DAY, EARLIER_DAY]


FLEET = ["Instance", "Name", "Fixes", "Approved by", "Before → after", "Outcome"]


def test_fleet_page_shows_the_day_s_remediations_and_a_not_fixed_as_a_failure():
    from include.checks.catalogue import check_meta

    items = history()
    page = dashboard.fleet_page(DAY, RunSummary(discovered=1, checked=1), items, None, check_meta(), records()[:1])
    (row,) = rows_of(page, FLEET)
    assert row["Instance"] == HOST and row["Approved by"] == "alice"
    assert row["Outcome"].startswith("fix failed") and "cwagent.ships_audit_log" in row["Outcome"]
    assert "Remediated (1)" in page
    assert "Remediated" not in dashboard.fleet_page(DAY, RunSummary(discovered=1, checked=1), items, None,
                                                    check_meta())


def test_the_plugin_fleet_route_passes_the_day_s_remediation_records(monkeypatch):
    plugin = pytest.importorskip("plugins.ec2_audit_dashboard")

    class Store:
        def latest_audit_day(self):
            return DAY

        def run_summary(self, day):
            return RunSummary(discovered=1, checked=1)

        def day_items(self, day):
            return history()

        def day_remediations(self, day):
            assert day == DAY
            return records()[:1]

        def summaries(self, first, last):
            return {}

    monkeypatch.setattr(plugin, "_store", Store)
    monkeypatch.setattr(plugin, "_remediations", lambda store: store)  # the fake answers for both owners
    assert [r["Instance"] for r in rows_of(plugin._fleet(None), FLEET)] == [HOST]
