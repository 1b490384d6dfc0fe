"""The forwarder Lambda's handler (deploy/forwarder/handler.py) against a real moto server's SQS over HTTP: what
it sends is what the watch reads back (include/watch/messages.py)."""
from __future__ import annotations

import base64
import gzip
import importlib.util
import json
from pathlib import Path

import boto3

from include.watch.messages import bodies_from_asset_events, read
from include.watch.plan import fold
from include.watch.records import RULES_DELETED, TAMPER

HANDLER = Path(__file__).resolve().parents[3] / "deploy" / "forwarder" / "handler.py"
ID = "i-0123456789abcdef0"
REMOVE_RULE = "type=CONFIG_CHANGE msg=audit(1732526500.001:6001): auid=1000 ses=3 op=remove_rule key=(null) list=4 res=1"


def test_forwarder_sends_to_a_real_queue_and_the_watch_reads_it(moto, monkeypatch):
    sqs = boto3.client("sqs", endpoint_url=moto, region_name="eu-west-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    url = sqs.create_queue(QueueName="ec2-audit-events-fwd")["QueueUrl"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)  # boto3 in the handler reads it, as Lambda's reads its own
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("EVENTS_QUEUE_URL", url)
    monkeypatch.setenv("AUDIT_LOG_GROUPS", "/ec2/audit")
    spec = importlib.util.spec_from_file_location("forwarder_handler_itest", HANDLER)
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)

    payload = {"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "/ec2/audit", "logStream": ID,
               "subscriptionFilters": ["ec2-audit-tamper"],
               "logEvents": [{"id": str(n), "timestamp": 1732526500001 + n,
                              "message": REMOVE_RULE.replace(":6001)", f":{6001 + n})")}
                             for n in range(200)]}
    event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}
    assert handler.handler(event, None) == {"control": 0, "events": 200, "messages": 1}

    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    extras = [{"from_trigger": True, "payload": {"status": "success", "message_batch": got}}]
    events = []
    for body, message_id in bodies_from_asset_events(extras):
        found, rejected = read(body, default_region="us-east-1", message_id=message_id)
        assert rejected == []
        events += found
    assert len(events) == 200 and {(e.region, e.instance_id, e.tamper) for e in events} == {
        ("eu-west-1", ID, RULES_DELETED)}
    [recheck], _ = fold(events, lambda e: [], launch_grace_minutes=10)
    assert (recheck.instance_id, recheck.trigger, recheck.events, recheck.tamper) == (ID, TAMPER, 200, [RULES_DELETED])
    assert recheck.records[0] == REMOVE_RULE and len(recheck.records) == 5
