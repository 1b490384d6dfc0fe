"""The whole daily audit through real Airflow task execution (dag.test) on real components:

a moto server process over HTTP (EC2, DynamoDB, CloudWatch Logs), the asyncssh-simulated fleet, two real
OpenSSH sshd hosts (when this machine can run them), and a real SMTP server.

The tests share one stack (module fixture) but not their state: each has its own audit day, evidence table
or recipients, and none changes what another reads (host-key pins included), so any one passes alone and in
any order (`make test` runs them shuffled by pytest-randomly).
"""
from __future__ import annotations

import csv
import email
import io
import json
import os
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devstack.stack.local_stack import LocalStack
from devstack.standins.aws.fault_proxy import FaultProxy
from devstack.standins.aws.seed import clients
from devstack.standins.hosts.demo_fleet import demo_fleet, expected_status
from devstack.standins.hosts.fleet import SSH_PORT
from devstack.standins.hosts.host_states import expected
from include.evidence.records import RunSummary
from include.reach.hostkeys import PinStore

ROOT = Path(__file__).resolve().parents[3]
SSHD_HOSTS = [
    # The real kernel audit is never locked with -e 2 by a test, so the healthy real host fails exactly that.
    {"address": "127.42.1.1", "port": SSH_PORT, "name": "real-sshd-healthy", "environment": "prod",
     "profile": "compliant", "sshd_profile": "compliant", "simulated": False, "expected": "COMPLIANT",
     "expected_failed": [], "expected_advisory": ["auditd.immutable"], "ssm": "Online"},
    {"address": "127.42.1.2", "port": SSH_PORT, "name": "real-sshd-failing", "environment": "prod",
     "profile": "agent_not_shipping", "sshd_profile": "failing", "simulated": False, "expected": "NON_COMPLIANT",
     "ssm": "Online"},
]


def _sshd_support():
    try:
        from devstack.standins.hosts.sshd_host import sshd_available
    except ImportError as exc:  # pragma: no cover
        return False, f"devstack.standins.hosts.sshd_host unavailable: {exc}"
    return sshd_available()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, airflow_db):
    root = tmp_path_factory.mktemp("stack")
    use_sshd, why = _sshd_support()
    fleet = demo_fleet() + ([dict(h) for h in SSHD_HOSTS] if use_sshd else [])
    local = LocalStack(root, fleet).start()
    started = []
    try:
        if use_sshd:
            from devstack.standins.hosts.sshd_host import RealAuditd, ensure_login_user, start_sshd_host

            ensure_login_user()
            auditd = RealAuditd()
            auditd.__enter__()
            started.append(auditd.__exit__)
            pub = (Path(str(local.client_key) + ".pub")).read_text().strip()
            for host in fleet:
                if host.get("sshd_profile"):
                    sshd = start_sshd_host(root / host["name"], host["address"], host["port"], pub,
                                           host["sshd_profile"], host["instance_id"],
                                           fake_auditctl=host["sshd_profile"] == "failing" or not auditd.available,
                                           eic_key_dir=local.eic_key_dir)  # also EC2 Instance Connect keys
                    local.register_sshd(host, sshd)  # its SSM agent runs the script in the host's namespace
                    if not auditd.available and host["sshd_profile"] == "compliant":  # fake answers say enabled 2
                        host["expected"], host["expected_failed"], host["expected_advisory"] = "COMPLIANT", [], []
                    started.append(lambda *a, s=sshd: s.stop())
        else:
            print(f"real sshd hosts skipped: {why}")
        saved = dict(os.environ)
        os.environ.update(local.airflow_env())
        os.environ["AIRFLOW_HOME"] = saved["AIRFLOW_HOME"]  # keep the tests' migrated metadata DB
        local.fleet_entries = fleet
        local.used_sshd = use_sshd
        yield local
    finally:
        if "saved" in locals():
            os.environ.clear()
            os.environ.update(saved)
        for stop in reversed(started):
            stop(None, None, None) if stop.__name__ == "__exit__" else stop()
        local.stop()


def run_dag(conf: dict, logical_date: datetime):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("ec2_audit_compliance")
    return dag.test(logical_date=logical_date, run_conf=conf)


def day_items(stack, day: str) -> list[dict]:
    """The day's items as stored (the contract's attributes), read through the store's typed records."""
    from include.evidence.store import EvidenceStore

    _, _, dynamodb = clients(stack.endpoint)
    return [it.to_item() for it in EvidenceStore(dynamodb, "ec2_audit_evidence").day_items(day)]


