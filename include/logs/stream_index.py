"""One listing of a log group's fresh streams per run, shared by the run's batches.

Streams named by instance id (the agent's default) are found by each batch's own prefix listings
(include/logs/streams.py). Other names (`{hostname}`, `{ip_address}`, a prefix of one's own) used to cost one
DescribeLogStreams per host: at 100,000 hosts that is 4,000 s of the account's 25/s, and each batch's share
runs past its judging budget. Here, once a batch has asked for more than a few such names in a group, the
group is listed once for the whole run — newest events first (`orderBy=LastEventTime`, descending), stopping
at the first stream older than `stream_max_age_minutes` — ~2,000 calls for 100,000 fresh streams. The first
batch to get there takes a lease (a conditional write) and lists; the others wait for its result in the
evidence table, bounded, and look streams up one by one if it never comes.

The listing only ever answers "fresh": a stream it holds is returned when it is still fresh at judging time
(AWS's own description of it, at most minutes old, can only be staler than a new lookup). A stream it does
not hold, or holds as too old by now, is looked up exactly, as before — so a verdict never rests on the
listing's absence of a stream.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from botocore.exceptions import ClientError

from include.checks.parsers import last_event_ms

log = logging.getLogger(__name__)

PAGE = 50  # DescribeLogStreams' maximum page size
MAX_PAGES = 4_000  # 200,000 fresh streams: past that the listing is cut (and marked incomplete)
LEASE_S = 900.0  # a lister that dies leaves the lease to the next batch after this long
WAIT_S = 600.0  # how long a batch waits for another batch's listing before it looks streams up itself
POLL_S = 2.0
FIELDS = ("lastEventTimestamp", "lastIngestionTime")


def list_fresh(logs_client, group: str, cutoff_ms: int, before_call: Callable[[], None] = lambda: None,
               max_pages: int = MAX_PAGES) -> tuple[dict[str, dict], bool]:
    """The group's streams whose last event is at or after `cutoff_ms`: ({name: their timestamps},
    complete). Pages are newest first, so the first older stream ends the listing."""
    found: dict[str, dict] = {}
    kwargs = {"logGroupName": group, "orderBy": "LastEventTime", "descending": True, "limit": PAGE}
    try:
        for _ in range(max_pages):
            before_call()
            page = logs_client.describe_log_streams(**kwargs)
            for s in page.get("logStreams", []):
                if int(s.get("lastEventTimestamp") or 0) < cutoff_ms:
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


class SharedIndex:
    """A batch's view of the run's group listings: lists a group itself, or waits for the batch that does."""

    def __init__(self, store, logs_client, audit_date: str, run_id: str, max_age_minutes: int,
                 before_call: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, wait_s: float = WAIT_S) -> None:
        self.store, self.client = store, logs_client
        self.audit_date, self.run_id, self.max_age_ms = audit_date, run_id, max_age_minutes * 60_000
        self.before_call, self.clock, self.sleep, self.wait_s = before_call, clock, sleep, wait_s
        self.owner = f"{run_id}/{uuid.uuid4().hex[:12]}"
        self._groups: dict[str, dict[str, dict]] = {}
        self._lock = threading.Lock()
        self.listed = 0  # groups this batch listed itself (the tests read it)

    def fresh(self, group: str, stream: str) -> dict | None:
        """The stream's description from the run's listing when it is fresh now; None: look it up exactly."""
        entry = self._listing(group).get(stream)
        if entry is None:
            return None
        if last_event_ms(entry) < self.clock() * 1000 - self.max_age_ms:
            return None  # stale by now: a newer event may have come since the listing
        return {"logStreamName": stream, **entry}

    def _listing(self, group: str) -> dict[str, dict]:
        with self._lock:  # one batch asks once per group; its other hosts wait for the answer
            if group not in self._groups:
                self._groups[group] = self._shared(group)
            return self._groups[group]

    def _shared(self, group: str) -> dict[str, dict]:
        waited_from = self.clock()
        while True:
            listed = self.store.stream_index(self.audit_date, self.run_id, group)
            if listed is not None:
                return listed
            if self.store.claim_stream_index(self.audit_date, self.run_id, group, self.owner, LEASE_S):
                try:
                    streams, complete = list_fresh(self.client, group, int(self.clock() * 1000) - self.max_age_ms,
                                                   self.before_call)
                    self.store.put_stream_index(self.audit_date, self.run_id, group, streams, complete)
                except Exception as exc:  # noqa: BLE001 - throttled past retries, budget spent: look up one by one
                    log.warning("listing %s failed (%s): this batch looks its streams up one by one", group, exc)
                    return {}
                self.listed += 1
                log.info("listed %d fresh streams of %s for run %s%s", len(streams), group, self.run_id,
                         "" if complete else " (cut at the page limit)")
                return streams
            if self.clock() - waited_from >= self.wait_s:
                log.warning("no listing of %s within %.0fs: this batch looks its streams up one by one",
                            group, self.wait_s)
                return {}
            self.sleep(POLL_S)
