"""The local stack's event sources for the watch (CONTRACT "Security events and checks between runs").

On a moto server it builds what deploy/ builds on AWS: the events queue `ec2-audit-events` with its dead-letter
queue (redrive after 5 receives), the EventBridge rule on the default bus that sends "EC2 Instance State-change
Notification" (state running) to the queue, the forwarder Lambda (deploy/forwarder/handler.py, zipped as AWS
would run it; devstack/standins/aws/logs.py runs it for each subscription delivery) and the subscription filter
of the audit log group that feeds it. moto's EC2 emits no state changes: `put_state_change` puts exactly the
event AWS documents.

    events = set_up(endpoint)                    # once per moto server
    put_state_change(endpoint, "i-0abc", "us-east-1", "123456789012")
    receive(endpoint, events.queue_url)          # what the watch would read
"""
from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import boto3

from devstack.procs import PROJECT
from devstack.standins.hosts.host_states import AUDIT_GROUP

QUEUE_NAME = "ec2-audit-events"
DLQ_NAME = "ec2-audit-events-dlq"
MAX_RECEIVE_COUNT = 5
RULE_NAME = "ec2-audit-instance-running"
STATE_CHANGE = "EC2 Instance State-change Notification"
RULE_PATTERN = {"source": ["aws.ec2"], "detail-type": [STATE_CHANGE], "detail": {"state": ["running"]}}
FORWARDER_NAME = "ec2-audit-forwarder"
FORWARDER = PROJECT / "deploy" / "forwarder" / "handler.py"
SUBSCRIPTION_NAME = "ec2-audit-tamper"
DEFAULT_ACCOUNT = "123456789012"  # moto's account for the "testing" credentials


def filter_pattern() -> str:
    """The audit group's subscription filter pattern: the product's own (include.watch.tamper.FILTER_PATTERN)."""
    from include.watch.tamper import FILTER_PATTERN

    return FILTER_PATTERN


@dataclass(frozen=True)
class Events:
    """What set_up created (URLs and ARNs in the moto server's default account)."""

    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    rule_arn: str
    forwarder_arn: str = ""  # "" when no forwarder was created (no handler file)
    subscribed_groups: tuple[str, ...] = ()


def _client(service: str, endpoint: str, region: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def create_queue(endpoint: str, region: str) -> tuple[str, str, str, str]:
    """The events queue and its DLQ: (queue url, queue arn, dlq url, dlq arn). Idempotent."""
    sqs = _client("sqs", endpoint, region)
    dlq_url = sqs.create_queue(QueueName=DLQ_NAME, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME, Attributes={
        "VisibilityTimeout": "300",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # What AWS needs for EventBridge to send to the queue (moto does not check it; deploy/ must have it).
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn}]})})
    return queue_url, queue_arn, dlq_url, dlq_arn


def route_state_changes(endpoint: str, region: str, queue_arn: str) -> str:
    """The EventBridge rule on the default bus: instance state `running` → the queue. Returns the rule ARN."""
    events = _client("events", endpoint, region)
    arn = events.put_rule(Name=RULE_NAME, EventPattern=json.dumps(RULE_PATTERN), State="ENABLED")["RuleArn"]
    events.put_targets(Rule=RULE_NAME, Targets=[{"Id": "ec2-audit-events", "Arn": queue_arn}])
    return arn


