"""Each owner's items in the evidence table keep their exact keys, item_type and attributes: splitting the one
store into owners over a shared table layer changes who writes them, never what is written."""
from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws

DAY = "2026-12-01"
TTL = 400
EXPIRES = int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()) + TTL * 86400
INDEX_EXPIRES = int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()) + 2 * 86400
GROUP_HASH = "11c9caeb3660853d"  # sha256("/audit/group")[:16]


def _write_every_kind(resource) -> None:
    """One write of each kind, through the owners' own calls."""
    from include.core.host import Host
    from include.core.status import Status
    from include.evidence.records import RunSummary
    from include.evidence.store import EvidenceStore, instance_item
    from include.logs.index_store import StreamIndexStore
    from include.notify.alert_store import AlertState, AlertStateStore
    from include.remediation.records import RemediationDecision, RemediationRecord
    from include.remediation.store import RemediationStore

    evidence = EvidenceStore(resource, "owners")
    evidence.ensure_tables()
    host = Host(instance_id="i-1", region="us-east-1", account_id="111111111111", address="10.0.0.1",
                tags={"Name": "web-1"})
    evidence.put_observations([instance_item(host=host, outcome=None, status=Status.ERROR, failed=[], verdicts={},
                                      detail="unreachable", audit_date=DAY, run_id="r1",
                                      checked_at=datetime(2026, 12, 1, 6, tzinfo=timezone.utc), ttl_days=TTL)])
    evidence.put_summary(DAY, RunSummary.from_item({"run_id": "r1", "hosts_total": 1}), TTL)
    evidence.mark_emailed(DAY, "r1")
    evidence.put_digest(DAY, {}, TTL)
    streams = StreamIndexStore(evidence)
    assert streams.claim_stream_index(DAY, "r1", "/audit/group", "r1/owner", 900.0)
    streams.put_stream_index(DAY, "r1", "/audit/group", {"i-1": {"lastEventTimestamp": 1}}, True)
    AlertStateStore(evidence).put_alert_state(DAY, AlertState.from_item({"open": {"i-1": {"since": DAY}}, "sent": []}),
                                              TTL)
    remediation = RemediationStore(evidence)
    remediation.put_remediation(RemediationRecord(host_id="i-1", audit_date=DAY, run_id="r1", outcome="fixed"), TTL)
    remediation.add_decision(DAY, RemediationDecision(run_id="r1", decision="approved", by="alice"), TTL)


def _stored(resource) -> list[tuple]:
    items = resource.Table("owners").scan()["Items"]
    return sorted((it["instance_id"], it["audit_date"], it.get("item_type"), int(it.get("expires_at", 0)),
                   tuple(sorted(it))) for it in items)


INSTANCE_ATTRS = ("account_id", "address", "advisory_failed", "audit_date", "checked_at", "checks", "environment",
                  "expires_at", "failed_checks", "host_key_fingerprint", "host_key_note", "instance_id", "item_sha256",
                  "item_type", "mode", "name", "output_bytes", "output_ref", "output_sha256", "output_truncated",
                  "platform", "private_ip", "profile", "region", "run_id", "seq", "ssh_attempts", "status",
                  "status_detail", "tags", "transport", "transport_evidence", "trigger", "waived_checks")  # empty stream names are not stored
