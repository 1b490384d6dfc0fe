"""Evidence in DynamoDB: one item per (instance_id, audit_date) and a run summary per day.

Keys are the instance and the audit day — never the run id or the wall clock — so rerunning a day
overwrites that day's items and nothing else. Nothing here deletes; expiry is DynamoDB TTL on expires_at.
Reads of a day go through the `by_audit_date` index, never a table scan.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from include.aws.day_table import DayTable, to_dynamo
from include.aws.tables import DAY_INDEX
from include.core.clock import expires_at, iso, utc_now
from include.core.host import Host, HostOutcome
from include.core.status import Status, Verdict
from include.evidence.records import EvidenceItem, RunSummary

log = logging.getLogger(__name__)

SUMMARY_ID = "#run-summary"  # instance_id of the per-day run summary item
DIGEST_PREFIX = "#day-digest#"  # + chunk number: the day's digest (include/evidence/digest.py), written when sealed


def instance_item(*, host: Host, outcome: HostOutcome | None, status: Status, failed: list[str],
                  verdicts: Mapping[str, Verdict], detail: str, audit_date: str, run_id: str,
                  checked_at: datetime, ttl_days: int, mode: str = "live", profile: str = "audit-trail",
                  advisory: list[str] | None = None, transport: str = "ssh",
                  waived: list[str] | None = None, stream_names: Iterable[tuple[str, str]] = (),
                  attributed: tuple[str, str] | None = None, output_ref: str = "") -> dict[str, Any]:
    """The evidence item for one instance on one day (pure): the one place an EvidenceItem is built.
    `output_ref`: where the raw output whose SHA-256 is the outcome's digest is kept (include/evidence/raw_store.py)."""
    from include.evidence.digest import ITEM_HASH, item_sha256

    digest, size = outcome.digest() if outcome else ("", 0)
    item = EvidenceItem(
        instance_id=host.instance_id, audit_date=audit_date, run_id=run_id, mode=mode, checked_at=iso(checked_at),
        status=status.value, status_detail=detail[:500], failed_checks=list(failed),
        advisory_failed=list(advisory or []), waived_checks=list(waived or []), profile=profile,
        transport=outcome.transport if outcome else transport,  # under auto, what reached this host
        checks={cid: {"status": v.status.value, "detail": v.detail[:300]} for cid, v in sorted(verdicts.items())},
        region=host.region, account_id=host.account_id, private_ip=host.private_ip or "", address=host.address or "",
        platform=host.platform, name=host.name, environment=host.environment,
        # Contract: Name and Environment at least; all tags are kept (capped) for later questions.
        tags={k[:128]: v[:256] for k, v in list(host.tags.items())[:50]},
        host_key_fingerprint=(outcome.host_key_fingerprint if outcome else None) or "",
        host_key_note=outcome.host_key_note if outcome else "", output_sha256=digest, output_bytes=size,
        output_ref=output_ref if digest else "",
        output_truncated=bool(outcome and outcome.truncated), ssh_attempts=outcome.attempts if outcome else 0,
        transport_evidence=dict(outcome.transport_evidence) if outcome else {},
        expires_at=expires_at(audit_date, ttl_days),
        stream_names=[list(n) for n in stream_names], stream_attributed_by_name=list(attributed or []),
    ).to_item()
    # The hash of what readers see, stored with it: the day's digest carries it, so the report can tell a
    # staged copy that is exactly the stored item from one that is not (include/report/staging.py).
    return {**item, ITEM_HASH: item_sha256(item)}


