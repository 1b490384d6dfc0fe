"""report_dir = s3://bucket/prefix: build_report writes through ObjectStoragePath (the Amazon provider's s3
filesystem over the aws_default connection, pointed at a real moto server process), send_report reads the files
back from S3 and mails them. Checked with plain boto3 and with the SMTP sink's .eml files."""
from __future__ import annotations

import email
import json
import time
import uuid
from datetime import datetime, timezone
from email import policy

import boto3
import pytest

from devstack.procs import free_port
from devstack.standins.aws.seed import REGION
from devstack.standins.sinks.smtp import SmtpSink
from include.core.host import Host, HostOutcome
from include.core.status import Status, Verdict
from include.evidence.records import RunSummary
from include.evidence.sealed import Sealed
from include.evidence.store import EvidenceStore, instance_item
from include.settings.params import AuditParams
from include.tasks.params import validate as validate_params

DAY = "2031-03-14"


def _forget_cached_s3_filesystems():
    """Airflow caches one filesystem per (scheme, conn_id) per process: another test's moto is another endpoint."""
    from airflow.sdk.io import store

    for alias in [a for a in store._STORE_CACHE if a.startswith(("s3", "file", "local"))]:
        store._STORE_CACHE.pop(alias, None)


@pytest.fixture
def aws(moto, monkeypatch, tmp_path):
    """The aws_default connection as Airflow reads it (env JSON), pointing at moto; a fresh bucket."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": moto, "region_name": REGION}}))
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # a report that went to the local disk instead would land here
    _forget_cached_s3_filesystems()
    s3 = boto3.client("s3", endpoint_url=moto, region_name=REGION, aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    bucket = f"audit-reports-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    yield s3, bucket
    _forget_cached_s3_filesystems()


def _objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _report():
    from include.checks.catalogue import check_meta
    from include.evidence.records import EvidenceItem
    from include.report.build import build_report
    from include.report.trend import render_png, trend_points
    from tests.factories import run_summaries

    items = [EvidenceItem.from_item({"instance_id": f"i-{n:017x}", "audit_date": DAY, "run_id": "run-s3", "status": status,
              "failed_checks": ["auditd.running"] if status == "NON_COMPLIANT" else [], "name": f"web-{n}",
              "environment": "prod", "region": REGION, "account_id": "123456789012", "private_ip": f"10.0.0.{n}"})
             for n, status in enumerate(["COMPLIANT", "COMPLIANT", "NON_COMPLIANT", "UNREACHABLE"], start=1)]
    png = render_png(trend_points(run_summaries([{"audit_date": DAY, "compliance_pct": 66.7, "coverage_pct": 100.0}]),
                                  DAY), "t")
    return build_report(items, audit_date=DAY, discovered=4, run_id="run-s3", mode="live",
                        generated_at=datetime(2031, 3, 14, 6, tzinfo=timezone.utc), check_meta=check_meta(),
                        trend_png=png)


def test_write_report_puts_every_file_under_the_s3_prefix(aws, tmp_path):
    from include.report.build import write_report

    s3, bucket = aws
    report = _report()
    paths = write_report(report, f"s3://{bucket}/reports", DAY, run_id="run-s3", mode="live")

    names = {"html": f"compliance-{DAY}.html", "csv": f"compliance-{DAY}.csv", "json": f"compliance-{DAY}.json",
             "trend_png": f"compliance-{DAY}-trend.png", "email_html": f"compliance-{DAY}.email.html"}
    # XCom gets URLs (strings), the same names as in a local folder.
    assert paths == {kind: f"s3://{bucket}/reports/{name}" for kind, name in names.items()}
    objects = _objects(s3, bucket, "reports/")
    assert set(objects) == {f"reports/{name}" for name in names.values()}
    assert objects[f"reports/{names['html']}"] == report.html.encode()
    assert objects[f"reports/{names['csv']}"] == report.csv.encode()
    assert objects[f"reports/{names['email_html']}"] == report.email_html.encode()
    assert objects[f"reports/{names['trend_png']}"] == report.trend_png
    machine = json.loads(objects[f"reports/{names['json']}"])
    assert machine["audit_date"] == DAY and machine["run_id"] == "run-s3" and machine["counts"]["COMPLIANT"] == 2
    assert list(tmp_path.iterdir()) == []  # nothing went to the local disk

    # Rewriting the day replaces the objects (one PUT each), nothing else appears.
    write_report(report, f"s3://{bucket}/reports/", DAY, run_id="run-s3-again", mode="live")
    again = _objects(s3, bucket, "reports/")
    assert set(again) == set(objects)
    assert json.loads(again[f"reports/{names['json']}"])["run_id"] == "run-s3-again"


def test_a_missing_bucket_fails_with_a_message_naming_report_dir(aws):
    from include.report.build import write_report

    with pytest.raises(FileNotFoundError, match="report_dir"):
        write_report(_report(), f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/reports", DAY)


def _seed_day(endpoint: str, table: str) -> EvidenceStore:
    dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                              aws_secret_access_key="testing")
    store = EvidenceStore(dynamodb, table)
    store.ensure_tables()
    now = datetime(2031, 3, 14, 6, tzinfo=timezone.utc)
    items = []
    for n, status in enumerate([Status.COMPLIANT, Status.COMPLIANT, Status.NON_COMPLIANT], start=1):
        iid = f"i-{n:017x}"
        host = Host(iid, REGION, "123456789012", f"10.1.0.{n}", private_ip=f"10.1.0.{n}",
                    tags={"Name": f"db-{n}", "Environment": "prod"})
        items.append(instance_item(
            host=host, outcome=HostOutcome(iid, None, output=b"out", host_key_fingerprint="SHA256:x"),
            status=status, failed=["auditd.running"] if status == Status.NON_COMPLIANT else [],
            verdicts={"auditd.running": Verdict.passed("ok")}, detail="", audit_date=DAY, run_id="stored-run",
            checked_at=now, ttl_days=400))
    store.put_items(items)
    store.put_summary(DAY, RunSummary(run_id="stored-run", discovered=3), 400)
    return store


def test_build_writes_to_s3_and_send_mails_what_it_reads_back_from_s3(aws, moto, monkeypatch, tmp_path):
    from include.tasks import audit as pipeline

    s3, bucket = aws
    sink = SmtpSink("127.0.0.1", free_port(), tmp_path / "mail").start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": sink.controller.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "ec2-audit@localhost"}}))
        table = f"s3_report_{uuid.uuid4().hex[:8]}"
        _seed_day(moto, table)
        params = AuditParams(report_dir=f"s3://{bucket}/daily", recipients=["secops@example.test"],
                             evidence_table=table)
        validate_params(params)
        built = pipeline.build(params, Sealed(DAY, "rebuild-run", "rebuild"))
        payload = built.to_xcom()
        json.dumps(payload)  # the XCom payload: plain strings, never file contents
        assert payload["paths"]["csv"] == f"s3://{bucket}/daily/compliance-{DAY}.csv"
        assert all(isinstance(v, str) and v.startswith(f"s3://{bucket}/daily/") for v in payload["paths"].values())
        objects = _objects(s3, bucket, "daily/")
        assert set(objects) == {f"daily/compliance-{DAY}{suffix}" for suffix in
                                (".html", ".csv", ".json", "-trend.png", ".email.html", ".ocsf.jsonl")}
        assert objects[f"daily/compliance-{DAY}.csv"].count(b"\n") == 1 + 3  # header + the day's three hosts

        # What send mails comes from S3, not from a disk: change the stored objects and the mail follows.
        marker_csv = objects[f"daily/compliance-{DAY}.csv"] + b"i-marker,from-s3\n"
        marker_html = objects[f"daily/compliance-{DAY}.email.html"].replace(b"</body>", b"<p>read-from-s3</p></body>")
        s3.put_object(Bucket=bucket, Key=f"daily/compliance-{DAY}.csv", Body=marker_csv)
        s3.put_object(Bucket=bucket, Key=f"daily/compliance-{DAY}.email.html", Body=marker_html)
        assert pipeline.send(params, built).startswith("emailed 1 recipients")
        assert list(tmp_path.iterdir()) == [tmp_path / "mail"]  # build and send left nothing on the local disk

        deadline = time.monotonic() + 10
        while not sink.messages() and time.monotonic() < deadline:
            time.sleep(0.05)
        [eml] = sink.messages()
        message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert DAY in message["Subject"] and "secops@example.test" in message["To"]
        assert "read-from-s3" in message.get_body(("html",)).get_content()
        attached = {part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()}
        assert set(attached) == {f"compliance-{DAY}.csv", f"compliance-{DAY}-trend.png"}
        assert attached[f"compliance-{DAY}.csv"] == marker_csv
        assert attached[f"compliance-{DAY}-trend.png"] == objects[f"daily/compliance-{DAY}-trend.png"]
        assert attached[f"compliance-{DAY}-trend.png"].startswith(b"\x89PNG")
    finally:
        sink.stop()
