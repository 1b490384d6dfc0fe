"""A run's events → one `Recheck` per host (pure, deterministic order).

A tamper record from a stream that names no instance id carries instance_id "": `owners(event)` (injected: the
watch looks up which hosts' proven streams are that (group, stream)) says which hosts own it — none is a
Rejected, several are one Recheck each. Events then fold per (account, region, instance id): the host is
re-checked once, as its most serious trigger (records.PRIORITY), from its earliest event; a burst of 1,000
records is one Recheck. The same event delivered twice (SQS is at-least-once; same MessageId and content)
counts once. A host whose only events are launches is not checked before `launch_grace_minutes` after its
latest launch: a new instance needs to boot and start its agent before a check can pass.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from include.core.clock import iso, parse_moment
from include.watch.records import LAUNCH, PRIORITY, TAMPER_KINDS, Recheck, Rejected, WatchEvent

MAX_RECORDS = 5


def _when(at: str) -> datetime:
    return parse_moment(at) or datetime.max.replace(tzinfo=timezone.utc)  # unreadable: sorts last, never "earliest"


def _rank(event: WatchEvent) -> tuple:
    """Most serious first: the trigger's PRIORITY, then the tamper kind's order, then time."""
    trigger = PRIORITY.index(event.trigger) if event.trigger in PRIORITY else len(PRIORITY)
    kind = TAMPER_KINDS.index(event.tamper) if event.tamper in TAMPER_KINDS else len(TAMPER_KINDS)
    return trigger, kind, _when(event.at), event.record, event.message_id


def fold(events: Iterable[WatchEvent], owners: Callable[[WatchEvent], list[str]], *,
         launch_grace_minutes: float) -> tuple[list[Recheck], list[Rejected]]:
    """One Recheck per host the events concern, sorted by (account, region, instance id); a Rejected per
    stream no host owns (with how many events it carried)."""
    distinct: dict[WatchEvent, None] = {}
    for event in events:
        distinct.setdefault(event, None)  # same MessageId and same content: one event
    owned_by: dict[tuple[str, str, str, str], list[str]] = {}
    unowned: dict[tuple[str, str], list[WatchEvent]] = {}
    by_host: dict[tuple[str, str, str], list[WatchEvent]] = {}
    for event in distinct:
        targets = [event.instance_id]
        if not event.instance_id:
            key = (event.account, event.region, event.log_group, event.log_stream)
            if key not in owned_by:
                owned_by[key] = sorted(set(owners(event)))
            targets = owned_by[key]
            if not targets:
                unowned.setdefault((event.log_group, event.log_stream), []).append(event)
                continue
        for instance_id in targets:
            by_host.setdefault((event.account, event.region, instance_id), []).append(
                event if event.instance_id else replace(event, instance_id=instance_id))
    rechecks = [_recheck(key, evs, launch_grace_minutes) for key, evs in sorted(by_host.items())]
    rejected = []
    for (group, stream), evs in sorted(unowned.items()):
        first = min(evs, key=_rank)
        rejected.append(Rejected(f"no host owns stream {group} {stream} ({len(evs)} events)", first.record[:200],
                                 first.message_id))
    return rechecks, rejected


def _recheck(key: tuple[str, str, str], events: list[WatchEvent], grace_minutes: float) -> Recheck:
    account, region, instance_id = key
    ranked = sorted(events, key=_rank)
    records: list[str] = []
    for event in ranked:
        if event.record and event.record not in records and len(records) < MAX_RECORDS:
            records.append(event.record)
    first = min(events, key=lambda e: (_when(e.at), e.at))
    last = max(events, key=lambda e: (_when(e.at), e.at))
    not_before = ""
    if all(e.trigger == LAUNCH for e in events):
        latest = max(_when(e.at) for e in events)
        if latest != datetime.max.replace(tzinfo=timezone.utc):
            not_before = iso(latest + timedelta(minutes=grace_minutes))
    return Recheck(instance_id=instance_id, region=region, trigger=ranked[0].trigger, account=account,
                   first_at=first.at, last_at=last.at, not_before=not_before, events=len(events),
                   tamper=[k for k in TAMPER_KINDS if any(e.tamper == k for e in events)], records=records)
