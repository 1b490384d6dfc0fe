"""The AWS side of a daily audit through the quota proxy: API calls per host and per API, throttles, and the
time that API work takes at 100,000 hosts when each API's published rate is the limit.

    .venv/bin/python -m devstack.bench.quota --hosts 10000 [--parallel 16] [--scale 1] [--ssm-hosts 500]

Like devstack/bench/side_by_side.py it starts a moto server, seeds N simulated instances (127.43.x.y; not through the
proxy: that is setup, not the audit) and one simulator process serving their SSH (and, for `--ssm-hosts`,
SSM agent) listeners, whose agents also ship each host's canary to moto as a CloudWatch agent would. Then
this project's own code does a day's AWS work with every client pointed at `QuotaProxy`
(devstack/standins/aws/fault_proxy.py) in front of moto, enforcing devstack/standins/aws/quotas.py at `--scale` × the published
rates:

1. discovery — `include.fleet.discovery.discover_region` (DescribeInstanceStatus, 1,000 a page), then
   `include.fleet.batching.plan_batches`, as the DAG's discover and plan tasks;
2. verify — `include.verify.batch.verify_batch` for every batch, `--parallel` at a time (16: one worker slot per
   batch of the automatic sizing), with the DAG's clients (LOGS_RETRIES for Logs): each batch re-reads its
   instances (DescribeInstances), reads the run's records and its host-key pins (BatchGetItem), pins first
   sights (conditional PutItem), reaches every host over SSH, looks its stream up (StreamLookup: prefix
   listings, DescribeLogStreams), searches the batch's canaries (FilterLogEvents, 100 streams a call, polled
   until found or `--canary-wait`) and writes evidence every 25 hosts: each host's raw output first
   (BatchWriteItem to T_raw), then the observations (BatchGetItem, consistent, of the current items; then
   TransactWriteItems: a first observation one Put, a replacement two — the version kept and the new current);
3. seal — the day sealed as the store step seals it (`include.evidence.seals.seal`: the day index and the version
   partitions read for the members, the chain's head read consistently, the seal put conditionally, its
   member chunks put);
4. the day read back once for the report (Query on the day index, full items);
5. Security Hub export of the day (`include.exports.securityhub.export_day`: GetFindings, BatchImportFindings,
   BatchUpdateFindings), unless `--no-securityhub`;
6. SSM Run Command (`include.reach.ssm.SsmTransport`) over the first `--ssm-hosts` hosts (0: skipped).

`--reruns k` runs the verify phase k more times the same day (new run ids, trigger manual), so each host's
observation is replaced k times: the versions' transactions and bytes are in the rows (which then count the
whole day, 1 + k runs; the per-phase rows give each run's own). Then every host's evidence must be in the table
exactly once, under the last run. What the day keeps is measured
on moto directly (not through the proxy): the size DynamoDB counts (attribute names + values) of the day's
current items and versions, its raw output chunks in T_raw, its seals and their member chunks, per host, and
what that costs to store at 100,000 hosts (`storage`). Reported per API: calls,
calls per host, throttles, request units (DynamoDB), and the projection: calls (or units) × 100,000 / N /
the quota's rate — seconds of that API's account-and-Region budget the work takes at 100,000 hosts, which
the quota, not this machine, sets. A markdown table goes to stdout and everything to
`.local/bench/quota.json`. `window_check` says whether stream freshness and canary lookups fit one daily
window at 100,000 hosts, for the current design and for group-wide alternatives.

Bounded: the fleet is capped at 10,000 hosts, every SSH host has its own budget (host_timeout), each batch's
AWS judging its budget (include/verify/judge.py), the canary search `--canary-wait`; the SSM run its collect budget.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack import clock, procs
from devstack.procs import PROJECT, wait_until
from devstack.stack import local_aws
from devstack.standins.aws import quotas as aws_quotas
from devstack.standins.aws.fault_proxy import QuotaProxy
from devstack.standins.aws.seed import REGION
from devstack.standins.hosts.fleet import SSH_LOGIN, SSM_AGENT_PORT
from include.evidence.records import EvidenceItem

MAX_HOSTS = 10_000
PORT = 2222
PROFILES = ["compliant"] * 6 + ["auditd_stopped", "no_rules", "agent_stopped", "agent_not_shipping"]
TABLE = "quota_bench_evidence"
PROJECT_TO = 100_000
WINDOW_H = 6.0
ACCOUNT = "123456789012"  # moto's
# DynamoDB Standard table class storage, per GB-month (us-east-1; https://aws.amazon.com/dynamodb/pricing/
# on-demand, "Data storage"): the price the projection uses. A GB here is 10^9 bytes.
STORAGE_USD_PER_GB_MONTH = 0.25
SWEEP_MINUTES = 15  # the silence sweep's default interval (dags/ec2_audit_sweep.py: EC2_AUDIT_SWEEP_MINUTES)
ITEM_OVERHEAD_BYTES = 100  # "every item in DynamoDB requires 100 bytes of storage overhead for indexing" (storage
#                            billing, Developer Guide "DynamoDB item sizes and formats"); an index entry too
DAYS_PER_MONTH = 30
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def bench_addresses(n: int) -> list[str]:
    """127.43.x.y: the bench's range (devstack/bench/side_by_side.py), no test uses it."""
    return [f"127.43.{i // 250}.{i % 250 + 1}" for i in range(min(n, MAX_HOSTS))]


