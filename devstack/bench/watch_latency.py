"""`make bench-watch`: how long from an event on a host to its stored verdict and to the alert, on the local stack.

`airflow standalone` (scheduler, triggerer running the AssetWatcher on the events queue), moto with the event
sources (the audit group's subscription filter and the forwarder Lambda's own code), N simulated hosts. The daily
audit runs first; then, one every `--every` seconds, a host's auditd stops (its DAEMON_END record goes to its
stream, as its agent would ship it). For each event: the moment it was written → the moment its tamper observation
is readable in DynamoDB (polled every 0.2 s) → the moment the alert mail lands in the SMTP sink. Measured, never
asserted; docs/PERFORMANCE.md has the figures and the command:

    python -m devstack.bench.watch_latency --events 20 [--every 3] [--poll 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from devstack.procs import PROJECT

AUDIT, WATCH = "ec2_audit_compliance", "ec2_audit_watch"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between two events")
    parser.add_argument("--poll", type=int, default=2, help="the AssetWatcher's poll interval (waiter_delay), s")
    parser.add_argument("--root", default=str(PROJECT / ".local" / "bench-watch"))
    parser.add_argument("--timeout", type=float, default=600, help="give up on an event after this long")
    args = parser.parse_args(argv)
    import shutil

    from devstack.procs import wait_for
    from devstack.stack.local_stack import LocalStack
    from devstack.stack.standalone import Standalone
    from devstack.standins.aws.seed import REGION, clients
    from devstack.standins.hosts.fleet import SSH_PORT
    from include.evidence.store import EvidenceStore

    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    n = max(1, min(args.events, 200))  # bounded: one host per event
    fleet = [{"address": f"127.42.14.{100 + i}", "port": SSH_PORT, "name": f"lat-{i}", "profile": "compliant"}
             for i in range(n)]
    defaults = {"alert_recipients": ["secops@example.test"], "tamper_grace_minutes": 0, "connect_timeout": 3,
                "host_timeout": 20, "command_timeout": 15}
    with LocalStack(root, fleet, events=True) as stack, Standalone(
            stack, root, [AUDIT, WATCH], {"EC2_AUDIT_SCHEDULE": "none", "EC2_AUDIT_PARAMS": json.dumps(defaults),
                                          "EC2_AUDIT_WATCH_POLL_SECONDS": str(args.poll),
                                          "EC2_AUDIT_WATCH_MAX_RUNS": "4"}) as af:
        run_id = af.api.trigger(AUDIT, {})
        if af.finished(AUDIT, run_id) != "success":
            raise SystemExit(f"the daily run failed: {af.api.task_failures(AUDIT, run_id)}")
        store = EvidenceStore(clients(stack.endpoint, REGION)[2], "ec2_audit_evidence")
        day = time.strftime("%Y-%m-%d", time.gmtime())
        written: dict[str, float] = {}

        def tamper_one_by_one() -> None:  # beside the polling below, so no verdict waits for the last event
            for host in fleet:
                stack.tamper_sim_host(host["instance_id"])
                written[host["instance_id"]] = time.time()
                time.sleep(args.every)

        import threading

        writer = threading.Thread(target=tamper_one_by_one, daemon=True)
        writer.start()
        verdict: dict[str, float] = {}
        alert: dict[str, float] = {}
        deadline = time.monotonic() + args.timeout
        seen_mail: set[Path] = set()
        while time.monotonic() < deadline and (writer.is_alive() or len(verdict) < n or len(alert) < n):
            pending = [i for i in list(written) if i not in verdict]
            for item in store.items_by_id(day, pending, consistent=True) if pending else []:
                if item.trigger == "tamper" and item.instance_id not in verdict:
                    verdict[item.instance_id] = time.time()
            new = sorted(set(stack.received_mail()) - seen_mail)
            seen_mail.update(new)
            for iid in list(written):
                for path in stack.security_mail_naming(iid, new) if iid not in alert else []:
                    alert[iid] = path.stat().st_mtime
            time.sleep(0.2)
        runs = af.api.runs(WATCH)
        wait_for(lambda: all(af.api.run_state(WATCH, r["dag_run_id"]) in ("success", "failed") for r in runs), 300,
                 "the watch runs to finish")
    to_verdict = [verdict[i] - written[i] for i in verdict]
    to_alert = [alert[i] - written[i] for i in alert]
    print(f"{n} tamper events (DAEMON_END, one every {args.every:g} s; AssetWatcher poll {args.poll} s, long poll 10 s), "
          f"{len(runs)} watch runs")
    for name, values in (("event → stored verdict", to_verdict), ("event → alert mail", to_alert)):
        if values:
            print(f"{name}: p50 {statistics.median(values):.1f} s, p95 {percentile(values, 95):.1f} s, "
                  f"max {max(values):.1f} s ({len(values)}/{n} arrived)")
        else:
            print(f"{name}: none arrived within {args.timeout:.0f} s")
    return 0 if len(to_verdict) == n and len(to_alert) == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
