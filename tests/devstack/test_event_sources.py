"""The local stack's event sources for the watch (devstack/stack/events.py, devstack/standins/aws/logs.py's
subscription delivery) against a real moto server over HTTP: what reaches the events queue is what AWS sends.

Server-starting: run under `flock /tmp/itest.lock`."""
from __future__ import annotations

import base64
import gzip
import json
import time

import boto3
import pytest

from devstack.stack import events, local_aws
from devstack.standins.aws.logs import pattern_matches, subscription_payload
from devstack.standins.hosts.host_states import AUDIT_GROUP

REGION = "us-east-1"
HANDLER = events.FORWARDER  # the forwarder Lambda's own code (deploy/forwarder/handler.py)
DAEMON_END = ("type=DAEMON_END msg=audit(1764000000.123:812): op=terminate auid=0 uid=0 ses=4294967295 pid=1 "
              "res=success")
NOW_MS = int(time.time() // 1 * 1000)  # CloudWatch Logs takes events of the last 14 days only


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_aws.moto(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint, events.set_up(endpoint, REGION, HANDLER)


def _logs(endpoint):
    return boto3.client("logs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_the_queue_has_its_dead_letter_queue(stack):
    endpoint, made = stack
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=made.queue_url, AttributeNames=["RedrivePolicy"])
                         ["Attributes"]["RedrivePolicy"])
    assert made.queue_url.endswith("/" + events.QUEUE_NAME)
    assert redrive == {"deadLetterTargetArn": made.dlq_arn, "maxReceiveCount": 5}


def test_a_running_state_change_reaches_the_queue_as_aws_documents_it(stack):
    endpoint, made = stack
    events.put_state_change(endpoint, "i-0stopped00000001", REGION, "123456789012", state="stopped")
    events.put_state_change(endpoint, "i-0launched0000001", REGION, "123456789012")
    [message] = events.receive(endpoint, made.queue_url)  # the stopped one, had it matched, came first
    body = json.loads(message["Body"])
    assert (body["source"], body["detail-type"], body["detail"]) == (
        "aws.ec2", "EC2 Instance State-change Notification", {"instance-id": "i-0launched0000001", "state": "running"})
    assert body["resources"] == ["arn:aws:ec2:us-east-1:123456789012:instance/i-0launched0000001"]
    assert body["region"] == REGION and body["version"] == "0" and body["time"].endswith("Z")
    assert body["account"] == "123456789012"  # AWS always names it; moto's default template left it out


def test_a_matching_audit_record_reaches_the_queue_in_the_subscription_payload(stack):
    endpoint, made = stack
    logs = _logs(endpoint)
    for stream in ("i-0quiet0000000001", "i-0tampered000001"):
        logs.create_log_stream(logGroupName=AUDIT_GROUP, logStreamName=stream)
    # Not matching the pattern: never delivered (deliveries run in order, so it would have come first).
    logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName="i-0quiet0000000001", logEvents=[
        {"timestamp": NOW_MS, "message": "type=USER_LOGIN msg=audit(1764000000.000:1): pid=1 uid=0 res=success"}])
    logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName="i-0tampered000001", logEvents=[
        {"timestamp": NOW_MS + 1, "message": DAEMON_END},
        {"timestamp": NOW_MS + 2, "message": "type=SYSCALL msg=audit(1764000000.124:813): arch=c000003e"}])
    [message] = events.receive(endpoint, made.queue_url)
    body = json.loads(message["Body"])
    assert set(body) == {"awslogs", "region"} and body["region"] == REGION
    data = json.loads(gzip.decompress(base64.b64decode(body["awslogs"]["data"])))
    [event] = data.pop("logEvents")
    assert data == {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": AUDIT_GROUP,
                    "logStream": "i-0tampered000001", "subscriptionFilters": [events.SUBSCRIPTION_NAME]}
    assert (event["timestamp"], event["message"]) == (NOW_MS + 1, DAEMON_END) and event["id"]


def test_the_payload_is_what_cloudwatch_logs_hands_a_lambda():
    payload = subscription_payload("123456789012", "/g", "s", "f", [{"id": "1", "timestamp": 5, "message": "m"}])
    assert list(payload) == ["awslogs"] and list(payload["awslogs"]) == ["data"]
    assert json.loads(gzip.decompress(base64.b64decode(payload["awslogs"]["data"]))) == {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/g", "logStream": "s",
        "subscriptionFilters": ["f"], "logEvents": [{"id": "1", "timestamp": 5, "message": "m"}]}


@pytest.mark.parametrize(("pattern", "message", "matches"), [
    (events.filter_pattern(), DAEMON_END, True),
    (events.filter_pattern(), 'type=CONFIG_CHANGE msg=audit(1.0:2): auid=0 ses=3 op=remove_rule key="x" list=4 res=1', True),
    (events.filter_pattern(), "type=CONFIG_CHANGE msg=audit(1.0:3): op=set audit_enabled=0 old=1 auid=0 ses=3 res=1", True),
    (events.filter_pattern(), "type=USER_LOGIN msg=audit(1.0:4): pid=1 uid=0 res=success", False),
    ("", "anything", True),
    ('"a" b', "a c", False),
    ('"a" b -c', "a b", True),
    ('"a" b -c', "a b c", False),
])
def test_the_stand_in_matcher_reads_term_patterns_as_aws(pattern, message, matches):
    assert pattern_matches(pattern, message) is matches