# ------------------------------------------------------------------------------------------------ the stand

class Stand:
    """moto seeded with N instances, the simulated fleet serving them, and the quota proxy in front of moto."""

    def __init__(self, root: Path, n: int, addresses: Callable[[int], list[str]] = bench_addresses,
                 cidrs: tuple[str, str] = ("127.43.0.0/16", "127.43.0.0/16"), ssm_hosts: int = 0,
                 latency_ms: int = 20, scale: float = 1.0, log: Callable[[str], None] = print,
                 stream_names: str = "instance-id") -> None:
        self.root, self.n, self.log = root, min(n, MAX_HOSTS), log
        self.stream_names = stream_names  # "hostname": agents name the audit stream {local_hostname} (the OS hostname), not the id
        self.procs: list[subprocess.Popen] = []
        self.proxy = None
        self.root.mkdir(parents=True, exist_ok=True)
        self.ssm_hosts = min(ssm_hosts, self.n)
        try:
            self._start(addresses, cidrs, latency_ms, scale)
        except BaseException:
            self.stop()
            raise

    @property
    def ssm_dir(self) -> Path:
        return self.root / "ssm"

    def _start(self, addresses, cidrs, latency_ms: int, scale: float) -> None:
        from devstack.standins.aws.seed import seed_fleet
        from devstack.standins.hosts.fleet import generate_client_key
        from include.evidence.store import EvidenceStore

        env = {"EC2AUDIT_SSM_DIR": str(self.ssm_dir)} if self.ssm_hosts else None
        moto, self.direct = local_aws.spawn_moto(self.root / "moto.log", env)
        self.procs.append(moto)
        self.hosts = [{"address": a, "name": f"quota-{i}", "profile": PROFILES[i % len(PROFILES)],
                       "hostname": f"ip-{a.replace('.', '-')}"} for i, a in enumerate(addresses(self.n))]
        if self.stream_names == "hostname":
            for h in self.hosts:
                h["stream"] = h["hostname"]
        started = time.perf_counter()
        seed_fleet(self.direct, self.hosts, REGION, cidrs=cidrs)
        self.seed_s = time.perf_counter() - started
        self.log(f"  moto seeded with {self.n} instances in {self.seed_s:.0f}s")
        EvidenceStore(local_aws.dynamodb(self.direct), TABLE).ensure_tables()
        self.key = self.root / "client_key"
        if not self.key.exists():
            generate_client_key(self.key)
        agent_key = self.root / "ssm_agent_key"
        if self.ssm_hosts and not agent_key.exists():
            generate_client_key(agent_key)
        spec = [{"address": h["address"], "port": PORT, "name": h["name"], "profile": h["profile"],
                 "instance_id": h["instance_id"], "identity": {
                     "hostname": h["hostname"],
                     **({"stream": h["stream"], "stream_template": "{local_hostname}"} if h.get("stream") else {})},
                 **({"agent_port": SSM_AGENT_PORT} if i < self.ssm_hosts else {})} for i, h in enumerate(self.hosts)]
        (self.root / "spec.json").write_text(json.dumps(spec))
        ready = self.root / "ready"
        ready.unlink(missing_ok=True)
        fleet = procs.spawn(
            [sys.executable, "-m", "devstack.standins.hosts.fleet", "--spec", str(self.root / "spec.json"), "--state-dir",
             str(self.root / "state"), "--authorized-key", f"{self.key}.pub", "--latency-ms", str(latency_ms),
             "--ready-file", str(ready), "--aws-endpoint", self.direct,
             *(["--ssm-agent-key", f"{agent_key}.pub"] if self.ssm_hosts else [])])
        self.procs.append(fleet)
        wait_until(ready.exists, 600, "quota bench fleet", fleet)
        if self.ssm_hosts:
            from devstack.standins.hosts.ssm_agents import register_fleet_host

            for h in self.hosts[: self.ssm_hosts]:
                register_fleet_host(self.ssm_dir, h["instance_id"], h["address"], SSM_AGENT_PORT, agent_key,
                                    computer_name=f"ip-{h['address'].replace('.', '-')}")
        self.proxy, self.endpoint = QuotaProxy.start(self.direct, scale=scale)

    @property
    def ledger(self) -> aws_quotas.Ledger:
        return self.proxy.ledger

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.shutdown()
            self.proxy.server_close()
            self.proxy = None
        for proc in reversed(self.procs):
            procs.stop_group(proc)
        self.procs.clear()


# ------------------------------------------------------------------------------------ the day's AWS work

def _session():
    import boto3

    return boto3.session.Session(region_name=REGION, **CREDS)  # one per thread: the default one is not safe


