"""Slack and SNS delivery for real: the Slack provider's webhook notifier posting to a loopback receiver
(devstack/standins/sinks/webhook.py) through an Airflow `slackwebhook` connection, and the Amazon provider's SNS notifier
publishing to a topic in a moto server process, read back from an SQS queue subscribed to it.

The alert is computed the way the pipeline computes it, from evidence stored in (moto's) DynamoDB; each payload
is checked against numbers the test works out itself from the hosts it stored.

Run with the e2e lock: `flock /tmp/ec2audit-e2e.lock .venv/bin/python -m pytest tests/integration/notify/test_channels_live.py`.
"""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pytest

from devstack.standins.aws.seed import REGION
from devstack.standins.sinks.webhook import WebhookSink
from include.checks.catalogue import CATALOGUE
from include.core.host import Host, HostOutcome
from include.core.scoring import fleet_summary
from include.core.status import Status, Verdict
from include.evidence.store import EvidenceStore, instance_item
from include.notify import alerts, channels
from include.notify import email as notify
from include.notify.channels import AlertNotice, Channels

DAY = "2031-05-20"
RUN = "scheduled__2031-05-20T06:00:00+00:00"
DAG = "ec2_audit_compliance"
BASE = "http://airflow.example:8080"
TOKEN = "T0AUDIT/B0ALERTS/s3cr3tw3bh00k"
THRESHOLD = 90.0

# The stored hosts: (instance id, status, failed checks). i-…03 failed a critical check a week ago too (a reminder).
HOSTS = [("i-00000000000000001", Status.COMPLIANT, []),
         ("i-00000000000000002", Status.NON_COMPLIANT, ["auditd.running", "auditd.immutable"]),
         ("i-00000000000000003", Status.NON_COMPLIANT, ["cwagent.running"]),
         ("i-00000000000000004", Status.NON_COMPLIANT, ["auditd.immutable"]),  # not critical: no finding
         ("i-00000000000000005", Status.WAIVED, ["auditd.running"]),
         ("i-00000000000000006", Status.NOT_APPLICABLE, [])]
REMINDED = "i-00000000000000003"
EVIL = "<!channel> {{ 7 * 7 }} & <http://evil.example|click>"