SNAPSHOT = [
    # Written from the records (AlertState, RunSummary): each of their fields, `alerted_at` and the email mark
    # only once set (as the alert task and put_summary always wrote them).
    ("#alerts", DAY, "alert_state", EXPIRES, ("alerted", "audit_date", "closed", "delivered", "expires_at",
                                              "generated_at", "instance_id", "item_type", "open", "run_id")),
    ("#day-digest#0", DAY, "day_digest", EXPIRES,
     ("audit_date", "chunks", "data", "expires_at", "hosts", "instance_id", "item_type", "sha256")),
    ("#remediation#i-1", f"{DAY}#r1", "remediation", EXPIRES, None),  # one item per attempt; the day's TTL
    ("#remediation-decisions", DAY, "remediation_decisions", EXPIRES,
     ("answered", "audit_date", "decisions", "expires_at", "instance_id", "item_type")),
    ("#remediation-hosts", DAY, "remediation_hosts", EXPIRES,
     ("attempts", "audit_date", "expires_at", "hosts", "instance_id", "item_type")),
    ("#run-summary", DAY, "run_summary", EXPIRES,
     ("audit_date", "checked", "checked_by_earlier_runs", "code_version", "compliance_pct", "coverage_pct", "discovered",
      "emailed_at", "emailed_run_id", "expires_at", "failed_batches", "generated_at", "instance_id", "item_type",
      "manifest_sha256", "missing_evidence", "mode", "not_running", "previous_manifest_sha256", "regions", "run_id",
      "seal_seq", "status_counts")),  # the seal's fields: issue 27
    (f"#stream-index#r1#{GROUP_HASH}#0", DAY, "stream_index", INDEX_EXPIRES,
     ("audit_date", "chunks", "complete", "data", "expires_at", "instance_id", "item_type", "listed_at", "sha256",
      "streams_listed")),
    (f"#stream-index#r1#{GROUP_HASH}#lease", DAY, "stream_index_lease", INDEX_EXPIRES,
     ("audit_date", "expires_at", "instance_id", "item_type", "lease_until", "owner")),
    ("i-1", DAY, "instance", EXPIRES, INSTANCE_ATTRS),
]


@pytest.fixture
def resource():
    with mock_aws():
        yield boto3.resource("dynamodb", region_name="us-east-1")


def test_every_owner_s_items_keep_their_keys_item_type_and_attributes(resource):
    _write_every_kind(resource)
    stored = _stored(resource)
    assert [s[:4] for s in stored] == [s[:4] for s in SNAPSHOT]
    for got, want in zip(stored, SNAPSHOT):
        if want[4] is not None:  # the remediation record's attributes are its record's (test_remediation_records)
            assert got[4] == want[4], got[0]


def test_the_owners_read_back_what_they_wrote(resource):
    from include.evidence.store import EvidenceStore
    from include.logs.index_store import StreamIndexStore
    from include.notify.alert_store import AlertStateStore

    _write_every_kind(resource)
    evidence = EvidenceStore(resource, "owners")
    assert evidence.emailed_by(DAY) == "r1" and evidence.latest_audit_day() == DAY and evidence.digest(DAY) == {}
    assert StreamIndexStore(evidence).stream_index(DAY, "r1", "/audit/group") == {"i-1": {"lastEventTimestamp": 1}}
    alerts = AlertStateStore(evidence)
    assert alerts.alert_state(DAY).open == {"i-1": {"since": DAY}}
    assert alerts.previous_alert_state("2026-12-02") == {"i-1": {"since": DAY}}
    assert alerts.previous_alert_state(DAY) == {}


def test_the_summary_reads_are_run_summary_records(resource):
    from include.evidence.records import RunSummary
    from include.evidence.store import EvidenceStore

    _write_every_kind(resource)
    evidence = EvidenceStore(resource, "owners")
    summary = evidence.run_summary(DAY)
    assert isinstance(summary, RunSummary) and (summary.run_id, summary.emailed_run_id) == ("r1", "r1")
    assert not hasattr(evidence, "get_summary")  # one read of the summary: the record
    assert evidence.summaries("2026-11-01", DAY) == {DAY: summary}  # the trend's read: day → record


def test_the_alert_state_read_is_an_alert_state_record(resource):
    from include.evidence.store import EvidenceStore
    from include.notify.alert_store import AlertState, AlertStateStore

    _write_every_kind(resource)
    alerts = AlertStateStore(EvidenceStore(resource, "owners"))
    state = alerts.alert_state(DAY)
    assert isinstance(state, AlertState) and state.open == {"i-1": {"since": DAY}}
    assert alerts.alert_state("2026-12-02") is None
