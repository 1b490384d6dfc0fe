"""Discovery, evidence and CloudWatch lookups against a real moto server process over HTTP."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from devstack.standins.aws.seed import clients, seed_fleet
from include.core.host import Host, HostOutcome
from include.core.status import Status, Verdict
from include.evidence.records import RunSummary
from include.evidence.store import SUMMARY_ID, EvidenceStore, instance_item
from include.fleet.discovery import discover_region, hydrate
from include.logs.streams import StreamLookup
from include.reach.hostkeys import PinStore


@pytest.fixture(scope="module")
def fleet(moto):
    hosts = [{"address": f"127.42.3.{n}", "name": f"h{n}", "environment": "prod" if n % 2 else "dev",
              "profile": "compliant"} for n in range(1, 8)]
    hosts.append({"address": "127.42.3.20", "name": "win", "profile": "compliant", "windows": True})
    hosts.append({"address": "127.42.3.21", "name": "off", "profile": "compliant", "state": "stopped"})
    hosts.append({"address": "127.42.3.22", "name": "old", "profile": "stale_stream"})
    seed_fleet(moto, hosts)
    return hosts


def test_discovery_filters_counts_and_hydrates(moto, fleet):
    ec2, _, _ = clients(moto)
    inventory = discover_region(ec2, "us-east-1", {})
    assert inventory.states.get("stopped") == 1
    assert len(inventory.running) == len(fleet) - 1
    prod = discover_region(ec2, "us-east-1", {"Environment": ["prod"]})
    assert len(prod.running) == 4 + 2  # odd h1..h7, plus the two hosts defaulting to prod
    # The no-filter path (DescribeInstanceStatus) and DescribeInstances agree on ids and states.
    every = discover_region(ec2, "us-east-1", {"Environment": ["prod", "dev"]})
    assert (every.running, every.states) == (inventory.running, inventory.states)
    hosts, gone = hydrate(ec2, "us-east-1", inventory.running + ["i-00000000deadbeef"], "private_ip")
    assert gone == ["i-00000000deadbeef"]
    by_name = {h.name: h for h in hosts}
    assert by_name["win"].is_windows and not by_name["h1"].is_windows
    assert by_name["h1"].address == "127.42.3.1" and by_name["h1"].account_id


def test_evidence_is_one_item_per_instance_and_day(moto):
    _, _, dynamodb = clients(moto)
    store = EvidenceStore(dynamodb, "evidence_test")
    store.ensure_tables()
    store.ensure_tables()  # idempotent
    now = datetime(2026, 11, 23, 6, tzinfo=timezone.utc)

    def item(iid: str, day: str, run: str, status=Status.COMPLIANT):
        host = Host(iid, "us-east-1", "123456789012", "127.0.0.1", private_ip="127.0.0.1",
                    tags={"Name": "n", "Environment": "prod"})
        outcome = HostOutcome(iid, None, output=b"out", host_key_fingerprint="SHA256:x")
        return instance_item(host=host, outcome=outcome, status=status, failed=[], verdicts={"a": Verdict.passed("ok")},
                             detail="", audit_date=day, run_id=run, checked_at=now, ttl_days=400)

    store.put_items([item(f"i-{n}", "2026-11-23", "run-1") for n in range(30)])
    store.put_items([item(f"i-{n}", "2026-11-22", "run-0") for n in range(30)])
    store.put_items([item(f"i-{n}", "2026-11-23", "run-2", Status.NON_COMPLIANT) for n in range(10)])
    day = [it.to_item() for it in store.day_items("2026-11-23")]
    assert len(day) == 30 and len({it["instance_id"] for it in day}) == 30
    assert sum(it["run_id"] == "run-2" for it in day) == 10
    assert len(store.day_items("2026-11-22")) == 30  # other days untouched
    assert store.recorded_by_run("2026-11-23", [f"i-{n}" for n in range(15)], "run-2") == {f"i-{n}" for n in range(10)}
    assert len(store.day_items("2026-11-23", run_id="run-1")) == 20

    store.put_summary("2026-11-23", RunSummary(run_id="run-2", compliance_pct=66.7), 400)
    assert store.get_day_item(SUMMARY_ID, "2026-11-23")["instance_id"] == SUMMARY_ID
    assert len(store.day_items("2026-11-23")) == 30  # the summary is not an instance
    assert store.emailed_by("2026-11-23") is None
    store.mark_emailed("2026-11-23", "run-2")
    assert store.emailed_by("2026-11-23") == "run-2"

    pins = PinStore(dynamodb, "evidence_test")  # the table ensure_tables made
    assert pins.pin("i-1", "ssh-ed25519 AAAA", "SHA256:one", "127.0.0.1")
    assert not pins.pin("i-1", "ssh-ed25519 BBBB", "SHA256:two", "127.0.0.1")  # first pin wins
    loaded = pins.load(["i-1", "i-2"])
    assert loaded.pins["i-1"].fingerprint == "SHA256:one" and "i-2" not in loaded.pins and not loaded.unread


def test_stream_lookup_exact_name_and_missing_group(moto, fleet):
    _, logs, _ = clients(moto)
    lookup = StreamLookup(logs)
    fresh_id = next(h["instance_id"] for h in fleet if h["name"] == "h1")
    stale_id = next(h["instance_id"] for h in fleet if h["name"] == "old")
    fresh, stale = lookup.describe("/ec2/audit", fresh_id), lookup.describe("/ec2/audit", stale_id)
    assert fresh["logStreamName"] == fresh_id
    now_ms = time.time() * 1000
    assert now_ms - fresh["lastIngestionTime"] < 10 * 60_000
    # The seeded stale stream's newest event is 10 h old, and so is its ingestion (see moto_server.py).
    assert now_ms - max(stale["lastIngestionTime"], stale["lastEventTimestamp"]) > 9 * 3_600_000
    assert lookup.describe("/ec2/audit", fresh_id[:-1]) is None  # a prefix is not the stream
    assert lookup.describe("/no/such/group", fresh_id) is None


def test_stream_lookup_lists_a_batch_in_a_few_calls(moto):
    """The batch listing against moto's real DescribeLogStreams (prefix, name order, nextToken)."""
    _, logs, _ = clients(moto)
    group = "/bench/lookup"
    logs.create_log_group(logGroupName=group)
    names = sorted(f"i-0{n:04x}{'ab' if n % 2 else 'cd'}" for n in range(300))
    for name in names[:-5]:  # the last five hosts never created their stream
        logs.create_log_stream(logGroupName=group, logStreamName=name)
    lookup = StreamLookup(logs, likely_names=names[100:300])
    found = {name: lookup.describe(group, name) for name in names[100:300]}
    assert {n for n, s in found.items() if s is None} == set(names[-5:])
    assert all(s["logStreamName"] == n for n, s in found.items() if s is not None)
    assert lookup.calls < 40  # instead of 200 exact lookups



