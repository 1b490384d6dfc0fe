"""Raw output against a real moto server (include/evidence/raw_store.py): T_raw chunk items round trip, and S3
objects in a bucket with Object Lock (COMPLIANCE default retention) retained until the item's expires_at."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from devstack.standins.aws.seed import clients
from include.aws.tables import ensure_tables
from include.evidence.observation import OUTPUT_IN_DYNAMODB, RawOutput, raw_s3_key
from include.evidence.raw_store import RawOutputStore, RawOutputUnreadable, bucket_problem

REGION, DAY, EXPIRES = "us-east-1", "2031-06-07", 1_950_000_000


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def observation(iid: str) -> dict:
    return {"instance_id": iid, "audit_date": DAY, "expires_at": EXPIRES}


def every_part(dynamodb, iid: str) -> list[dict]:
    """Every T_raw item of a host: every page (a page stops at 1 MB read)."""
    kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(iid), "ProjectionExpression": "expires_at"}
    found = []
    while True:
        page = dynamodb.Table("raw_evidence_raw").query(**kwargs)
        found += page["Items"]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture(scope="module")
def dynamodb(moto):
    resource = clients(moto, REGION)[2]
    ensure_tables(resource.meta.client, "raw_evidence")
    return resource


def test_raw_output_round_trips_through_t_raw_in_chunks(dynamodb):
    store = RawOutputStore(dynamodb, "raw_evidence")
    big, small = os.urandom(1024 * 1024), b"@@ec2audit-n-section x\nenabled 1\n" * 100
    outputs = {"i-00000000000000001": RawOutput.of(big), "i-00000000000000002": RawOutput.of(small)}
    assert store.put([(observation(iid), raw) for iid, raw in outputs.items()]) == 2
    store.put([(observation("i-00000000000000002"), outputs["i-00000000000000002"])])  # a retry: same key and bytes
    for iid, raw in outputs.items():
        assert store.get(iid, DAY, raw.sha256, OUTPUT_IN_DYNAMODB) == raw.raw()
    description = dynamodb.meta.client.describe_table(TableName="raw_evidence_raw")["Table"]
    assert [k["AttributeName"] for k in description["KeySchema"]] == ["instance_id", "output_key"]
    assert not description.get("GlobalSecondaryIndexes")  # raw bytes are never copied into an index
    ttl = dynamodb.meta.client.describe_time_to_live(TableName="raw_evidence_raw")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    parts = {iid: every_part(dynamodb, iid) for iid in outputs}
    assert {iid: len(p) for iid, p in parts.items()} == {"i-00000000000000001": 4, "i-00000000000000002": 1}
    assert all(int(p["expires_at"]) == EXPIRES for found in parts.values() for p in found)
    assert store.get("i-00000000000000003", DAY, "ab" * 32, OUTPUT_IN_DYNAMODB) is None  # never kept


def test_a_part_gone_reads_as_unreadable_not_as_no_output(dynamodb):
    store = RawOutputStore(dynamodb, "raw_evidence")
    raw = RawOutput.of(os.urandom(700_000))
    store.put([(observation("i-00000000000000004"), raw)])
    dynamodb.Table("raw_evidence_raw").delete_item(
        Key={"instance_id": "i-00000000000000004", "output_key": f"{DAY}#{raw.sha256}#1"})
    with pytest.raises(RawOutputUnreadable):
        store.get("i-00000000000000004", DAY, raw.sha256, OUTPUT_IN_DYNAMODB)


def test_objects_in_a_compliance_locked_bucket_are_retained_until_the_item_expires(moto, dynamodb):
    s3 = s3_client(moto)
    s3.create_bucket(Bucket="locked-evidence", ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket="locked-evidence", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
    store = RawOutputStore(dynamodb, "raw_evidence", bucket="locked-evidence", s3=s3)
    raw = RawOutput.of(b"@@ec2audit-n-section auditctl_status\nenabled 2\n")
    store.put([(observation("i-00000000000000005"), raw)])
    ref = store.ref("i-00000000000000005", DAY, raw.sha256)
    assert ref == f"s3://locked-evidence/{raw_s3_key('i-00000000000000005', DAY, raw.sha256)}"
    assert store.get("i-00000000000000005", DAY, raw.sha256, ref) == raw.raw()
    head = s3.head_object(Bucket="locked-evidence", Key=raw_s3_key("i-00000000000000005", DAY, raw.sha256))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == datetime.fromtimestamp(EXPIRES, tz=timezone.utc)


def test_objects_in_a_bucket_without_lock_carry_no_retention(moto, dynamodb):
    s3 = s3_client(moto)
    s3.create_bucket(Bucket="plain-evidence")
    store = RawOutputStore(dynamodb, "raw_evidence", bucket="plain-evidence", s3=s3)
    raw = RawOutput.of(b"output")
    store.put([(observation("i-00000000000000006"), raw)])
    head = s3.head_object(Bucket="plain-evidence", Key=raw_s3_key("i-00000000000000006", DAY, raw.sha256))
    assert "ObjectLockMode" not in head
    assert store.get("i-00000000000000006", DAY, "cd" * 32,
                     f"s3://plain-evidence/{raw_s3_key('i-00000000000000006', DAY, 'cd' * 32)}") is None
    assert bucket_problem(s3, "plain-evidence") is None
    assert "param evidence_bucket" in bucket_problem(s3, "no-such-evidence-bucket")
