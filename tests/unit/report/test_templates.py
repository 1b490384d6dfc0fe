"""The HTML templates: evidence is escaped wherever it reaches a page, every page uses the one layout, the one
table macro renders headers and rows.

Every value an attacker (or an odd host) controls gets its own marked payload, so a test names the field that
leaked. A leak shows as a live `<script` or `<img` tag: the pages themselves contain neither.
"""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from jinja2 import nodes

from include.checks.catalogue import check_meta
from include.evidence.records import EvidenceItem, RunSummary
from include.notify import alerts
from include.notify.email import failure_message
from include.report import dashboard
from include.report.build import build_report
from include.report.rendering import FOLDER, environment, render
from include.verify.profiles import HARDENING_CHECKS
from include.verify.waivers import Waiver, waiver_status

NOW = datetime(2026, 11, 23, 6, 30, tzinfo=timezone.utc)
LAYOUT = '<meta name="generator" content="ec2-audit-compliance">'


def evil(field: str) -> str:
    """Breaks out of text and of a quoted attribute, if it is not escaped."""
    return f'<script>alert("{field}")</script>"><img src=x onerror=alert(1)>'


def assert_escaped(page: str, *fields: str) -> None:
    assert "<script" not in page and "<img src=x" not in page, "a payload came out as markup"
    for field in fields:
        assert f'&lt;script&gt;alert(&#34;{field}&#34;)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;' in page, field


def report_items() -> list[EvidenceItem]:
    hardening = {c: {"status": "FAIL", "detail": ""} for c in HARDENING_CHECKS}
    return [EvidenceItem.from_item(it) for it in [
        {"instance_id": "i-1", "status": "NON_COMPLIANT", "failed_checks": ["auditd.running"],
         "name": evil("name"), "environment": evil("environment"), "region": evil("region"),
         "account_id": "123456789012", "private_ip": evil("private_ip"), "profile": evil("profile"),
         "checks": {"auditd.running": {"status": "FAIL", "detail": evil("check detail")}, **hardening}},
        {"instance_id": "i-2", "status": "UNREACHABLE", "failed_checks": [], "name": "web-2", "environment": "prod",
         "region": "us-east-1", "account_id": evil("account_id"), "status_detail": evil("status_detail")},
        {"instance_id": "i-3", "status": "WAIVED", "failed_checks": [], "name": "web-3", "environment": "prod",
         "region": "us-east-1", "account_id": "123456789012"},
    ]]


def test_report_escapes_every_evidence_field_in_the_file_and_the_email():
    waivers = waiver_status([Waiver("auditd.running", evil("waiver justification"), evil("approver"), "2026-12-31",
                                    instance_id="i-3")], "2026-11-23")
    report = build_report(report_items(), audit_date="2026-11-23", discovered=5, run_id=evil("run_id"), mode="live",
                          generated_at=NOW, check_meta=check_meta(), notes=[evil("note")], waivers=waivers,
                          gaps=[evil("gap")], previous_items=[EvidenceItem(evil("vanished"), status="COMPLIANT")],
                          previous_day="2026-11-22", not_running={evil("state"): 1})
    fields = ("name", "environment", "region", "private_ip", "profile", "check detail", "account_id",
              "status_detail", "waiver justification", "approver", "run_id", "note", "gap", "vanished", "state")
    assert_escaped(report.html, *fields)
    assert_escaped(report.email_html, *fields)


def test_alert_email_escapes_its_rows_and_header():
    finding = alerts.Finding(f"{evil('instance')}|{evil('check')}", evil("instance"), evil("check"), evil("detail"))
    decision = alerts.decide([finding], {}, "2026-11-24", 7)
    page = alerts.render_html(evil("day"), decision, {evil("instance"): evil("Name tag")}, evil("report hint"))
    assert_escaped(page, "instance", "check", "detail", "day", "Name tag", "report hint")


def test_failure_mail_escapes_the_run_the_task_the_reason_and_the_links():
    ti = SimpleNamespace(task_id=evil("task_id"), dag_id="ec2_audit_compliance", log_url=evil("log_url"))
    run = SimpleNamespace(dag_id="ec2_audit_compliance", run_id=evil("run_id"))
    _, page = failure_message({"ti": ti, "dag_run": run, "exception": RuntimeError(evil("reason"))})
    assert_escaped(page, "task_id", "run_id", "reason", "log_url")
    assert 'href="&lt;script' in page  # the task log link's href stays one attribute


