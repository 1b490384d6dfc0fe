"""`make demo`: start the local stack, run the daily audit through real Airflow, show what happened.

Two runs: today over SSH (the default), then yesterday with `transport=auto` and an SSH connection that holds
no key — SSM Run Command for the hosts whose SSM agent is Online, EC2 Instance Connect for the rest — so all
three transports reach the same fleet (devstack/standins/hosts/demo_fleet.py says what each host must end up as).
Between them, a tamper event: one host's auditd stops, the DAEMON_END record it writes goes through the audit
group's subscription filter, the forwarder Lambda's own code and the events queue, and ec2_audit_watch replays it
(the triggerer's path is tests/integration/e2e/test_watch_e2e.py): a new observation `trigger: tamper` and an alert.

    python -m devstack.run.demo [--root .local/demo] [--keep]
"""
from __future__ import annotations

import argparse
import csv
import email
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devstack import clock
from devstack.procs import PROJECT
from devstack.stack.local_stack import LocalStack
from devstack.standins.hosts.demo_fleet import demo_fleet, expected_status
from devstack.standins.hosts.fleet import SSH_LOGIN, SSH_PORT

DAG_ID = "ec2_audit_compliance"


def airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    binary = str(Path(sys.executable).with_name("airflow"))
    with open(log, "ab") as fh:
        result = subprocess.run([binary, *args], env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=PROJECT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(f"airflow {args[0]} {args[1] if len(args) > 1 else ''} failed; last log lines:\n"
                         + "\n".join(tail))


def compare(csv_path: Path, fleet: list[dict], transport: str = "ssh") -> list[tuple[str, str, str, str]]:
    """(name, expected, actual, ok) for every host that should have a row."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        actual = {row["instance_id"]: row for row in csv.DictReader(fh)}
    rows = []
    for host in fleet:
        want = expected_status(host, transport)
        if want is None:
            continue
        got = actual.get(host["instance_id"], {}).get("status", "(missing)")
        rows.append((host["name"], want, got, "ok" if got == want else "MISMATCH"))
    return rows


def keyless_ssh_connection() -> str:
    """The SSH connection with login, port and host-key policy only: auto falls back to EC2 Instance Connect."""
    return json.dumps({"conn_type": "ssh", "login": SSH_LOGIN, "port": SSH_PORT, "extra": {"host_key_policy": "tofu"}})


@dataclass(frozen=True)
class Caught:
    ok: bool
    line: str


def tamper_between_runs(stack: LocalStack, fleet: list[dict], env: dict[str, str], log: Path, conf: dict) -> Caught:
    """One host's auditd stops after the daily run: its DAEMON_END record reaches the queue through the real
    subscription filter stand-in and forwarder; the watch replays it and re-checks that host. Then the operator
    restarts auditd (the host answers healthy again, for the next daily run)."""
    from devstack.stack import events
    from devstack.standins.hosts.fleet import set_profile
    from include.evidence.store import EvidenceStore

    host = next(h for h in fleet if expected_status(h, "ssh") == "COMPLIANT" and h.get("simulated", True)
                and not h.get("windows"))
    iid = host["instance_id"]
    record = stack.tamper_sim_host(iid)
    happened = time.time()
    messages = events.receive(stack.endpoint, stack.queues.queue_url, expect=1, timeout_s=60)
    if not messages:
        return Caught(False, f"tamper: {record[:60]}… never reached the events queue")
    before = set(stack.received_mail())
    watch_log = log.with_name("watch.log")
    # No grace for the demo: a clean stop that does not pass alerts after tamper_grace_minutes (default 5).
    airflow(["dags", "test", "ec2_audit_watch", "--conf", json.dumps(
        {"events": [m["Body"] for m in messages], **conf, "alert_recipients": conf["recipients"],
         "tamper_grace_minutes": 0})], env, watch_log)
    from devstack.standins.aws.seed import REGION, clients

    store = EvidenceStore(clients(stack.endpoint, REGION)[2], "ec2_audit_evidence")
    item = next(iter(store.items_by_id(clock.today(), [iid], consistent=True)), None)
    elapsed = time.time() - happened
    alerts = stack.security_mail_naming(iid, sorted(set(stack.received_mail()) - before))
    set_profile(stack.root / "fleet", host["address"], host.get("profile", "compliant"))  # auditd restarted
    ok = item is not None and item.trigger == "tamper" and item.status == "NON_COMPLIANT" and bool(alerts)
    status = f"{item.status} (seq {item.seq}, trigger {item.trigger})" if item else "(no observation)"
    return Caught(ok, f"tamper: {host['name']} ({iid}) wrote {record.split(' msg=')[0]}; through the subscription "
                      f"filter, the forwarder and the queue to ec2_audit_watch → {status} in {elapsed:.0f}s "
                      f"(event → stored verdict, the replay's airflow start-up included)\n"
                      f"        alert: {alerts[0] if alerts else 'none received'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=str(PROJECT / ".local" / "demo"))
    args = parser.parse_args(argv)
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)  # a demo starts from nothing: fresh moto, fresh pins
    root.mkdir(parents=True)
    fleet = demo_fleet()
    started = time.monotonic()
    with LocalStack(root, fleet, events=True) as stack:
        env = {**os.environ, **stack.airflow_env()}
        log = root / "logs" / "airflow.log"
        print(f"local stack up: moto {stack.endpoint}, {len(fleet)} instances on 127.42.0.x, "
              f"SMTP sink 127.0.0.1:{stack.smtp_port}")
        airflow(["db", "migrate"], env, log)
        day = clock.today()
        report_dir = root / "reports"
        # batch_size 8 → three mapped verify_batch tasks, to show the mapping on a small fleet.
        conf = {"recipients": ["secops@example.test"], "report_dir": str(report_dir), "batch_size": 8,
                "connect_timeout": 3, "host_timeout": 20, "command_timeout": 15}
        print(f"running DAG {DAG_ID} for {day} (airflow dags test; log: {log})")
        airflow(["dags", "test", DAG_ID, day, "--conf", json.dumps(conf)], env, log)
        summary = json.loads((report_dir / f"compliance-{day}.json").read_text())
        rows = compare(report_dir / f"compliance-{day}.csv", fleet)
        mail = stack.received_mail()
        caught = tamper_between_runs(stack, fleet, env, log, conf)
        # Yesterday, through SSM where the agent is Online and EC2 Instance Connect elsewhere (no key anywhere).
        other = clock.today(days_ago=1)
        print(f"running DAG {DAG_ID} for {other} with transport=auto and no SSH key (SSM + EC2 Instance Connect)")
        # Its last hour: a live check may observe a day up to 36 h after it starts (include/settings/params.py).
        airflow(["dags", "test", DAG_ID, f"{other}T23:00:00+00:00", "--conf", json.dumps({**conf, "recipients": [], "mode": "live",
                                                                      "transport": "auto"})],
                {**env, "AIRFLOW_CONN_EC2_AUDIT_SSH": keyless_ssh_connection()}, log)
        auto_summary = json.loads((report_dir / f"compliance-{other}.json").read_text())
        auto_rows = compare(report_dir / f"compliance-{other}.csv", fleet, "auto")
        # What an auditor runs, without Airflow: every item, version, raw output and seal of the demo's days.
        verified = subprocess.run([sys.executable, "-m", "include.integrity", "verify", "--table",
                                   "ec2_audit_evidence", "--from", other, "--to", day],
                                  env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)

    print("\nhost          expected            actual")
    for name, expected, actual, ok in rows:
        print(f"{name:<13} {expected:<19} {actual:<19} {'' if ok == 'ok' else ok}")
    print(f"\ncompliance {summary.get('compliance_pct')}% · checked {summary.get('checked')} of "
          f"{summary.get('discovered')} discovered · {summary.get('counts')}")
    print(f"hosts per transport: {summary.get('transports')} (transport=ssh, {day}); "
          f"{auto_summary.get('transports')} (transport=auto, {other}: "
          f"{sum(r[3] == 'ok' for r in auto_rows)}/{len(auto_rows)} as expected)")
    for name, expected, actual, ok in auto_rows:
        if ok != "ok":
            print(f"  auto: {name:<13} expected {expected:<19} got {actual}  MISMATCH")
    print(f"report: {report_dir / f'compliance-{day}.html'}\n        {report_dir / f'compliance-{day}.csv'}")
    for path in mail:
        message = email.message_from_bytes(path.read_bytes())
        print(f"email:  {path}\n        subject: {message['Subject']}")
    if not mail:
        print("email:  none received")
    print(caught.line)
    verdict = (verified.stdout.strip().splitlines() or [verified.stderr.strip()])[-1]
    print(f"evidence: python -m include.integrity verify --from {other} --to {day} → {verdict}")
    if verified.returncode:
        print(verified.stdout + verified.stderr)
    print(f"demo finished in {time.monotonic() - started:.0f}s; everything it started is stopped")
    mismatches = [r for r in rows + auto_rows if r[3] != "ok"]
    return 1 if mismatches or not mail or verified.returncode or not caught.ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
