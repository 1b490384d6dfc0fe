"""The run's shared listing of a log group's fresh streams (include/logs/stream_index.py) and its use by StreamLookup."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from include.logs.stream_index import SharedIndex, list_fresh, list_group
from include.logs.streams import INDEX_AFTER, StreamLookup

NOW_MS = 1_800_000_000_000
MIN = 60_000


class Logs:
    """DescribeLogStreams over a group: newest first when asked by LastEventTime; exact name lookups by prefix."""

    def __init__(self, streams: dict[str, int], page: int = 50, missing: bool = False):
        self.streams, self.page, self.missing, self.calls = streams, page, missing, []

    def describe_log_streams(self, logGroupName, limit=50, nextToken=None, orderBy="LogStreamName", descending=False,
                             logStreamNamePrefix=""):
        # "exact": a lookup by name; "LogStreamName"/"LastEventTime": a listing of the group in that order
        self.calls.append("exact" if logStreamNamePrefix else orderBy)
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
        self.listings, self.docs, self.leases, self.puts = {}, {}, {}, 0

    def stream_index(self, day, run, group):
        return self.listings.get((day, run, group))

    def claim_stream_index(self, day, run, group, owner, lease_s):
        if (day, run, group) in self.leases:
            return False
        self.leases[(day, run, group)] = owner
        return True

    def put_stream_index(self, day, run, group, streams, complete, listed_at_ms=None):
        self.puts += 1
        self.listings[(day, run, group)] = streams
        self.docs[(day, run, group)] = {"group": group, "streams": streams, "complete": complete, "scope": "all",
                                        "listed_at_ms": listed_at_ms}

    def stream_listing(self, day, run, group):
        return self.docs.get((day, run, group))


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
    exact = logs.calls.count("exact")
    if with_index:
        stale_after = sum(1 for n in list(streams)[INDEX_AFTER:] if streams[n] < NOW_MS - 120 * MIN)
        # the fresh ones past the first few came from the listing; the stale ones were re-checked (budget to spare)
        assert exact == INDEX_AFTER + stale_after
        assert logs.calls.count("LogStreamName") == 4  # the whole group, 200 streams, 50 a page
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


# ------------------------------------------------------------- the run's listing answers stale and missing streams too

def _judged(lookup, names, now_ms=NOW_MS):
    """Each name's freshness verdict as the AWS-side judge gives it from the lookup's answer."""
    from datetime import datetime, timezone

    from include.checks.parsers import judge_stream_freshness
    now = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
    return {n: judge_stream_freshness({("g", n): lookup.describe("g", n)}, now, 120) for n in names}


def test_the_run_listing_holds_every_stream_of_the_group_with_both_timestamps():
    streams = _fleet()
    logs = Logs(streams, page=10)
    listed, complete = list_group(logs, "g")
    assert complete and set(listed) == set(streams)  # stale ones too, not only the fresh
    assert all(v == {"lastEventTimestamp": streams[n], "lastIngestionTime": streams[n]} for n, v in listed.items())
    # Name order: a stream that receives an event while the listing pages cannot move ahead of the listing's place
    # (in LastEventTime order it would, and be missed).
    assert logs.calls == ["LogStreamName"] * 12
    cut, complete = list_group(Logs(streams, page=10), "g", max_pages=3)
    assert len(cut) == 30 and not complete
    assert list_group(Logs({}, missing=True), "g") == ({}, True)


def test_a_complete_listing_answers_stale_and_missing_streams_when_no_recheck_is_left():
    from include.core.status import CheckStatus

    streams = _fleet(200)
    logs = Logs(streams)
    index = SharedIndex(Store(), logs, "d", "r", 120, clock=lambda: NOW_MS / 1000)
    lookup = StreamLookup(logs, likely_names=[f"i-{k:017x}" for k in range(200)], index=index,
                          may_recheck=lambda: False)
    names = [*streams, "ip-10-9-9-9"]  # the last one exists nowhere
    verdicts = _judged(lookup, names)
    assert logs.calls.count("exact") == INDEX_AFTER and logs.calls.count("LogStreamName") == 4
    past = names[INDEX_AFTER:]
    for n in past[:-1]:
        stale = streams[n] < NOW_MS - 120 * MIN
        assert verdicts[n].status == (CheckStatus.FAIL if stale else CheckStatus.PASS), n
        if stale:  # a FAIL from the listing says it is the listing's view, and when it was taken
            assert verdicts[n].detail == f"g/{n} last event 300 min ago (limit 120, as listed at 2027-01-15T08:00:00Z)"
    assert verdicts["ip-10-9-9-9"].status == CheckStatus.FAIL
    assert verdicts["ip-10-9-9-9"].detail == "stream g/ip-10-9-9-9 does not exist (as listed at 2027-01-15T08:00:00Z)"


def test_while_rechecks_are_affordable_the_listing_s_stale_and_missing_answers_are_looked_up_exactly():
    streams = _fleet(200)
    logs = Logs(streams)
    index = SharedIndex(Store(), logs, "d", "r", 120, clock=lambda: NOW_MS / 1000)
    lookup = StreamLookup(logs, likely_names=[], index=index)
    past = list(streams)[INDEX_AFTER:]
    for n in streams:
        lookup.describe("g", n)
    assert lookup.describe("g", "ip-10-9-9-9") is None  # exactly: no such stream, without "as listed"
    stale = sum(1 for n in past if streams[n] < NOW_MS - 120 * MIN)
    assert logs.calls.count("exact") == INDEX_AFTER + stale + 1
    assert "listedAt" not in lookup.describe("g", next(n for n in past if streams[n] < NOW_MS - 120 * MIN))


def test_a_spent_budget_leaves_hosts_the_complete_listing_answers_with_its_answer_not_an_error():
    """Budget spent (before_call raises) even for the first few exact lookups: the listing another batch stored
    answers every stream it covers; only a stream no complete listing answers still raises (that host's ERROR)."""
    class Spent(RuntimeError):
        pass

    def spent():
        raise Spent("the batch's AWS judging budget of 900s is spent")

    streams = _fleet(60)
    store = Store()
    other = SharedIndex(store, Logs(streams), "d", "r", 120, clock=lambda: NOW_MS / 1000)
    assert other.fresh("g", "ip-10-0-0-1") is not None  # another batch listed the group for the run
    logs = Logs(streams)
    index = SharedIndex(store, logs, "d", "r", 120, before_call=spent, clock=lambda: NOW_MS / 1000)
    lookup = StreamLookup(logs, likely_names=[], before_call=spent, index=index, may_recheck=lambda: False)
    for n in streams:
        got = lookup.describe("g", n)
        assert got is not None and max(got["lastEventTimestamp"], got["lastIngestionTime"]) == streams[n]
    assert lookup.describe("g", "ip-10-9-9-9")["listedAbsent"] is True and logs.calls == []
    with pytest.raises(Spent):  # a group no listing covers: the budget's error, as before
        StreamLookup(logs, likely_names=[], before_call=spent, index=SharedIndex(
            Store(), logs, "d", "r", 120, before_call=spent, clock=lambda: NOW_MS / 1000, wait_s=0)).describe("h", "x")


def test_an_incomplete_listing_keeps_exact_lookups_for_what_it_does_not_hold_fresh(monkeypatch):
    from include.logs import stream_index

    monkeypatch.setattr(stream_index, "MAX_PAGES", 2)
    streams = _fleet(200)
    logs = Logs(streams)
    index = SharedIndex(Store(), logs, "d", "r", 120, clock=lambda: NOW_MS / 1000)
    lookup = StreamLookup(logs, likely_names=[], index=index, may_recheck=lambda: False)
    past = list(streams)[INDEX_AFTER:]
    answers = {n: lookup.describe("g", n) for n in past}
    assert all("listedAt" not in a for a in answers.values())
    listed = set(sorted(streams)[:100])
    fresh_listed = sum(1 for n in past if n in listed and streams[n] >= NOW_MS - 120 * MIN)
    assert logs.calls.count("exact") == len(past) - fresh_listed


def test_the_quota_model_charges_one_whole_group_listing_and_bounded_rechecks_so_no_host_is_error_for_budget():
    from devstack.bench.quota import shared_listing_cost

    low, high = (shared_listing_cost(100_000, 16, 16, share, 25.0) for share in (0.01, 0.3))
    assert low["listing_calls"] == high["listing_calls"] == 2_000  # every stream, fresh or stale, 50 a page
    assert low["rechecks"] == 1_000 and low["answered_as_listed"] == 0  # few stale: all re-checked exactly
    # many stale: re-checks stop at half of the 900 s budget of 16 batches sharing 25/s; the listing answers the rest
    assert high["rechecks"] == 11_250 and high["answered_as_listed"] == 30_000 - 11_250
    assert high["calls"] < 32_320 and high["fits_judge_budget"] and high["error_for_budget"] == 0
