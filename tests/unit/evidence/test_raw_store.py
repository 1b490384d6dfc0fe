"""Raw output kept beside the evidence (include/evidence/raw_store.py): chunk items under 350 KB, throttled
writes retried (bounded) and then raised, where an item's output_ref points, the bucket's lock read once."""
from __future__ import annotations

import gzip
import hashlib
import os
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError

from include.evidence.observation import OUTPUT_IN_DYNAMODB, RawOutput, raw_chunk_key, raw_s3_key
from include.evidence.raw_store import RawOutputStore, bucket_problem, chunk_items

DAY, IID = "2031-03-04", "i-0123456789abcdef0"
MIB = 1024 * 1024


def item_size(item: dict) -> int:
    """DynamoDB's size of an item: attribute names plus values (numbers counted generously)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        size += len(value) if isinstance(value, (bytes, bytearray)) else len(str(value).encode()) + 1
    return size


def test_a_capped_incompressible_output_is_cut_into_parts_under_350_kb():
    raw = RawOutput.of(os.urandom(MIB))  # 1 MiB (the transports' cap) that gzip cannot shrink
    parts = chunk_items(IID, DAY, raw, 1_900_000_000)
    assert len(parts) >= 4 and all(item_size(p) < 350_000 for p in parts)
    assert [p["output_key"] for p in parts] == [raw_chunk_key(DAY, raw.sha256, n) for n in range(len(parts))]
    assert (parts[0]["chunks"], parts[0]["sha256"], parts[0]["bytes"]) == (len(parts), raw.sha256, MIB)
    assert all(p["expires_at"] == 1_900_000_000 and p["item_type"] == "raw_output" for p in parts)
    joined = b"".join(p["data"] for p in parts)
    assert joined == raw.gz and hashlib.sha256(gzip.decompress(joined)).hexdigest() == raw.sha256


class FakeResource:
    """BatchWriteItem that leaves items unprocessed (or raises a throttling error) on the calls named."""

    def __init__(self, unprocessed_calls=(), throttled_calls=(), always_unprocessed=False):
        self.calls, self.stored = 0, {}
        self.unprocessed_calls, self.throttled_calls = set(unprocessed_calls), set(throttled_calls)
        self.always_unprocessed = always_unprocessed

    def batch_write_item(self, RequestItems):
        self.calls += 1
        if self.calls in self.throttled_calls:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "BatchWriteItem")
        [(table, requests)] = RequestItems.items()
        assert len(requests) <= 25
        if self.always_unprocessed or self.calls in self.unprocessed_calls:
            kept, left = requests[: len(requests) // 2], requests[len(requests) // 2:]
        else:
            kept, left = requests, []
        for request in kept if not self.always_unprocessed else []:
            item = request["PutRequest"]["Item"]
            key = (table, item["instance_id"], item["output_key"])
            assert key not in self.stored, "a chunk written twice"
            self.stored[key] = item
        return {"UnprocessedItems": {table: left}} if left else {}


def entries(n: int, size: int = 2000) -> list[tuple[dict, RawOutput]]:
    return [({"instance_id": f"i-{k:017x}", "audit_date": DAY, "expires_at": Decimal(1_900_000_000)},
             RawOutput.of(os.urandom(size))) for k in range(n)]


def test_chunks_left_unprocessed_or_throttled_are_sent_again_until_all_are_stored_once():
    resource = FakeResource(unprocessed_calls={1, 3}, throttled_calls={2})
    store = RawOutputStore(resource, "ev", base_delay=0)
    assert store.put(entries(30)) == 30
    assert len(resource.stored) == 30 and {t for t, _, _ in resource.stored} == {"ev_raw"}
    assert resource.calls > 2  # 30 chunks are two requests of at most 25, plus the retries


def test_chunks_still_unprocessed_after_the_bounded_retries_fail_the_write():
    resource = FakeResource(always_unprocessed=True)
    with pytest.raises(RuntimeError, match="still unprocessed after 3 attempts"):
        RawOutputStore(resource, "ev", max_attempts=3, base_delay=0).put(entries(2))
    assert resource.calls == 3


def test_another_error_is_not_retried():
    class Refusing(FakeResource):
        def batch_write_item(self, RequestItems):
            self.calls += 1
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchWriteItem")

    resource = Refusing()
    with pytest.raises(ClientError):
        RawOutputStore(resource, "ev", base_delay=0).put(entries(1))
    assert resource.calls == 1


def test_output_ref_names_where_the_output_is_kept():
    sha = "ab" * 32
    assert RawOutputStore(FakeResource(), "ev").ref(IID, DAY, sha) == OUTPUT_IN_DYNAMODB
    assert RawOutputStore(FakeResource(), "ev").ref(IID, DAY, "") == ""  # no output: nothing kept
    in_s3 = RawOutputStore(FakeResource(), "ev", bucket="audit-evidence", s3=object())
    assert in_s3.ref(IID, DAY, sha) == f"s3://audit-evidence/{raw_s3_key(IID, DAY, sha)}"
    assert RawOutputStore(FakeResource(), "ev").get(IID, DAY, sha, "") is None


class FakeS3:
    def __init__(self, lock: dict | None):
        self.lock, self.lock_reads, self.puts = lock, 0, []

    def get_object_lock_configuration(self, Bucket):
        self.lock_reads += 1
        if self.lock is None:
            raise ClientError({"Error": {"Code": "ObjectLockConfigurationNotFoundError", "Message": "none"}},
                              "GetObjectLockConfiguration")
        return {"ObjectLockConfiguration": self.lock}

    def put_object(self, **kwargs):
        self.puts.append(kwargs)

    def head_bucket(self, Bucket):
        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadBucket")


@pytest.mark.parametrize("lock, mode", [
    (None, None),
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}}, "COMPLIANCE"),
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}, "GOVERNANCE"),
    ({"ObjectLockEnabled": "Enabled"}, "COMPLIANCE"),  # locked without a default rule: the strict mode
])
def test_the_bucket_lock_is_read_once_and_every_object_is_retained_until_the_item_expires(lock, mode):
    s3 = FakeS3(lock)
    store = RawOutputStore(FakeResource(), "ev", bucket="audit-evidence", s3=s3)
    batch = entries(3)
    store.put(batch)
    assert s3.lock_reads == 1 and len(s3.puts) == 3
    for (item, raw), put in zip(batch, s3.puts):
        assert (put["Bucket"], put["Key"], put["Body"]) == ("audit-evidence", raw_s3_key(item["instance_id"], DAY,
                                                                                          raw.sha256), raw.gz)
        assert put.get("ObjectLockMode") == mode
        if mode:
            assert int(put["ObjectLockRetainUntilDate"].timestamp()) == 1_900_000_000


def test_a_bucket_that_cannot_be_read_names_the_param():
    assert "param evidence_bucket" in bucket_problem(FakeS3(None), "missing-bucket")
