"""The bench's simulated fleet starts before EC2 is seeded (devstack/bench/side_by_side.py): its hosts learn their
instance ids afterwards (fleet.set_identities), or every host's agent config names no stream of its own and the
whole bench fleet FAILs cwagent.log_stream_fresh (what every `make bench` DAG row measured until 2026-12-07)."""
from __future__ import annotations

import os

from devstack.standins.hosts import fleet
from devstack.standins.hosts.host_states import PROFILES, agent_toml


def test_a_host_without_an_id_in_its_spec_answers_with_the_one_set_for_its_address(tmp_path):
    host = {"address": "127.43.0.9", "profile": "compliant"}
    assert fleet.instance_id_of(host, tmp_path) is None
    fleet.set_identities(tmp_path, {"127.43.0.9": "i-0aaaaaaaaaaaaaaaa"})
    assert fleet.instance_id_of(host, tmp_path) == "i-0aaaaaaaaaaaaaaaa"
    fleet.set_identities(tmp_path, {"127.43.0.9": "i-0bbbbbbbbbbbbbbbb"})  # the next round's seeding
    path = fleet.identities_path(tmp_path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert fleet.instance_id_of(host, tmp_path) == "i-0bbbbbbbbbbbbbbbb"
    assert fleet.instance_id_of({**host, "instance_id": "i-0ccccccccccccccccc"}, tmp_path) == "i-0ccccccccccccccccc"


def test_its_agent_config_then_ships_audit_log_to_a_stream_named_by_that_id(tmp_path):
    fleet.set_identities(tmp_path, {"127.43.0.9": "i-0aaaaaaaaaaaaaaaa"})
    iid = fleet.instance_id_of({"address": "127.43.0.9"}, tmp_path)
    toml = agent_toml(PROFILES["compliant"], {"instance_id": iid, "hostname": "ip-127-43-0-9"})
    assert 'file_path = "/var/log/audit/audit.log"' in toml
    assert 'log_stream_name = "i-0aaaaaaaaaaaaaaaa"' in toml and '"None"' not in toml
