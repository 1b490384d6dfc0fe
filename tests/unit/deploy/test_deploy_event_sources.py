"""deploy/: the CloudFormation templates lint clean and agree with the code; the forwarder Lambda's handler."""
from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from include.watch.messages import read
from include.watch.records import DAEMON_STOPPED, RULES_DELETED
from include.watch.tamper import FILTER_PATTERN

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
CFN_LINT = "/work/main/.venv/bin/cfn-lint"
ID = "i-0123456789abcdef0"
REMOVE_RULE = "type=CONFIG_CHANGE msg=audit(1732526500.001:6001): auid=1000 ses=3 op=remove_rule key=(null) list=4 res=1"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub...) read as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node)))


def template(name: str) -> dict:
    return yaml.load((DEPLOY / name).read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def load_handler(name="forwarder_handler_under_test"):
    spec = importlib.util.spec_from_file_location(name, DEPLOY / "forwarder" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_templates_pass_cfn_lint():
    if not Path(CFN_LINT).exists():
        pytest.skip("cfn-lint not in the shared venv")
    done = subprocess.run([CFN_LINT, *sorted(str(p) for p in DEPLOY.glob("*.yaml"))], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_inline_forwarder_code_is_the_handler_file():
    code = template("event-sources.yaml")["Resources"]["Forwarder"]["Properties"]["Code"]["ZipFile"]
    handler = (DEPLOY / "forwarder" / "handler.py").read_text()
    assert code == handler, "run: python deploy/forwarder/sync_template.py"
    assert len(handler) <= 4096  # CloudFormation's limit on inline ZipFile code


def test_subscription_filter_pattern_is_the_tamper_pattern():
    tpl = template("event-sources.yaml")
    assert tpl["Parameters"]["FilterPattern"]["Default"] == FILTER_PATTERN
    loop = tpl["Resources"]["Fn::ForEach::AuditLogGroup"]
    [(_, sub)] = loop[2].items()
    assert sub["Type"] == "AWS::Logs::SubscriptionFilter" and sub["Properties"]["FilterPattern"] == "FilterPattern"


def test_launch_rule_matches_running_state_changes_to_the_queue():
    rule = template("event-sources.yaml")["Resources"]["LaunchRule"]["Properties"]
    assert rule["EventPattern"] == {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"],
                                    "detail": {"state": ["running"]}}
    [target] = rule["Targets"]
    assert target["Arn"] == "EventsQueueArn" and "DeadLetterConfig" in target


def test_queue_has_sse_and_a_dead_letter_queue():
    res = template("events-queue.yaml")["Resources"]
    queue = res["EventsQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and res["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == "DeadLetterQueue.Arn"


# --- the handler, with a fake SQS client -------------------------------------------------------------------
class FakeSqs:
    def __init__(self):
        self.sent: list[dict] = []

    def send_message(self, **kwargs):
        self.sent.append(kwargs)
        return {"MessageId": str(len(self.sent))}


def delivery(messages, group="/ec2/audit", stream=ID, kind="DATA_MESSAGE") -> dict:
    payload = {"messageType": kind, "owner": "111122223333", "logGroup": group, "logStream": stream,
               "subscriptionFilters": ["ec2-audit-tamper"],
               "logEvents": [{"id": str(n), "timestamp": 1732526400000 + n, "message": m}
                             for n, m in enumerate(messages)]}
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


@pytest.fixture
def forwarder(monkeypatch):
    monkeypatch.setenv("EVENTS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/999988887777/ec2-audit-events")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AUDIT_LOG_GROUPS", "/ec2/audit,/other/audit")
    module = load_handler()
    module.SQS = FakeSqs()
    return module


def test_forwards_the_delivery_unchanged_with_its_region(forwarder):
    event = delivery([REMOVE_RULE])
    assert forwarder.handler(event, None) == {"control": 0, "events": 1, "messages": 1}
    [sent] = forwarder.SQS.sent
    assert sent["QueueUrl"].endswith("/ec2-audit-events")
    assert json.loads(sent["MessageBody"]) == {"awslogs": {"data": event["awslogs"]["data"]}, "region": "eu-west-1"}
    [found], _ = read(sent["MessageBody"], default_region="us-east-1")
    assert (found.tamper, found.instance_id, found.region) == (RULES_DELETED, ID, "eu-west-1")


def test_control_message_and_foreign_group_not_sent(forwarder):
    assert forwarder.handler(delivery([], kind="CONTROL_MESSAGE"), None)["control"] == 1
    assert forwarder.handler(delivery([REMOVE_RULE], group="/aws/lambda/x"), None)["foreign"] == 1
    assert forwarder.SQS.sent == []


def test_big_delivery_split_into_bodies_that_fit(forwarder):
    # Random-looking records (no two alike) so gzip cannot shrink the delivery under 256 KiB.
    records = [f"type=DAEMON_END msg=audit(1732526400.{n:03d}:{n}): op=terminate auid=0 pid={n} x="
               + base64.b64encode(n.to_bytes(4, "big") * 90).decode() + f"{n * 7919:x}" for n in range(3000)]
    records = [r + base64.b64encode(bytes((n * k) % 251 for k in range(300))).decode() for n, r in enumerate(records)]
    result = forwarder.handler(delivery(records), None)
    assert result["messages"] > 1 and result["events"] == 3000
    bodies = [s["MessageBody"] for s in forwarder.SQS.sent]
    assert all(len(b.encode()) <= 256 * 1024 for b in bodies)
    events = [e for b in bodies for e in read(b, default_region="us-east-1")[0]]
    assert len(events) == 3000 and {e.tamper for e in events} == {DAEMON_STOPPED}


def test_missing_queue_url_fails_loudly(forwarder, monkeypatch):
    monkeypatch.delenv("EVENTS_QUEUE_URL")
    with pytest.raises(KeyError):
        forwarder.handler(delivery([REMOVE_RULE]), None)
