"""The dashboard host page lists every observation of the chosen day (issue 28), oldest first and the current one
last, each with its seq, when, what asked for it (trigger and detail), its status and failed checks; the day is
picked by `?day=` (default: the host's latest day), from the history's day links or the fleet page of that day."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from include.evidence.records import EvidenceItem, RunSummary
from include.evidence.store import EvidenceStore
from include.report import dashboard
from tests.factories import stored_item
from tests.unit.report.test_report_remediated import rows_of

HOST = "i-0123456789abcdef0"
DAY, EARLIER_DAY = "2026-12-03", "2026-12-02"
OBSERVED = ["Seq", "Checked at", "Trigger", "Status", "Failed checks", "Run", "Current"]


def observation(seq, status, trigger, at, *, current=False, failed=(), detail="", run=""):
    return stored_item(HOST, status, failed, seq=seq, trigger=trigger, checked_at=at, run_id=run or f"{trigger}-{seq}",
                       audit_date=DAY if current else f"{DAY}#v#{seq}", item_type="instance" if current else "version",
                       **({"trigger_detail": detail} if detail else {}))


TWO = [observation(1, "COMPLIANT", "schedule", f"{DAY}T06:01:00Z"),
       observation(2, "NON_COMPLIANT", "tamper", f"{DAY}T10:15:00Z", current=True, failed=["auditd.running"],
                   detail="daemon_stopped")]


def history():
    return [EvidenceItem(HOST, audit_date=DAY, status="NON_COMPLIANT", tags={"Name": "web-1"}),
            EvidenceItem(HOST, audit_date=EARLIER_DAY, status="COMPLIANT", tags={"Name": "web-1"})]


def test_host_page_lists_the_day_s_observations_oldest_first_with_their_triggers():
    page = dashboard.host_page(HOST, history(), day=DAY, observations=list(reversed(TWO)))
    assert f"Observations on {DAY} (2)" in page
    rows = rows_of(page, OBSERVED)
    assert [(r["Seq"], r["Checked at"], r["Trigger"], r["Status"], r["Failed checks"], r["Current"]) for r in rows] == [
        ("1", f"{DAY}T06:01:00Z", "schedule", "COMPLIANT", "", ""),
        ("2", f"{DAY}T10:15:00Z", "tamper: daemon_stopped", "NON_COMPLIANT", "auditd.running", "current")]
    # the history's days pick the day shown (the page's own URL with ?day=)
    assert f'href="?day={EARLIER_DAY}"' in page and f'href="?day={DAY}"' in page


@pytest.fixture
def store():
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "dashboard_obs_test")
        s.ensure_tables()
        yield s


def test_the_plugin_host_route_reads_the_picked_day_s_observations_from_the_store(store, monkeypatch):
    plugin = pytest.importorskip("plugins.ec2_audit_dashboard")

    class NoRemediations:
        def host_remediations(self, instance_id):
            return []

    def item(day, run, trigger, at, status="COMPLIANT"):
        return stored_item(HOST, status, audit_date=day, run_id=run, trigger=trigger, checked_at=at, name="web-1")

    store.put_observations([item(EARLIER_DAY, "daily-2", "schedule", f"{EARLIER_DAY}T06:00:00Z")])
    store.put_observations([item(DAY, "daily-3", "schedule", f"{DAY}T06:00:00Z")])
    store.put_observations([item(DAY, "watch-3", "tamper", f"{DAY}T10:00:00Z", "NON_COMPLIANT")])
    monkeypatch.setattr(plugin, "_store", lambda: store)
    monkeypatch.setattr(plugin, "_remediations", lambda s: NoRemediations())
    latest = rows_of(plugin._host(HOST), OBSERVED)  # no day picked: the host's latest day
    assert [(r["Seq"], r["Trigger"], r["Run"]) for r in latest] == [("1", "schedule", "daily-3"),
                                                                    ("2", "tamper", "watch-3")]
    picked = plugin._host(HOST, EARLIER_DAY)
    assert f"Observations on {EARLIER_DAY} (1)" in picked
    assert [r["Run"] for r in rows_of(picked, OBSERVED)] == ["daily-2"]


def test_the_fleet_page_links_each_host_to_that_day():
    from include.checks.catalogue import check_meta

    items = [EvidenceItem(HOST, audit_date=DAY, status="NON_COMPLIANT", failed_checks=["auditd.running"])]
    page = dashboard.fleet_page(DAY, RunSummary(discovered=1, checked=1), items, None, check_meta())
    assert f'href="host/{HOST}?day={DAY}"' in page
