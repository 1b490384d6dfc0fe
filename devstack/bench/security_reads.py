"""What the security events' per-host reads cost on the moto server (the send_alerts path, include/notify/event_store.py).

Seeds one day of N evidence items (40 % failing `auditd.running`), then times the candidates' index Query and
`--sample` hosts' history + states Queries. Measured, not asserted (docs/PERFORMANCE.md):

    python -m devstack.bench.security_reads --hosts 10000 [--sample 200]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args(argv)
    import boto3

    from devstack.stack import local_aws
    from include.evidence.observation import observation_sha256
    from include.evidence.store import EvidenceStore
    from include.notify.event_store import SecurityEventStore

    day, n = "2026-12-07", max(1, min(args.hosts, 100_000))  # bounded
    with tempfile.TemporaryDirectory() as tmp, local_aws.moto(Path(tmp) / "moto.log") as url:
        resource = boto3.resource("dynamodb", endpoint_url=url, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
        store = EvidenceStore(resource, "security_reads")
        store.ensure_tables()
        items = []
        for i in range(n):
            failing = i % 10 < 4
            item = {"instance_id": f"i-{i:017x}", "audit_date": day, "item_type": "instance", "seq": 1, "run_id": "r",
                    "status": "NON_COMPLIANT" if failing else "COMPLIANT", "checked_at": f"{day}T06:00:00Z",
                    "checks": {"auditd.running": {"status": "FAIL" if failing else "PASS", "detail": "x"}}}
            items.append({**item, "item_sha256": observation_sha256(item)})
        store.put_items(items)
        events = SecurityEventStore(store)
        started = time.perf_counter()
        candidates = events.candidates(day, "r")
        index_s = time.perf_counter() - started
        started = time.perf_counter()
        sample = candidates[:args.sample]
        for item in sample:
            events.history(item.instance_id, day)
            events.states(item.instance_id)
        per_host_ms = (time.perf_counter() - started) / max(1, len(sample)) * 1000
    print(f"{n} items: candidates {len(candidates)} in {index_s:.1f} s; history + states {per_host_ms:.1f} ms a host "
          f"({len(sample)} sampled)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
