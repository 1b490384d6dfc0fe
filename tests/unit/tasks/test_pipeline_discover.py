"""Discovery errors are loud: a failing region fails the task and names every failing region."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from include.fleet.inventory import RunFacts
from include.settings.params import AuditParams
from include.tasks import audit as pipeline


class Client:
    def __init__(self, region, account=""):
        self.region, self.account = region, account

    def get_paginator(self, name):
        region = self.region

        class Pages:
            def paginate(self, **kw):
                if region != "us-east-1":
                    raise ClientError({"Error": {"Code": "ExpiredToken", "Message": "The security token expired"}},
                                      "DescribeInstances")
                if name == "describe_instance_status":
                    yield {"InstanceStatuses": [{"InstanceId": "i-1", "InstanceState": {"Name": "running"}}]}
                else:
                    yield {"Reservations": [{"OwnerId": "1", "Instances": [
                        {"InstanceId": "i-1", "State": {"Name": "running"}}]}]}
        return Pages()


def test_one_failing_region_fails_discovery_with_every_reason(monkeypatch):
    monkeypatch.setattr(pipeline, "ec2_client", Client)
    facts = RunFacts("2026-11-23", "r", "live")
    params = AuditParams(regions=["us-east-1", "eu-west-1", "ap-south-1"], create_table=False)
    with pytest.raises(RuntimeError) as failure:
        pipeline.discover(params, facts)
    message = str(failure.value)
    assert "eu-west-1" in message and "ap-south-1" in message and "ExpiredToken" in message
    assert "us-east-1" not in message
    ok = pipeline.discover(AuditParams(regions=["us-east-1"], create_table=False), facts).to_xcom()
    assert ok["instances"] == {"us-east-1": ["i-1"]} and ok["discovered"] == 1


def test_accounts_are_discovered_per_region_and_batches_carry_their_account(monkeypatch):
    arn = "arn:aws:iam::222222222222:role/ec2-audit-read"
    seen = []

    def client(region, account=""):
        seen.append((account, region))
        return Client(region)

    monkeypatch.setattr(pipeline, "ec2_client", client)
    facts = RunFacts("2026-11-23", "r", "live")
    params = AuditParams(regions=["us-east-1"], accounts=[arn], create_table=False)
    inventory = pipeline.discover(params, facts)
    assert seen == [("", "us-east-1"), (arn, "us-east-1")]
    assert inventory.to_xcom()["instances"] == {"us-east-1": ["i-1"], f"{arn}|us-east-1": ["i-1"]}
    batches = [b.to_xcom() for b in pipeline.plan(params, inventory)]
    assert sorted((b["account"], b["region"]) for b in batches) == [("", "us-east-1"), (arn, "us-east-1")]
    assert {b["label"] for b in batches} == {"us-east-1 batch 1/1 (1 hosts)",
                                             "222222222222 us-east-1 batch 1/1 (1 hosts)"}


class StatusDenied:
    """A role without ec2:DescribeInstanceStatus: discovery still works, through DescribeInstances."""

    calls: list[str] = []

    def get_paginator(self, name):
        calls = self.calls

        class Pages:
            def paginate(self, **kw):
                calls.append(name)
                if name == "describe_instance_status":
                    raise ClientError({"Error": {"Code": "UnauthorizedOperation"}}, "DescribeInstanceStatus")
                yield {"Reservations": [{"Instances": [{"InstanceId": "i-2", "State": {"Name": "running"}},
                                                       {"InstanceId": "i-1", "State": {"Name": "stopped"}}]}]}
        return Pages()


def test_discovery_without_describe_instance_status_falls_back_and_tag_filters_use_describe_instances():
    from include.fleet.discovery import discover_region

    inventory = discover_region(StatusDenied(), "us-east-1", {})
    assert inventory.running == ["i-2"] and inventory.states == {"running": 1, "stopped": 1}
    assert StatusDenied.calls == ["describe_instance_status", "describe_instances"]
    StatusDenied.calls.clear()
    discover_region(StatusDenied(), "us-east-1", {"Environment": ["prod"]})
    assert StatusDenied.calls == ["describe_instances"]



def test_an_evidence_bucket_that_cannot_be_read_fails_discover_naming_the_param(monkeypatch):
    class S3:
        def __init__(self, exists):
            self.exists = exists

        def head_bucket(self, Bucket):
            if not self.exists:
                raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadBucket")

    monkeypatch.setattr(pipeline, "ec2_client", Client)
    facts = RunFacts("2026-11-23", "r", "live")
    params = AuditParams(regions=["us-east-1"], create_table=False, evidence_bucket="no-such-evidence")
    monkeypatch.setattr(pipeline, "evidence_s3_client", lambda: S3(False))
    with pytest.raises(ValueError, match="param evidence_bucket: bucket 'no-such-evidence' does not exist"):
        pipeline.discover(params, facts)
    monkeypatch.setattr(pipeline, "evidence_s3_client", lambda: S3(True))
    assert pipeline.discover(params, facts).discovered == 1
