"""AWS-side proof that the audit log arrives: look up the host's stream in CloudWatch Logs.

DescribeLogStreams is throttled at ~25 requests/s per account and region, so one call per host caps a
10,000-host fleet at ~400 s however many batches run. Streams default to the instance id, and a batch holds
a contiguous run of sorted instance ids, so a few prefix listings (name order, 50 a page) usually answer the
whole batch: the first host that names a group triggers one listing of the batch's likely names in that
group. Other names (`{hostname}`, …): past the first INDEX_AFTER in a group, the run's one listing of the group
answers (include/logs/stream_index.py); anything it cannot answer gets one exact lookup per stream, and what it
answers as stale or missing is looked up again exactly while the batch can afford it (`may_recheck`).
"""
from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator

from botocore.exceptions import ClientError

from include.aws.errors import aws_reason
from include.checks.aws_side import AwsRefused

log = logging.getLogger(__name__)

PAGE = 50  # DescribeLogStreams' maximum page size
PARTITION = 50  # likely names listed under one prefix at most; more are split by one more character
MIN_LISTED = 4  # below this, exact lookups are as cheap as a listing
INDEX_AFTER = 20  # exact lookups of other names a batch makes in a group before it uses the run's listing


def partitions(names: list[str], max_size: int = PARTITION) -> Iterator[tuple[str, list[str]]]:
    """Sorted names → (common prefix, names) groups of ≤ max_size, split on the next character (pure)."""
    prefix = os.path.commonprefix(names)
    if len(names) <= max_size or all(len(n) == len(prefix) for n in names):
        yield prefix, names
        return
    depth = len(prefix) + 1
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name[:depth], []).append(name)
    for key in sorted(groups):
        yield from partitions(groups[key], max_size)


def _absent_upto(wanted: list[str], last_seen: str | None, complete: bool) -> list[str]:
    """Names a name-ordered listing has passed without finding them. Only ASCII names: the service's
    byte order and Python's agree there, so "passed" cannot be wrong."""
    return [n for n in wanted if n.isascii() and (complete or (last_seen is not None and n <= last_seen))]


class StreamLookup:
    """Stream descriptions by exact name, cached per batch (several hosts may share a stream name)."""

    def __init__(self, logs_client, likely_names: Iterable[str] = (),
                 before_call: Callable[[], None] = lambda: None, index=None,
                 may_recheck: Callable[[], bool] = lambda: True) -> None:
        self.client = logs_client
        self.before_call = before_call  # raises when the batch's judging budget is spent
        # Whether a stale or missing answer of a complete listing is still worth an exact lookup: it can only turn
        # into a fresher one, but the budget it spends is that of hosts nothing else answers (Budget.may_refine).
        self.may_recheck = may_recheck
        # include/stream_index.SharedIndex: the run's listing of a group, for names the prefix listings miss
        self.index = index
        self._other_names: dict[str, int] = {}  # group → lookups of names outside the likely ones
        self._likely = sorted(set(likely_names))
        self._likely_set = set(self._likely)
        self._listed: set[str] = set()
        self._cache: dict[tuple[str, str], dict | None] = {}
        self._lock = threading.Lock()
        self.calls = 0  # DescribeLogStreams requests made (the tests read it)

    def describe(self, group: str, stream: str) -> dict | None:
        key = (group, stream)
        listed = None  # the run's listing's answer (stream_index.Listed), when it has one
        with self._lock:
            # The first host naming this group lists the batch's likely names there; the others wait for
            # it instead of each making its own call.
            if group not in self._listed and stream in self._likely_set and len(self._likely) >= MIN_LISTED:
                self._listed.add(group)
                self._list_likely(group)
            if key in self._cache:
                return self._cache[key]
            if self._indexed(stream):
                asked = self._other_names[group] = self._other_names.get(group, 0) + 1
                if asked > INDEX_AFTER:  # a few exact lookups cost less than any group listing
                    listed = self.index.answer(group, stream)
                    if listed is not None and (listed.fresh or not self.may_recheck()):
                        self._cache[key] = listed.description
                        return listed.description
        found = None
        try:
            # A prefix query can return longer names too: only an exact match counts.
            found = next((s for s in self._page(group, stream)[0] if s.get("logStreamName") == stream), None)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                found = self._listed_instead(group, stream, listed, exc)
                if found is None:
                    raise AwsRefused(f"DescribeLogStreams on {group}: {aws_reason(exc)}") from exc
        except Exception as exc:  # the batch's judging budget is spent
            found = self._listed_instead(group, stream, listed, exc)
            if found is None:
                raise
        with self._lock:
            self._cache[key] = found
        return found

    def _indexed(self, stream: str) -> bool:
        return self.index is not None and stream not in self._likely_set

    def _listed_instead(self, group: str, stream: str, listed, exc: Exception) -> dict | None:
        """When an exact lookup cannot be made (budget spent, throttled past retries), a complete listing's answer
        stands: it is what AWS said at the listing's time, and says so. None: nothing answers this stream."""
        if listed is None and self._indexed(stream):
            with self._lock:
                listed = self.index.answer(group, stream)
        if listed is None:
            return None
        log.info("exact lookup of %s/%s not made (%s): the run's listing answers", group, stream, exc)
        return listed.description

    def _page(self, group: str, prefix: str, token: str | None = None) -> tuple[list[dict], str | None]:
        kwargs = {"logGroupName": group, "logStreamNamePrefix": prefix, "limit": PAGE}
        if token:
            kwargs["nextToken"] = token
        self.before_call()
        self.calls += 1
        response = self.client.describe_log_streams(**kwargs)
        return response.get("logStreams", []), response.get("nextToken")

    def _list_likely(self, group: str) -> None:
        """Cache what name-ordered listings say about the likely names in `group` (found or passed)."""
        for prefix, wanted in partitions(self._likely):
            if len(wanted) < MIN_LISTED:
                continue
            # Never spend more calls than exact lookups of the names still unanswered would cost.
            budget = max(1, math.ceil(len(wanted) / 4))
            token, last_seen, complete = None, None, False
            try:
                for _ in range(budget):
                    streams, token = self._page(group, prefix, token)
                    for s in streams:
                        if s.get("logStreamName") in self._likely_set:
                            self._cache[(group, s["logStreamName"])] = s
                    last_seen = streams[-1]["logStreamName"] if streams else last_seen
                    complete = token is None
                    if complete or (last_seen is not None and last_seen >= wanted[-1]):
                        break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    return  # e.g. throttled past the client's retries: each host asks for its own stream
                complete = True  # no such group: no stream in it exists
            for name in _absent_upto(wanted, last_seen, complete):
                self._cache.setdefault((group, name), None)
