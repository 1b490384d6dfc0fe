"""AWS-side proof that the audit log arrives: look up the host's stream in CloudWatch Logs."""
from __future__ import annotations

import threading

from botocore.exceptions import ClientError


class StreamLookup:
    """describe_log_streams by exact name, cached per batch (several hosts may share a stream name)."""

    def __init__(self, logs_client) -> None:
        self.client = logs_client
        self._cache: dict[tuple[str, str], dict | None] = {}
        self._lock = threading.Lock()

    def describe(self, group: str, stream: str) -> dict | None:
        key = (group, stream)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = None
        try:
            # A prefix query can return longer names too: only an exact match counts.
            response = self.client.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream, limit=50)
            found = next((s for s in response.get("logStreams", []) if s.get("logStreamName") == stream), None)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        with self._lock:
            self._cache[key] = found
        return found