def test_a_batch_s_canary_search_finds_its_own_tag_only_and_in_the_host_s_own_stream(moto):
    # Over HTTP against the moto server: the pattern of two quoted terms is AND, as in AWS (moto alone matched
    # nothing for it), so one batch's search never pages through the other batches' canaries.
    from include.logs.canary import Canary, find_canaries, pattern

    _, logs, _ = clients(moto)
    group, mine, theirs = "/ec2/canary-tags", "00000000000000aa", "00000000000000bb"
    logs.create_log_group(logGroupName=group)
    now = int(time.time() * 1000)
    for n in range(4):
        logs.create_log_stream(logGroupName=group, logStreamName=f"i-{n}")
        tag = mine if n < 2 else theirs
        logs.put_log_events(logGroupName=group, logStreamName=f"i-{n}", logEvents=[
            {"timestamp": now, "message": f"type=USER msg=audit(1796620777.409:{n}): pid=1 uid=0 auid=4294967295 "
                                          f"msg='text=ec2-audit-canary {tag} {n:032x} exe=\"/usr/sbin/auditctl\" res=success'"}])
    # i-3 claims i-2's canary event, which sits in i-2's stream
    hits = logs.filter_log_events(logGroupName=group, startTime=now - 60_000, filterPattern=pattern(mine))["events"]
    assert sorted(e["logStreamName"] for e in hits) == ["i-0", "i-1"]
    canaries = [Canary(f"i-{n}", group, f"i-{n}", f"ec2-audit-canary {mine} {n:032x}") for n in range(2)]
    canaries.append(Canary("i-3", group, "i-3", f"ec2-audit-canary {mine} {2:032x}"))
    found = find_canaries(logs, canaries, mine, since_ms=now - 60_000, wait_s=0)
    assert found["i-0"] is not None and found["i-1"] is not None and found["i-3"] is None