def test_daily_run_end_to_end(stack, tmp_path):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = now.strftime("%Y-%m-%d")
    secops = "secops-daily@example.test"  # only this test mails it
    conf = {"recipients": [secops], "report_dir": str(tmp_path / "reports"), "batch_size": 8,
            "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10}
    run = run_dag(conf, now)
    assert run.state == "success"

    running = [h for h in stack.fleet_entries if h.get("expected")]
    items = day_items(stack, day)
    by_id = {it["instance_id"]: it for it in items}
    assert len(items) == len(by_id) == len(running)  # exactly one item per running instance
    for host in running:
        item = by_id[host["instance_id"]]
        assert item["status"] == host["expected"], (host["name"], item.get("status_detail"), item.get("checks"))
        assert item["audit_date"] == day and item["run_id"] == run.run_id
        assert item["tags"]["Name"] == host["name"]
        assert item["profile"] == "audit-trail" and item["transport"] == "ssh"
        if "expected_failed" in host:
            assert item["failed_checks"] == host["expected_failed"], item["checks"]
            assert item["advisory_failed"] == host.get("expected_advisory", item["advisory_failed"]), item["checks"]
        elif host.get("behaviour") == "ok" and host["expected"] in ("COMPLIANT", "NON_COMPLIANT"):
            # Failing for the right reason: exactly the checks the simulated state breaks, split by the profile.
            status, failed, advisory = expected(host["profile"])
            assert (item["status"], item["failed_checks"], item["advisory_failed"]) == (status, failed, advisory), \
                (host["name"], item["checks"])
        assert int(item["expires_at"]) > now.timestamp() + 300 * 86400
    healthy = by_id[next(h["instance_id"] for h in running if h["name"] == "web-1")]
    assert healthy["host_key_fingerprint"].startswith("SHA256:") and len(healthy["output_sha256"]) == 64
    stale = by_id[next(h["instance_id"] for h in running if h["name"] == "search-1")]
    assert stale["failed_checks"] == ["cwagent.log_stream_fresh"]

    # Report files per the contract, one CSV row per instance.
    html = tmp_path / "reports" / f"compliance-{day}.html"
    with open(tmp_path / "reports" / f"compliance-{day}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert html.exists() and len(rows) == len(running)
    compliant = sum(h["expected"] == "COMPLIANT" for h in running)
    scorable = sum(h["expected"] not in ("NOT_APPLICABLE", "WAIVED") for h in running)
    pct = round(100 * compliant / scorable, 1)

    # The email arrived once, with the day and the compliance % in the subject and the CSV attached.
    mails = mails_to(stack, secops)
    assert len(mails) == 1
    message = mails[0]
    assert day in message["Subject"] and f"{pct:.1f}%" in message["Subject"]
    attachments = [p.get_filename() for p in message.walk() if p.get_filename()]
    assert f"compliance-{day}.csv" in attachments

    # The email carries the manifest hash of the seal its report was built from, and the auditors' command line
    # recomputes exactly that from the stored items, versions and raw output (the summary names the latest seal).
    from include.evidence.store import EvidenceStore
    from include.integrity.cli import main as integrity

    store = EvidenceStore(clients(stack.endpoint)[2], "ec2_audit_evidence")
    emailed = store.run_summary(day).manifest_sha256
    body = next(p.get_payload(decode=True).decode() for p in message.walk() if p.get_content_type() == "text/html")
    assert len(emailed) == 64 and emailed in body
    out = io.StringIO()
    assert integrity(["verify", "--table", "ec2_audit_evidence", "--from", day, "--to", day], out=out) == 0, \
        out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("intact: 1 days, ")

    # Rerunning the same day makes new current items (same count, new run id, no duplicates) and keeps the
    # ones they replace as versions, every attribute and its seq.
    rerun = run_dag({**conf, "recipients": []}, now)
    assert rerun.state == "success"
    again = day_items(stack, day)
    assert len(again) == len(running)
    assert {it["run_id"] for it in again} == {rerun.run_id}
    assert {it["instance_id"]: it["status"] for it in again} == {i: it["status"] for i, it in by_id.items()}
    # (Other tests of this module may have observed these hosts today before: seqs are relative.)
    assert {it["instance_id"]: it["seq"] for it in again} == {i: it["seq"] + 1 for i, it in by_id.items()}
    assert {it["trigger"] for it in by_id.values()} <= {"manual", "schedule"}
    versions = {(v["instance_id"], v["seq"]): v for v in store.day_versions(day)}
    for i, first in by_id.items():
        kept = versions[(i, first["seq"])]
        assert (kept["run_id"], kept["status"], kept["item_sha256"]) == (run.run_id, first["status"],
                                                                         first["item_sha256"])
    history = [o["run_id"] for o in store.observations(healthy["instance_id"], day)]
    assert history[-2:] == [run.run_id, rerun.run_id]  # oldest first, the current one last
    assert len(mails_to(stack, secops)) == 1  # no recipients → no second email


def test_rebuild_and_backfill_never_ssh(stack, tmp_path):
    """mode=rebuild, and an old day under mode=auto (a backfill), rebuild from stored evidence only."""
    from include.evidence.store import EvidenceStore

    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = now.strftime("%Y-%m-%d")
    # Its own table, holding today's evidence as an earlier run left it (seeded: no other test's run needed).
    store = EvidenceStore(clients(stack.endpoint)[2], "rebuild_evidence")
    store.ensure_tables()
    running = [h for h in stack.fleet_entries if h.get("expected")]
    store.put_items([{"instance_id": h["instance_id"], "audit_date": day, "item_type": "instance",
                      "run_id": f"earlier-{day}", "status": h["expected"], "failed_checks": [], "name": h["name"],
                      "region": "us-east-1", "account_id": "123456789012", "checks": {}, "expires_at": 2000000000}
                     for h in running])
    store.put_summary(day, RunSummary(run_id=f"earlier-{day}", discovered=len(running), checked=len(running)), 400)
    before = {it.instance_id: it.run_id for it in store.day_items(day)}
    assert len(before) == len(running)
    conf = {"report_dir": str(tmp_path), "recipients": [], "evidence_table": "rebuild_evidence"}

    rebuilt = run_dag({**conf, "mode": "rebuild"}, now)
    assert rebuilt.state == "success"
    assert {it.instance_id: it.run_id for it in store.day_items(day)} == before  # nothing re-checked
    html = (tmp_path / f"compliance-{day}.html").read_text()
    assert "Rebuilt from stored evidence" in html
    with open(tmp_path / f"compliance-{day}.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(before)

    old = now.replace(hour=6, minute=0, second=0) - timedelta(days=5)
    backfill = run_dag(conf, old)
    assert backfill.state == "success"
    old_day = old.strftime("%Y-%m-%d")
    assert store.day_items(old_day) == []  # no evidence invented for a day nobody checked
    html = (tmp_path / f"compliance-{old_day}.html").read_text()
    assert "Rebuilt from stored evidence" in html and "gap, not a result" in html


def test_a_live_check_of_a_day_three_days_old_fails_in_discover_and_writes_nothing(stack, tmp_path):
    """A live check observes today: asked for a day long past it is refused at the start, not recorded as that day."""
    from airflow.utils.state import TaskInstanceState

    table = "stale_live_evidence"  # its own table: created only if the run got past its start
    old = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=3)
    run = run_dag({"report_dir": str(tmp_path), "recipients": [], "evidence_table": table, "mode": "live"}, old)
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["discover"] == TaskInstanceState.FAILED
    assert states["verify_batch"] != TaskInstanceState.SUCCESS
    assert table not in clients(stack.endpoint)[2].meta.client.list_tables()["TableNames"]
    assert not list(tmp_path.iterdir())  # no report either


def test_task_retry_skips_hosts_already_recorded_by_the_run(stack):
    """verify_batch run twice for the same run (an Airflow task retry): the second pass redoes nothing."""
    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch
    from include.reach.ssh import SshSettings
    from include.settings.params import AuditParams
    from include.verify.batch import RunContext, verify_batch

    ec2, logs, dynamodb = clients(stack.endpoint)
    store = EvidenceStore(dynamodb, "ec2_audit_evidence")
    ids = sorted(h["instance_id"] for h in stack.fleet_entries
                 if h.get("expected") in ("COMPLIANT", "NON_COMPLIANT") and h.get("simulated", True))[:6]
    batch = Batch("us-east-1", ids, label="retry test")
    ssh = SshSettings(username="ec2audit", key_file=str(stack.client_key), port=SSH_PORT, connect_timeout=2)
    ctx = RunContext("2031-01-01", "retry-run", AuditParams(), ssh)
    first = verify_batch(batch, ctx, ec2, logs, store)
    assert first.already_recorded == 0 and sum(first.counts.values()) == len(ids)
    second = verify_batch(batch, ctx, ec2, logs, store)
    assert second.already_recorded == len(ids) and second.counts == {}
    assert len(store.day_items("2031-01-01")) == len(ids)


def test_accepting_a_rotated_host_key_repins_it(stack):
    """HOST_KEY_MISMATCH until an operator names the instance in accept_host_keys; then the new key holds."""
    from devstack.standins.aws.seed import seed_pins
    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch
    from include.reach.ssh import SshSettings
    from include.settings.params import AuditParams
    from include.verify.batch import RunContext, verify_batch

    ec2, logs, dynamodb = clients(stack.endpoint)
    # Its own evidence table and pins: re-pinning the shared table's bastion would change what every later
    # run of the other tests sees for that host (HOST_KEY_MISMATCH expected there).
    entry = next(h for h in stack.fleet_entries if h.get("pinned_other_key"))
    seed_pins(stack.endpoint, [entry], table="rotation_evidence")
    store = EvidenceStore(dynamodb, "rotation_evidence")
    bastion = entry["instance_id"]
    old = PinStore(store.resource, store.table_name).load([bastion]).pins[bastion].fingerprint
    batch = Batch("us-east-1", [bastion], label="rotation")
    ssh = SshSettings(username="ec2audit", key_file=str(stack.client_key), port=SSH_PORT, connect_timeout=2)

    def status(day: str, **params) -> dict:
        verify_batch(batch, RunContext(day, f"run-{day}", AuditParams(**params), ssh), ec2, logs, store)
        return store.day_items(day)[0].to_item()

    assert status("2031-02-01")["status"] == "HOST_KEY_MISMATCH"
    accepted = status("2031-02-02", accept_host_keys=[bastion])
    assert accepted["status"] == "COMPLIANT" and old in accepted["host_key_note"]
    assert PinStore(store.resource, store.table_name).load([bastion]).pins[bastion].fingerprint == accepted["host_key_fingerprint"] != old
    assert status("2031-02-03")["status"] == "COMPLIANT"  # the new pin is trusted from now on


def test_canary_is_found_only_where_the_audit_trail_really_works(stack):
    """canary=true: each host writes a marker; the simulated agents ship it to moto; one search per batch."""
    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch
    from include.reach.ssh import SshSettings
    from include.settings.params import AuditParams
    from include.verify.batch import RunContext, verify_batch

    ec2, logs, dynamodb = clients(stack.endpoint)
    store = EvidenceStore(dynamodb, "ec2_audit_evidence")
    # Not the bastion whose pin is another key (profile "compliant" too): it is HOST_KEY_MISMATCH, never checked.
    by_profile = {h["profile"]: h["instance_id"] for h in stack.fleet_entries
                  if h.get("behaviour") == "ok" and h.get("simulated", True) and not h.get("pinned_other_key")}
    expected = {"compliant": "PASS", "agent_stopped": "FAIL", "agent_not_shipping": "FAIL",
                "sudo_password": "ERROR", "auditd_stopped": "FAIL"}
    batch = Batch("us-east-1", [by_profile[p] for p in expected], label="canary")
    ssh = SshSettings(username="ec2audit", key_file=str(stack.client_key), port=SSH_PORT, connect_timeout=2)
    params = AuditParams(canary=True, canary_wait_seconds=12)
    verify_batch(batch, RunContext("2031-03-01", "canary-run", params, ssh), ec2, logs, store)
    items = {it.instance_id: it.to_item() for it in store.day_items("2031-03-01")}
    got = {p: items[by_profile[p]]["checks"]["cwagent.canary_delivered"]["status"] for p in expected}
    assert got == expected, {p: items[by_profile[p]]["checks"]["cwagent.canary_delivered"] for p in expected}
    assert items[by_profile["compliant"]]["status"] == "COMPLIANT"


def test_thirty_days_of_history_live_day_and_backfill(stack, tmp_path):
    """Seed 30 days, run today live and rebuild an older day; check the reports' numbers independently."""
    import json as _json

    from include.evidence.store import EvidenceStore

    _, _, dynamodb = clients(stack.endpoint)
    store = EvidenceStore(dynamodb, "history_evidence")
    store.ensure_tables()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    today = now.date()
    running = [h for h in stack.fleet_entries if h.get("expected")]
    ids = sorted(h["instance_id"] for h in running)
    gap_day, gap_id = (today - timedelta(days=10)).isoformat(), ids[0]

    def seeded_status(j: int, k: int) -> str:
        return "NON_COMPLIANT" if (j + k) % 4 == 0 else "COMPLIANT"

    for k in range(1, 31):
        day = (today - timedelta(days=k)).isoformat()
        items = [{"instance_id": i, "audit_date": day, "item_type": "instance", "run_id": f"seed-{day}",
                  "status": seeded_status(j, k), "failed_checks": ["auditd.running"] if seeded_status(j, k) != "COMPLIANT" else [],
                  "name": f"h{j}", "environment": "prod", "region": "us-east-1", "account_id": "123456789012",
                  "checks": {}, "expires_at": 2000000000}
                 for j, i in enumerate(ids) if not (day == gap_day and i == gap_id)]
        store.put_items(items)
        compliant = sum(it["status"] == "COMPLIANT" for it in items)
        store.put_summary(day, RunSummary(run_id=f"seed-{day}", discovered=len(ids), checked=len(items),
                                          status_counts={"COMPLIANT": compliant,
                                                         "NON_COMPLIANT": len(items) - compliant},
                                          compliance_pct=round(100 * compliant / len(items), 1),
                                          missing_evidence=[gap_id] if day == gap_day else []), 400)

    by_name = {h["name"]: h["instance_id"] for h in running}
    waivers = tmp_path / "waivers.json"
    waivers.write_text(_json.dumps([
        {"instance_id": by_name["db-3"], "check_id": "auditd.immutable", "justification": "reboot window in Q1",
         "approver": "ciso", "expires": (today + timedelta(days=30)).isoformat()},
        {"instance_id": by_name["db-4"], "check_id": "auditd.rules_cover_cis", "justification": "old exception",
         "approver": "ciso", "expires": (today - timedelta(days=5)).isoformat()}]))
    # Under the cis profile the hardening checks decide the status, so waivers of them matter.
    conf = {"evidence_table": "history_evidence", "waivers_file": str(waivers), "report_dir": str(tmp_path),
            "profile": "cis",
            "recipients": [], "batch_size": 8, "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10}

    # Live day.
    assert run_dag(conf, now).state == "success"
    day = today.isoformat()
    items = store.day_items(day)
    status = {it.instance_id: it.status for it in items}
    assert status[by_name["db-3"]] == "WAIVED" and status[by_name["db-4"]] == "NON_COMPLIANT"
    report = _json.loads((tmp_path / f"compliance-{day}.json").read_text())
    scorable = [s for s in status.values() if s not in ("NOT_APPLICABLE", "WAIVED")]
    assert report["compliance_pct"] == round(100 * scorable.count("COMPLIANT") / len(scorable), 1)
    yesterday = {i: seeded_status(j, 1) for j, i in enumerate(ids)}
    assert report["drift"]["previous_day"] == (today - timedelta(days=1)).isoformat()
    assert report["drift"]["newly_failing"] == sorted(i for i, s in status.items()
                                                      if s == "NON_COMPLIANT" and yesterday[i] != "NON_COMPLIANT")
    assert report["drift"]["fixed"] == sorted(i for i, s in status.items()
                                              if s == "COMPLIANT" and yesterday[i] == "NON_COMPLIANT")
    page = (tmp_path / f"compliance-{day}.html").read_text()
    assert "reboot window in Q1" in page and "expired" in page and "old exception" in page
    assert (tmp_path / f"compliance-{day}-trend.png").read_bytes().startswith(b"\x89PNG")

    # Backfill of an older day (auto → rebuild): the stored numbers, the gap, no SSH, no new evidence.
    before = len(store.day_items(gap_day))
    assert run_dag(conf, datetime.combine(today - timedelta(days=10), datetime.min.time(), timezone.utc)
                   .replace(hour=6)).state == "success"
    assert len(store.day_items(gap_day)) == before == len(ids) - 1
    old = _json.loads((tmp_path / f"compliance-{gap_day}.json").read_text())
    seeded = [seeded_status(j, 10) for j, i in enumerate(ids) if i != gap_id]
    assert old["mode"] == "rebuild" and old["coverage_gaps"] == [gap_id]
    assert old["compliance_pct"] == round(100 * seeded.count("COMPLIANT") / len(seeded), 1)
    assert old["coverage_pct"] == round(100 * (len(ids) - 1) / len(ids), 1)
    assert old["drift"]["previous_day"] == (today - timedelta(days=11)).isoformat()
    assert "Coverage gaps (1)" in (tmp_path / f"compliance-{gap_day}.html").read_text()


def test_no_secret_leaks_into_logs_xcom_evidence_reports_or_email(stack, tmp_path, capfd):
    """A full run, then every place a run writes is searched for the SSH key and the AWS secret."""
    now = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=40)  # a day no other test uses
    conf = {"recipients": ["secops-secrets@example.test"], "report_dir": str(tmp_path), "batch_size": 8,
            "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10}
    assert run_dag(conf, now).state == "success"
    output = capfd.readouterr()
    key_lines = [ln for ln in stack.client_key.read_text().splitlines() if len(ln) > 20 and "PRIVATE KEY" not in ln]
    secrets = [stack.aws_secret, *key_lines]
    assert secrets and len(stack.aws_secret) > 20

    places: dict[str, bytes] = {"task output": (output.out + output.err).encode()}
    for path in list(tmp_path.rglob("*")) + stack.received_mail():
        if path.is_file():
            places[str(path)] = path.read_bytes()
    home = Path(os.environ["AIRFLOW_HOME"])
    places["airflow metadata DB (XCom, runs, conf)"] = b"".join(p.read_bytes() for p in home.glob("*.db"))
    for log in home.rglob("*.log"):
        places[str(log)] = log.read_bytes()
    _, _, dynamodb = clients(stack.endpoint)
    for table in ("ec2_audit_evidence", "ec2_audit_evidence_host_keys"):
        places[f"dynamodb {table}"] = repr(dynamodb.Table(table).scan()["Items"]).encode()
    leaks = [(where, s[:12]) for where, data in places.items() for s in secrets if s.encode() in data]
    assert leaks == []


def mails_to(stack, address: str, security: bool = False) -> list[email.message.Message]:
    """Mails to `address`: the security-event messages (`security`), else every other one. Security events go
    to `alert_recipients`, else `recipients`, of any run: the demo's bastion-1 is HOST_KEY_MISMATCH, and which
    test alerts it first depends on the order they run in."""
    found = [email.message_from_bytes(p.read_bytes()) for p in stack.received_mail()]
    return [m for m in found if address in (m["To"] or "") and m["Subject"].startswith("SECURITY ") == security]


def test_compliance_alerts_once_then_quiet_while_open(stack, tmp_path):
    from include.checks.catalogue import CATALOGUE
    from include.evidence.store import EvidenceStore
    from include.notify.alert_store import ALERTS_ID

    oncall = "oncall-alerts@example.test"
    first = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=10)  # days no other test uses
    conf = {"recipients": [], "alert_recipients": [oncall], "alert_threshold_pct": 95.0,
            "report_dir": str(tmp_path), "batch_size": 8, "connect_timeout": 2, "host_timeout": 15,
            "command_timeout": 10}
    assert run_dag(conf, first).state == "success"
    day = first.strftime("%Y-%m-%d")

    # Independent computation from the stored evidence: every critical check failing on a NON_COMPLIANT host.
    critical = {c.id for c in CATALOGUE if c.severity == "critical"}
    items = day_items(stack, day)
    expected = {f"{it['instance_id']}|{c}" for it in items if it["status"] == "NON_COMPLIANT"
                for c in set(it["failed_checks"]) & critical}
    hosts = {k.split("|")[0] for k in expected}
    assert expected, "the demo fleet has hosts failing critical checks"
    summary = EvidenceStore(clients(stack.endpoint)[2], "ec2_audit_evidence").run_summary(day)
    pct = float(summary.compliance_pct)
    assert pct < 95.0
    alerts = mails_to(stack, oncall)
    assert len(alerts) == 1
    assert alerts[0]["Subject"] == (f"ALERT EC2 audit compliance {day}: compliance {pct}% below threshold; "
                                    f"critical checks failing on {len(hosts)} hosts")
    body = next(p for p in alerts[0].walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert all(h in body for h in hosts) and body.count("<tr>") == len(expected) + 2  # + header + threshold row

    # The next day the same findings are still open: no alert. A rerun of that day sends none either.
    second = first + timedelta(days=1)
    assert run_dag(conf, second).state == "success"
    assert run_dag(conf, second).state == "success"
    assert len(mails_to(stack, oncall)) == 1
    table = clients(stack.endpoint)[2].Table("ec2_audit_evidence")
    state = table.get_item(Key={"instance_id": ALERTS_ID, "audit_date": second.strftime("%Y-%m-%d")})["Item"]
    assert set(state["open"]) == expected | {"#fleet|compliance_below_threshold"}
    assert {v["first_seen"] for v in state["open"].values()} == {day}


def test_a_changed_host_key_alerts_at_once_in_its_own_message_naming_the_instance_and_both_keys(stack, tmp_path):
    """Day 1 pins web-1 on first use (its own evidence table, so its own pins); its pin is then replaced by
    another key. Day 2 finds HOST_KEY_MISMATCH and mails a security event to alert_recipients, apart from the
    daily report, though no compliance alert is due; the rerun of day 2 does not mail it again."""
    import asyncssh

    soc, team = "soc-keys@example.test", "team-keys@example.test"
    table = "secevent_evidence"
    first = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=110)  # days no other test uses
    conf = {"recipients": [team], "alert_recipients": [soc], "alert_threshold_pct": 0, "evidence_table": table,
            "report_dir": str(tmp_path), "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10,
            "tag_filters": {"Name": ["web-1"]}}
    assert run_dag(conf, first).state == "success"
    web = next(h for h in stack.fleet_entries if h["name"] == "web-1")["instance_id"]
    pins = PinStore(clients(stack.endpoint)[2], table)
    real = pins.get(web)
    assert real is not None and mails_to(stack, soc, security=True) == []
    other = asyncssh.generate_private_key("ssh-ed25519")
    pins.client.put_item(TableName=pins.table_name, Item=pins._item(
        web, other.export_public_key("openssh").decode().strip(), other.get_fingerprint("sha256"), None))

    second = first + timedelta(days=1)
    assert run_dag(conf, second).state == "success"
    day = second.strftime("%Y-%m-%d")
    (alert,) = mails_to(stack, soc, security=True)
    assert alert["Subject"].startswith(f"SECURITY EC2 audit {day}: 1 security event on 1 host")
    body = next(p for p in alert.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert (f"{web}: host key changed: pinned {other.get_fingerprint('sha256')}, offered {real.fingerprint}"
            in body)
    assert mails_to(stack, soc) == []  # no compliance alert was due: the security event went on its own
    reports = mails_to(stack, team)
    assert len(reports) == 2 and all(m["Subject"] != alert["Subject"] for m in reports)
    assert mails_to(stack, team, security=True) == []  # alert_recipients set: the team gets only its report
    assert run_dag({**conf, "recipients": []}, second).state == "success"
    assert len(mails_to(stack, soc, security=True)) == 1  # the rerun of the day: once per (host, event)


class ExpiredTokenProxy(FaultProxy):
    """Answers every EC2 call as AWS does for expired credentials; DynamoDB and Logs reach moto unchanged."""

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        if b"Action=" in body and b"Version=2016-11-15" in body:  # the EC2 query API
            return 400, (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>ExpiredToken'
                         b"</Code><Message>The security token included in the request is expired</Message>"
                         b"</Error></Errors><RequestID>injected</RequestID></Response>"), {"Content-Type": "text/xml"}
        return self.forward(body)


def test_expired_credentials_fail_the_run_loudly_and_alert_with_the_run_link(stack, tmp_path, monkeypatch):
    import json

    proxy, endpoint = ExpiredTokenProxy.start(stack.endpoint)
    try:
        aws = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
        aws["extra"]["endpoint_url"] = endpoint
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
        monkeypatch.setenv("EC2_AUDIT_RETRY_DELAY_SECONDS", "1")
        ops = "pipeline-ops@example.test"
        when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=20)
        run = run_dag({"recipients": ["secops@example.test"], "alert_recipients": [ops],
                       "report_dir": str(tmp_path)}, when)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert run.state == "failed"  # never a smaller (empty) fleet that reads as compliant
    assert day_items(stack, when.strftime("%Y-%m-%d")) == []
    assert not list(tmp_path.glob("compliance-*.html"))
    failures = mails_to(stack, ops)
    task_mail = [m for m in failures if m["Subject"] == f"FAILED ec2_audit_compliance: task discover in {run.run_id}"]
    assert len(task_mail) == 1  # once, after the last retry, not per try
    body = next(p for p in task_mail[0].walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "ExpiredToken" in body and "discovery failed" in body
    assert f"/dags/ec2_audit_compliance/runs/{run.run_id}" in body


def test_a_second_account_by_role_arn_is_discovered_checked_and_reported(stack, tmp_path):
    from devstack.standins.aws.seed import seed_fleet

    arn = "arn:aws:iam::222222222222:role/ec2-audit-read"
    twins = [dict(h) for h in stack.fleet_entries
             if h.get("expected") == "COMPLIANT" and h.get("simulated", True) and not h.get("sshd_profile")][:2]
    assert len(twins) == 2
    ids = seed_fleet(stack.endpoint, twins, role_arn=arn)  # same addresses, another account's VPC
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
    day = when.strftime("%Y-%m-%d")
    run = run_dag({"accounts": [arn], "recipients": [], "report_dir": str(tmp_path), "batch_size": 8,
                   "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10}, when)
    assert run.state == "success"
    items = day_items(stack, day)
    other = {it["instance_id"]: it for it in items if it["account_id"] == "222222222222"}
    assert sorted(other) == sorted(ids.values())
    assert all(it["region"] == "us-east-1" for it in other.values()), other
    # Each twin is the same simulated host as its first-account sibling: its agent runs with THAT instance's id,
    # so its stream is not provably its own — judged, and said, rather than passed on the sibling's events.
    first_ids = {h["address"]: h["instance_id"] for h in stack.fleet_entries if h.get("instance_id")}
    for twin in twins:
        item = other[twin["instance_id"]]
        assert (item["status"], item["failed_checks"]) == ("NON_COMPLIANT", ["cwagent.log_stream_fresh"]), item
        assert first_ids[twin["address"]] in item["checks"]["cwagent.log_stream_fresh"]["detail"]
    running = [h for h in stack.fleet_entries if h.get("expected")]
    assert len(items) == len(running) + 2 and len({it["instance_id"] for it in items}) == len(items)
    with open(tmp_path / f"compliance-{day}.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["account_id"] == "222222222222"]
    assert sorted(r["instance_id"] for r in rows) == sorted(ids.values())
    assert "222222222222" in (tmp_path / f"compliance-{day}.html").read_text()  # compliance by account


def test_same_day_partial_rerun_keeps_the_summary_and_report_in_step_with_the_days_items(stack, tmp_path):
    """A full run, then a same-day rerun with a tag filter selecting two hosts: the day's summary counts all
    of the day's items (not the rerun's two), coverage stays ≤ 100 %, and the rerun's report says the same."""
    import json
    from collections import Counter

    from include.core.scoring import fleet_summary
    from include.evidence.store import EvidenceStore

    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=50)  # a day no other test uses
    day = when.strftime("%Y-%m-%d")
    running = [h for h in stack.fleet_entries if h.get("expected")]
    conf = {"recipients": [], "report_dir": str(tmp_path / "full"), "batch_size": 8, "connect_timeout": 2,
            "host_timeout": 15, "command_timeout": 10}
    full = run_dag(conf, when)
    assert full.state == "success"
    two = sorted(h["name"] for h in running if h.get("expected") == "COMPLIANT" and h.get("simulated", True))[:2]
    assert len(two) == 2
    rerun = run_dag({**conf, "report_dir": str(tmp_path / "rerun"), "tag_filters": {"Name": two}}, when)
    assert rerun.state == "success"

    items = day_items(stack, day)
    assert len(items) == len(running)
    by_run = Counter(it["run_id"] for it in items)
    assert by_run == {rerun.run_id: 2, full.run_id: len(running) - 2}  # the rerun re-checked exactly its two
    want = fleet_summary([it["status"] for it in items], len(running))
    summary = EvidenceStore(clients(stack.endpoint)[2], "ec2_audit_evidence").run_summary(day)
    assert summary.run_id == rerun.run_id
    assert int(summary.checked) == len(items) == want.checked
    assert {k: int(v) for k, v in summary.status_counts.items()} == want.counts
    assert float(summary.compliance_pct) == want.compliance_pct
    assert int(summary.discovered) == len(running)  # the union: this run's 2 and the day's earlier hosts
    assert float(summary.coverage_pct) == 100.0 and summary.missing_evidence == []

    report = json.loads((tmp_path / "rerun" / f"compliance-{day}.json").read_text())
    assert (report["discovered"], report["checked"], report["compliance_pct"]) == (
        int(summary.discovered), int(summary.checked), float(summary.compliance_pct))
    assert report["counts"] == want.counts and report["coverage_pct"] == 100.0
    with open(tmp_path / "rerun" / f"compliance-{day}.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(items)
    assert f"{len(running) - 2} of the {len(items)} hosts in this report were checked by earlier runs" in (
        tmp_path / "rerun" / f"compliance-{day}.html").read_text()


def test_a_fleet_meeting_the_policy_is_fully_compliant_and_its_cis_gaps_are_shown_beside(stack, tmp_path):
    """The seed's policy (auditd enabled, log streaming active, proof available) met by every host, three of
    them with CIS hardening gaps: 100 % under audit-trail with the gaps in the hardening score; under cis the
    gaps decide."""
    import json

    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=60)  # a day no other test uses
    day = when.strftime("%Y-%m-%d")
    names = ["web-1", "db-3", "db-4", "log-2"]  # compliant; not immutable; CIS rules incomplete; no audit=1
    conf = {"recipients": [], "report_dir": str(tmp_path / "trail"), "batch_size": 8, "connect_timeout": 2,
            "host_timeout": 15, "command_timeout": 10, "tag_filters": {"Name": names}}
    assert run_dag(conf, when).state == "success"
    report = json.loads((tmp_path / "trail" / f"compliance-{day}.json").read_text())
    assert (report["checked"], report["compliance_pct"], report["profiles"]) == (4, 100.0, ["audit-trail"])
    assert report["hardening"]["pct"] == 25.0 and set(report["hardening"]["gaps"]) == {
        "auditd.immutable", "auditd.rules_cover_cis", "auditd.boot_params"}
    items = day_items(stack, day)
    assert all(it["failed_checks"] == [] for it in items)
    assert sorted(c for it in items for c in it["advisory_failed"]) == sorted(report["hardening"]["gaps"])
    assert "hardened (CIS)" in (tmp_path / "trail" / f"compliance-{day}.html").read_text()

    assert run_dag({**conf, "profile": "cis", "report_dir": str(tmp_path / "cis")}, when).state == "success"
    report = json.loads((tmp_path / "cis" / f"compliance-{day}.json").read_text())
    assert (report["compliance_pct"], report["profiles"]) == (25.0, ["cis"])
    items = day_items(stack, day)
    assert sorted(c for it in items for c in it["failed_checks"]) == sorted(report["hardening"]["gaps"])
    assert all(it["profile"] == "cis" and it["advisory_failed"] == [] for it in items)


def test_transport_eic_end_to_end_with_no_key_in_the_connection(stack, tmp_path, monkeypatch):
    """transport=eic: the `ec2_audit_ssh` connection holds no key; each host is reached with the batch's
    in-memory key, pushed by SendSSHPublicKey to the stand-in just before its session. Same verdicts as ssh."""
    import json

    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=70)  # a day no other test uses
    day = when.strftime("%Y-%m-%d")
    monkeypatch.setenv("AIRFLOW_CONN_EC2_AUDIT_SSH", json.dumps({
        "conn_type": "ssh", "login": "ec2audit", "port": SSH_PORT, "extra": {"host_key_policy": "tofu"}}))
    conf = {"transport": "eic", "report_dir": str(tmp_path), "recipients": [], "batch_size": 8,
            "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10}
    run = run_dag(conf, when)
    assert run.state == "success"
    running = [h for h in stack.fleet_entries if h.get("expected")]
    by_id = {it["instance_id"]: it for it in day_items(stack, day)}
    assert len(by_id) == len(running)
    for host in running:
        item = by_id[host["instance_id"]]
        assert item["status"] == host["expected"], (host["name"], item.get("status_detail"))
        assert item["transport"] == "eic" and item["run_id"] == run.run_id
        if "expected_failed" in host:
            assert item["failed_checks"] == host["expected_failed"], item["checks"]
        elif host.get("behaviour") == "ok" and host["expected"] in ("COMPLIANT", "NON_COMPLIANT"):
            assert (item["status"], item["failed_checks"], item["advisory_failed"]) == expected(host["profile"])
    pushed = {p.parent.parent.name for p in stack.eic_key_dir.glob("*/*/*.pub")}
    linux = {h["instance_id"] for h in running if not h.get("windows")}
    assert linux <= pushed  # one key push per Linux host (Windows hosts are not contacted)


def run_with_transport(stack, tmp_path, transport: str, days_ahead: int, **conf) -> tuple[str, dict[str, dict]]:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=days_ahead)  # a day of its own
    conf = {"transport": transport, "report_dir": str(tmp_path), "recipients": [], "batch_size": 8,
            "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10, **conf}
    run = run_dag(conf, when)
    assert run.state == "success"
    day = when.strftime("%Y-%m-%d")
    return day, {it["instance_id"]: it for it in day_items(stack, day)}


def checks_of(item: dict) -> dict[str, str]:
    return {c: v["status"] for c, v in item["checks"].items()}


def test_transports_ssh_ssm_and_auto_give_the_same_verdicts_for_the_same_host_states(stack, tmp_path):
    """The DAG end to end over ssh, then ssm (the stand-in's SendCommand really runs the script on the
    simulated hosts and, inside their namespaces, on the real sshd hosts), then auto. A host whose state is
    the same is judged the same, check by check; SSM-only hosts, lost agents and hosts SSM does not manage
    get what their transport can see."""
    _, over_ssh = run_with_transport(stack, tmp_path / "ssh", "ssh", 81)
    _, over_ssm = run_with_transport(stack, tmp_path / "ssm", "ssm", 82)
    auto_day, over_auto = run_with_transport(stack, tmp_path / "auto", "auto", 83)
    running = [h for h in stack.fleet_entries if h.get("expected")]
    for host in running:
        iid, name = host["instance_id"], host["name"]
        for transport, items in (("ssh", over_ssh), ("ssm", over_ssm), ("auto", over_auto)):
            assert items[iid]["status"] == expected_status(host, transport), (name, transport, items[iid]["status_detail"])
        same_state = host.get("ssm") == "Online" and host.get("behaviour") == "ok" and not host.get("pinned_other_key")
        if same_state and not host.get("windows"):
            assert over_ssm[iid]["transport"] == "ssm" and over_auto[iid]["transport"] == "ssm"
            assert checks_of(over_ssm[iid]) == checks_of(over_ssh[iid]), name
            assert over_ssm[iid]["failed_checks"] == over_ssh[iid]["failed_checks"], name
            assert over_ssm[iid]["advisory_failed"] == over_ssh[iid]["advisory_failed"], name
            evidence = over_ssm[iid]["transport_evidence"]
            assert evidence["ssm_ping_status"] == "Online" and evidence["ssm_command_id"], name
            assert over_ssm[iid]["host_key_fingerprint"] == "" and over_ssh[iid]["host_key_fingerprint"]
    by_name = {h["name"]: h["instance_id"] for h in running}
    assert "not managed by SSM" in over_ssm[by_name["edge-1"]]["status_detail"]
    assert "ConnectionLost" in over_ssm[by_name["ssm-2"]]["status_detail"]
    assert over_auto[by_name["ssm-2"]]["transport"] == "ssh"  # auto fell back to SSH for the lost agent
    assert over_auto[by_name["ssm-1"]]["transport"] == "ssm"  # and took SSM for the host with no SSH
    report = json.loads((tmp_path / "auto" / f"compliance-{auto_day}.json").read_text())
    assert report["transports"] == dict(sorted(Counter(it["transport"] for it in over_auto.values()).items()))
    assert set(report["transports"]) >= {"ssh", "ssm"}


def test_the_day_s_evidence_and_report_are_published_as_asset_events(stack, tmp_path):
    """Downstream DAGs (remediation, a SIEM export) schedule on these: each run records one event per asset,
    whose extra says which audit day and where its report files are."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    day, items = run_with_transport(stack, tmp_path, "ssh", 90)
    with create_session() as session:
        rows = session.execute(select(AssetModel.name, AssetEvent.extra).join(AssetEvent.asset)).all()
    events = {name: extra for name, extra in rows if (extra or {}).get("audit_date") == day}
    assert set(events) == {"ec2_audit_evidence", "ec2_audit_report"}
    assert events["ec2_audit_evidence"]["evidence_table"] == "ec2_audit_evidence"
    assert events["ec2_audit_evidence"]["checked"] == len(items)
    assert Path(events["ec2_audit_report"]["paths"]["html"]).read_text().count(day) >= 1

    # The OCSF file of the same run, validated by the pinned OCSF model, against the stored evidence.
    from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding

    lines = Path(events["ec2_audit_report"]["paths"]["ocsf"]).read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    for event in parsed:
        ComplianceFinding.model_validate({k: v for k, v in event.items() if k != "cloud"})
        assert event["class_uid"] == 2003
    judged = {(i, c): v["status"] for i, it in items.items() for c, v in it["checks"].items()}
    by_pair = {(e["resources"][0]["uid"], e["compliance"]["control"]): e for e in parsed}
    assert set(judged) <= set(by_pair)  # every stored verdict has its event
    for (iid, check), status in judged.items():
        event = by_pair[(iid, check)]
        assert event["status_code"] == status
        assert event["evidences"][0]["data"]["output_sha256"] == items[iid]["output_sha256"]
        assert event["metadata"]["correlation_uid"] == items[iid]["run_id"]


def test_one_live_run_with_everything_on_puts_the_findings_where_security_teams_look(stack, tmp_path, monkeypatch):
    """Email alert, Security Hub (moto's, made to behave as AWS: devstack/standins/aws/securityhub.py), the OCSF file, a
    Slack webhook (loopback receiver) and an SNS message (read back from a subscribed SQS queue), each checked
    against what the stored evidence says; the next day a check that passes again resolves its finding."""
    import uuid

    import boto3

    from devstack.standins.sinks.webhook import WebhookSink
    from include.core.scoring import fleet_summary

    aws = dict(endpoint_url=stack.endpoint, region_name="us-east-1", aws_access_key_id="testing",
               aws_secret_access_key="testing")
    hub, sns, sqs = boto3.client("securityhub", **aws), boto3.client("sns", **aws), boto3.client("sqs", **aws)
    try:
        hub.enable_security_hub()
    except hub.exceptions.ResourceConflictException:
        pass  # enabled by an earlier run of this test on the same stack
    name = f"ec2-audit-{uuid.uuid4().hex[:8]}"
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    with WebhookSink("127.0.0.1", 0, tmp_path / "webhooks") as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_SECOPS", json.dumps({
            "conn_type": "slackwebhook", "host": f"http://127.0.0.1:{sink.port}/services", "password": "T0/B0/x"}))
        # Evidence at its strongest: raw output in an Object Lock bucket (compliance mode), seals signed by KMS.
        s3, kms = boto3.client("s3", **aws), boto3.client("kms", **aws)
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
        key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["Arn"]
        everything = {"securityhub": True, "slack_conn_id": "slack_secops", "sns_topic_arn": topic,
                      "alert_recipients": ["oncall@example.test"], "evidence_bucket": name, "kms_key_id": key}
        day, items = run_with_transport(stack, tmp_path / "d1", "ssh", 100, **everything)
        bodies = [json.loads(p.read_text()) for p in sorted((tmp_path / "webhooks").glob("*.body"))]
    messages = [json.loads(json.loads(m["Body"])["Message"])
                for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2)["Messages"]]

    reached = [it for it in items.values() if it["output_bytes"]]
    assert reached and all(it["output_ref"].startswith(f"s3://{name}/raw/") for it in reached)
    locked = s3.head_object(Bucket=name, Key=reached[0]["output_ref"].split("/", 3)[3])
    assert locked["ObjectLockMode"] == "COMPLIANCE"
    assert int(locked["ObjectLockRetainUntilDate"].timestamp()) == reached[0]["expires_at"]
    from include.integrity.cli import main as integrity

    out = io.StringIO()  # every raw output read back from S3, every seal's signature checked with kms:Verify
    assert integrity(["verify", "--table", "ec2_audit_evidence", "--from", day, "--to", day], out=out) == 0, \
        out.getvalue()

    pct = fleet_summary([it["status"] for it in items.values()], len(items)).compliance_pct
    # Beside the compliance alert, each channel may carry a security-event message (bastion-1's key): apart.
    messages = [m for m in messages if m["event"] == "compliance_alert"]
    bodies = [b for b in bodies if "SECURITY EC2 audit" not in json.dumps(b)]
    assert len(messages) == 1 and messages[0]["compliance_pct"] == pct
    assert len(bodies) == 1 and f"{pct:g}%" in json.dumps(bodies[0])
    assert any(m.get("To") and "oncall@example.test" in m["To"] for m in map(
        lambda p: email.message_from_bytes(p.read_bytes()), stack.received_mail()))

    def ours(**filters) -> dict[str, dict]:
        found, token = {}, None
        for _ in range(100):  # bounded pages
            page = hub.get_findings(Filters={"Id": [{"Value": "ec2-audit/", "Comparison": "PREFIX"}], **filters},
                                    MaxResults=100, **({"NextToken": token} if token else {}))
            found.update({f["Id"]: f for f in page["Findings"]})
            token = page.get("NextToken")
            if not token:
                return found
        raise AssertionError("too many pages")

    failing = {(iid, c) for iid, it in items.items() for c in it["failed_checks"] + it["advisory_failed"]}
    active = ours(RecordState=[{"Value": "ACTIVE", "Comparison": "EQUALS"}],
                  ComplianceStatus=[{"Value": "FAILED", "Comparison": "EQUALS"}])
    assert {(f["Resources"][0]["Id"].rsplit("/", 1)[1], f["GeneratorId"]) for f in active.values()} == failing
    assert all(f["ProductFields"]["ec2audit/audit_date"] == day for f in active.values())

    # The next day the stale stream counts as fresh (a week allowed): that check passes again → RESOLVED.
    _, items2 = run_with_transport(stack, tmp_path / "d2", "ssh", 101, securityhub=True,
                                   stream_max_age_minutes=7 * 24 * 60)
    fixed = {(iid, c) for iid, c in failing if items2[iid]["checks"].get(c, {}).get("status") == "PASS"}
    assert ("cwagent.log_stream_fresh" in {c for _, c in fixed}), fixed
    after = ours()
    for iid, check in fixed:
        finding = next(f for f in after.values() if f["GeneratorId"] == check and f["Resources"][0]["Id"].endswith(iid))
        assert (finding["Compliance"]["Status"], finding["Workflow"]["Status"]) == ("PASSED", "RESOLVED")


def _host(stack, name: str) -> dict:
    return next(h for h in stack.fleet_entries if h["name"] == name)


def test_a_targeted_run_checks_only_its_hosts_names_the_unknown_and_keeps_the_day_whole(stack, tmp_path):
    """A patch pipeline asks "are these hosts still compliant?": instance_ids, trigger request."""
    day = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=40)  # a day no other test writes
    conf = {"report_dir": str(tmp_path), "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10}
    assert run_dag(conf, day).state == "success"
    before = {it["instance_id"]: it for it in day_items(stack, day.strftime("%Y-%m-%d"))}
    web, unknown = _host(stack, "web-1")["instance_id"], "i-0fffffffffffffff0"
    assert run_dag({**conf, "instance_ids": [web, unknown]}, day + timedelta(minutes=5)).state == "success"
    after = {it["instance_id"]: it for it in day_items(stack, day.strftime("%Y-%m-%d"))}
    assert set(after) == set(before)  # the day keeps every host
    assert (after[web]["trigger"], after[web]["seq"]) == ("request", before[web]["seq"] + 1)
    assert all(after[i]["seq"] == before[i]["seq"] for i in after if i != web)  # nobody else re-checked
    report = json.loads((tmp_path / f"compliance-{day:%Y-%m-%d}.json").read_text())
    assert report["requested_not_found"] == [unknown]
    assert report["checked"] == len(before)


def test_a_replayed_watch_run_rechecks_the_launched_host_and_drops_junk_and_unknown_instances(stack, tmp_path):
    """ec2_audit_watch by hand (no queue here): conf {"events": [...]} — one documented launch of a known host,
    one of an instance EC2 does not know, junk, and a duplicate: one re-check, trigger launch, nothing else."""
    from airflow.dag_processing.dagbag import DagBag

    host = _host(stack, "db-3")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def launch(iid):
        return {"version": "0", "id": f"ev-{iid}", "detail-type": "EC2 Instance State-change Notification",
                "source": "aws.ec2", "account": "123456789012", "time": now, "region": "us-east-1",
                "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{iid}"],
                "detail": {"instance-id": iid, "state": "running"}}

    events = [launch(host["instance_id"]), json.dumps(launch(host["instance_id"])), launch("i-0eeeeeeeeeeeeeee0"),
              "not json", {"source": "aws.s3"}]
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("ec2_audit_watch")
    run = dag.test(run_conf={"events": events, "launch_grace_minutes": 0, "report_dir": str(tmp_path),
                             "connect_timeout": 2, "host_timeout": 15, "command_timeout": 10})
    assert run.state == "success"
    from include.evidence.store import EvidenceStore

    store = EvidenceStore(clients(stack.endpoint)[2], "ec2_audit_evidence")
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    mine = [o for o in store.observations(host["instance_id"], today) if o["run_id"] == run.run_id]
    assert [(o["trigger"], o["status"]) for o in mine] == [("launch", "COMPLIANT")]
    assert "running" in mine[0]["trigger_detail"]
    assert store.observations("i-0eeeeeeeeeeeeeee0", today) == []
