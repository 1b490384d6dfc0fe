"""Remediation records sit beside the day's evidence: never over it, never counted as instance items, and a
second attempt the same day keeps the first one's summary; decisions are appended once per run and answer."""
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
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r1", outcome="not_fixed"), 400)
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r2", outcome="unverified"), 400)
    RemediationStore(store).put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r2", outcome="fixed"), 400)
    (rec,) = RemediationStore(store).day_remediations(DAY)
    assert rec.outcome == "fixed" and [e["run_id"] for e in rec.earlier] == ["r1"]
    assert rec.earlier[0]["outcome"] == "not_fixed"


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
    stored = store.get_day_item("#remediation#i-1", DAY)
    assert int(stored["expires_at"]) == expires_at(DAY, 400) == rec.expires_at
