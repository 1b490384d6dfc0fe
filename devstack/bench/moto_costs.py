"""What each of the project's hot AWS call shapes costs the moto stand-in at fleet scale, in process (issue 29).

Builds moto's backends with the stand-in's patches (as devstack/standins/aws/server.py applies them), seeds an
evidence table of N hosts × `--days` days (current items and versions, the security-event partitions) and N EC2
instances, then times and cProfiles each call shape the bench showed hot on the stand-in's CPU:

- Query, history: include/notify/event_store.py `history()` (newest first, Limit, an 11-name projection)
- Query, states: `states()` (a host's event partition, newest first, Limit)
- TransactWriteItems: include/evidence/store.py `put_observations` of 50 hosts (100 actions), after its
  BatchGetItem of their current items
- PutItem: an event's conditional `claim()`
- DescribeInstances: include/fleet/discovery.py `hydrate` (an `instance-id` filter of 200 values)

Measured, not asserted (docs/PERFORMANCE.md): each shape's CPU a call (with the client's), and moto's own per
action as devstack/standins/aws/cpu.py counts it on the server (request parsing, backend, serialization; no HTTP):

    python -m devstack.bench.moto_costs --hosts 10000 [--calls 50] [--profile 12] [--unpatched | --skip PATCH,…]
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import time
from collections.abc import Callable

DAY = "2026-12-07"


PATCHES = ("ec2.direct_lookups", "ec2.id_filters_read_their_instances", "serialization.pickers_remember_their_keys",
           "dynamodb.query_copies_what_it_returns", "dynamodb.copy_each_level_once",
           "dynamodb.transactions_snapshot_their_items", "dynamodb.table_queries_read_one_partition",
           "dynamodb.attribute_values_serialize_directly", "dynamodb.items_are_sized_once",
           "dynamodb.attribute_values_parse_directly", "dynamodb.projections_pick_their_attributes",
           "dynamodb.sizes_without_copies")


def apply_patches(skip: set[str]) -> None:
    """The EC2 and DynamoDB patches, in server.py's order, but those named in `skip` (to compare)."""
    from devstack.standins.aws import dynamodb, ec2, serialization

    modules = {"ec2": ec2, "dynamodb": dynamodb, "serialization": serialization}
    for name in PATCHES:
        if name not in skip and name.split(".")[1] not in skip:
            module, function = name.split(".")
            getattr(modules[module], function)()


def _days(n: int) -> list[str]:
    from datetime import date, timedelta

    last = date.fromisoformat(DAY)
    return [(last - timedelta(days=k)).isoformat() for k in range(n - 1, -1, -1)]


def evidence_item(instance_id: str, day: str, seq: int, failing: bool) -> dict:
    """A current item shaped as instance_item writes one (16 checks, tags, transport evidence)."""
    from include.checks.catalogue import CATALOGUE
    from include.evidence.observation import observation_sha256

    checks = {c.id: {"status": "FAIL" if failing and c.id == "auditd.running" else "PASS",
                     "detail": f"{c.id} observed on {instance_id}: " + "x" * 60} for c in CATALOGUE}
    item = {"instance_id": instance_id, "audit_date": day, "item_type": "instance", "seq": seq, "run_id": f"r-{day}",
            "mode": "live", "checked_at": f"{day}T06:00:00Z", "status": "NON_COMPLIANT" if failing else "COMPLIANT",
            "status_detail": "", "failed_checks": ["auditd.running"] if failing else [], "advisory_failed": [],
            "waived_checks": [], "profile": "audit-trail", "transport": "ssh", "checks": checks,
            "region": "us-east-1", "account_id": "123456789012", "private_ip": "10.0.0.1", "address": "10.0.0.1",
            "platform": "Linux/UNIX", "name": f"web-{instance_id[-5:]}", "environment": "prod",
            "tags": {"Name": f"web-{instance_id[-5:]}", "Environment": "prod", "Team": "infra"},
            "host_key_fingerprint": "SHA256:" + "A" * 43, "host_key_note": "", "output_sha256": "0" * 64,
            "output_bytes": 4096, "output_ref": "", "output_truncated": False, "ssh_attempts": 1,
            "transport_evidence": {"ssh": "ok"}, "expires_at": 1900000000, "trigger": "", "trigger_detail": "",
            "stream_names": [["/ec2audit/audit", instance_id]], "stream_attributed_by_name": [], "stream": []}
    return {**item, "item_sha256": observation_sha256(item)}


def seed_table(backend, table_name: str, hosts: int, days: int) -> list[str]:
    """Every host's current item each day and one version of it, and a security event for 40 % of them,
    written straight into moto's backend (seeding is not what is measured)."""
    from boto3.dynamodb.types import TypeSerializer

    from include.evidence.observation import version_key

    ser = TypeSerializer()
    ids = [f"i-{i:017x}" for i in range(hosts)]
    for n, iid in enumerate(ids):
        failing = n % 10 < 4
        for day in _days(days):
            item = evidence_item(iid, day, 2, failing)
            backend.put_item(table_name, {k: ser.serialize(v) for k, v in item.items()})
            version = {**item, "audit_date": version_key(day, 1), "item_type": "version", "seq": 1, "day": day}
            backend.put_item(table_name, {k: ser.serialize(v) for k, v in version.items()})
        if failing:
            event = {"instance_id": "#security-event#" + iid, "audit_date": f"{DAY}#auditd.running",
                     "item_type": "security_event", "host": iid, "kind": "auditd.running", "first_seen": DAY,
                     "day": DAY, "anchor": "a", "before": "passed", "last_alerted": DAY, "alert_id": "x",
                     "alert_run": "r", "detail": "d", "delivered": {"email": "x"}, "expires_at": 1900000000}
            backend.put_item(table_name, {k: ser.serialize(v) for k, v in event.items()})
    return ids


