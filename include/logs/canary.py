"""Find each host's canary in CloudWatch Logs: one bounded polling loop per batch, not one per host.

Each poll makes one search per log group for the batch's own canaries: FilterLogEvents with no stream names
and the pattern `"ec2-audit-canary" "<batch tag>"`, since the batch began. The tag is random per batch and
framed into every host's script (probes.frame), so a search returns this batch's events only — at most one
per host, a page or two however many canaries the rest of the run has written into the group. A canary
counts only as the marker's own audit record (`type=USER msg=audit(…): … msg='ec2-audit-canary …`), never as
the same words inside another log line, and only in the stream the host's agent config names (the event's own
`logStreamName`). FilterLogEvents
is 5 requests/s per account and Region and cannot be raised: polls are spaced by the requests they made
(docs/PERFORMANCE.md, "AWS API quotas").
"""
from __future__ import annotations

import time
from collections.abc import Callable

from botocore.exceptions import ClientError

from include.aws.errors import aws_reason
from include.checks.aws_side import AwsRefused, Canary, refuse_invalid_group
from include.checks.probes import CANARY_TOKEN, TAG_RE, audit_record_canary

# FilterLogEvents: 5 requests/s per account and Region, not adjustable. Each request a batch makes (a search or
# one of its pages) delays its next poll by this much, so the run's batches together stay under the quota with
# 25 % headroom.
FILTER_LOG_EVENTS_PER_S = 5.0
CANARY_POLL_S = 3.0


def canary_call_spacing_s(batches_in_run: int) -> float:
    return 1.25 * max(1, batches_in_run) / FILTER_LOG_EVENTS_PER_S


def pattern(tag: str) -> str:
    """Both terms must appear (a space between quoted terms is AND); the hyphenated one must be quoted."""
    if not TAG_RE.fullmatch(tag):
        raise ValueError("canary tag must be 16 lowercase hex digits")
    return f'"{CANARY_TOKEN}" "{tag}"'


def find_canaries(logs_client, canaries: list[Canary], tag: str, since_ms: int, wait_s: float,
                  poll_s: float = 3.0, per_call_s: float = 0.0,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                  ) -> dict[str, float | str | None]:
    """instance_id → seconds until its canary was seen in its own stream (None if not within wait_s), or, as a
    string, why its group could not be searched (an invalid name, access denied: AWS's reason). A group that
    fails is that group's hosts' ERROR; the others are searched on.

    Only canaries carrying `tag` (the batch's) are searched for: a host whose line names another tag is never
    found, and costs no search. After a poll of k requests (searches and their pages) the next poll waits at
    least max(poll_s, k × per_call_s), so a batch's share of the account's rate is kept however many pages
    its searches take."""
    started = clock()
    found: dict[str, float | str | None] = {c.instance_id: None for c in canaries}
    pending = {c.token: c for c in canaries if c.tag == tag}
    search = pattern(tag)
    while pending:
        calls = 0
        for group in sorted({c.group for c in pending.values()}):
            try:
                events, requests = _search(logs_client, group, since_ms, search)
            except AwsRefused as exc:
                for token in [t for t, c in pending.items() if c.group == group]:
                    found[pending.pop(token).instance_id] = str(exc)
                calls += 1
                continue
            calls += requests
            for stream, message in events:
                # Only the marker's own audit record counts: sudo and auth logs echo the command line.
                c = pending.get(token := audit_record_canary(message) or "")
                if c is not None and c.group == group and c.stream == stream:
                    found[pending.pop(token).instance_id] = round(clock() - started, 1)
        if not pending or clock() - started >= wait_s:
            break
        sleep(min(max(poll_s, calls * per_call_s), max(0.0, wait_s - (clock() - started))))
    return found


def _search(logs_client, group: str, since_ms: int, search: str) -> tuple[list[tuple[str, str]], int]:
    """(stream, message) of every event matching `search` in the group since `since_ms`, and the requests
    (pages) that took. Raises AwsRefused when AWS refuses the group (or its name is one AWS would refuse)."""
    refuse_invalid_group(group)
    kwargs = {"logGroupName": group, "startTime": since_ms, "filterPattern": search}
    events, requests = [], 0
    try:
        for page in logs_client.get_paginator("filter_log_events").paginate(**kwargs):
            requests += 1
            events += [(e.get("logStreamName", ""), e.get("message", "")) for e in page.get("events", [])]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise AwsRefused(f"FilterLogEvents on {group}: {aws_reason(exc)}") from exc
        requests += 1
    return events, requests
