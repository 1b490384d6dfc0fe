"""Sends CloudWatch Logs subscription deliveries of the audit log groups on to the ec2-audit events queue.

Stdlib + boto3 only: it runs in Lambda (python3.12), not with the project's package. deploy/event-sources.yaml
inlines this file as the function's code (tests/unit/deploy keeps the two equal). Env: EVENTS_QUEUE_URL,
AUDIT_LOG_GROUPS (comma-separated; a delivery from any other group is dropped: the invoke permission is for
the account's log groups), and AWS_REGION (Lambda sets it). The body is the delivery unchanged plus "region":
{"awslogs": {"data": "<base64 of gzip'd JSON>"}, "region": "<this region>"}; the watch reads it
(include/watch/messages.py). A failure raises: CloudWatch Logs invokes asynchronously, so Lambda retries, then
hands the delivery to the function's dead-letter queue.
"""
import base64
import gzip
import json
import os

import boto3

# An SQS message body is at most 256 KiB (the queue is made with that limit): a bigger delivery is split into
# several payloads of the same shape, each re-encoded with a part of its logEvents.
MAX_BODY = 256 * 1024
CUT = 65536  # one log event alone over the limit: its message is cut (the watch reads 1,000 characters)
SQS = None


def _client():
    global SQS
    if SQS is None:
        SQS = boto3.client("sqs")
    return SQS


def _body(data, region):
    return json.dumps({"awslogs": {"data": data}, "region": region})


def _fits(body):
    return len(body.encode()) <= MAX_BODY


def _split(payload, region):
    """Bodies that fit, halving logEvents until each does."""
    data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
    body = _body(data, region)
    events = payload["logEvents"]
    if _fits(body) or not events:
        return [body]
    if len(events) == 1:
        event = dict(events[0], message=str(events[0].get("message", ""))[:CUT])
        if event == events[0]:
            raise ValueError("one log event over the SQS limit after the cut")
        return _split(dict(payload, logEvents=[event]), region)
    half = len(events) // 2
    return (_split(dict(payload, logEvents=events[:half]), region)
            + _split(dict(payload, logEvents=events[half:]), region))


def handler(event, context):
    data = event["awslogs"]["data"]
    payload = json.loads(gzip.decompress(base64.b64decode(data)))
    if payload.get("messageType") == "CONTROL_MESSAGE":  # CloudWatch Logs checking the destination
        return {"control": 1, "events": 0, "messages": 0}
    if payload.get("logGroup") not in os.environ["AUDIT_LOG_GROUPS"].split(","):
        return {"control": 0, "foreign": 1, "events": 0, "messages": 0}
    region = os.environ["AWS_REGION"]
    body = _body(data, region)
    bodies = [body] if _fits(body) else _split(payload, region)
    for one in bodies:
        _client().send_message(QueueUrl=os.environ["EVENTS_QUEUE_URL"], MessageBody=one)
    return {"control": 0, "events": len(payload.get("logEvents", [])), "messages": len(bodies)}
