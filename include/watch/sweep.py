"""The silence sweep (pure): which COMPLIANT hosts' audit streams have gone quiet, as messages for the events queue.

A host that passed its last check and whose stream then stops receiving records (the agent killed, the audit log
rotated away, the network cut) is invisible until the next daily run: the sweep finds it between runs. The
caller gives the hosts to watch — each whose latest current item (today or yesterday) is COMPLIANT, with the
streams it was proven to own — and each group's listing of fresh streams as
include/logs/stream_index.list_fresh returns it ({stream: timestamps}, complete). A host is silent when none
of its streams is fresh at `now` (its newest event older than `stream_max_age_minutes`). A stream the listing
cannot vouch for either way (its group not listed, or the listing cut short) is `undecided`, never silent:
the daily run judges it with exact lookups.

`silence_message` builds the sweep's own message (include/watch/messages.read reads it back,
`trigger: silence`).

Cost: listing a group takes ceil(fresh / 50) + 1 DescribeLogStreams calls at most (pages of 50, newest first,
stopping at the first stale stream): at 100,000 hosts in one group ≈ 2,001 calls, 80 s at the account's
25 requests/s — once per sweep, whatever the number of silent hosts.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from include.checks.parsers import last_event_ms
from include.core.clock import iso
from include.logs.stream_index import PAGE
from include.watch.messages import SWEEP_DETAIL_TYPE, SWEEP_SOURCE


@dataclass(frozen=True)
class WatchedStream:
    """One stream a COMPLIANT host was proven to own at its latest check."""

    instance_id: str
    region: str
    log_group: str
    log_stream: str
    account: str = ""


@dataclass
class SweepResult:
    messages: list[dict] = field(default_factory=list)  # one silence message per silent host
    undecided: list[WatchedStream] = field(default_factory=list)  # streams no complete listing covers


GroupKey = tuple[str, str, str]  # (account, region, log group): one listing each
Listing = tuple[Mapping[str, Mapping], bool]  # list_fresh's ({stream: timestamps}, complete)


def silence_message(*, instance_id: str, region: str, account: str, log_group: str, log_stream: str,
                    last_event_ms: int | None, now: datetime) -> dict:
    """The sweep's message for one silent host (`last-event` "" when no listing saw its stream)."""
    last = iso(datetime.fromtimestamp(last_event_ms / 1000, tz=timezone.utc)) if last_event_ms else ""
    return {"source": SWEEP_SOURCE, "detail-type": SWEEP_DETAIL_TYPE, "region": region, "account": account,
            "time": iso(now),
            "detail": {"instance-id": instance_id, "log-group": log_group, "log-stream": log_stream,
                       "last-event": last}}


def silent(hosts: Iterable[WatchedStream], fresh: Mapping[GroupKey, Listing], *, now: datetime,
           stream_max_age_minutes: float) -> SweepResult:
    """The silence messages of the hosts none of whose streams is fresh at `now`, sorted by host."""
    cutoff_ms = now.timestamp() * 1000 - stream_max_age_minutes * 60_000
    per_host: dict[tuple[str, str, str], list[tuple[WatchedStream, bool | None, int]]] = {}
    for watched in hosts:
        listing = fresh.get((watched.account, watched.region, watched.log_group))
        state: bool | None  # True fresh, False silent, None undecided
        last = 0
        if listing is None:
            state = None
        else:
            streams, complete = listing
            entry = streams.get(watched.log_stream)
            if entry is not None:
                last = last_event_ms(entry)
                state = last >= cutoff_ms
            else:
                state = False if complete else None
        per_host.setdefault((watched.account, watched.region, watched.instance_id), []).append(
            (watched, state, last))
    result = SweepResult()
    for (account, region, instance_id), streams in sorted(per_host.items()):
        states = [s for _, s, _ in streams]
        if any(s is True for s in states):
            continue
        if any(s is None for s in states):
            result.undecided.extend(w for w, s, _ in streams if s is None)
            continue
        newest = max(streams, key=lambda t: (t[2], t[0].log_group, t[0].log_stream))
        result.messages.append(silence_message(
            instance_id=instance_id, region=region, account=account, log_group=newest[0].log_group,
            log_stream=newest[0].log_stream, last_event_ms=newest[2] or None, now=now))
    return result


def calls_per_sweep(fresh_streams_per_group: Mapping[object, int] | Iterable[int]) -> int:
    """DescribeLogStreams calls one sweep makes at most: ceil(fresh / 50) + 1 per group (the last page holds
    the first stale stream, or is the end)."""
    counts = fresh_streams_per_group.values() if isinstance(fresh_streams_per_group, Mapping) \
        else fresh_streams_per_group
    return sum(math.ceil(max(0, int(n)) / PAGE) + 1 for n in counts)
