"""The silence sweep (include/watch/sweep.py): which COMPLIANT hosts' streams are silent, and what it costs."""
from __future__ import annotations

from datetime import datetime, timezone

from include.watch.messages import read
from include.watch.records import SILENCE
from include.watch.sweep import WatchedStream, calls_per_sweep, silent

NOW = datetime(2024, 11, 25, 12, 0, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
G = "/ec2/audit"
A, B, C, D = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3", "i-0ddddddddddddddd4"


def host(instance_id, stream=None, group=G, region="us-east-1", account="111122223333"):
    return WatchedStream(instance_id=instance_id, region=region, log_group=group, log_stream=stream or instance_id,
                         account=account)


def listing(streams, complete=True):
    return {("111122223333", "us-east-1", G): (streams, complete)}


def test_fresh_hosts_are_quiet_and_silent_hosts_get_a_message():
    fresh = listing({A: {"lastEventTimestamp": NOW_MS - 60_000},
                     B: {"lastEventTimestamp": NOW_MS - 40 * 60_000, "lastIngestionTime": NOW_MS - 40 * 60_000}})
    result = silent([host(A), host(B), host(C)], fresh, now=NOW, stream_max_age_minutes=30)
    assert [m["detail"]["instance-id"] for m in result.messages] == [B, C]  # B stale by now, C not listed at all
    assert result.messages[0]["detail"]["last-event"] == "2024-11-25T11:20:00Z"
    assert result.messages[1]["detail"]["last-event"] == ""
    assert result.undecided == []
    [event], rejected = read(result.messages[0], default_region="eu-west-1", message_id="s")
    assert rejected == [] and (event.trigger, event.instance_id, event.region, event.account) == (
        SILENCE, B, "us-east-1", "111122223333")


def test_a_host_with_one_fresh_stream_is_not_silent():
    fresh = listing({"web-1": {"lastEventTimestamp": NOW_MS}})
    result = silent([host(A), host(A, stream="web-1")], fresh, now=NOW, stream_max_age_minutes=30)
    assert result.messages == []


def test_incomplete_or_missing_listing_is_undecided_never_silent():
    result = silent([host(A), host(D, group="/other")], listing({}, complete=False), now=NOW,
                    stream_max_age_minutes=30)
    assert result.messages == [] and [w.instance_id for w in result.undecided] == [A, D]


def test_listing_is_per_account_and_region():
    fresh = listing({A: {"lastEventTimestamp": NOW_MS}})
    result = silent([host(A, region="eu-west-1")], fresh, now=NOW, stream_max_age_minutes=30)
    assert result.messages == [] and len(result.undecided) == 1  # eu-west-1's group was not listed


def test_calls_per_sweep():
    assert calls_per_sweep([0]) == 1
    assert calls_per_sweep({"a": 50, "b": 51}) == 2 + 3
    assert calls_per_sweep([100_000]) == 2_001  # ≈ 80 s at 25 DescribeLogStreams/s
