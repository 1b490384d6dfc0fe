"""Tamper alerts for real: the evidence and remediation records in a moto server process's DynamoDB, the alert
mailed through the `smtp_default` connection to the SMTP sink (devstack/standins/sinks/smtp.py). A burst of 1,000
rule-deletion records, read by two watch runs, is one message naming the record and the remediation run."""
from __future__ import annotations

import email
import json
import time
import uuid
from email import policy

import boto3

from devstack.procs import free_port
from devstack.standins.aws.seed import REGION
from devstack.standins.sinks.smtp import SmtpSink
from include.evidence.store import EvidenceStore
from include.notify import tamper
from include.remediation.records import RemediationRecord
from include.remediation.store import RemediationStore
from include.settings.params import AuditParams
from include.watch.records import RULES_DELETED, TAMPER, Recheck

DAY = "2031-05-21"
IID = "i-0000000000000a001"
DELETE = 'type=CONFIG_CHANGE msg=audit(1937458800.100:{n}): auid=1000 ses=9 op=remove_rule key="identity" list=4 res=1'


def test_a_burst_over_two_watch_runs_is_one_mail_naming_the_record_and_the_remediation_run(moto, monkeypatch, tmp_path):
    dynamodb = boto3.resource("dynamodb", endpoint_url=moto, region_name=REGION, aws_access_key_id="testing",
                              aws_secret_access_key="testing")
    store = EvidenceStore(dynamodb, f"tamper_{uuid.uuid4().hex[:8]}")
    store.ensure_tables()
    store.put_items([{"instance_id": IID, "audit_date": f"{DAY}#v#1", "day": DAY, "seq": 1, "item_type": "instance",
                      "run_id": "scheduled-daily", "checked_at": f"{DAY}T06:00:00Z", "status": "COMPLIANT",
                      "checks": {"auditd.rules_loaded": {"status": "PASS", "detail": "42 rules"}}}])
    RemediationStore(store).put_remediation(RemediationRecord(
        host_id=IID, audit_date="2031-05-20", run_id="manual__2031-05-21T08:58:00", ran_at=f"{DAY}T08:59:40Z",
        approved_by="alice", outcome="unverified"), 400)
    sink = SmtpSink("127.0.0.1", free_port(), tmp_path / "mail").start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": sink.controller.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "ec2-audit@localhost"}}))
        params = AuditParams(alert_recipients=["soc@example.test"], evidence_table=store.table_name)
        halves = [Recheck(IID, REGION, TAMPER, first_at=f"{DAY}T09:00:0{n}Z", events=500, tamper=[RULES_DELETED],
                          records=[DELETE.format(n=900 + 500 * n + k) for k in range(5)]) for n in range(2)]
        for run, half in zip(("watch-1", "watch-2"), halves):
            fixes = tamper.remediation_lookup(store, [half])
            tamper.alert_at_once(store, [half], day=DAY, run_id=run, params=params, active_fixes=fixes)
        deadline = time.monotonic() + 10
        while not sink.messages() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a second message, had one been sent, would be there by now
        [eml] = sink.messages()
        message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert message["Subject"] == f"SECURITY EC2 audit {DAY}: {IID} audit rules deleted"
        assert "soc@example.test" in message["To"]
        html = message.get_body(("html",)).get_content()
        assert "op=remove_rule" in html and "500 records" in html and REGION in html
        assert "remediation run manual__2031-05-21T08:58:00 approved by alice" in html
    finally:
        sink.stop()