def dashboard_item(**extra) -> EvidenceItem:
    return EvidenceItem.from_item({"instance_id": evil("instance_id"), "audit_date": "2026-11-23", "status": "NON_COMPLIANT",
            "failed_checks": ["auditd.running"], "advisory_failed": [evil("advisory")], "region": evil("region"),
            "account_id": evil("account"), "tags": {"Name": evil("Name tag")}, "checked_at": evil("checked_at"),
            "host_key_fingerprint": evil("host key"), "output_sha256": "ab" * 32, "run_id": evil("run"),
            "profile": evil("profile"), "status_detail": evil("status_detail"), **extra})


def test_dashboard_fleet_page_escapes_host_ids_tags_and_details():
    items = [dashboard_item(), dashboard_item(instance_id=evil("unverified id"), status="ERROR")]
    page = dashboard.fleet_page("2026-11-23", RunSummary(compliance_pct=0.0, checked=2, discovered=2), items, None,
                                check_meta())
    assert_escaped(page, "instance_id", "region", "Name tag", "profile", "unverified id", "status_detail")
    assert 'href="host/%3Cscript%3Ealert%28%22instance_id%22%29' in page  # a link, not markup


def test_dashboard_host_page_escapes_the_history():
    page = dashboard.host_page(evil("instance_id"), [dashboard_item()])
    assert_escaped(page, "instance_id", "Name tag", "region", "account", "host key", "checked_at", "run", "advisory")
    assert_escaped(dashboard.host_page(evil("unknown id"), []), "unknown id")


def every_page() -> dict[str, str]:
    decision = alerts.decide([alerts.Finding("i-1|auditd.running", "i-1", "auditd.running", "off")], {}, "2026-11-24", 7)
    run = SimpleNamespace(dag_id="ec2_audit_compliance", run_id="r1")
    report = build_report(report_items(), audit_date="2026-11-23", discovered=3, run_id="r1", mode="live",
                          generated_at=NOW, check_meta=check_meta())
    return {"report": report.html, "report email": report.email_html,
            "fleet": dashboard.fleet_page("2026-11-23", None, [dashboard_item()], None, check_meta()),
            "fleet before any audit": dashboard.fleet_page(None, None, [], None, {}),
            "host": dashboard.host_page("i-1", [dashboard_item()]), "unknown host": dashboard.host_page("i-1", []),
            "alert": alerts.render_html("2026-11-24", decision, {}, "see the report"),
            "failure mail": failure_message({"dag_run": run, "reason": "task_failure"})[1]}


@pytest.mark.parametrize("name", sorted(every_page()))
def test_every_page_is_the_base_layout(name):
    page = every_page()[name]
    assert page.startswith("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"), name
    assert page.count(LAYOUT) == 1 and page.count("<body") == 1 and page.rstrip().endswith("</body></html>"), name


def test_every_page_template_extends_base_and_none_builds_its_own_skeleton():
    env = environment()
    pages = sorted(p.name for p in FOLDER.glob("*.html") if p.name not in ("base.html", "macros.html"))
    assert {"report.html", "alert.html", "failure.html", "dashboard_fleet.html", "dashboard_host.html"} <= set(pages)
    for name in pages:
        source = (FOLDER / name).read_text()
        extends = list(env.parse(source).find_all(nodes.Extends))
        assert [e.template.value for e in extends] == ["base.html"], name
        assert "<html" not in source.lower() and "<body" not in source.lower(), name
        assert "<table" not in source, f"{name}: tables come from the table macro"


def test_table_macro_renders_headers_and_rows_escaped_and_keeps_macro_cells():
    macros = environment().get_template("macros.html").module
    cell = macros.check_mark("auditd.running", "critical")  # markup made by a macro: kept, not re-escaped
    out = str(macros.table(["host", "<b>why</b>"], [["i-1", "<i>x</i>"], ["i-2", cell]], "alert"))
    assert out.count("<tr>") == 3 and out.count("<th ") == 2 and out.count("<td ") == 4
    assert ">host</th>" in out and "&lt;b&gt;why&lt;/b&gt;</th>" in out
    assert ">i-1</td>" in out and "&lt;i&gt;x&lt;/i&gt;" in out
    assert "<b>auditd.running</b> (critical)</td>" in out
    assert 'style="border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top"' in out
    report = str(macros.table(["a"], [], "report"))
    assert report.startswith('<table cellspacing="0" cellpadding="0" style="border-collapse:collapse;width:100%')
    assert report.count("<tr>") == 1 and "<td" not in report


def test_undefined_names_raise_instead_of_rendering_nothing():
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        render("alert.html", day="2026-11-24")
