"""Issue 29: a fleet too large for one GetCommandInvocation per host fails discover at once (the DAG turns the
ValueError into AirflowFailException), naming ssm_output_bucket; a small fleet keeps reading inline."""
from __future__ import annotations

import pytest

from include.fleet.inventory import RunFacts
from include.reach.choice import INLINE_MAX_HOSTS
from include.settings.params import AuditParams
from include.tasks import audit as pipeline


def fleet_client(size: int):
    class Client:
        def __init__(self, region, account=""):
            pass

        def get_paginator(self, name):
            class Pages:
                def paginate(self, **kw):
                    ids = [f"i-{n:017x}" for n in range(size)]
                    yield {"InstanceStatuses": [{"InstanceId": i, "InstanceState": {"Name": "running"}} for i in ids]}
            return Pages()
    return Client


FACTS = RunFacts("2026-12-07", "r", "live")


@pytest.mark.parametrize("transport", ["ssm", "auto"])
def test_a_large_fleet_without_an_output_bucket_fails_discover_naming_the_param(monkeypatch, transport):
    monkeypatch.setattr(pipeline, "ec2_client", fleet_client(INLINE_MAX_HOSTS + 1))
    params = AuditParams(regions=["us-east-1"], create_table=False, transport=transport)
    with pytest.raises(ValueError, match=r"param ssm_output_bucket: .*4,501 hosts in us-east-1"):
        pipeline.discover(params, FACTS)


def test_the_same_fleet_with_an_output_bucket_or_over_ssh_is_discovered(monkeypatch):
    monkeypatch.setattr(pipeline, "ec2_client", fleet_client(INLINE_MAX_HOSTS + 1))
    with_bucket = AuditParams(regions=["us-east-1"], create_table=False, transport="ssm",
                              ssm_output_bucket="audit-ssm-out", ssm_output_bucket_owner="123456789012")
    assert pipeline.discover(with_bucket, FACTS).discovered == INLINE_MAX_HOSTS + 1
    ssh = AuditParams(regions=["us-east-1"], create_table=False)
    assert pipeline.discover(ssh, FACTS).discovered == INLINE_MAX_HOSTS + 1


def test_a_small_fleet_over_ssm_still_reads_inline(monkeypatch):
    monkeypatch.setattr(pipeline, "ec2_client", fleet_client(3))
    params = AuditParams(regions=["us-east-1"], create_table=False, transport="ssm")
    assert pipeline.discover(params, FACTS).discovered == 3
