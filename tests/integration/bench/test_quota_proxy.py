"""A small fleet's whole AWS day through the quota proxy at a tenth of AWS's published rates.

200 simulated hosts on 127.42.13.x (their SSH and, for 2 of them, SSM agent listeners), a real moto server,
and `devstack.bench.quota.run`: discovery, `verify_batch` for 4 batches at once (stream lookups, canaries,
pins, evidence: raw output, then observations in transactions), the seal of the day, the report read, the
Security Hub export and SSM Run Command — every client pointed at a
`QuotaProxy` enforcing every quota × 0.1 (the day-index key: 100 WRU a second for 600 WRU of evidence), so
calls are throttled as AWS throttles them. Our code must still finish with every host's evidence stored
exactly once under this run (throttles retried, never lost), the day sealed over all of it, the counts per API
and the bytes the day keeps per host must be reported. No time is asserted. Starts servers: run under
`flock /tmp/itest.lock`.
"""
from __future__ import annotations

import json
import math

import pytest

from devstack.bench import quota as bench_quota
from include.reach.hostkeys import PIN_GROUP

HOSTS = 200
SSM_HOSTS = 2  # GetCommandInvocation at 0.5/s: each host ~2 s; two show it is one per host


def addresses(n: int) -> list[str]:
    return [f"127.42.13.{i + 1}" for i in range(n)]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("quota")
    doc = bench_quota.run(HOSTS, out, parallel=4, scale=0.1, canary=True, canary_wait_s=10, ssm_hosts=SSM_HOSTS,
                          latency_ms=0, addresses=addresses, cidrs=("127.42.0.0/16", "127.42.13.0/24"))
    return doc, out


def test_every_hosts_evidence_is_written_exactly_once_under_throttling(day):
    doc, _ = day
    assert doc["batch_failures"] == []
    assert doc["evidence"] == {"expected": HOSTS, "stored": HOSTS, "unique": HOSTS, "this_run": HOSTS,
                               "missing": [], "report_read": HOSTS}
    rows = {r["api"]: r for r in doc["apis"]}
    # Observations go by transaction (a batch's 50 at once: more than the day-index key's 100 WRU bucket, served
    # into debt); whether two batches' transactions meet a bucket in debt depends on timing, so throttling of
    # them is not asserted here (tests/devstack/test_aws_quotas.py: cancelled as DynamoDB does; the store resends).
    writes = rows["dynamodb:TransactWriteItems"]
    assert writes["calls"] - writes["throttled"] >= doc["batches"]
    assert rows["dynamodb capacity:quota_bench_evidence day-index write"]["units"] >= HOSTS  # ≥ 1 WRU each, once
    # a transaction writes each item twice: the table's units are at least twice the day index's
    assert rows["dynamodb capacity:quota_bench_evidence write"]["units"] >= 2 * HOSTS
    assert rows["dynamodb capacity:quota_bench_evidence_raw write"]["units"] >= HOSTS  # raw output, no index
    assert doc["seal"]["items"] == HOSTS and doc["seal"]["seq"] == 1  # every observation, one seal
    assert sum(r["throttled"] for r in doc["apis"]) > 0


def test_the_counts_per_api_are_reported(day):
    doc, out = day
    rows = {r["api"]: r for r in doc["apis"]}
    assert {"ec2:DescribeInstanceStatus", "ec2:DescribeInstances", "logs:DescribeLogStreams", "logs:FilterLogEvents",
            "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:TransactWriteItems", "dynamodb:PutItem",
            "dynamodb:Query",
            "securityhub:GetFindings", "securityhub:BatchImportFindings", "ssm:DescribeInstanceInformation",
            "ssm:SendCommand", "ssm:ListCommandInvocations", "ssm:GetCommandInvocation"} <= set(rows)
    assert rows["ec2:DescribeInstanceStatus"]["accepted"] == 1  # 200 instances: one page of 1,000
    assert rows["ec2:DescribeInstances"]["accepted"] == doc["batches"]  # each batch re-reads its own (≤ 200)
    # A first run pins every host once, 25 to a transaction (include/reach/hostkeys.py: PinGroups); a single
    # conditional PutItem only where a transaction could not answer per host (throttled).
    verify = doc["phases"]["verify"]
    assert verify.get("dynamodb:PutItem", {}).get("calls", 0) < HOSTS
    assert verify["dynamodb:TransactWriteItems"]["calls"] >= math.ceil(HOSTS / PIN_GROUP)
    assert {"dynamodb:Query", "dynamodb:PutItem"} <= set(doc["phases"]["seal"])  # the members read, the seal put
    assert rows["ssm:GetCommandInvocation"]["accepted"] == SSM_HOSTS
    assert rows["ssm:GetCommandInvocation"]["hosts"] == SSM_HOSTS
    for r in doc["apis"]:
        assert r["calls"] == r["accepted"] + r["throttled"] and r["accepted"] > 0
        if r["rate"]:
            assert r["seconds_at_100000"] == pytest.approx(
                (r["units"] if r["unit"] in ("WRU", "RRU") else r["accepted"]) * 100_000 / r["hosts"] / r["rate"],
                abs=0.1)
    assert json.loads((out / "quota.json").read_text())["apis"] == json.loads(json.dumps(doc["apis"]))
    table = bench_quota.markdown(doc["apis"], HOSTS)
    assert "| logs:FilterLogEvents | 5/s, burst 5 |" in table and "stand-in" in table


def test_the_bytes_the_day_keeps_per_host_are_reported_with_their_cost_at_100000_hosts(day):
    doc, out = day
    kept = doc["storage"]
    assert kept["counts"]["current"] == HOSTS and kept["counts"]["seals"] == 1 and kept["counts"]["raw"] >= HOSTS
    assert all(kept["bytes_per_host"][k] > 0 for k in ("items", "raw_output", "seals"))
    assert kept["billed_bytes_per_host_per_day"] > kept["stored_bytes_per_host"]
    assert kept["price"]["usd_per_gb_month"] == 0.25 and kept["at_100000"]["usd_per_month_steady_state"] > 0
    assert json.loads((out / "quota.json").read_text())["storage"] == json.loads(json.dumps(kept))


def test_the_window_check_names_freshness_and_canary_at_100000_hosts(day):
    doc, _ = day
    check = doc["window_check"]
    assert check["hosts"] == 100_000 and check["batches"] >= 16
    fresh, canary = check["freshness"], check["canary"]
    assert fresh["worst_case_calls"] == 100_000 and fresh["worst_case_seconds"] == 4000.0  # 100,000 / 25 per s
    shared = fresh["shared_listing_by_stale_share"]["10%"]  # streams not named by instance id, 10 % of them stale
    assert shared["calls"] < fresh["worst_case_calls"] / 5 and shared["fits_judge_budget"]
    assert canary["model_calls"] > 0 and canary["peak_demand_per_s"] > 0
    # the tagged search keeps 16 batches' polls under FilterLogEvents' 5/s, where untagged searches could not
    assert canary["peak_demand_fits_rate"] and canary["first_round_fits_wait"]
    assert canary["model_calls"] < canary["untagged_calls"]
