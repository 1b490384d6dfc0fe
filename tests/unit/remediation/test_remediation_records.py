"""Remediation records sit beside the day's evidence: never over it, never counted as instance items; each
attempt is its own item (a later one never replaces an earlier one, a retried task of the same run adds none),
read back as the day's latest with the earlier ones' summary; decisions are appended once per run and answer."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from include.evidence.store import EvidenceStore
from include.remediation.records import RemediationDecision, RemediationRecord
from include.remediation.store import RemediationStore

DAY = "2026-12-01"


@pytest.fixture
def store():
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "remediation_records")
        s.ensure_tables()
        yield s


def test_a_record_does_not_touch_the_host_s_evidence_item(store):
    store.put_items([{"instance_id": "i-1", "audit_date": DAY, "item_type": "instance", "status": "NON_COMPLIANT"}])
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r1", outcome="fixed",
                                            after_status="COMPLIANT"), 400)
    assert [it.status for it in store.day_items(DAY)] == ["NON_COMPLIANT"]  # what the audit saw stays
    assert [r.outcome for r in RemediationStore(store).day_remediations(DAY)] == ["fixed"]
    assert RemediationStore(store).host_remediations("i-1")[0].after_status == "COMPLIANT"


def test_a_later_attempt_keeps_the_earlier_one_and_a_retry_of_the_same_run_does_not_add_one(store):
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r1", outcome="not_fixed",
                                                              ran_at="2026-12-01T10:00:00Z", fixes=[{"fix": "a"}]), 400)
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r2", outcome="unverified",
                                                              ran_at="2026-12-01T11:00:00Z"), 400)
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r2", outcome="fixed",
                                                              ran_at="2026-12-01T11:00:00Z"), 400)
    (rec,) = RemediationStore(store).day_remediations(DAY)
    assert rec.outcome == "fixed" and [e["run_id"] for e in rec.earlier] == ["r1"]
    assert rec.earlier[0]["outcome"] == "not_fixed"
    # Each attempt is its own item, the earlier one whole (not a summary), the retried run's once.
    attempts = RemediationStore(store).attempts("i-1", DAY)
    assert [(a.run_id, a.outcome) for a in attempts] == [("r1", "not_fixed"), ("r2", "fixed")]
    assert attempts[0].fixes == [{"fix": "a"}] and attempts[0].earlier == []
    assert [(r.run_id, r.earlier[0]["run_id"]) for r in RemediationStore(store).host_remediations("i-1")] == [("r2", "r1")]


def test_a_record_from_before_attempts_is_read_as_an_earlier_attempt(store):
    """Written as one item per host and day (sort key the day), its own earlier attempts kept in `earlier`."""
    store.put_day_item("#remediation#i-1", "remediation", DAY, {
        "host_id": "i-1", "run_id": "r0", "ran_at": "2026-12-01T09:00:00Z", "outcome": "failed",
        "earlier": [{"run_id": "r-old", "outcome": "refused"}]}, 400)
    store.table.update_item(Key={"instance_id": "#remediation-hosts", "audit_date": DAY},
                            UpdateExpression="ADD hosts :h", ExpressionAttributeValues={":h": {"i-1"}})
    assert [(r.run_id, [e["run_id"] for e in r.earlier]) for r in RemediationStore(store).day_remediations(DAY)] == [
        ("r0", ["r-old"])]
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r1", outcome="fixed",
                                                              ran_at="2026-12-01T10:00:00Z"), 400)
    (rec,) = RemediationStore(store).day_remediations(DAY)
    assert (rec.run_id, rec.audit_date) == ("r1", DAY) and [e["run_id"] for e in rec.earlier] == ["r-old", "r0"]


def test_decisions_are_appended_once_per_run_and_answer(store):
    rejected = RemediationDecision(run_id="r1", decision="rejected", by="bob", plan_sha256="a" * 64)
    RemediationStore(store).add_decision(DAY, rejected, 400)
    RemediationStore(store).add_decision(DAY, rejected, 400)  # a retried task
    RemediationStore(store).add_decision(DAY, RemediationDecision(run_id="r2", decision="approved", by="alice"), 400)
    assert [(d.run_id, d.decision, d.by) for d in RemediationStore(store).decisions(DAY)] == [("r1", "rejected", "bob"),
                                                                           ("r2", "approved", "alice")]
    assert RemediationStore(store).decisions("2026-11-30") == []


def test_the_day_s_records_are_read_without_querying_the_whole_day(store, monkeypatch):
    store.put_items([{"instance_id": f"i-{n}", "audit_date": DAY, "item_type": "instance", "status": "COMPLIANT"}
                     for n in range(30)])
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-7", audit_date=DAY, run_id="r1", outcome="fixed"), 400)

    def no_query(**kwargs):
        raise AssertionError(f"a Query reads the whole day: {kwargs}")

    monkeypatch.setattr(store.table, "query", no_query)
    assert [r.host_id for r in RemediationStore(store).day_remediations(DAY)] == ["i-7"]
    assert RemediationStore(store).day_remediations("2026-11-30") == []


def test_a_record_expires_with_the_day_s_evidence(store):
    """The record's own default (0) must not stand in for the day's TTL: it would never expire, unlike its evidence."""
    from include.core.clock import expires_at

    (rec,) = [RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r1"), 400)]
    stored = store.get_day_item("#remediation#i-1", f"{DAY}#r1")
    assert int(stored["expires_at"]) == expires_at(DAY, 400) == rec.expires_at
