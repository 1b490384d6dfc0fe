"""A targeted run's discovery against a real moto server over HTTP: `instance_ids` naming one running, one
stopped and one unknown instance lists only those (an `instance-id` filter: the unknown id fails nothing), checks
the running one and names the other two, in a second region too."""
from __future__ import annotations

import pytest

from devstack.standins.aws.seed import clients, seed_fleet
from include.fleet.discovery import discover_region
from include.fleet.inventory import RunFacts
from include.settings.params import AuditParams
from include.tasks import audit as pipeline

UNKNOWN = "i-0123456789abcdef0"  # well formed, never launched


@pytest.fixture(scope="module")
def fleet(moto):
    hosts = [{"address": "127.42.9.1", "name": "patched", "profile": "compliant"},
             {"address": "127.42.9.2", "name": "other", "profile": "compliant"},
             {"address": "127.42.9.3", "name": "off", "profile": "compliant", "state": "stopped"}]
    seed_fleet(moto, hosts)
    return {h["name"]: h["instance_id"] for h in hosts}


def test_discovery_with_instance_ids_lists_only_those_and_names_the_ones_not_running(moto, fleet, monkeypatch):
    ec2, _, _ = clients(moto)
    asked = [fleet["patched"], fleet["off"], UNKNOWN]
    region = discover_region(ec2, "us-east-1", {}, instance_ids=asked)
    assert region.running == [fleet["patched"]] and region.states == {"running": 1, "stopped": 1}

    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": clients(moto, region)[0])
    params = AuditParams(regions=["us-east-1", "eu-west-1"], create_table=False, instance_ids=asked)
    inventory = pipeline.discover(params, RunFacts("2026-12-09", "targeted", "live", "request"))
    assert inventory.instances == {"us-east-1": [fleet["patched"]], "eu-west-1": []}
    assert inventory.discovered == 1 and fleet["other"] not in str(inventory.to_xcom())
    assert inventory.not_found == sorted([fleet["off"], UNKNOWN])
