"""Report build time at fleet scale: 10,000 hosts × 30 days of history (in memory; no AWS).

    .venv/bin/python -m devstack.bench.report [--hosts 10000] [--days 30]

Times the pure pipeline build_report does after its reads: frame, breakdowns, drift against the previous
day, HTML + CSV, and the 30-day trend PNG. DynamoDB reads are measured separately (see PERFORMANCE.md).
"""
from __future__ import annotations

import argparse
import resource
import time
from datetime import date, timedelta

from devstack import clock
from include.checks.catalogue import check_meta
from include.evidence.records import EvidenceItem, RunSummary
from include.report.build import build_report
from include.report.trend import render_png, trend_points

STATUSES = ["COMPLIANT"] * 14 + ["NON_COMPLIANT"] * 3 + ["UNREACHABLE", "ERROR", "NOT_APPLICABLE"]


def items_for(day: str, hosts: int, shift: int) -> list[dict]:
    out = []
    for n in range(hosts):
        status = STATUSES[(n + shift) % len(STATUSES)]
        failed = ["auditd.running", "cwagent.log_stream_fresh"] if status == "NON_COMPLIANT" else []
        out.append({"instance_id": f"i-{n:017x}", "audit_date": day, "item_type": "instance", "run_id": "bench",
                    "status": status,
                    "failed_checks": failed, "name": f"host-{n}", "environment": ["prod", "staging", "dev"][n % 3],
                    "region": ["us-east-1", "eu-west-1"][n % 2], "account_id": f"1234567890{n % 4:02d}",
                    "private_ip": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", "checked_at": f"{day}T06:01:00Z",
                    "checks": {c: {"status": "FAIL", "detail": f"{c} failed"} for c in failed},
                    "host_key_fingerprint": "SHA256:abc", "output_sha256": "0" * 64})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--moto", action="store_true", help="also time writing and reading the day via a moto server")
    args = parser.parse_args()
    today = date(2026, 11, 23)
    day, previous = today.isoformat(), (today - timedelta(days=1)).isoformat()
    summaries = [{"audit_date": (today - timedelta(days=k)).isoformat(), "compliance_pct": 80 + k % 7,
                  "status_counts": {"NON_COMPLIANT": 1500 + k}} for k in range(args.days)]
    current, before = items_for(day, args.hosts, 0), items_for(previous, args.hosts, 1)
    start = time.perf_counter()
    png = render_png(trend_points({s["audit_date"]: RunSummary.from_item(s) for s in summaries}, day, args.days),
                     "trend")
    chart = time.perf_counter() - start
    start = time.perf_counter()
    # The report reads typed records, as the store returns them; the moto timing writes the stored shape.
    report = build_report([EvidenceItem.from_item(it) for it in current], audit_date=day, discovered=args.hosts,
                          run_id="bench", mode="live", generated_at=clock.now(), check_meta=check_meta(),
                          previous_items=[EvidenceItem.from_item(it) for it in before],
                          previous_day=previous, trend_png=png)
    build = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"hosts={args.hosts} days={args.days}: build_report {build:.2f}s, trend chart {chart:.2f}s, "
          f"HTML {len(report.html) / 1e6:.1f} MB, CSV {len(report.csv) / 1e6:.1f} MB, peak RSS {rss:.0f} MB, "
          f"compliance {report.summary.compliance_pct}%, email page {len(report.email_html) / 1e6:.2f} MB")
    if args.moto:
        dynamodb_timing(current)


def dynamodb_timing(items: list[dict]) -> None:
    from devstack.stack import local_aws
    from devstack.standins.aws.seed import clients
    from include.evidence.store import EvidenceStore

    with local_aws.moto() as endpoint:
        store = EvidenceStore(clients(endpoint)[2], "bench_evidence")
        store.ensure_tables()
        start = time.perf_counter()
        # Seeding, not the daily write: put_items overwrites in 25-item batches, without the versions, raw output
        # and transactions the run's EvidenceStore.put_observations does — "wrote" is a seeding time, not what
        # the DAG's evidence write costs (that is in the DAG rows of side_by_side.py and the quota bench).
        store.put_items(items)
        wrote = time.perf_counter() - start
        start = time.perf_counter()
        read = store.day_items(items[0]["audit_date"])
        took = time.perf_counter() - start
        print(f"moto server: seeded {len(items)} items (put_items) in {wrote:.1f}s, read the day via the GSI "
              f"({len(read)} items) in {took:.1f}s")


if __name__ == "__main__":
    main()