def measure(name: str, calls: list[Callable[[], object]], profile_lines: int) -> float:
    """ms of this thread's CPU per call (each call once), then a cProfile of the same calls, top functions."""
    from devstack.standins.aws.cpu import CPU_BY_ACTION

    before = {action: list(entry) for action, entry in CPU_BY_ACTION.items()}
    started = time.thread_time()
    for call in calls:
        call()
    per_call = (time.thread_time() - started) / len(calls) * 1000
    served = {action: (entry[0] - before.get(action, [0, 0.0])[0], entry[1] - before.get(action, [0, 0.0])[1])
              for action, entry in CPU_BY_ACTION.items()}
    moto = ", ".join(f"{action} {cpu / count * 1000:.2f} ms × {count}"
                     for action, (count, cpu) in sorted(served.items()) if count)
    print(f"{name}: {per_call:.2f} ms a call ({len(calls)} calls), client included; moto's own: {moto}")
    if profile_lines:
        profiler = cProfile.Profile()
        profiler.enable()
        for call in calls:
            call()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(profile_lines)
        stats.sort_stats("cumulative").print_stats(profile_lines * 2)
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
    return per_call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--profile", type=int, default=0, help="top N functions of each shape's cProfile")
    parser.add_argument("--only", default="", help="comma-separated shapes (history,states,transact,put,describe)")
    parser.add_argument("--unpatched", action="store_true", help="moto as it is, none of the stand-in's patches")
    parser.add_argument("--skip", default="", help="comma-separated patches not applied (see PATCHES)")
    args = parser.parse_args(argv)
    n = max(10, min(args.hosts, 100_000))  # bounded
    only = set(filter(None, args.only.split(",")))
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(var, value)
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends

    from devstack.standins.aws import cpu
    from include.evidence.store import EvidenceStore
    from include.fleet.discovery import hydrate
    from include.notify.event_store import EventState, SecurityEventStore

    cpu.cpu_by_action()  # moto's own CPU per action, as the server reports it (GET /moto-api/ec2audit/cpu)
    if not args.unpatched:
        apply_patches(set(filter(None, args.skip.split(","))))
    results: dict[str, float] = {}
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        store = EvidenceStore(resource, "costs")
        store.ensure_tables()
        started = time.perf_counter()
        ids = seed_table(dynamodb_backends["123456789012"]["us-east-1"], "costs", n, args.days)
        print(f"seeded {n} hosts × {args.days} days in {time.perf_counter() - started:.0f} s")
        gc.collect()  # the seeding's own full collection, not charged to the first shape measured
        events = SecurityEventStore(store)
        step = max(1, n // args.calls)
        sample = ids[::step][:args.calls]
        failing = [i for k, i in enumerate(ids) if k % 10 < 4][::step][:args.calls]

        def shape(name: str, calls: list[Callable[[], object]]) -> None:
            if not only or name in only:
                results[name] = measure(name, calls, args.profile)

        shape("history", [lambda i=i: events.history(i, DAY) for i in sample])
        shape("states", [lambda i=i: events.states(i) for i in failing])
        kinds = iter(range(10**6))  # a new occurrence each call (the profile's second pass too)
        shape("put", [lambda i=i: store.table.put_item(Item=EventState(
            i, f"cwagent.running{next(kinds)}", DAY, "a", "b", DAY, "x", "r").to_item(30),
            ConditionExpression="attribute_not_exists(instance_id)") for i in sample])
        if not only or "transact" in only:
            rounds = [ids[k:k + 50] for k in range(0, min(n, 50 * max(2, args.calls // 10)), 50)]
            seq = iter(range(10**6))

            def flush(chunk: list[str]) -> None:
                s = next(seq)  # each flush is a new observation: a new current item, the old one kept as a version
                store.put_observations([{**evidence_item(i, DAY, 0, False), "run_id": f"bench-{s}",
                                         "checked_at": f"{DAY}T07:{s // 60 % 60:02d}:{s % 60:02d}Z"} for i in chunk])

            shape("transact",  # put_observations: BatchGetItem, then TransactWriteItems of 100 actions
                  [lambda c=c: flush(c) for c in rounds])
        if not only or "describe" in only:
            ec2 = boto3.client("ec2", region_name="us-east-1")
            started = time.perf_counter()
            instance_ids: list[str] = []
            while len(instance_ids) < n:
                count = min(500, n - len(instance_ids))
                instance_ids += [i["InstanceId"] for i in ec2.run_instances(
                    ImageId="ami-12c6146b", MinCount=count, MaxCount=count,
                    TagSpecifications=[{"ResourceType": "instance", "Tags": [
                        {"Key": "Environment", "Value": "prod"}, {"Key": "Team", "Value": "infra"}]}])["Instances"]]
            print(f"launched {n} instances in {time.perf_counter() - started:.0f} s")
            chunks = [instance_ids[k:k + 200] for k in range(0, n, max(200, n // max(1, args.calls // 10)))][:10]
            shape("describe", [lambda c=c: hydrate(ec2, "us-east-1", c, "private") for c in chunks])
    print("summary (ms a call): " + ", ".join(f"{k.split(' ')[0]} {v:.2f}" for k, v in results.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
