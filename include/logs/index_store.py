"""The stream index's items in the evidence table (include/logs/stream_index.py): a run's listing of a log
group's fresh streams, in chunks, and the lease that lets one batch list it. A run's working data, not evidence."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from include.aws import chunks
from include.aws.day_table import DayTable
from include.core.clock import expires_at, iso, utc_now

STREAM_INDEX_PREFIX = "#stream-index#"  # + run id, group hash, chunk number or "lease"
STREAM_INDEX_TTL_DAYS = 2  # a run's working data, not evidence


class StreamIndexStore:
    """The stream index owner's reads and writes, over the table layer."""

    def __init__(self, table: DayTable) -> None:
        self.table = table

    @staticmethod
    def _prefix(run_id: str, group: str) -> str:
        return f"{STREAM_INDEX_PREFIX}{run_id}#{hashlib.sha256(group.encode()).hexdigest()[:16]}#"

    def put_stream_index(self, audit_date: str, run_id: str, group: str, streams: Mapping[str, Any],
                         complete: bool, listed_at_ms: int | None = None) -> None:
        """`scope` "all": the listing holds every stream of the group it reached (include/logs/stream_index.py)."""
        parts, sha = chunks.pack({"group": group, "streams": streams, "complete": complete, "scope": "all",
                                  "listed_at_ms": listed_at_ms})
        self.table.put_chunks(self._prefix(run_id, group), "stream_index", audit_date, parts, sha,
                              {"streams_listed": len(streams), "complete": complete, "listed_at": iso(utc_now())},
                              STREAM_INDEX_TTL_DAYS)

    def stream_index(self, audit_date: str, run_id: str, group: str) -> dict | None:
        """{stream name: {lastEventTimestamp, lastIngestionTime}} as listed by this run, or None (not yet)."""
        doc = self.stream_listing(audit_date, run_id, group)
        return dict(doc["streams"]) if doc is not None else None

    def stream_listing(self, audit_date: str, run_id: str, group: str) -> dict | None:
        """The run's listing of the group as stored (streams, complete, scope, listed_at_ms), or None (not yet)."""
        found = self.table.get_chunks(self._prefix(run_id, group), audit_date)
        if not found:
            return None
        doc = chunks.unpack(found[0], found[1]["sha256"], "stream index")
        return doc if doc.get("group") == group else None

    def claim_stream_index(self, audit_date: str, run_id: str, group: str, owner: str, lease_s: float) -> bool:
        """Whether `owner` may list the group for the run: no one holds the lease, or its holder's has expired."""
        now = time.time()
        table = self.table.table
        try:
            table.put_item(
                Item={"instance_id": self._prefix(run_id, group) + "lease", "audit_date": audit_date,
                      "item_type": "stream_index_lease", "owner": owner, "lease_until": Decimal(str(round(now + lease_s))),
                      "expires_at": expires_at(audit_date, STREAM_INDEX_TTL_DAYS)},
                ConditionExpression="attribute_not_exists(instance_id) OR lease_until < :now",
                ExpressionAttributeValues={":now": Decimal(str(round(now)))})
            return True
        except table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
