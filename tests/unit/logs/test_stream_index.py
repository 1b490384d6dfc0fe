"""The run's shared listing of a log group's fresh streams (include/logs/stream_index.py) and its use by StreamLookup."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from include.logs.stream_index import SharedIndex, list_fresh
from include.logs.streams import INDEX_AFTER, StreamLookup

NOW_MS = 1_800_000_000_000
MIN = 60_000


class Logs:
    """DescribeLogStreams over a group: newest first when asked by LastEventTime; exact name lookups by prefix."""

    def __init__(self, streams: dict[str, int], page: int = 50, missing: bool = False):
        self.streams, self.page, self.missing, self.calls = streams, page, missing, []

    def describe_log_streams(self, logGroupName, limit=50, nextToken=None, orderBy="LogStreamName", descending=False,
                             logStreamNamePrefix=""):
        self.calls.append(orderBy)
        if self.missing:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no group"}}, "DescribeLogStreams")
        if orderBy == "LastEventTime":
            names = sorted(self.streams, key=lambda n: self.streams[n], reverse=descending)
        else:
            names = sorted(n for n in self.streams if n.startswith(logStreamNamePrefix))
        start = int(nextToken or 0)
        chunk = names[start:start + min(limit, self.page)]
        answer = {"logStreams": [{"logStreamName": n, "lastEventTimestamp": self.streams[n],
                                  "lastIngestionTime": self.streams[n]} for n in chunk]}
        if start + len(chunk) < len(names):
            answer["nextToken"] = str(start + len(chunk))
        return answer


class Store:
    """The stream index store's three calls (include/logs/index_store.py), in memory."""

    def __init__(self):
        self.listings, self.leases, self.puts = {}, {}, 0

    def stream_index(self, day, run, group):
        return self.listings.get((day, run, group))

    def claim_stream_index(self, day, run, group, owner, lease_s):
        if (day, run, group) in self.leases:
            return False
        self.leases[(day, run, group)] = owner
        return True

    def put_stream_index(self, day, run, group, streams, complete):
        self.puts += 1
        self.listings[(day, run, group)] = streams


def _fleet(n: int = 120, stale_every: int = 7) -> dict[str, int]:
    return {f"ip-10-0-{k // 250}-{k % 250}": NOW_MS - (300 if k % stale_every == 0 else 5) * MIN for k in range(n)}


def test_a_listing_stops_at_the_first_stream_older_than_the_cutoff():
    logs = Logs(_fleet(), page=10)
    fresh, complete = list_fresh(logs, "g", NOW_MS - 120 * MIN)
    assert complete and len(fresh) == 120 - len(range(0, 120, 7))
    assert all(v["lastEventTimestamp"] >= NOW_MS - 120 * MIN for v in fresh.values())
    assert len(logs.calls) == len(fresh) // 10 + 1  # the page holding the first stale stream is the last
    assert list_fresh(Logs({}, missing=True), "g", 0) == ({}, True)
    cut, complete = list_fresh(Logs(_fleet(), page=10), "g", NOW_MS - 120 * MIN, max_pages=3)
    assert len(cut) == 30 and not complete


def test_one_batch_lists_the_group_for_the_run_and_the_others_read_its_listing():
    store, logs = Store(), Logs(_fleet())
    clock = lambda: NOW_MS / 1000  # noqa: E731
    a = SharedIndex(store, logs, "2026-12-01", "run1", 120, clock=clock)
    b = SharedIndex(store, logs, "2026-12-01", "run1", 120, clock=clock)
    assert a.fresh("g", "ip-10-0-0-1")["lastEventTimestamp"] == NOW_MS - 5 * MIN
    calls = len(logs.calls)
    assert b.fresh("g", "ip-10-0-0-2") is not None and len(logs.calls) == calls  # read, not listed again
    assert (a.listed, b.listed, store.puts) == (1, 0, 1)
    assert a.fresh("g", "ip-10-0-0-7") is None  # stale: not in the listing, so looked up exactly
    assert a.fresh("g", "ip-10-0-9-9") is None  # not a stream of the group
    other_run = SharedIndex(store, logs, "2026-12-01", "run2", 120, clock=clock)
    other_run.fresh("g", "ip-10-0-0-1")
    assert other_run.listed == 1  # a listing belongs to its run