def forwarder_zip(handler_file: Path) -> bytes:
    """The Lambda deployment package: the handler file alone, as `handler.py` (stdlib + boto3 only)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("handler.py", Path(handler_file).read_text())
    return buffer.getvalue()


def create_forwarder(endpoint: str, region: str, queue_url: str, handler_file: Path = FORWARDER,
                     groups: tuple[str, ...] = (AUDIT_GROUP,)) -> str:
    """The forwarder Lambda in moto (its role, its code, env EVENTS_QUEUE_URL and AUDIT_LOG_GROUPS as
    deploy/event-sources.yaml sets them). Returns the function ARN."""
    iam = _client("iam", endpoint, region)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    try:
        role_arn = iam.create_role(RoleName=FORWARDER_NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role_arn = iam.get_role(RoleName=FORWARDER_NAME)["Role"]["Arn"]
    lam = _client("lambda", endpoint, region)
    try:
        return lam.create_function(FunctionName=FORWARDER_NAME, Runtime="python3.12", Role=role_arn,
                                   Handler="handler.handler", Code={"ZipFile": forwarder_zip(handler_file)},
                                   Timeout=30, Environment={"Variables": {"EVENTS_QUEUE_URL": queue_url,
                                                                      "AUDIT_LOG_GROUPS": ",".join(groups)}})["FunctionArn"]
    except lam.exceptions.ResourceConflictException:
        return lam.get_function(FunctionName=FORWARDER_NAME)["Configuration"]["FunctionArn"]


def subscribe(endpoint: str, region: str, forwarder_arn: str, group: str = AUDIT_GROUP,
              pattern: str | None = None) -> None:
    """The group's subscription filter to the forwarder (creates the group if missing)."""
    logs = _client("logs", endpoint, region)
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.put_subscription_filter(logGroupName=group, filterName=SUBSCRIPTION_NAME,
                                 filterPattern=filter_pattern() if pattern is None else pattern,
                                 destinationArn=forwarder_arn)


def set_up(endpoint: str, region: str = "us-east-1", handler_file: Path | None = FORWARDER,
           groups: tuple[str, ...] = (AUDIT_GROUP,)) -> Events:
    """Everything above on one moto server. handler_file None: no forwarder, no subscription (a file named but
    missing is an error, never a stack quietly without its tamper path)."""
    queue_url, queue_arn, dlq_url, dlq_arn = create_queue(endpoint, region)
    rule_arn = route_state_changes(endpoint, region, queue_arn)
    forwarder_arn = ""
    if handler_file is not None:
        forwarder_arn = create_forwarder(endpoint, region, queue_url, Path(handler_file), groups)
        for group in groups:
            subscribe(endpoint, region, forwarder_arn, group)
    return Events(queue_url, queue_arn, dlq_url, dlq_arn, rule_arn, forwarder_arn,
                  tuple(groups) if forwarder_arn else ())


def instance_arn(instance_id: str, region: str, account: str) -> str:
    return f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"


def state_change_entry(instance_id: str, region: str, account: str, state: str = "running",
                       at: datetime | None = None) -> dict:
    """The PutEvents entry of the event AWS sends for an instance state change (EventBridge "EC2 Instance
    State-change Notification": detail {"instance-id", "state"}, resources [the instance ARN])."""
    return {"Source": "aws.ec2", "DetailType": STATE_CHANGE,
            "Detail": json.dumps({"instance-id": instance_id, "state": state}),
            "Resources": [instance_arn(instance_id, region, account)],
            "Time": at or datetime.now(timezone.utc)}


def put_state_change(endpoint: str, instance_id: str, region: str = "us-east-1", account: str = DEFAULT_ACCOUNT,
                     state: str = "running", at: datetime | None = None) -> str:
    """Put the state-change event on the default bus of `region` (as AWS does when the instance changes
    state). The envelope's `account` is the moto server's default account (the bus owner); `account` names
    the instance in `resources`. Returns the EventId."""
    answer = _client("events", endpoint, region).put_events(
        Entries=[state_change_entry(instance_id, region, account, state, at)])
    entry = answer["Entries"][0]
    if "EventId" not in entry:
        raise RuntimeError(f"PutEvents refused the state change: {entry}")
    return entry["EventId"]


def receive(endpoint: str, queue_url: str, region: str = "us-east-1", *, expect: int = 1,
            timeout_s: float = 20, delete: bool = True) -> list[dict]:
    """Messages from the queue until `expect` arrived or `timeout_s` passed (test helper; deletes them unless
    told not to). expect=0 reads what arrives within timeout_s."""
    sqs = _client("sqs", endpoint, region)
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (expect == 0 or len(got) < expect):
        wait = max(0, min(1, int(deadline - time.monotonic())))
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                    AttributeNames=["All"]).get("Messages", [])
        for message in batch:
            got.append(message)
            if delete:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if not batch and wait == 0:
            time.sleep(0.2)
    return got