def test_streams_not_named_by_instance_id_are_answered_by_one_listing_for_the_run(moto):
    # Two batches of a run, hosts whose agents name streams by hostname: one batch lists the group's fresh
    # streams once (moto over HTTP, the listing stored in moto's DynamoDB); the other reads that listing.
    # Every answer is the one an exact lookup gives.
    from include.logs.index_store import StreamIndexStore
    from include.logs.stream_index import SharedIndex
    from include.logs.streams import INDEX_AFTER

    _, logs, dynamodb = clients(moto)
    store = EvidenceStore(dynamodb, "evidence_index_test")
    store.ensure_tables()
    group, now = "/ec2/audit-by-hostname", int(time.time() * 1000)
    logs.create_log_group(logGroupName=group)
    names = [f"ip-10-1-{k // 100}-{k % 100}" for k in range(80)]
    for k, name in enumerate(names):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
        age_min = 400 if k % 9 == 0 else 3  # every ninth is stale
        logs.put_log_events(logGroupName=group, logStreamName=name,
                            logEvents=[{"timestamp": now - age_min * 60_000, "message": "type=USER msg=x"}])

    class Counting:
        def __init__(self, client):
            self.client, self.calls = client, 0

        def describe_log_streams(self, **kw):
            self.calls += 1
            return self.client.describe_log_streams(**kw)

    counted = Counting(logs)
    batches = [StreamLookup(counted, likely_names=[f"i-{k:017x}" for k in range(40)],
                            index=SharedIndex(StreamIndexStore(store), counted, "2026-12-01", "run-index", 120)) for _ in range(2)]
    answers = {}
    for n, name in enumerate(names):
        answers[name] = batches[n % 2].describe(group, name)
    for name in names:
        exact = StreamLookup(logs).describe(group, name)
        assert answers[name]["logStreamName"] == name
        assert answers[name]["lastEventTimestamp"] == exact["lastEventTimestamp"]
    assert sum(b.index.listed for b in batches) == 1
    stale = sum(1 for k in range(80) if k % 9 == 0)
    # each batch's first INDEX_AFTER names and the stale ones are exact lookups; the fresh rest, one listing
    assert counted.calls <= 2 * INDEX_AFTER + stale + 2 < len(names)

    # A third batch with no re-check left in its budget: a stale stream past its first INDEX_AFTER names is
    # answered by the run's stored listing (stale ones are in it too), with no exact lookup, and judged FAIL
    # "as listed at" its time.
    from include.checks.parsers import judge_stream_freshness
    from include.core.status import CheckStatus
    late = StreamLookup(counted, likely_names=[], may_recheck=lambda: False,
                        index=SharedIndex(StreamIndexStore(store), counted, "2026-12-01", "run-index", 120))
    for name in names[1:1 + INDEX_AFTER]:
        late.describe(group, name)
    before, stale_name = counted.calls, names[0]
    got = late.describe(group, stale_name)
    assert counted.calls == before and late.index.listed == 0  # read the run's listing: no call at all
    assert got["lastEventTimestamp"] == StreamLookup(logs).describe(group, stale_name)["lastEventTimestamp"]
    verdict = judge_stream_freshness({(group, stale_name): got}, datetime.now(timezone.utc), 120)
    assert verdict.status == CheckStatus.FAIL and "(limit 120, as listed at " in verdict.detail, verdict.detail