def batch_clients(endpoint: str):
    """What include/aws/clients.py gives a verify task: EC2 and DynamoDB with botocore's defaults, Logs with
    LOGS_RETRIES (adaptive, 10 attempts)."""
    from botocore.config import Config

    from include.aws.clients import LOGS_RETRIES

    s = _session()
    return (s.client("ec2", endpoint_url=endpoint), s.client("logs", endpoint_url=endpoint, config=Config(**LOGS_RETRIES)),
            s.resource("dynamodb", endpoint_url=endpoint))


def _diff(after: dict, before: dict) -> dict:
    out = {}
    for api, row in after.items():
        was = before.get(api, {})
        delta = {k: (round(v - was.get(k, 0), 1) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                 for k, v in row.items()}
        if delta["calls"]:
            out[api] = delta
    return out


class Phases:
    """The ledger's counts per phase (differences of snapshots) and each phase's wall time."""

    def __init__(self, ledger: aws_quotas.Ledger) -> None:
        self.ledger, self.rows, self.walls = ledger, {}, {}

    def run(self, name: str, fn):
        before, started = self.ledger.report(), time.perf_counter()
        try:
            return fn()
        finally:
            self.walls[name] = round(time.perf_counter() - started, 1)
            self.rows[name] = _diff(self.ledger.report(), before)


def daily_work(stand: Stand, *, parallel: int = 16, canary: bool = True, canary_wait_s: int = 90,
               securityhub: bool = True, reruns: int = 0, log: Callable[[str], None] = print) -> dict:
    """Discovery, verify (then `reruns` more runs of the day: each observation replaces the current one, which
    is kept as a version), the seal, the report read, Security Hub and SSM, through the proxy (module
    docstring)."""
    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch, plan_batches
    from include.fleet.discovery import discover_region
    from include.reach.ssh import SshSettings
    from include.settings.params import AuditParams
    from include.verify.batch import RunContext, verify_batch
    from include.verify.result import BatchResult

    day = clock.today()
    run_id = f"quota_bench__{int(time.time())}"
    phases = Phases(stand.ledger)
    params = AuditParams(evidence_table=TABLE, canary=canary, canary_wait_seconds=canary_wait_s,
                         connect_timeout=15, host_timeout=90, command_timeout=60)
    ssh = SshSettings(username=SSH_LOGIN, key_file=str(stand.key), port=PORT, host_key_policy="tofu",
                      connect_timeout=15, command_timeout=60, host_budget=90)
    ctx = RunContext(day, run_id, params, ssh, trigger="schedule")

    def discover():
        ec2, _, _ = batch_clients(stand.endpoint)
        return plan_batches({REGION: discover_region(ec2, REGION, {}).running})

    batches = phases.run("discovery", discover)
    log(f"  discovered {sum(len(b.instance_ids) for b in batches)} running in {len(batches)} batches")

    def one(batch: Batch, ctx: RunContext = ctx) -> BatchResult:
        ec2, logs, ddb = batch_clients(stand.endpoint)
        try:
            return verify_batch(batch, ctx, ec2, logs, EvidenceStore(ddb, TABLE))
        except Exception as exc:  # noqa: BLE001 - a failed batch is reported (the DAG would retry it)
            return BatchResult.failure(batch.label, batch.region, len(batch.instance_ids), f"{type(exc).__name__}: {exc}")

    def verify(ctx: RunContext = ctx):
        with ThreadPoolExecutor(max(1, parallel)) as pool:
            return list(pool.map(lambda b: one(b, ctx), batches))

    results = phases.run("verify", verify)
    for k in range(1, reruns + 1):  # a same-day rerun (manual): every host observed again, the first kept
        run_id = f"{run_id.split('__rerun')[0]}__rerun{k}"
        rerun = RunContext(day, run_id, params, ssh, trigger="manual")
        results += phases.run(f"verify rerun {k}", lambda rerun=rerun: verify(rerun))
    failed = [{"label": r.label, "error": r.error} for r in results if r.failed]
    for r in failed:
        log(f"  batch failed: {r['label']}: {r['error']}")

    def seal():
        from include.evidence import seals

        _, _, ddb = batch_clients(stand.endpoint)
        record = seals.seal(EvidenceStore(ddb, TABLE), day, run_id, "schedule", params.ttl_days,
                            params.kms_key_id or None)
        return {"seq": record.seq, "items": record.items, "manifest_sha256": record.manifest_sha256,
                "signed": record.signed}

    try:
        sealed = phases.run("seal", seal)
    except Exception as exc:  # noqa: BLE001 - reported (the store step would fail and be retried)
        sealed = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    log(f"  sealed: {sealed}")

    def report_read():
        _, _, ddb = batch_clients(stand.endpoint)
        return EvidenceStore(ddb, TABLE).day_items(day)

    items = phases.run("report read", report_read)
    stored = [i for i in EvidenceStore(local_aws.dynamodb(stand.direct), TABLE).day_items(day, fields=["run_id"])]
    ids = [i.instance_id for i in stored]
    evidence = {"expected": stand.n, "stored": len(stored), "unique": len(set(ids)),
                "this_run": sum(1 for i in stored if i.run_id == run_id),
                "missing": sorted(set(h["instance_id"] for h in stand.hosts) - set(ids))[:10],
                "report_read": len(items)}
    statuses = {}
    for item in items:
        statuses[item.status] = statuses.get(item.status, 0) + 1
    canary_found = sum(1 for i in items if i.checks.get("cwagent.canary_delivered", {}).get("status") == "PASS")
    canaries = _canary_outcomes(stand, items) if canary else None
    unreachable: dict[str, int] = {}
    for item in items:
        if item.status in ("UNREACHABLE", "ERROR"):
            detail = item.status_detail[:90]
            unreachable[detail] = unreachable.get(detail, 0) + 1
    hub = phases.run("securityhub", lambda: _securityhub(stand, items)) if securityhub else None
    ssm = phases.run("ssm", lambda: _ssm(stand)) if stand.ssm_hosts else None
    direct = _session().client("dynamodb", endpoint_url=stand.direct)  # low-level: DynamoDB JSON as stored
    kept = storage(day_storage(direct, TABLE, day), stand.n, params.ttl_days)
    return {"day": day, "run_id": run_id, "reruns": reruns, "batches": len(batches), "batch_failures": failed,
            "evidence": evidence,
            "seal": sealed, "storage": kept,
            "statuses": statuses, "canary_found": canary_found, "canaries": canaries,
            "not_reached": dict(sorted(unreachable.items(), key=lambda kv: -kv[1])[:5]), "securityhub": hub, "ssm": ssm,
            "phases": phases.rows, "walls_s": phases.walls, "totals": stand.ledger.report()}


def _canary_outcomes(stand: Stand, items: list[EvidenceItem]) -> dict:
    """Of the reached hosts whose simulated agent delivers the canary (devstack/standins/hosts/host_states.delivers_canary),
    how many the batch's search found within the wait: the others were missed — throttled polls, a window
    spent waiting on FilterLogEvents — not undelivered."""
    from devstack.standins.hosts.host_states import delivers_canary

    profile = {h["instance_id"]: h["profile"] for h in stand.hosts}
    out = {"delivering": 0, "found": 0, "missed": 0, "undelivered_found": 0}
    for item in items:
        verdict = item.checks.get("cwagent.canary_delivered", {}).get("status")
        if verdict is None:  # not reached: no canary was written
            continue
        if delivers_canary(profile[item.instance_id]):
            out["delivering"] += 1
            out["found" if verdict == "PASS" else "missed"] += 1
        elif verdict == "PASS":
            out["undelivered_found"] += 1  # would be a false pass
    return out


def _securityhub(stand: Stand, items: list[EvidenceItem]) -> dict:
    from botocore.config import Config

    from include.aws.clients import SECURITYHUB_RETRIES
    from include.checks.catalogue import check_meta
    from include.exports import securityhub as sh

    _session().client("securityhub", endpoint_url=stand.direct).enable_security_hub()  # setup, not the audit
    client = _session().client("securityhub", endpoint_url=stand.endpoint, config=Config(**SECURITYHUB_RETRIES))
    try:
        # The bench's run discovered every host of its one region, unfiltered: the whole day is in scope.
        scope = sh.RunScope(frozenset({REGION}), frozenset(it.instance_id for it in items), complete=True)
        return sh.export_day(client, items, check_meta(), ACCOUNT, REGION, clock.now(), scope=scope)
    except sh.SecurityHubError as exc:
        return {"error": str(exc)[:300]}


def _ssm(stand: Stand) -> dict:
    from botocore.config import Config

    from devstack.bench.side_by_side import ssm_transport_run
    from include.aws.clients import SSM_RETRIES
    from include.core.host import Host
    from include.reach.ssm import SsmSettings

    hosts = [Host(instance_id=h["instance_id"], region=REGION, account_id="", address=h["address"],
                  private_ip=h["address"], public_ip=None, private_dns=None, platform="linux", tags={})
             for h in stand.hosts[: stand.ssm_hosts]]
    client = _session().client("ssm", endpoint_url=stand.endpoint, config=Config(**SSM_RETRIES))
    ok, calls = ssm_transport_run(client, hosts, SsmSettings(command_timeout=60, delivery_timeout=90,
                                                             max_concurrency=50))
    return {"hosts": len(hosts), "complete": ok, "transport_calls": dict(sorted(calls.items()))}


# ----------------------------------------------------------------------------------------- stored bytes

def _pages(client, operation: str, **kwargs) -> list[dict]:
    return [it for page in client.get_paginator(operation).paginate(**kwargs) for it in page.get("Items", [])]


def day_storage(client, table: str, day: str) -> dict[str, list[dict]]:
    """Every item the day keeps, as stored, by kind (`client`: a low-level DynamoDB client — not a resource's,
    which would translate values — so items come as DynamoDB JSON): "current" and
    "versions" (the observations), "raw" (T_raw chunks), "seals" (the chain's seals of the day) and
    "seal_members" (their member chunks), "other" (run summary, digest, ... of the day)."""
    from include.aws.tables import DAY_INDEX
    from include.evidence.manifest import SEAL_ID
    from include.evidence.observation import CURRENT, raw_table_name, version_key
    from include.evidence.seals import MEMBERS_TYPE

    def partition(key: str) -> list[dict]:
        return _pages(client, "query", TableName=table, IndexName=DAY_INDEX,
                      KeyConditionExpression="audit_date = :d", ExpressionAttributeValues={":d": {"S": key}})

    out: dict[str, list[dict]] = {"current": [], "versions": [], "raw": [], "seals": [], "seal_members": [],
                                  "other": []}
    for item in partition(day):
        kind = item.get("item_type", {}).get("S")
        out["current" if kind == CURRENT else "seal_members" if kind == MEMBERS_TYPE else "other"].append(item)
    for seq in range(1, 1_000_000):  # "<day>#v#1", "#v#2", ... to the first empty one (store.day_versions)
        found = partition(version_key(day, seq))
        if not found:
            break
        out["versions"] += found
    out["seals"] = _pages(client, "query", TableName=table, KeyConditionExpression="instance_id = :s",
                          FilterExpression="#day = :d", ExpressionAttributeNames={"#day": "day"},
                          ExpressionAttributeValues={":s": {"S": SEAL_ID}, ":d": {"S": day}})
    # T_raw has no index (raw bytes are not copied into one): its day is a prefix of every sort key.
    out["raw"] = _pages(client, "scan", TableName=raw_table_name(table),
                        FilterExpression="begins_with(output_key, :d)", ExpressionAttributeValues={":d": {"S": f"{day}#"}})
    return out


def storage(groups: dict[str, list[dict]], hosts: int, ttl_days: int, to: int = PROJECT_TO,
            usd_per_gb_month: float = STORAGE_USD_PER_GB_MONTH) -> dict:
    """Bytes the day keeps per host (pure), as DynamoDB sizes an item (attribute names + values:
    quotas.item_size), split into the observations (current items + versions), raw output (T_raw) and seals
    (seal items + member chunks); and what storing it costs at `to` hosts. Billed bytes add 100 bytes per item,
    and the day index (by_audit_date, projection ALL) stores a second copy of every evidence-table item —
    observations, seals, members, not T_raw, which has no index."""
    size = {kind: sum(aws_quotas.item_size(it) for it in items) for kind, items in groups.items()}
    count = {kind: len(items) for kind, items in groups.items()}
    split = {"items": size.get("current", 0) + size.get("versions", 0), "raw_output": size.get("raw", 0),
             "seals": size.get("seals", 0) + size.get("seal_members", 0), "other": size.get("other", 0)}
    raw_items = count.get("raw", 0)
    table_items = sum(count.values()) - raw_items
    table_bytes = sum(split.values()) - split["raw_output"]
    # billed: the table's items + their index copies (each with its overhead) + T_raw's items
    billed = 2 * (table_bytes + ITEM_OVERHEAD_BYTES * table_items) + split["raw_output"] + ITEM_OVERHEAD_BYTES * raw_items
    per_host = billed / max(1, hosts)
    day_gb = per_host * to / 1e9
    return {
        "hosts": hosts, "bytes": split, "counts": count,
        "bytes_per_host": {k: round(v / max(1, hosts), 1) for k, v in split.items()},
        "stored_bytes_per_host": round(sum(split.values()) / max(1, hosts), 1),
        "billed_bytes_per_host_per_day": round(per_host, 1),
        "price": {"usd_per_gb_month": usd_per_gb_month, "table_class": "DynamoDB Standard", "gb": "10^9 bytes",
                  "item_overhead_bytes": ITEM_OVERHEAD_BYTES,
                  "note": "billed = 2 × (evidence-table items + 100 B each): the by_audit_date index (projection ALL) "
                          "keeps a copy of the observations, seals and their members; + T_raw (no index) + 100 B "
                          "an item. Free tier (25 GB) ignored."},
        f"at_{to}": {
            "gb_per_day": round(day_gb, 3),
            "usd_per_month_per_day_kept": round(day_gb * usd_per_gb_month, 4),
            f"gb_after_{DAYS_PER_MONTH}_days": round(day_gb * DAYS_PER_MONTH, 2),
            f"usd_per_month_after_{DAYS_PER_MONTH}_days": round(day_gb * DAYS_PER_MONTH * usd_per_gb_month, 2),
            "ttl_days": ttl_days, "gb_steady_state": round(day_gb * ttl_days, 1),
            "usd_per_month_steady_state": round(day_gb * ttl_days * usd_per_gb_month, 2)}}


def storage_markdown(kept: dict, to: int = PROJECT_TO) -> str:
    """The stored-bytes table: per host per day, by kind, and the monthly cost at `to` hosts."""
    at = kept[f"at_{to}"]
    per = kept["bytes_per_host"]
    lines = ["| kept per host per day | bytes (attribute names + values) |", "| --- | ---: |",
             *[f"| {name} | {per[key]:,.0f} |" for key, name in (
                 ("items", "observations (current items + versions)"), ("raw_output", "raw output (T_raw, gzip)"),
                 ("seals", "seals (seal items + member chunks)"), ("other", "other (summary, digest)"))],
             f"| **stored** | **{kept['stored_bytes_per_host']:,.0f}** |",
             f"| billed (× 2 for the by_audit_date index copy of all but T_raw, + 100 B an item) | "
             f"{kept['billed_bytes_per_host_per_day']:,.0f} |",
             "",
             f"At {to:,} hosts, DynamoDB Standard storage at ${kept['price']['usd_per_gb_month']} per GB-month: "
             f"{at['gb_per_day']:,.2f} GB a day; after {DAYS_PER_MONTH} days {at[f'gb_after_{DAYS_PER_MONTH}_days']:,.1f} GB, "
             f"${at[f'usd_per_month_after_{DAYS_PER_MONTH}_days']:,.2f} a month; at ttl_days={at['ttl_days']} "
             f"(steady state) {at['gb_steady_state']:,.0f} GB, ${at['usd_per_month_steady_state']:,.2f} a month."]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- projections

def _hosts_of(api: str, result: dict, n: int) -> int:
    return result["ssm"]["hosts"] if api.startswith("ssm:") and result.get("ssm") else n


def projections(result: dict, n: int, to: int = PROJECT_TO, window_h: float = WINDOW_H) -> list[dict]:
    """Per API (all phases): calls, calls per host, throttles, units, and seconds of its quota at `to` hosts."""
    rows: dict[str, dict] = {}
    for phase, apis in result["phases"].items():
        for api, r in apis.items():
            row = rows.setdefault(api, {"api": api, "phases": [], "calls": 0, "throttled": 0, "units": 0.0,
                                        "unprocessed": 0, "hosts": _hosts_of(api, result, n),
                                        **{k: r[k] for k in ("quota", "rate", "unit", "published", "source")}})
            row["phases"].append(phase)
            for k in ("calls", "throttled", "units", "unprocessed"):
                row[k] += r[k]
    out = []
    for row in sorted(rows.values(), key=lambda r: r["api"]):
        capacity = row["unit"] in ("WRU", "RRU")
        accepted = row["calls"] - row["throttled"]  # a throttled request was retried: it spent no quota
        spent = row["units"] if capacity else accepted
        seconds = spent * to / row["hosts"] / row["rate"] if row["rate"] else None
        out.append({**row, "units": round(row["units"], 1), "accepted": accepted,
                    "calls_per_host": round(accepted / row["hosts"], 4),
                    "units_per_host": round(row["units"] / row["hosts"], 3),
                    f"calls_at_{to}": round(accepted * to / row["hosts"]),
                    f"seconds_at_{to}": round(seconds, 1) if seconds is not None else None,
                    "fits_window": seconds is None or seconds <= window_h * 3600})
    return out


EVENT_BYTES = 330  # one canary's USER record as FilterLogEvents returns it (message, stream, ids), roughly
PAGE_BYTES = 1_000_000  # FilterLogEvents returns at most 1 MB (or 10,000 events) a page


def shared_listing_cost(to: int, batches: int, parallel: int, stale_share: float, rate: float) -> dict:
    """DescribeLogStreams for `to` hosts whose streams are not named by instance id (include/logs/stream_index.py):
    one listing of the whole group a run (50 streams a page, fresh and stale), each batch's first INDEX_AFTER
    exact lookups, and exact re-checks of the listing's stale or missing answers — made only in the first
    RECHECK_SHARE of each batch's judging budget (the batches running together share the account's rate), and
    at most RUN_RECHECKS in the run.
    What is not re-checked is answered by the listing ("as listed at"): no host is ERROR for lack of budget."""
    from include.logs.stream_index import PAGE
    from include.logs.streams import INDEX_AFTER
    from include.verify.judge import JUDGE_BUDGET_S, RECHECK_SHARE, RUN_RECHECKS

    listing, first = math.ceil(to / PAGE), batches * INDEX_AFTER
    stale = math.ceil(to * stale_share)
    waves = math.ceil(batches / max(1, parallel))  # batches judged one wave after another share the rate in turn
    # each batch re-checks at most its share of RUN_RECHECKS (judge.Budget.for_batch)
    run_cap = batches * math.ceil(RUN_RECHECKS / max(1, batches))
    rechecks = min(stale, run_cap, math.floor(waves * JUDGE_BUDGET_S * RECHECK_SHARE * rate))
    calls = listing + first + rechecks
    return {"calls": calls, "seconds": round(calls / rate, 1), "listing_calls": listing, "first_lookups": first,
            "rechecks": rechecks, "answered_as_listed": stale - rechecks,
            "fits_judge_budget": (first + rechecks) / rate / waves <= JUDGE_BUDGET_S, "error_for_budget": 0}


def window_check(n: int, result: dict, to: int = PROJECT_TO, window_h: float = WINDOW_H, parallel: int = 16,
                 wait_s: float = 90.0) -> dict:
    """Stream freshness and canary lookups at `to` hosts against Logs' quotas, within one daily window:
    the current design (measured here, scaled), its worst case, and group-wide alternatives (computed)."""
    from include.fleet.batching import plan_batches
    from include.logs.canary import CANARY_POLL_S, canary_call_spacing_s
    from include.verify.judge import JUDGE_BUDGET_S

    q = aws_quotas.QUOTAS
    dls, fle = q["logs", "DescribeLogStreams"].rate, q["logs", "FilterLogEvents"].rate
    rows = {r["api"]: r for r in projections(result, n, to, window_h)}
    measured_dls = rows.get("logs:DescribeLogStreams", {}).get("calls", 0)
    measured_fle = rows.get("logs:FilterLogEvents", {}).get("calls", 0)
    batches = plan_batches({REGION: [f"i-{k:017x}" for k in range(to)]})
    size = max(len(b.instance_ids) for b in batches)
    missing = 1 - result.get("canary_found", 0) / max(1, n)  # share of canaries never found (undelivered)
    # The tagged search (include/logs/canary.py): a batch's poll returns its own canaries only, at most one event per
    # host, in 1 MB pages of ~EVENT_BYTES events; each request delays the batch's next poll by the spacing.
    pages = max(1, math.ceil(size * EVENT_BYTES / PAGE_BYTES))
    interval = max(CANARY_POLL_S, pages * canary_call_spacing_s(len(batches)))
    polls = math.floor(wait_s / interval) + 1
    concurrent = min(parallel, len(batches))
    canary_calls = len(batches) * pages * (1 + (polls - 1) * (missing > 0))  # polls go on while any is missing
    demand = concurrent * pages / interval
    window = window_h * 3600
    current_dls = measured_dls * to / n
    alt_listing = math.ceil(to / 50)  # DescribeLogStreams orderBy=LastEventTime, descending: 50 a page, stop at the cutoff
    shared = {share: shared_listing_cost(to, len(batches), concurrent, share, dls) for share in (0.01, 0.1, 0.3)}
    untagged_calls = len(batches) * (math.ceil(to * EVENT_BYTES / PAGE_BYTES)) * polls  # each search pages them all
    # The watch's silence sweep (include/watch/sweep.py), every EC2_AUDIT_SWEEP_MINUTES, lists each audit group
    # newest first down to the first stale stream: at most every host's stream fresh, in one group.
    from include.watch.sweep import calls_per_sweep

    sweep_calls, sweeps_a_day = calls_per_sweep([to]), 24 * 60 // SWEEP_MINUTES
    return {
        "hosts": to, "window_s": window, "batches": len(batches), "batch_size": size, "parallel": concurrent,
        "freshness": {
            "current_measured_calls": round(current_dls), "current_seconds": round(current_dls / dls, 1),
            "current_fits": current_dls / dls <= window,
            "worst_case_calls": to, "worst_case_seconds": round(to / dls, 1), "worst_case_fits": to / dls <= window,
            "note": "worst case: streams not named by instance id, one exact DescribeLogStreams per host",
            "worst_case_per_batch_s": round(size / (dls / concurrent), 1), "judge_budget_s": JUDGE_BUDGET_S,
            "worst_case_fits_judge_budget": size / (dls / concurrent) <= JUDGE_BUDGET_S,
            "group_listing_calls": alt_listing, "group_listing_seconds": round(alt_listing / dls, 1),
            # built (include/logs/stream_index.py): other names past INDEX_AFTER per batch come from one listing a run
            "shared_listing_by_stale_share": {f"{share:.0%}": cost for share, cost in shared.items()}},
        "canary": {
            "measured_calls_scaled": round(measured_fle * to / n), "measured_seconds": round(measured_fle * to / n / fle, 1),
            "model_calls": canary_calls, "model_seconds": round(canary_calls / fle, 1),
            "model_fits": canary_calls / fle <= window, "peak_demand_per_s": round(demand, 2),
            "peak_demand_fits_rate": demand <= fle, "pages_per_search": pages, "poll_interval_s": round(interval, 1),
            "first_round_s": round(concurrent * pages / fle, 1),
            "first_round_fits_wait": concurrent * pages / fle <= wait_s, "undelivered_share": round(missing, 3),
            "polls_per_batch": polls, "wait_s": wait_s,
            "untagged_calls": untagged_calls,
            "note": "untagged: every batch's search would page through the whole run's canaries"},
        "watch_sweep": {
            "every_minutes": SWEEP_MINUTES, "calls_per_sweep": sweep_calls,
            "seconds_per_sweep": round(sweep_calls / dls, 1), "calls_a_day": sweep_calls * sweeps_a_day,
            "share_of_describe_log_streams": round(sweep_calls / dls / (SWEEP_MINUTES * 60), 3),
            "note": "one group, every stream fresh (the most a sweep lists); DescribeLogStreams at the quota's rate"},
    }


# ---------------------------------------------------------------------------------------------- output

def markdown(rows: list[dict], n: int, to: int = PROJECT_TO, window_h: float = WINDOW_H) -> str:
    lines = [f"| API | quota per account and Region | requests at {n:,} | throttled | per host | "
             f"API time at {to:,} hosts | fits {window_h:g} h |", "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        seconds = r[f"seconds_at_{to}"]
        capacity = r["unit"] in ("WRU", "RRU")
        per_host = f"{r['units_per_host']:g} {r['unit']}" if capacity else f"{r['calls_per_host']:g}"
        throttled = f"{r['throttled']:,}" + (f" (+{r['unprocessed']:,} items unprocessed)" if r["unprocessed"] else "")
        lines.append(f"| {r['api']} | {r['quota']} | {r['calls']:,} | {throttled} | {per_host} | "
                     f"{'—' if seconds is None else f'{seconds:,.1f} s'} | {'yes' if r['fits_window'] else '**no**'} |")
    return "\n".join(lines)


def run(hosts: int, out: Path, *, parallel: int = 16, scale: float = 1.0, canary: bool = True,
        canary_wait_s: int = 90, securityhub: bool = True, ssm_hosts: int = 0, latency_ms: int = 20, reruns: int = 0,
        addresses: Callable[[int], list[str]] = bench_addresses,
        cidrs: tuple[str, str] = ("127.43.0.0/16", "127.43.0.0/16"), log: Callable[[str], None] = print,
        stream_names: str = "instance-id") -> dict:
    """The quota bench (what `make bench` can call): returns the JSON it writes to out/quota.json."""
    n = min(hosts, MAX_HOSTS)
    started = time.perf_counter()
    stand = Stand(out / f"quota-{n}", n, addresses, cidrs, ssm_hosts, latency_ms, scale, log, stream_names)
    try:
        result = daily_work(stand, parallel=parallel, canary=canary, canary_wait_s=canary_wait_s,
                            securityhub=securityhub, reruns=reruns, log=log)
        result["seed_s"] = round(stand.seed_s, 1)
    finally:
        stand.stop()
    rows = projections(result, n)
    document = {"hosts": n, "scale": scale, "parallel": parallel, "canary": canary, "canary_wait_s": canary_wait_s,
                "stream_names": stream_names,
                "wall_s": round(time.perf_counter() - started, 1), "projected_to": PROJECT_TO, "window_h": WINDOW_H,
                "apis": rows, "window_check": window_check(n, result, parallel=parallel, wait_s=canary_wait_s),
                "quotas": {f"{s}:{a}": {"rate": qt.rate, "burst": qt.burst, "unit": qt.unit, "published": qt.published,
                                        "source": qt.source, "says": qt.says}
                           for (s, a), qt in aws_quotas.QUOTAS.items()},
                **{k: v for k, v in result.items() if k != "totals"}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "quota.json").write_text(json.dumps(document, indent=2, default=str))
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000, help=f"simulated hosts (≤ {MAX_HOSTS:,})")
    parser.add_argument("--parallel", type=int, default=16, help="verify batches at once (worker slots)")
    parser.add_argument("--scale", type=float, default=1.0, help="× every published rate (e.g. 0.1)")
    parser.add_argument("--canary-wait", type=int, default=90, help="canary_wait_seconds (the param's default)")
    parser.add_argument("--no-canary", action="store_true", help="canary=false (the param's default)")
    parser.add_argument("--no-securityhub", action="store_true")
    parser.add_argument("--ssm-hosts", type=int, default=200, help="hosts also reached by SSM Run Command (0: none)")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--reruns", type=int, default=0,
                        help="same-day reruns after the first run: each keeps the replaced observations as versions "
                             "(the API rows then count the whole day: 1 + reruns runs)")
    parser.add_argument("--out", type=Path, default=PROJECT / ".local" / "bench")
    parser.add_argument("--stream-names", choices=("instance-id", "hostname"), default="instance-id",
                        help="how the agents name the audit stream (hostname: the run's shared listing answers)")
    args = parser.parse_args(argv)
    doc = run(args.hosts, args.out, parallel=args.parallel, scale=args.scale, canary=not args.no_canary,
              canary_wait_s=args.canary_wait, securityhub=not args.no_securityhub, ssm_hosts=args.ssm_hosts,
              latency_ms=args.latency_ms, stream_names=args.stream_names, reruns=args.reruns)
    print(f"\n{doc['hosts']:,} hosts, {doc['batches']} batches, {doc['parallel']} at a time, rates × {doc['scale']:g}, "
          f"{doc['reruns']} same-day rerun(s); "
          f"evidence {doc['evidence']}; wall {doc['wall_s']} s (phases {doc['walls_s']})\n")
    print(markdown(doc["apis"], doc["hosts"]))
    print(f"\nseal: {doc['seal']}\n")
    print(storage_markdown(doc["storage"]))
    print("\nwindow check at 100,000 hosts:", json.dumps(doc["window_check"], indent=2))
    print(f"\nresults: {args.out / 'quota.json'}")
    ok = (doc["evidence"]["this_run"] == doc["hosts"] and doc["evidence"]["unique"] == doc["hosts"]
          and doc["seal"].get("items", 0) >= doc["hosts"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
