"""The evidence table's shared layer: one class every owner's store is built over (evidence, stream index,
alert state, remediation), so none of them reaches into another's.

The table is keyed (instance_id, audit_date); an owner's per-day items sit in partitions of their own
(`#run-summary`, `#alerts`, ...), one item per day. Here: batched writes and reads that never come back short,
every page of a Query, one partition's day items, and JSON documents cut into chunks (include/aws/chunks.py).
Nothing here deletes; expiry is DynamoDB TTL on expires_at.
"""
from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key

from include.aws.tables import ensure_tables
from include.core.clock import expires_at

# BatchGetItem: keys DynamoDB hands back unprocessed (throttling) are asked again, backed off, this many times in
# all; then the read fails (IncompleteRead) rather than return part of what was asked.
READ_ATTEMPTS = 8
READ_BASE_DELAY_S = 0.05


class IncompleteRead(RuntimeError):
    """A read that could not get every key it asked for: the task fails and is retried, no step goes on short."""


def _backoff(attempt: int, base_delay: float) -> None:
    """Exponential backoff with jitter, capped at 5 s: before resending what DynamoDB left unprocessed."""
    time.sleep(min(5.0, base_delay * 2 ** attempt) * (0.5 + random.random()))


def to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


class DayTable:
    """Thin wrapper over a boto3 DynamoDB resource (from the Amazon provider's DynamoDBHook) and the table."""

    def __init__(self, resource, table_name: str) -> None:
        self.resource = resource
        self.client = resource.meta.client
        self.table_name = table_name
        self.table = resource.Table(table_name)

    @classmethod
    def open(cls, table_name: str):
        """The evidence account's table (always `aws_default`: evidence is written centrally)."""
        from include.aws.clients import dynamodb_resource

        return cls(dynamodb_resource(), table_name)

    # -- setup
    def ensure_tables(self) -> None:
        ensure_tables(self.client, self.table_name)

    # -- batches
    def put_items(self, items: Iterable[dict], max_attempts: int = 8, base_delay: float = 0.05) -> int:
        """Batched upsert (25 a call); unprocessed items (throttling) are resent with exponential backoff.

        Unconditional: it overwrites. Never how an observation is stored (include/evidence/store.py:
        EvidenceStore.put_observations keeps what it replaces); for seeding fake history in tests and the bench.

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

    def batch_get(self, table: str, keys: list[dict], projection: str | None = None,
                  consistent: bool = False) -> list[dict]:
        found: list[dict] = []
        for start in range(0, len(keys), 100):
            request: dict = {"Keys": keys[start:start + 100], **({"ConsistentRead": True} if consistent else {})}
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

    def query_all(self, kwargs: dict) -> list[dict]:
        """Every page of one Query."""
        items: list[dict] = []
        while True:
            response = self.table.query(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs = {**kwargs, "ExclusiveStartKey": response["LastEvaluatedKey"]}

    # -- per-day items of the fleet (run summary, alert state, ...): one partition each, keyed by day
    def put_day_item(self, partition: str, item_type: str, audit_date: str, fields: Mapping[str, Any],
                     ttl_days: int) -> None:
        item = {"instance_id": partition, "audit_date": audit_date, "item_type": item_type,
                "expires_at": expires_at(audit_date, ttl_days), **fields}
        self.table.put_item(Item=to_dynamo(item))

    def get_day_item(self, partition: str, audit_date: str) -> dict | None:
        return self.table.get_item(Key={"instance_id": partition, "audit_date": audit_date}).get("Item")

    def latest_day_item(self, partition: str, before: str | None = None, projection: str | None = None) -> dict | None:
        """The newest item of a partition (strictly before `before` when given): one Query, one item."""
        condition = Key("instance_id").eq(partition)
        if before is not None:
            condition = condition & Key("audit_date").lt(before)
        kwargs: dict = {"KeyConditionExpression": condition, "ScanIndexForward": False, "Limit": 1}
        if projection:
            kwargs["ProjectionExpression"] = projection
        items = self.table.query(**kwargs).get("Items", [])
        return items[0] if items else None

    # -- documents in chunks (include/aws/chunks.py): the first chunk holds the count, the hash and `meta`
    def put_chunks(self, prefix: str, item_type: str, audit_date: str, parts: list[bytes], sha: str,
                   meta: Mapping[str, Any], ttl_days: int) -> None:
        from boto3.dynamodb.types import Binary

        # The first chunk last: a reader that finds it finds every other one.
        for n in [*range(1, len(parts)), 0]:
            extra = {"chunks": len(parts), "sha256": sha, **meta} if n == 0 else {}
            self.put_day_item(f"{prefix}{n}", item_type, audit_date, {"data": Binary(parts[n]), **extra}, ttl_days)

    def get_chunks(self, prefix: str, audit_date: str) -> tuple[list[bytes], dict] | None:
        first = self.get_day_item(f"{prefix}0", audit_date)
        if not first:
            return None
        n = int(first["chunks"])
        rest = self.batch_get(self.table_name, [{"instance_id": f"{prefix}{i}", "audit_date": audit_date}
                                                 for i in range(1, n)]) if n > 1 else []
        by_part = {it["instance_id"]: bytes(it["data"].value) for it in rest}
        return [bytes(first["data"].value)] + [by_part.get(f"{prefix}{i}", b"") for i in range(1, n)], first