def _aws(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@pytest.fixture
def sink(tmp_path):
    with WebhookSink("127.0.0.1", 0, tmp_path / "webhooks") as receiver:
        yield receiver


@pytest.fixture
def conns(moto, sink, monkeypatch):
    """aws_default → moto; slack_alerts → the receiver (host with scheme and port + token, as the provider
    joins them: <host>/<password>); the Airflow UI's base URL the links use."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": moto, "region_name": REGION}}))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({
        "conn_type": "slackwebhook", "host": f"http://127.0.0.1:{sink.port}/services", "password": TOKEN}))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE)
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def topic(moto):
    """A fresh SNS topic with an SQS queue subscribed to it: (topic ARN, read the queue)."""
    sns, sqs = _aws("sns", moto), _aws("sqs", moto)
    name = f"ec2-audit-{uuid.uuid4().hex[:10]}"
    arn = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)

    def read(expected: int = 1) -> list[dict]:
        got = []
        for _ in range(10):  # bounded: moto delivers on publish; a few polls at most
            for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            if len(got) >= expected:
                break
        return got

    return arn, read


def _store_day(moto: str) -> EvidenceStore:
    store = EvidenceStore(boto3.resource("dynamodb", endpoint_url=moto, region_name=REGION,
                                         aws_access_key_id="testing", aws_secret_access_key="testing"),
                          f"channels_{uuid.uuid4().hex[:8]}")
    store.ensure_tables()
    now = datetime(2031, 5, 20, 6, tzinfo=timezone.utc)
    items = []
    for n, (iid, status, failed) in enumerate(HOSTS, start=1):
        host = Host(iid, REGION, "123456789012", f"10.2.0.{n}", private_ip=f"10.2.0.{n}",
                    tags={"Name": f"web-{n}" if n != 2 else "<b>web-2</b>"})
        verdicts = {c: Verdict.failed(f"{c} {EVIL}" if n == 2 else f"{c} down on {iid}") for c in failed}
        items.append(instance_item(host=host, outcome=HostOutcome(iid, None, output=b"out"), status=status,
                                   failed=failed, verdicts=verdicts, detail="", audit_date=DAY, run_id=RUN,
                                   checked_at=now, ttl_days=400))
    store.put_items(items)
    return store


def _alert_as_the_pipeline_builds_it(store: EvidenceStore) -> AlertNotice:
    """include/tasks/audit.py alert(): failing items from the store, findings, the decision, names."""
    pct = fleet_summary([it.status for it in store.day_items(DAY, fields=["status"])], len(HOSTS)).compliance_pct
    items = store.day_items(DAY, run_id=RUN, status="NON_COMPLIANT")
    critical = {c.id for c in CATALOGUE if c.severity == "critical"}
    week_ago = (date.fromisoformat(DAY) - timedelta(days=7)).isoformat()
    previous = {f"{REMINDED}|cwagent.running": {"first_seen": week_ago, "last_alerted": week_ago}}
    decision = alerts.decide(alerts.current_findings(items, critical, pct, THRESHOLD), previous, DAY, 7)
    names = {it.instance_id: str(it.tags.get("Name", "")) for it in items}
    return AlertNotice(DAY, decision, names, pct, notify.run_url(DAG, RUN), f"s3://audit-reports/compliance-{DAY}.html")


# The test's own arithmetic over HOSTS, not the product's functions.
COMPLIANCE = round(100 * 1 / 4, 1)  # 1 compliant of 4 scorable (WAIVED and NOT_APPLICABLE do not count)
NEWLY_FAILING = ["i-00000000000000002"]  # a critical failure on a NON_COMPLIANT host, not alerted before
ALERTED = ["i-00000000000000002", REMINDED]
RUN_LINK = f"{BASE}/dags/{DAG}/runs/{RUN}"
SUBJECT = f"ALERT EC2 audit compliance {DAY}: compliance {COMPLIANCE}% below threshold; critical checks failing on 2 hosts"


def _slack_bodies(sink: WebhookSink) -> list[dict]:
    assert all(r["path"] == f"/services/{TOKEN}" for r in sink.requests())
    return [json.loads(r["body"]) for r in sink.requests()]


def test_a_compliance_alert_reaches_slack_and_sns_with_the_numbers_of_the_stored_evidence(moto, sink, conns, topic):
    arn, read = topic
    notice = _alert_as_the_pipeline_builds_it(_store_day(moto))
    results = channels.deliver_alert(Channels("slack_alerts", arn), notice)
    assert results["slack"]["ok"] and results["sns"]["ok"] and results["sns"]["sent"] == 3  # 2 hosts + the threshold

    [slack] = _slack_bodies(sink)
    blocks = slack["blocks"]
    assert blocks[0]["text"]["text"] == SUBJECT
    summary = blocks[1]["text"]["text"]
    assert f"*Compliance:* {COMPLIANCE}%" in summary and f"*Hosts newly failing:* {len(NEWLY_FAILING)}" in summary
    lines = blocks[2]["text"]["text"].splitlines()
    assert {ln.split("`")[1] for ln in lines if ln.startswith("• `i-")} == set(ALERTED)
    assert any(ln.startswith(f"• `{REMINDED}` (web-3) `cwagent.running` still open since") for ln in lines)
    evil = next(ln for ln in lines if "auditd.running" in ln)
    assert "(&lt;b&gt;web-2&lt;/b&gt;)" in evil and "&lt;!channel&gt; {{ 7 * 7 }} &amp; &lt;http://evil" in evil
    assert f"<{RUN_LINK}|the run in Airflow>" in blocks[3]["elements"][0]["text"]

    [envelope] = read()
    assert len(SUBJECT) > 100 and envelope["TopicArn"] == arn
    assert envelope["Subject"] == SUBJECT[:97].rstrip() + "..."  # SNS takes ≤ 100 characters; the message has it all
    assert envelope["MessageAttributes"]["event"]["Value"] == "compliance_alert"
    message = json.loads(envelope["Message"])
    assert message["compliance_pct"] == COMPLIANCE and message["below_threshold"] is True
    assert message["hosts_newly_failing"] == NEWLY_FAILING and message["hosts_alerted"] == ALERTED
    assert message["run_url"] == RUN_LINK and message["audit_date"] == DAY and message["subject"] == SUBJECT
    assert {(f["instance_id"], f["check_id"], f["state"]) for f in message["findings"]} == {
        ("i-00000000000000002", "auditd.running", "new"), (REMINDED, "cwagent.running", "reminder"),
        ("fleet", "compliance_below_threshold", "new")}


LONG_RUN = "manual__2031-05-20T06:00:00.123456+00:00-rerun-requested-by-the-security-team"  # subject > 100


def _failed_task(run_id: str = RUN):
    ti = SimpleNamespace(task_id="discover", dag_id=DAG, log_url=f"{BASE}/dags/{DAG}/runs/{run_id}/tasks/discover?try=3")
    return {"ti": ti, "dag_run": SimpleNamespace(dag_id=DAG, run_id=run_id),
            "exception": RuntimeError("discovery failed, no report from a partial fleet: eu-west-1: AccessDenied")}


def test_a_failure_notice_reaches_slack_and_sns_with_the_run_and_the_log(moto, sink, conns, topic):
    arn, read = topic
    channels.deliver_failure(Channels("slack_alerts", arn), _failed_task(LONG_RUN))
    subject, run_link = f"FAILED {DAG}: task discover in {LONG_RUN}", f"{BASE}/dags/{DAG}/runs/{LONG_RUN}"

    [slack] = _slack_bodies(sink)
    assert slack["text"] == subject and slack["blocks"][0]["text"]["text"] == subject
    assert "eu-west-1: AccessDenied" in slack["blocks"][1]["text"]["text"]
    links = slack["blocks"][2]["elements"][0]["text"]
    assert f"<{run_link}|the run in Airflow>" in links and "tasks/discover?try=3|the task log>" in links

    [envelope] = read()
    assert envelope["Subject"] == subject[:97] + "..." and len(subject) > 100  # SNS: ≤ 100 characters
    message = json.loads(envelope["Message"])
    assert message["subject"] == subject and message["task_id"] == "discover" and message["run_url"] == run_link
    assert message["reason"].endswith("eu-west-1: AccessDenied")


@pytest.mark.parametrize("broken", ["slack", "sns"])
def test_a_broken_channel_fails_loudly_by_name_and_the_other_still_delivers(moto, sink, conns, topic, broken):
    arn, read = topic
    if broken == "slack":
        sink.responses[f"/services/{TOKEN}"] = (404, "invalid_token")  # what Slack answers a revoked webhook
    else:
        arn = arn.rsplit(":", 1)[0] + ":no-such-topic"
    notice = _alert_as_the_pipeline_builds_it(_store_day(moto))
    with pytest.raises(channels.ChannelDeliveryError) as err:
        channels.deliver_alert(Channels("slack_alerts", arn), notice)
    message = str(err.value)
    assert f"not delivered to {broken} (" in message
    assert ("invalid_token" in message and "'slack_alerts'" in message) if broken == "slack" else "NotFound" in message
    assert TOKEN not in message  # the webhook token is a secret
    if broken == "slack":
        assert json.loads(read()[0]["Message"])["hosts_newly_failing"] == NEWLY_FAILING
    else:
        assert _slack_bodies(sink)[0]["blocks"][0]["text"]["text"] == SUBJECT


@pytest.mark.parametrize("shape", ["token URL in the password", "schema + host:port"])
def test_the_provider_builds_the_webhook_url_from_either_connection_shape(sink, monkeypatch, shape):
    conn = ({"password": f"http://127.0.0.1:{sink.port}/services/{TOKEN}"} if shape.startswith("token")
            else {"schema": "http", "host": f"127.0.0.1:{sink.port}/services", "password": TOKEN})
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_OTHER", json.dumps({"conn_type": "slackwebhook", **conn}))
    channels.deliver_failure(Channels("slack_other"), _failed_task())
    assert [r["path"] for r in sink.requests()] == [f"/services/{TOKEN}"]
