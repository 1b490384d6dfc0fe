"""Typed records: one to_item/from_item pair each; Status knows what counts, what is unverified, its colour."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from include.core.host import Host, HostOutcome
from include.core.scoring import fleet_summary
from include.core.status import Status, Verdict
from include.evidence import digest as day_digest
from include.evidence.records import EvidenceItem, RunSummary
from include.evidence.store import instance_item
from include.fleet.batching import Batch, plan_batches

ARN = "arn:aws:iam::222222222222:role/ec2-audit-read"


def test_an_evidence_item_round_trips_through_dynamodb_types():
    item = instance_item(host=Host("i-1", "us-east-1", "123", "10.0.0.1", private_ip="10.0.0.1",
                                   tags={"Name": "web", "Environment": "prod"}),
                         outcome=HostOutcome("i-1", None, output=b"x", attempts=1), status=Status.NON_COMPLIANT,
                         failed=["auditd.running"], verdicts={"auditd.running": Verdict.failed("down")}, detail="d",
                         audit_date="2026-12-01", run_id="r", checked_at=datetime(2026, 12, 1, tzinfo=timezone.utc),
                         ttl_days=400, advisory=["auditd.immutable"], waived=["w"])
    stored = {**item, "expires_at": Decimal(item["expires_at"]), "output_bytes": Decimal(1)}  # as boto3 reads it
    record = EvidenceItem.from_item(stored)
    assert record.to_item() == item
    assert day_digest.item_sha256(stored) == day_digest.item_sha256(item)  # as read back
    assert (item["item_sha256"], item["seq"]) == ("", 0)  # set by the store as it writes the observation
    assert (record.display_name, record.display_environment, record.output_bytes) == ("web", "prod", 1)


def test_projected_and_older_items_read_with_defaults():
    record = EvidenceItem.from_item({"instance_id": "i-1", "audit_date": "2026-01-01", "status": "COMPLIANT",
                                     "unknown_future_field": 1})
    assert record.failed_checks == [] and record.advisory_failed == [] and record.profile == ""


def test_run_summary_keeps_the_email_marks_out_of_its_own_writes():
    summary = RunSummary(run_id="r", discovered=3, checked=3, compliance_pct=66.7)
    assert "emailed_run_id" not in summary.to_item()
    read = RunSummary.from_item({"instance_id": "#run-summary", "audit_date": "d", "discovered": Decimal(3),
                                 "compliance_pct": Decimal("66.7"), "emailed_run_id": "r"})
    assert (read.discovered, read.compliance_pct, read.emailed_run_id) == (3, 66.7, "r")


def test_status_says_once_what_counts_and_what_is_unverified():
    assert {s for s in Status if s.unverified} == {Status.HOST_KEY_MISMATCH, Status.AUTH_FAILED, Status.ERROR,
                                                   Status.UNREACHABLE}
    assert {s for s in Status if not s.scorable} == {Status.NOT_APPLICABLE, Status.WAIVED}
    assert set(Status.ordered()) == set(Status) and Status.ordered()[0] == Status.NON_COMPLIANT
    assert all(s.colour.startswith("#") for s in Status) and Status.parse("nope") is None
    assert fleet_summary(["COMPLIANT", "WAIVED", "NOT_APPLICABLE", "ERROR"], 4).compliance_pct == 50.0


def test_batches_carry_account_and_region_and_a_readable_label():
    batches = [Batch.from_xcom(b.to_xcom()) for b in plan_batches({"us-east-1": ["i-1"], f"{ARN}|us-east-1": ["i-2"]})]
    by_account = {b.account: b for b in batches}
    assert by_account[""].region == by_account[ARN].region == "us-east-1"
    assert by_account[ARN].label == "222222222222 us-east-1 batch 1/1 (1 hosts)"
    assert by_account[""].label == "us-east-1 batch 1/1 (1 hosts)"
    assert Batch.from_xcom(by_account[ARN].to_xcom()) == by_account[ARN]
