"""Compliance alerts: which findings alert, when they repeat, and what the email says (pure functions)."""
from include.checks.catalogue import CATALOGUE
from include.evidence.records import EvidenceItem
from include.notify import alerts
from tests.factories import stored_item

CRITICAL = {c.id for c in CATALOGUE if c.severity == "critical"}


def item(iid, status, failed=(), name=""):
    return EvidenceItem.from_item(stored_item(iid, status, failed, detail=lambda c: f"{c} failed on {iid}", tags={"Name": name}))


def test_only_critical_failures_of_non_compliant_hosts_are_findings():
    critical = sorted(CRITICAL)[0]
    non_critical = next(c.id for c in CATALOGUE if c.severity != "critical")
    items = [item("i-1", "NON_COMPLIANT", [critical, non_critical]),
             item("i-2", "WAIVED", [critical]),  # a waived failure is not a finding
             item("i-3", "COMPLIANT"), item("i-4", "UNREACHABLE")]
    found = alerts.current_findings(items, CRITICAL, 50.0, 0)
    assert [f.key for f in found] == [f"i-1|{critical}"]
    assert "failed on i-1" in found[0].detail


def test_threshold_finding_only_below_threshold_and_when_enabled():
    assert [f.key for f in alerts.current_findings([], CRITICAL, 89.9, 90)] == [alerts.THRESHOLD_KEY]
    assert alerts.current_findings([], CRITICAL, 90.0, 90) == []
    assert alerts.current_findings([], CRITICAL, 10.0, 0) == []  # 0 = off
    assert alerts.current_findings([], CRITICAL, None, 90) == []  # nothing scorable: no number to judge


def finding(key):
    iid, check = key.split("|")
    return alerts.Finding(key, iid, check, "")


def test_new_finding_alerts_once_then_stays_quiet_until_repeat_days():
    day1 = alerts.decide([finding("i-1|auditd.running")], {}, "2026-11-01", 7)
    assert [f.key for f in day1.alert] == ["i-1|auditd.running"] and not day1.reminders
    day2 = alerts.decide([finding("i-1|auditd.running")], day1.state, "2026-11-02", 7)
    assert day2.alert == [] and day2.state["i-1|auditd.running"]["first_seen"] == "2026-11-01"
    day8 = alerts.decide([finding("i-1|auditd.running")], day2.state, "2026-11-08", 7)
    assert [f.key for f in day8.alert] == ["i-1|auditd.running"] and day8.reminders == {"i-1|auditd.running"}
    assert day8.state["i-1|auditd.running"] == {"first_seen": "2026-11-01", "last_alerted": "2026-11-08"}
    never = alerts.decide([finding("i-1|auditd.running")], day2.state, "2027-01-01", 0)
    assert never.alert == []


def test_a_fixed_finding_closes_and_alerts_again_if_it_returns():
    day1 = alerts.decide([finding("i-1|auditd.running")], {}, "2026-11-01", 7)
    day2 = alerts.decide([], day1.state, "2026-11-02", 7)
    assert day2.closed == ["i-1|auditd.running"] and day2.state == {}
    day3 = alerts.decide([finding("i-1|auditd.running")], day2.state, "2026-11-03", 7)
    assert [f.key for f in day3.alert] == ["i-1|auditd.running"]


def test_subject_and_html_escape_and_cap():
    found = [alerts.Finding(f"i-{n}|auditd.running", f"i-{n}", "auditd.running", "<script>x</script>")
             for n in range(alerts.MAX_ROWS + 5)]
    found.append(alerts.Finding(alerts.THRESHOLD_KEY, "fleet", "compliance_below_threshold", "low"))
    decision = alerts.decide(found, {}, "2026-11-24", 7)
    subject = alerts.subject("2026-11-24", decision, 42.0)
    assert subject == ("ALERT EC2 audit compliance 2026-11-24: compliance 42.0% below threshold; "
                       f"critical checks failing on {alerts.MAX_ROWS + 5} hosts")
    html = alerts.render_html("2026-11-24", decision, {"i-1": "<b>web</b>"}, "Report: /r.html")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;web" in html
    assert "…and 6 more" in html


def test_failure_message_links_the_run_and_the_log_and_escapes_the_reason():
    from types import SimpleNamespace

    from include.notify.email import failure_message

    ti = SimpleNamespace(task_id="discover", dag_id="ec2_audit_compliance", log_url="http://af/log?x=1&y=2")
    run = SimpleNamespace(dag_id="ec2_audit_compliance", run_id="scheduled__2026-11-24")
    subject, html = failure_message({"ti": ti, "dag_run": run, "exception": RuntimeError("<b>expired</b>")})
    assert subject == "FAILED ec2_audit_compliance: task discover in scheduled__2026-11-24"
    assert "/dags/ec2_audit_compliance/runs/scheduled__2026-11-24" in html
    assert "http://af/log?x=1&amp;y=2" in html and "&lt;b&gt;expired" in html
    subject, _ = failure_message({"dag_run": run, "reason": "task_failure"})
    assert subject == "FAILED ec2_audit_compliance: run in scheduled__2026-11-24"


def test_failure_notifier_sends_nothing_without_recipients(monkeypatch):
    from include.notify import email as notify
    from include.notify.channels import PipelineFailureNotifier

    sent = []
    monkeypatch.setattr(notify, "send_report_email", lambda **kw: sent.append(kw))
    PipelineFailureNotifier(recipients="").notify({})
    assert sent == []
    PipelineFailureNotifier(recipients="a@x, b@y").notify({"run_id": "r1"})
    assert sent[0]["recipients"] == ["a@x", "b@y"] and "FAILED" in sent[0]["subject"]
