"""One listing of a log group's streams per run, shared by the run's batches.

Streams named by instance id (the agent's default) are found by each batch's own prefix listings
(include/logs/streams.py). Other names (`{hostname}`, `{ip_address}`, a prefix of one's own) used to cost one
DescribeLogStreams per host: at 100,000 hosts that is 4,000 s of the account's 25/s, and each batch's share
runs past its judging budget. Here, once a batch has asked for more than a few such names in a group, the
group is listed once for the whole run — every stream, fresh or stale, with both of its timestamps, 50 a page:
~2,000 calls for 100,000 streams. The first batch to get there takes a lease (a conditional write) and lists;
the others wait for its result in the evidence table, bounded, and look streams up one by one if it never comes.

A listed stream still fresh at judging time is fresh (AWS's own description of it, at most minutes old, can
only be staler than a new lookup). A COMPLETE listing also answers the rest: a stream it holds as stale by now
is stale "as listed at" the listing's start, one it lacks did not exist then. Those answers are re-checked
exactly while the batch can afford it (include/logs/streams.py) and stand, saying so, when it cannot: never a
PASS from anything but a fresh description, and never an ERROR for lack of budget where the listing answers.
A listing cut at MAX_PAGES answers "fresh" only, as before.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from include.checks.parsers import ABSENT, LISTED_AT, last_event_ms
from include.core.clock import iso

log = logging.getLogger(__name__)

PAGE = 50  # DescribeLogStreams' maximum page size
MAX_PAGES = 4_000  # 200,000 streams: past that the listing is cut (and marked incomplete)
LEASE_S = 900.0  # a lister that dies leaves the lease to the next batch after this long
WAIT_S = 600.0  # how long a batch waits for another batch's listing before it looks streams up itself
POLL_S = 2.0
FIELDS = ("lastEventTimestamp", "lastIngestionTime")


def list_fresh(logs_client, group: str, cutoff_ms: int, before_call: Callable[[], None] = lambda: None,
               max_pages: int = MAX_PAGES) -> tuple[dict[str, dict], bool]:
    """The group's streams whose last event is at or after `cutoff_ms`: ({name: their timestamps},
    complete). Pages are newest first, so the first older stream ends the listing."""
    return _listing(logs_client, {"logGroupName": group, "orderBy": "LastEventTime", "descending": True},
                    before_call, max_pages, cutoff_ms)


def list_group(logs_client, group: str, before_call: Callable[[], None] = lambda: None,
               max_pages: int = MAX_PAGES) -> tuple[dict[str, dict], bool]:
    """Every stream of the group with its timestamps: ({name: timestamps}, complete). In name order, not
    LastEventTime: a stream that receives an event while the listing pages would jump to the front of a
    LastEventTime order, past the listing's place, and be missed, then read as absent. Names do not move;
    only a stream created during the listing can be missed, and it did not exist when the listing began."""
    return _listing(logs_client, {"logGroupName": group}, before_call, max_pages, None)


def _listing(logs_client, kwargs: dict, before_call: Callable[[], None], max_pages: int,
             cutoff_ms: int | None) -> tuple[dict[str, dict], bool]:
    found: dict[str, dict] = {}
    kwargs = {**kwargs, "limit": PAGE}
    try:
        for _ in range(max_pages):
            before_call()
            page = logs_client.describe_log_streams(**kwargs)
            for s in page.get("logStreams", []):
                if cutoff_ms is not None and int(s.get("lastEventTimestamp") or 0) < cutoff_ms:
                    return found, True
                found[s["logStreamName"]] = {k: int(s[k]) for k in FIELDS if s.get(k) is not None}
            if not page.get("nextToken"):
                return found, True
            kwargs["nextToken"] = page["nextToken"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        return {}, True
    return found, False


@dataclass(frozen=True)
class Listing:
    """A run's listing of one group, as its batches read it."""

    streams: dict[str, dict]  # name → {lastEventTimestamp, lastIngestionTime}
    complete: bool = False  # every stream of the group (not cut at MAX_PAGES, not an older fresh-only listing)
    listed_at_ms: int = 0  # when the listing began: a stream it lacks did not exist then

    @classmethod
    def from_doc(cls, doc: dict | None) -> Listing | None:
        if doc is None:
            return None
        # Only a listing of the whole group answers stale and missing streams ("scope": older listings held the
        # fresh ones only, and their "complete" meant that).
        complete = doc.get("scope") == "all" and doc.get("complete") is True and bool(doc.get("listed_at_ms"))
        return cls(dict(doc.get("streams") or {}), complete, int(doc.get("listed_at_ms") or 0))


