"""StreamLookup: a batch's streams come from a few name-ordered listings, never a wrong answer."""
from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError

from include.logs.streams import StreamLookup, partitions


class FakeLogs:
    """DescribeLogStreams semantics that matter here: prefix, name order, pages of `limit`, nextToken."""

    def __init__(self, groups: dict[str, list[str]], fail_listing: bool = False) -> None:
        self.groups = {g: sorted(names) for g, names in groups.items()}
        self.fail_listing = fail_listing
        self.calls = 0

    def describe_log_streams(self, logGroupName, logStreamNamePrefix="", limit=50, nextToken=None):
        self.calls += 1
        if logGroupName not in self.groups:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "DescribeLogStreams")
        if self.fail_listing and len(logStreamNamePrefix) < 19:
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "DescribeLogStreams")
        names = [n for n in self.groups[logGroupName] if n.startswith(logStreamNamePrefix)]
        start = int(nextToken or 0)
        page = names[start:start + limit]
        token = str(start + limit) if start + limit < len(names) else None
        response = {"logStreams": [{"logStreamName": n, "lastIngestionTime": 1} for n in page]}
        if token:
            response["nextToken"] = token
        return response


def ids(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return sorted({f"i-0{rnd.getrandbits(64):016x}" for _ in range(n)})


def test_partitions_split_on_the_next_character_and_keep_every_name():
    names = ids(500)
    parts = list(partitions(names, max_size=50))
    assert [n for _, group in parts for n in group] == names
    assert all(len(group) <= 50 and all(n.startswith(prefix) for n in group) for prefix, group in parts)


def test_partitions_of_identical_names_terminate():
    assert list(partitions(["a", "a", "a"], max_size=1)) == [("a", ["a", "a", "a"])]


def test_a_batch_costs_a_few_listings_not_one_call_per_host():
    fleet = ids(5000)
    batch = fleet[1000:1200]  # contiguous sorted ids, as plan_batches makes them
    missing = {batch[3], batch[150]}  # hosts whose agent never created a stream
    logs = FakeLogs({"/audit": [n for n in fleet if n not in missing] + ["i-0-not-an-id"]})
    lookup = StreamLookup(logs, likely_names=batch)
    answers = {name: lookup.describe("/audit", name) for name in batch}
    assert {n for n, found in answers.items() if found is None} == missing
    assert all(answers[n]["logStreamName"] == n for n in batch if n not in missing)
    assert logs.calls == lookup.calls < len(batch) // 4


def test_other_names_and_groups_fall_back_to_exact_lookups():
    batch = ids(100)
    logs = FakeLogs({"/audit": batch, "/other": ["ip-10-0-0-1"]})
    lookup = StreamLookup(logs, likely_names=batch)
    assert lookup.describe("/other", "ip-10-0-0-1")["logStreamName"] == "ip-10-0-0-1"
    assert lookup.describe("/other", "ip-10-0-0-2") is None
    assert lookup.describe("/nope", batch[0]) is None  # a missing group: absent, not an error
    assert logs.calls <= 3 + len(list(partitions(batch)))


def test_a_longer_name_sharing_the_prefix_is_not_the_stream():
    logs = FakeLogs({"/audit": ["i-0abc1", "i-0abc2", "i-0abc3", "i-0abc4-old"]})
    lookup = StreamLookup(logs, likely_names=["i-0abc1", "i-0abc2", "i-0abc3", "i-0abc4"])
    assert lookup.describe("/audit", "i-0abc4") is None
    assert lookup.describe("/audit", "i-0abc3")["logStreamName"] == "i-0abc3"


def test_a_failing_listing_leaves_every_host_its_own_lookup():
    batch = ids(60)
    logs = FakeLogs({"/audit": batch}, fail_listing=True)  # listings throttled, exact names answered
    lookup = StreamLookup(logs, likely_names=batch)
    assert all(lookup.describe("/audit", n)["logStreamName"] == n for n in batch)


def test_access_denied_on_an_exact_lookup_is_raised():
    class Denied(FakeLogs):
        def describe_log_streams(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "DescribeLogStreams")

    from include.checks.aws_side import AwsRefused

    # One host's forbidden group is that host's ERROR, with AWS's reason: never the batch's failure.
    with pytest.raises(AwsRefused, match="DescribeLogStreams on /audit: AccessDeniedException"):
        StreamLookup(Denied({}), likely_names=[]).describe("/audit", "i-1")
