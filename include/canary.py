"""Find each host's canary in CloudWatch Logs: one bounded polling loop per batch, not one per host.

FilterLogEvents takes up to 100 stream names per call, so a batch's canaries are searched group by group,
100 streams at a time, until all are found or the wait is over.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from botocore.exceptions import ClientError

from include.checks.aws_side import Canary  # noqa: F401 - what is searched for
from include.checks.probes import CANARY_TOKEN


def find_canaries(logs_client, canaries: list[Canary], since_ms: int, wait_s: float, poll_s: float = 3.0,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                  ) -> dict[str, float | None]:
    """instance_id → seconds until its canary was seen (None if not within wait_s)."""
    started = clock()
    found: dict[str, float | None] = {c.instance_id: None for c in canaries}
    pending = {c.token: c for c in canaries}
    while pending:
        by_group: dict[str, set[str]] = defaultdict(set)
        for c in pending.values():
            by_group[c.group].add(c.stream)
        for group, streams in by_group.items():
            names = sorted(streams)
            for start in range(0, len(names), 100):
                for message in _messages(logs_client, group, names[start:start + 100], since_ms):
                    for token in [t for t in pending if t in message]:
                        found[pending.pop(token).instance_id] = round(clock() - started, 1)
        if not pending or clock() - started >= wait_s:
            break
        sleep(min(poll_s, max(0.0, wait_s - (clock() - started))))
    return found


def _messages(logs_client, group: str, streams: list[str], since_ms: int):
    kwargs = {"logGroupName": group, "logStreamNames": streams, "startTime": since_ms,
              "filterPattern": f'"{CANARY_TOKEN}"'}
    try:
        for page in logs_client.get_paginator("filter_log_events").paginate(**kwargs):
            for event in page.get("events", []):
                yield event.get("message", "")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