@dataclass(frozen=True)
class Listed:
    """The run's listing's answer for one stream."""

    description: dict  # as listed; LISTED_AT set when the answer is not "fresh", ABSENT when not in the listing
    fresh: bool


class SharedIndex:
    """A batch's view of the run's group listings: lists a group itself, or waits for the batch that does."""

    def __init__(self, store, logs_client, audit_date: str, run_id: str, max_age_minutes: int,
                 before_call: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, wait_s: float = WAIT_S) -> None:
        self.store, self.client = store, logs_client
        self.audit_date, self.run_id, self.max_age_ms = audit_date, run_id, max_age_minutes * 60_000
        self.before_call, self.clock, self.sleep, self.wait_s = before_call, clock, sleep, wait_s
        self.owner = f"{run_id}/{uuid.uuid4().hex[:12]}"
        self._groups: dict[str, Listing] = {}
        self._lock = threading.Lock()
        self.listed = 0  # groups this batch listed itself (the tests read it)

    def fresh(self, group: str, stream: str) -> dict | None:
        """The stream's description from the run's listing when it is fresh now; None: look it up exactly."""
        listed = self.answer(group, stream)
        return listed.description if listed is not None and listed.fresh else None

    def answer(self, group: str, stream: str) -> Listed | None:
        """What the run's listing says of the stream; None when it cannot say (not listed, or listed as stale or
        absent by an incomplete listing): look it up exactly."""
        listing = self._listing(group)
        entry = listing.streams.get(stream)
        if entry is not None and last_event_ms(entry) >= self.clock() * 1000 - self.max_age_ms:
            return Listed({"logStreamName": stream, **entry}, True)
        if not listing.complete:
            return None  # stale by now or not listed: a newer event, or the stream, may lie past the cut
        at = iso(datetime.fromtimestamp(listing.listed_at_ms / 1000, tz=timezone.utc))
        if entry is None:
            return Listed({"logStreamName": stream, LISTED_AT: at, ABSENT: True}, False)
        return Listed({"logStreamName": stream, **entry, LISTED_AT: at}, False)

    def _listing(self, group: str) -> Listing:
        with self._lock:  # one batch asks once per group; its other hosts wait for the answer
            if group not in self._groups:
                self._groups[group] = self._shared(group)
            return self._groups[group]

    def _can_call(self) -> bool:
        try:
            self.before_call()
            return True
        except Exception:  # noqa: BLE001 - budget spent: never take the lease only to leave the others waiting
            return False

    def _shared(self, group: str) -> Listing:
        waited_from = self.clock()
        while True:
            listed = Listing.from_doc(self.store.stream_listing(self.audit_date, self.run_id, group))
            if listed is not None:
                return listed
            if self._can_call() and self.store.claim_stream_index(self.audit_date, self.run_id, group, self.owner,
                                                                   LEASE_S):
                started_ms = int(self.clock() * 1000)
                try:
                    streams, complete = list_group(self.client, group, self.before_call, MAX_PAGES)
                    self.store.put_stream_index(self.audit_date, self.run_id, group, streams, complete,
                                                listed_at_ms=started_ms)
                except Exception as exc:  # noqa: BLE001 - throttled past retries, budget spent: look up one by one
                    log.warning("listing %s failed (%s): this batch looks its streams up one by one", group, exc)
                    return Listing({})
                self.listed += 1
                log.info("listed %d streams of %s for run %s%s", len(streams), group, self.run_id,
                         "" if complete else " (cut at the page limit)")
                return Listing(streams, complete, started_ms)
            if self.clock() - waited_from >= self.wait_s:
                log.warning("no listing of %s within %.0fs: this batch looks its streams up one by one",
                            group, self.wait_s)
                return Listing({})
            self.sleep(POLL_S)