def test_an_entry_that_went_stale_since_the_listing_is_looked_up_again():
    store, logs, t = Store(), Logs(_fleet()), [NOW_MS / 1000]
    index = SharedIndex(store, logs, "d", "r", 120, clock=lambda: t[0])
    assert index.fresh("g", "ip-10-0-0-1") is not None
    t[0] += 116 * 60  # the stream's last event is now 121 min old
    assert index.fresh("g", "ip-10-0-0-1") is None


def test_a_batch_waits_for_another_s_listing_then_falls_back_to_exact_lookups():
    store, logs, t = Store(), Logs(_fleet()), [NOW_MS / 1000]
    store.leases[("d", "r", "g")] = "another batch that died"
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        t[0] += s

    index = SharedIndex(store, logs, "d", "r", 120, clock=lambda: t[0], sleep=sleep, wait_s=10)
    assert index.fresh("g", "ip-10-0-0-1") is None and logs.calls == []
    assert sum(sleeps) >= 10 and len(sleeps) <= 6  # bounded: polls every 2 s for 10 s, once per group
    assert index.fresh("g", "ip-10-0-0-2") is None and sum(sleeps) < 13


@pytest.mark.parametrize("with_index", [False, True])
def test_stream_lookup_uses_the_listing_past_a_few_exact_lookups_with_the_same_answers(with_index):
    streams = _fleet(200)
    logs = Logs(streams)
    index = SharedIndex(Store(), logs, "d", "r", 120, clock=lambda: NOW_MS / 1000) if with_index else None
    lookup = StreamLookup(logs, likely_names=[f"i-{k:017x}" for k in range(200)], index=index)
    answers = {n: lookup.describe("g", n) for n in streams}
    for name, got in answers.items():  # the same freshness as an exact lookup, fresh or stale
        assert got is not None and got["logStreamName"] == name
        assert max(got["lastEventTimestamp"], got["lastIngestionTime"]) == streams[name]
    exact = logs.calls.count("LogStreamName")
    if with_index:
        stale_after = sum(1 for n in list(streams)[INDEX_AFTER:] if streams[n] < NOW_MS - 120 * MIN)
        assert exact == INDEX_AFTER + stale_after  # the fresh ones past the first few came from the listing
        assert logs.calls.count("LastEventTime") == 4  # 171 fresh streams, 50 a page
    else:
        assert exact == 200


def test_a_lister_that_died_holding_the_lease_leaves_it_to_another_batch_once_its_lease_until_has_passed(monkeypatch):
    """The evidence table's lease (StreamIndexStore.claim_stream_index, a conditional PutItem on `lease_until`, on
    moto): a batch that took the lease and died never stores its listing; the run's other batches fall back to
    exact lookups while its lease holds, and the first batch after its lease_until takes the lease and lists."""
    import boto3
    from moto import mock_aws

    from include.evidence import store as evidence
    from include.logs import index_store, stream_index

    DAY = "2026-12-01"
    t = [NOW_MS / 1000]  # one clock for the table's lease and the batches' waiting
    monkeypatch.setattr(index_store, "time", type("Clock", (), {"time": staticmethod(lambda: t[0])}))

    def sleep(s):
        t[0] += s

    with mock_aws():
        table = evidence.EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "lease_test")
        table.ensure_tables()
        store = index_store.StreamIndexStore(table)
        logs = Logs(_fleet())
        dead = SharedIndex(store, logs, DAY, "r", 120, clock=lambda: t[0], sleep=sleep)
        # It took the lease, as a lister does, then died before listing: no listing is ever stored.
        assert store.claim_stream_index(DAY, "r", "g", dead.owner, stream_index.LEASE_S)
        taken_at = t[0]

        waiting = SharedIndex(store, logs, DAY, "r", 120, clock=lambda: t[0], sleep=sleep, wait_s=60)
        assert waiting.fresh("g", "ip-10-0-0-1") is None and waiting.listed == 0 and logs.calls == []

        t[0] = taken_at + stream_index.LEASE_S - 1  # the lease still holds, to its last second
        early = SharedIndex(store, logs, DAY, "r", 120, clock=lambda: t[0], sleep=sleep, wait_s=0)
        assert early.fresh("g", "ip-10-0-0-1") is None and early.listed == 0 and logs.calls == []

        t[0] = taken_at + stream_index.LEASE_S + 1  # past its lease_until
        later = SharedIndex(store, logs, DAY, "r", 120, clock=lambda: t[0], sleep=sleep, wait_s=0)
        assert later.fresh("g", "ip-10-0-0-1") is not None and later.listed == 1
        assert store.stream_index(DAY, "r", "g")["ip-10-0-0-1"]["lastEventTimestamp"] == NOW_MS - 5 * MIN
