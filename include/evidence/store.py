"""Evidence in DynamoDB: one item per (instance_id, audit_date) and a run summary per day.

Keys are the instance and the audit day — never the run id or the wall clock — so rerunning a day
overwrites that day's items and nothing else. Nothing here deletes; expiry is DynamoDB TTL on expires_at.
Reads of a day go through the `by_audit_date` index, never a table scan.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from include.aws.tables import DAY_INDEX, ensure_tables, pins_table_name  # noqa: F401 - re-exported
from include.core.host import Host, HostOutcome
from include.core.status import Status, Verdict
from include.evidence.records import EvidenceItem, RunSummary

log = logging.getLogger(__name__)

SUMMARY_ID = "#run-summary"  # instance_id of the per-day run summary item
ALERTS_ID = "#alerts"  # instance_id of the per-day compliance-alert state (include/notify/alerts.py)
DIGEST_PREFIX = "#day-digest#"  # + chunk number: the day's digest (include/evidence/digest.py), written when sealed
STREAM_INDEX_PREFIX = "#stream-index#"  # + run id, group hash, chunk number or "lease" (include/logs/stream_index.py)
STREAM_INDEX_TTL_DAYS = 2  # a run's working data, not evidence
KEYS = ["instance_id", "audit_date"]
# BatchGetItem: keys DynamoDB hands back unprocessed (throttling) are asked again, backed off, this many times in
# all; then the read fails (IncompleteRead) rather than return part of what was asked.
READ_ATTEMPTS = 8
READ_BASE_DELAY_S = 0.05


class IncompleteRead(RuntimeError):
    """A read that could not get every key it asked for: the task fails and is retried, no step goes on short."""


def _backoff(attempt: int, base_delay: float) -> None:
    """Exponential backoff with jitter, capped at 5 s: before resending what DynamoDB left unprocessed."""
    time.sleep(min(5.0, base_delay * 2 ** attempt) * (0.5 + random.random()))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expires_at(audit_date: str, ttl_days: int) -> int:
    day = datetime.strptime(audit_date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int((day + timedelta(days=ttl_days)).timestamp())


def instance_item(*, host: Host, outcome: HostOutcome | None, status: Status, failed: list[str],
                  verdicts: Mapping[str, Verdict], detail: str, audit_date: str, run_id: str,
                  checked_at: datetime, ttl_days: int, mode: str = "live", profile: str = "audit-trail",
                  advisory: list[str] | None = None, transport: str = "ssh",
                  waived: list[str] | None = None, stream_names: Iterable[tuple[str, str]] = (),
                  attributed: tuple[str, str] | None = None) -> dict[str, Any]:
    """The evidence item for one instance on one day (pure): the one place an EvidenceItem is built."""
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
        output_truncated=bool(outcome and outcome.truncated), ssh_attempts=outcome.attempts if outcome else 0,
        transport_evidence=dict(outcome.transport_evidence) if outcome else {},
        expires_at=expires_at(audit_date, ttl_days),
        stream_names=[list(n) for n in stream_names], stream_attributed_by_name=list(attributed or []),
    ).to_item()
    # The hash of what readers see, stored with it: the day's digest carries it, so the report can tell a
    # staged copy that is exactly the stored item from one that is not (include/report/staging.py).
    return {**item, ITEM_HASH: item_sha256(item)}


def to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


class EvidenceStore:
    """Thin wrapper over a boto3 DynamoDB resource (from the Amazon provider's DynamoDBHook)."""

    def __init__(self, resource, table_name: str) -> None:
        self.resource = resource
        self.client = resource.meta.client
        self.table_name = table_name
        self.table = resource.Table(table_name)

    @classmethod
    def open(cls, table_name: str) -> "EvidenceStore":
        """The evidence account's table (always `aws_default`: evidence is written centrally)."""
        from include.aws.clients import dynamodb_resource

        return cls(dynamodb_resource(), table_name)

    # -- setup
    def ensure_tables(self) -> None:
        ensure_tables(self.client, self.table_name)

    # -- instance items
    def put_items(self, items: Iterable[dict], max_attempts: int = 8, base_delay: float = 0.05) -> int:
        """Batched upsert (25 a call); unprocessed items (throttling) are resent with exponential backoff.

        Duplicate keys in one call are rejected by DynamoDB, so the last item per key wins locally first.
        Raises if anything is still unprocessed after max_attempts: evidence is never dropped silently.
        """
        unique = {(it["instance_id"], it["audit_date"]): to_dynamo(it) for it in items}
        requests = [{"PutRequest": {"Item": item}} for item in unique.values()]
        for start in range(0, len(requests), 25):
            pending = {self.table_name: requests[start:start + 25]}
            for attempt in range(max_attempts):
                response = self.resource.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                _backoff(attempt, base_delay)
            if pending:
                left = sum(len(v) for v in pending.values())
                raise RuntimeError(f"{left} evidence items still unprocessed after {max_attempts} attempts")
        return len(unique)

    def replace_item(self, item: dict, expected: Mapping[str, Any]) -> bool:
        """Write `item` over the current one only while that is still `expected`: the same run's observation
        (run_id, checked_at), not amended since. False when it was replaced meanwhile (a newer check decides)."""
        try:
            self.table.put_item(Item=to_dynamo(item), ConditionExpression=Attr("run_id").eq(expected["run_id"])
                                & Attr("checked_at").eq(expected["checked_at"]) & Attr("amended").not_exists())
            return True
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False

    def batch_get(self, table: str, keys: list[dict], projection: str | None = None) -> list[dict]:
        found: list[dict] = []
        for start in range(0, len(keys), 100):
            request: dict = {"Keys": keys[start:start + 100]}
            if projection:
                request["ProjectionExpression"] = projection
                request["ExpressionAttributeNames"] = {f"#{p}": p for p in projection.replace("#", "").split(", ")}
            pending = {table: request}
            for attempt in range(READ_ATTEMPTS):  # unprocessed keys come back under throttling: ask again
                if attempt:
                    _backoff(attempt - 1, READ_BASE_DELAY_S)
                response = self.resource.batch_get_item(RequestItems=pending)
                found.extend(response.get("Responses", {}).get(table, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if pending:  # never a silently shorter answer: a missing host would read as one not checked
                left = sum(len(spec.get("Keys", [])) for spec in pending.values())
                raise IncompleteRead(f"{left} of {len(request['Keys'])} keys of {table} still unprocessed after "
                                     f"{READ_ATTEMPTS} attempts")
        return found

    def recorded_by_run(self, audit_date: str, instance_ids: list[str], run_id: str) -> set[str]:
        """Ids this run already stored for the day: a task retry skips them instead of redoing them."""
        keys = [{"instance_id": i, "audit_date": audit_date} for i in instance_ids]
        items = self.batch_get(self.table_name, keys, "#instance_id, #run_id")
        return {it["instance_id"] for it in items if it.get("run_id") == run_id}

    def query_all(self, kwargs: dict) -> list[dict]:
        """Every page of one Query."""
        items: list[dict] = []
        while True:
            response = self.table.query(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs = {**kwargs, "ExclusiveStartKey": response["LastEvaluatedKey"]}

    def day_items(self, audit_date: str, run_id: str | None = None, fields: Iterable[str] | None = None,
                  status: str | None = None) -> list[dict]:
        """Instance items of a day via the day index, optionally only one run's and/or one status.

        The filters run server-side and `fields` projects the items, so a step that needs three attributes
        of 10,000 items does not pull 10,000 full evidence records over the wire (nor parse them).
        """
        condition = Attr("item_type").eq("instance")
        if run_id is not None:
            condition &= Attr("run_id").eq(run_id)
        if status is not None:
            condition &= Attr("status").eq(status)
        kwargs: dict = {"IndexName": DAY_INDEX, "KeyConditionExpression": Key("audit_date").eq(audit_date),
                        "FilterExpression": condition}
        if fields is not None:
            names = sorted({"instance_id", "audit_date", "item_type", "run_id", *fields})
            kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
            kwargs["ExpressionAttributeNames"] = {f"#p{i}": name for i, name in enumerate(names)}
        return self.query_all(kwargs)

    # -- run summary
    # -- per-day items of the fleet (run summary, alert state): one partition each, keyed by day
    def put_day_item(self, partition: str, item_type: str, audit_date: str, fields: Mapping[str, Any],
                      ttl_days: int) -> None:
        item = {"instance_id": partition, "audit_date": audit_date, "item_type": item_type,
                "expires_at": expires_at(audit_date, ttl_days), **fields}
        self.table.put_item(Item=to_dynamo(item))

    def get_day_item(self, partition: str, audit_date: str) -> dict | None:
        return self.table.get_item(Key={"instance_id": partition, "audit_date": audit_date}).get("Item")

    def _latest_day_item(self, partition: str, before: str | None = None, projection: str | None = None) -> dict | None:
        """The newest item of a partition (strictly before `before` when given): one Query, one item."""
        condition = Key("instance_id").eq(partition)
        if before is not None:
            condition = condition & Key("audit_date").lt(before)
        kwargs: dict = {"KeyConditionExpression": condition, "ScanIndexForward": False, "Limit": 1}
        if projection:
            kwargs["ProjectionExpression"] = projection
        items = self.table.query(**kwargs).get("Items", [])
        return items[0] if items else None

    def put_summary(self, audit_date: str, summary: RunSummary | Mapping[str, Any], ttl_days: int) -> None:
        fields = summary.to_item() if isinstance(summary, RunSummary) else summary
        self.put_day_item(SUMMARY_ID, "run_summary", audit_date, fields, ttl_days)

    def get_summary(self, audit_date: str) -> dict | None:
        return self.get_day_item(SUMMARY_ID, audit_date)

    def run_summary(self, audit_date: str) -> RunSummary | None:
        item = self.get_summary(audit_date)
        return RunSummary.from_item(item) if item else None

    def summaries(self, first_day: str, last_day: str) -> list[dict]:
        """Run-summary items between two days (inclusive), oldest first: one Query on the summary partition."""
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(SUMMARY_ID)
                        & Key("audit_date").between(first_day, last_day)}
        return self.query_all(kwargs)

    def previous_audit_day(self, audit_date: str) -> str | None:
        """The latest day before `audit_date` that has a run summary (days can be skipped)."""
        item = self._latest_day_item(SUMMARY_ID, before=audit_date, projection="audit_date")
        return item["audit_date"] if item else None

    def emailed_by(self, audit_date: str) -> str | None:
        """The run id whose report email for this day went out, if any."""
        return (self.get_summary(audit_date) or {}).get("emailed_run_id")

    def mark_emailed(self, audit_date: str, run_id: str) -> None:
        """Called right after a successful send, so a retried send task does not mail twice."""
        self.table.update_item(
            Key={"instance_id": SUMMARY_ID, "audit_date": audit_date},
            UpdateExpression="SET emailed_run_id = :r, emailed_at = :t",
            ExpressionAttributeValues={":r": run_id, ":t": iso(utc_now())},
        )

    def host_history(self, instance_id: str, limit: int = 90) -> list[dict]:
        """One instance's items, newest day first: one Query on its partition (the table's key)."""
        response = self.table.query(KeyConditionExpression=Key("instance_id").eq(instance_id),
                                    ScanIndexForward=False, Limit=limit)
        return [it for it in response.get("Items", []) if it.get("item_type") == "instance"]

    def latest_audit_day(self) -> str | None:
        item = self._latest_day_item(SUMMARY_ID, projection="audit_date")
        return item["audit_date"] if item else None

    # -- compliance alerts
    def alert_state(self, audit_date: str) -> dict | None:
        return self.get_day_item(ALERTS_ID, audit_date)

    def previous_alert_state(self, audit_date: str) -> dict[str, dict[str, str]]:
        """Open findings as of the latest day before `audit_date` that recorded alert state."""
        item = self._latest_day_item(ALERTS_ID, before=audit_date)
        return dict(item.get("open") or {}) if item else {}

    def put_alert_state(self, audit_date: str, state: Mapping[str, Any], ttl_days: int) -> None:
        self.put_day_item(ALERTS_ID, "alert_state", audit_date, state, ttl_days)

    # -- documents in chunks (include/evidence/chunks.py): the first chunk holds the count, the hash and `meta`
    def _put_chunks(self, prefix: str, item_type: str, audit_date: str, parts: list[bytes], sha: str,
                    meta: Mapping[str, Any], ttl_days: int) -> None:
        from boto3.dynamodb.types import Binary

        # The first chunk last: a reader that finds it finds every other one.
        for n in [*range(1, len(parts)), 0]:
            extra = {"chunks": len(parts), "sha256": sha, **meta} if n == 0 else {}
            self.put_day_item(f"{prefix}{n}", item_type, audit_date, {"data": Binary(parts[n]), **extra}, ttl_days)

    def _get_chunks(self, prefix: str, audit_date: str) -> tuple[list[bytes], dict] | None:
        first = self.get_day_item(f"{prefix}0", audit_date)
        if not first:
            return None
        n = int(first["chunks"])
        rest = self.batch_get(self.table_name, [{"instance_id": f"{prefix}{i}", "audit_date": audit_date}
                                                 for i in range(1, n)]) if n > 1 else []
        by_part = {it["instance_id"]: bytes(it["data"].value) for it in rest}
        return [bytes(first["data"].value)] + [by_part.get(f"{prefix}{i}", b"") for i in range(1, n)], first

    # -- the day's digest (include/evidence/digest.py): statuses for drift, the index the report matches against
    def put_digest(self, audit_date: str, digest: Mapping[str, Any], ttl_days: int) -> int:
        """Write the day's digest as chunk items (the first holds the count and the hash); returns the count."""
        from include.evidence import digest as day_digest

        parts, sha = day_digest.encode(digest)
        self._put_chunks(DIGEST_PREFIX, "day_digest", audit_date, parts, sha, {"hosts": len(digest)}, ttl_days)
        return len(parts)

    def digest(self, audit_date: str) -> dict | None:
        """The day's digest (instance id → day_digest.Entry), or None when the day has none (sealed before
        digests, or never): callers then read the day's items as before."""
        from include.evidence import digest as day_digest

        found = self._get_chunks(DIGEST_PREFIX, audit_date)
        return day_digest.decode(found[0], found[1]["sha256"]) if found else None

    # -- a run's listing of a log group's fresh streams (include/logs/stream_index.py), shared by its batches
    @staticmethod
    def _stream_index_prefix(run_id: str, group: str) -> str:
        import hashlib

        return f"{STREAM_INDEX_PREFIX}{run_id}#{hashlib.sha256(group.encode()).hexdigest()[:16]}#"

    def put_stream_index(self, audit_date: str, run_id: str, group: str, streams: Mapping[str, Any],
                         complete: bool) -> None:
        from include.evidence import chunks

        parts, sha = chunks.pack({"group": group, "streams": streams})
        self._put_chunks(self._stream_index_prefix(run_id, group), "stream_index", audit_date, parts, sha,
                         {"streams_listed": len(streams), "complete": complete, "listed_at": iso(utc_now())},
                         STREAM_INDEX_TTL_DAYS)

    def stream_index(self, audit_date: str, run_id: str, group: str) -> dict | None:
        """{stream name: {lastEventTimestamp, lastIngestionTime}} as listed by this run, or None (not yet)."""
        from include.evidence import chunks

        found = self._get_chunks(self._stream_index_prefix(run_id, group), audit_date)
        if not found:
            return None
        doc = chunks.unpack(found[0], found[1]["sha256"], "stream index")
        return dict(doc["streams"]) if doc.get("group") == group else None

    def claim_stream_index(self, audit_date: str, run_id: str, group: str, owner: str, lease_s: float) -> bool:
        """Whether `owner` may list the group for the run: no one holds the lease, or its holder's has expired."""
        now = time.time()
        try:
            self.table.put_item(
                Item={"instance_id": self._stream_index_prefix(run_id, group) + "lease", "audit_date": audit_date,
                      "item_type": "stream_index_lease", "owner": owner, "lease_until": Decimal(str(round(now + lease_s))),
                      "expires_at": expires_at(audit_date, STREAM_INDEX_TTL_DAYS)},
                ConditionExpression="attribute_not_exists(instance_id) OR lease_until < :now",
                ExpressionAttributeValues={":now": Decimal(str(round(now)))})
            return True
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False

    def items_by_id(self, audit_date: str, instance_ids: Iterable[str]) -> list[dict]:
        """Full items of these instances on the day (BatchGetItem, 100 a call)."""
        keys = [{"instance_id": i, "audit_date": audit_date} for i in dict.fromkeys(instance_ids)]
        return self.batch_get(self.table_name, keys) if keys else []
