"""Find each host's canary in CloudWatch Logs: one bounded polling loop per batch, not one per host.

Each poll searches each log group once for the canary marker since the batch began (FilterLogEvents without
stream names: one call, plus its pages, per group, where naming streams cost one call per 100 hosts), and a
canary counts only in the stream the host's agent config names (the event's own `logStreamName`). At 100,000
hosts in 16 batches that is 16 calls a poll instead of ~1,000: FilterLogEvents is 5 requests/s per account and
Region and cannot be raised (docs/PERFORMANCE.md, "AWS API quotas").
"""
from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from botocore.exceptions import ClientError

from include.checks.aws_side import Canary  # noqa: F401 - what is searched for
from include.checks.probes import CANARY_TOKEN

_TOKEN = re.compile(rf"{re.escape(CANARY_TOKEN)} [0-9a-fA-F-]{{16,64}}")


def find_canaries(logs_client, canaries: list[Canary], since_ms: int, wait_s: float, poll_s: float = 3.0,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                  ) -> dict[str, float | None]:
    """instance_id → seconds until its canary was seen in its own stream (None if not within wait_s)."""
    started = clock()
    found: dict[str, float | None] = {c.instance_id: None for c in canaries}
    pending = {c.token: c for c in canaries}
    while pending:
        by_group: dict[str, int] = defaultdict(int)
        for c in pending.values():
            by_group[c.group] += 1
        for group in by_group:
            for stream, message in _events(logs_client, group, since_ms):
                for token in _TOKEN.findall(message):
                    c = pending.get(token)
                    if c is not None and c.group == group and c.stream == stream:
                        found[pending.pop(token).instance_id] = round(clock() - started, 1)
        if not pending or clock() - started >= wait_s:
            break
        sleep(min(poll_s, max(0.0, wait_s - (clock() - started))))
    return found


def _events(logs_client, group: str, since_ms: int) -> Iterator[tuple[str, str]]:
    """(stream, message) of every canary event of the group since `since_ms`."""
    kwargs = {"logGroupName": group, "startTime": since_ms, "filterPattern": f'"{CANARY_TOKEN}"'}
    try:
        for page in logs_client.get_paginator("filter_log_events").paginate(**kwargs):
            for event in page.get("events", []):
                yield event.get("logStreamName", ""), event.get("message", "")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
