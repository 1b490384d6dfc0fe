"""The dashboard's two numbers, side by side: audit-trail compliance (the day's summary, judged under the run's
profile) and the CIS hardening score with its gaps; a host's advisory failures in its history."""
from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

from include.checks.catalogue import check_meta
from include.core.scoring import fleet_summary
from include.evidence.records import EvidenceItem, RunSummary
from include.report import dashboard
from include.verify.profiles import HARDENING_CHECKS
from tests.factories import stored_item

DAY = "2026-11-23"
IMMUTABLE, BOOT = "auditd.immutable", "auditd.boot_params"


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return re.sub(r"\s+", " ", "".join(parser.parts))


def host(iid, status, failing_hardening=(), failed=(), profile="audit-trail", assessed=True):
    checks = {c: {"status": "FAIL" if c in failing_hardening else "PASS"} for c in HARDENING_CHECKS} if assessed else {}
    return EvidenceItem.from_item(stored_item(iid, status, failed, audit_date=DAY, advisory_failed=list(failing_hardening),
                                              checks=checks,
                       profile=profile, region="us-east-1", tags={"Name": f"web-{iid}"}))


ITEMS = [host("i-1", "COMPLIANT"), host("i-2", "COMPLIANT", [IMMUTABLE]),
         host("i-3", "NON_COMPLIANT", [IMMUTABLE, BOOT], failed=["auditd.running"]),
         host("i-4", "COMPLIANT", [BOOT]), host("i-5", "NOT_APPLICABLE", assessed=False)]


def summary_of(items):
    s = fleet_summary([i.status for i in items], len(items))
    return RunSummary(compliance_pct=s.compliance_pct, checked=s.checked, discovered=s.discovered)


def test_fleet_page_shows_audit_trail_compliance_beside_the_hardening_score_and_its_gaps():
    page = text(dashboard.fleet_page(DAY, summary_of(ITEMS), ITEMS, None, check_meta()))
    # Counted here: 3 of the 4 scorable hosts are COMPLIANT; 1 of the 4 assessed hosts fails no hardening check.
    assert f"75.0% compliant on {DAY} (profile audit-trail) · 25.0% hardened (CIS) · 5 checked of 5 discovered" in page
    assert "Hardening (CIS): 25.0%" in page and "1 of 4 hosts meet every CIS hardening check" in page
    meta = check_meta()
    for check_id, failing in ((IMMUTABLE, 2), (BOOT, 2)):
        row = f"{check_id} ({meta[check_id]['severity']}){failing} of 4{meta[check_id]['remediation']}"
        assert row in page, row
    assert "auditd.rules_cover_cis" not in page  # no host fails it: not a gap
    assert "Failing hosts (1)" in page and "Not verified (0)" in page


def test_the_profile_shown_is_the_one_the_items_were_judged_under():
    items = [replace(i, profile="cis") for i in ITEMS]
    page = text(dashboard.fleet_page(DAY, summary_of(items), items, None, check_meta()))
    assert f"compliant on {DAY} (profile cis)" in page


def test_no_host_assessed_for_hardening_says_so():
    items = [host("i-1", "COMPLIANT", assessed=False)]
    page = text(dashboard.fleet_page(DAY, summary_of(items), items, None, check_meta()))
    assert "100.0% compliant" in page and "n/a hardened (CIS)" in page
    assert "No host had every hardening check evaluated." in page


def test_host_history_has_an_advisory_column():
    history = [host("i-3", "NON_COMPLIANT", [IMMUTABLE, BOOT], failed=["auditd.running"]),
               replace(host("i-3", "COMPLIANT"), audit_date="2026-11-22")]
    page = dashboard.host_page("i-3", history)
    assert "Advisory (outside the profile)" in page
    assert text(page).count(f"{IMMUTABLE}, {BOOT}") == 1 and page.count("<tr>") == 3


def test_host_history_says_what_reached_the_host_and_what_vouched_for_it():
    over_ssm = replace(host("i-4", "COMPLIANT"), transport="ssm", host_key_fingerprint="",
                    transport_evidence={"ssm_ping_status": "Online", "ssm_agent_version": "3.3.1957.0",
                                        "ssm_command_id": "c0ffee", "ssm_document": "EC2Audit-ReadOnlyChecks:2"})
    over_ssh = replace(host("i-4", "COMPLIANT"), audit_date="2026-11-22", transport="ssh",
                    host_key_fingerprint="SHA256:abc")
    page = text(dashboard.host_page("i-4", [over_ssm, over_ssh]))
    assert "ssm: SSM agent 3.3.1957.0 (Online), command c0ffee, document EC2Audit-ReadOnlyChecks:2" in page
    assert "ssh: host key SHA256:abc" in page
    assert "host key none (not reached over SSH)" in page  # the latest day's header