class EvidenceStore(DayTable):
    """The evidence owner's items over the table layer (include/aws/day_table.py): instance items, run
    summaries, the day's digest and the report email's mark. `EvidenceStore.open(table)` opens the table."""

    # -- instance items
    def replace_item(self, item: dict, expected: Mapping[str, Any]) -> bool:
        """Write `item` over the current one only while that is still `expected`: the same run's observation
        (run_id, checked_at), not amended since. False when it was replaced meanwhile (a newer check decides)."""
        try:
            self.table.put_item(Item=to_dynamo(item), ConditionExpression=Attr("run_id").eq(expected["run_id"])
                                & Attr("checked_at").eq(expected["checked_at"]) & Attr("amended").not_exists())
            return True
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False

    def recorded_by_run(self, audit_date: str, instance_ids: list[str], run_id: str) -> set[str]:
        """Ids this run already stored for the day: a task retry skips them instead of redoing them."""
        keys = [{"instance_id": i, "audit_date": audit_date} for i in instance_ids]
        items = self.batch_get(self.table_name, keys, "#instance_id, #run_id")
        return {it["instance_id"] for it in items if it.get("run_id") == run_id}

    def day_items(self, audit_date: str, run_id: str | None = None, fields: Iterable[str] | None = None,
                  status: Status | str | None = None) -> list[EvidenceItem]:
        """Instance items of a day via the day index, optionally only one run's and/or one status.

        The filters run server-side and `fields` projects the items, so a step that needs three attributes
        of 10,000 items does not pull 10,000 full evidence records over the wire (nor parse them); what was not
        projected reads as its EvidenceItem default.
        """
        condition = Attr("item_type").eq("instance")
        if run_id is not None:
            condition &= Attr("run_id").eq(run_id)
        if status is not None:
            condition &= Attr("status").eq(str(status))
        kwargs: dict = {"IndexName": DAY_INDEX, "KeyConditionExpression": Key("audit_date").eq(audit_date),
                        "FilterExpression": condition}
        if fields is not None:
            names = sorted({"instance_id", "audit_date", "item_type", "run_id", *fields})
            kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
            kwargs["ExpressionAttributeNames"] = {f"#p{i}": name for i, name in enumerate(names)}
        return [EvidenceItem.from_item(it) for it in self.query_all(kwargs)]

    # -- run summary
    def put_summary(self, audit_date: str, summary: RunSummary, ttl_days: int) -> None:
        self.put_day_item(SUMMARY_ID, "run_summary", audit_date, summary.to_item(), ttl_days)

    def run_summary(self, audit_date: str) -> RunSummary | None:
        """The day's run summary (its email mark included), or None when the day has none."""
        item = self.get_day_item(SUMMARY_ID, audit_date)
        return RunSummary.from_item(item) if item else None

    def summaries(self, first_day: str, last_day: str) -> dict[str, RunSummary]:
        """Audit day → its run summary, between two days (inclusive), oldest first: one Query on the summary
        partition."""
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(SUMMARY_ID)
                        & Key("audit_date").between(first_day, last_day)}
        return {it["audit_date"]: RunSummary.from_item(it) for it in self.query_all(kwargs)}

    def previous_audit_day(self, audit_date: str) -> str | None:
        """The latest day before `audit_date` that has a run summary (days can be skipped)."""
        item = self.latest_day_item(SUMMARY_ID, before=audit_date, projection="audit_date")
        return item["audit_date"] if item else None

    def emailed_by(self, audit_date: str) -> str | None:
        """The run id whose report email for this day went out, if any."""
        summary = self.run_summary(audit_date)
        return (summary.emailed_run_id or None) if summary else None

    def mark_emailed(self, audit_date: str, run_id: str) -> None:
        """Called right after a successful send, so a retried send task does not mail twice."""
        self.table.update_item(
            Key={"instance_id": SUMMARY_ID, "audit_date": audit_date},
            UpdateExpression="SET emailed_run_id = :r, emailed_at = :t",
            ExpressionAttributeValues={":r": run_id, ":t": iso(utc_now())},
        )

    def host_history(self, instance_id: str, limit: int = 90) -> list[EvidenceItem]:
        """One instance's items, newest day first: one Query on its partition (the table's key)."""
        response = self.table.query(KeyConditionExpression=Key("instance_id").eq(instance_id),
                                    ScanIndexForward=False, Limit=limit)
        return [EvidenceItem.from_item(it) for it in response.get("Items", []) if it.get("item_type") == "instance"]

    def latest_audit_day(self) -> str | None:
        item = self.latest_day_item(SUMMARY_ID, projection="audit_date")
        return item["audit_date"] if item else None

    # -- the day's digest (include/evidence/digest.py): statuses for drift, the index the report matches against
    def put_digest(self, audit_date: str, digest: Mapping[str, Any], ttl_days: int) -> int:
        """Write the day's digest as chunk items (the first holds the count and the hash); returns the count."""
        from include.evidence import digest as day_digest

        parts, sha = day_digest.encode(digest)
        self.put_chunks(DIGEST_PREFIX, "day_digest", audit_date, parts, sha, {"hosts": len(digest)}, ttl_days)
        return len(parts)

    def digest(self, audit_date: str) -> dict | None:
        """The day's digest (instance id → day_digest.Entry), or None when the day has none (sealed before
        digests, or never): callers then read the day's items as before."""
        from include.evidence import digest as day_digest

        found = self.get_chunks(DIGEST_PREFIX, audit_date)
        return day_digest.decode(found[0], found[1]["sha256"]) if found else None

    def items_by_id(self, audit_date: str, instance_ids: Iterable[str]) -> list[EvidenceItem]:
        """Full instance items of these instances on the day (BatchGetItem, 100 a call)."""
        keys = [{"instance_id": i, "audit_date": audit_date} for i in dict.fromkeys(instance_ids)]
        found = self.batch_get(self.table_name, keys) if keys else []
        return [EvidenceItem.from_item(it) for it in found if it.get("item_type") == "instance"]
