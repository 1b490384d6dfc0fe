"""Messages on the events queue → WatchEvents and Rejecteds (include/watch/messages.py)."""
from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from include.watch.messages import MAX_DECOMPRESSED, MAX_LOG_EVENTS, bodies_from_asset_events, bodies_from_conf, read
from include.watch.records import DAEMON_STOPPED, LAUNCH, RULES_DELETED, SILENCE, TAMPER
from include.watch.sweep import silence_message

FIXTURES = Path(__file__).parent / "fixtures"
REMOVE_RULE = "type=CONFIG_CHANGE msg=audit(1732526500.001:6001): auid=1000 ses=3 op=remove_rule key=(null) list=4 res=1"
DAEMON_END = "type=DAEMON_END msg=audit(1732526400.123:5390): op=terminate auid=0 uid=0 ses=4294967295 pid=1 res=success"
ID = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"


def ec2(state="running", **over):
    event = json.loads((FIXTURES / "ec2_state_pending.json").read_text())  # the AWS documentation's example
    event["detail"]["state"] = state
    event.update(over)
    return event


def logs_data(log_events, group="/ec2/audit", stream=ID, owner="111122223333", kind="DATA_MESSAGE") -> str:
    payload = {"messageType": kind, "owner": owner, "logGroup": group, "logStream": stream,
               "subscriptionFilters": ["ec2-audit-tamper"], "logEvents": log_events}
    return base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()


def logs_body(messages, region="eu-west-1", **kw) -> dict:
    events = [{"id": str(n), "timestamp": 1732526400000 + n, "message": m} for n, m in enumerate(messages)]
    body = {"awslogs": {"data": logs_data(events, **kw)}}
    if region:
        body["region"] = region
    return body


def test_documented_ec2_running_is_a_launch():
    events, rejected = read(json.dumps(ec2()), default_region="us-west-2", message_id="m-1")
    assert rejected == []
    [event] = events
    assert (event.trigger, event.instance_id, event.region, event.account, event.at, event.message_id) == (
        LAUNCH, "i-1234567890abcdef0", "us-east-1", "123456789012", "2021-11-11T21:29:54Z", "m-1")


@pytest.mark.parametrize("state", ["pending", "stopping", "stopped", "shutting-down", "terminated"])
def test_other_states_are_ignored_not_alarmed(state):
    events, [rejected] = read(ec2(state), default_region="us-east-1")
    assert events == [] and rejected.ignored and rejected.reason == f"state {state}: not a launch"


def test_documented_lambda_logs_event_has_no_tamper_record():
    body = json.loads((FIXTURES / "cloudwatch_logs_lambda_event.json").read_text())
    events, [rejected] = read(body, default_region="us-east-2")
    assert events == [] and rejected.ignored and rejected.reason.startswith("2 log events not tamper")


def test_tamper_records_become_events_for_the_stream_named_host():
    events, rejected = read(logs_body([REMOVE_RULE, "type=SYSCALL msg=audit(1:2): syscall=59", DAEMON_END]),
                            default_region="us-east-1", message_id="m-2")
    assert [(e.trigger, e.tamper, e.instance_id, e.region, e.account) for e in events] == [
        (TAMPER, RULES_DELETED, ID, "eu-west-1", "111122223333"),
        (TAMPER, DAEMON_STOPPED, ID, "eu-west-1", "111122223333")]
    assert events[0].record == REMOVE_RULE and events[0].at == "2024-11-25T09:20:00Z"
    assert (events[0].log_group, events[0].log_stream, events[0].message_id) == ("/ec2/audit", ID, "m-2")
    assert [r.reason for r in rejected] == [f"1 log events not tamper (/ec2/audit {ID})"]


def test_without_region_the_default_region():
    [event], _ = read(logs_body([DAEMON_END], region=None), default_region="ap-south-1")
    assert event.region == "ap-south-1"


def test_stream_not_named_by_id_leaves_the_owner_to_prove():
    [event], _ = read(logs_body([DAEMON_END], stream="web-1.example.com"), default_region="us-east-1")
    assert event.instance_id == ""
    [event], _ = read(logs_body([DAEMON_END], group=f"/ec2/{ID}/audit", stream="audit.log"),
                      default_region="us-east-1")
    assert event.instance_id == ID


def test_record_text_never_names_another_host():
    forged = f"type=CONFIG_CHANGE msg=audit(1:1): op=remove_rule key=\"{OTHER}\" instance-id={OTHER} {OTHER}"
    [event], _ = read(logs_body([forged], stream="web-1"), default_region="us-east-1")
    assert event.instance_id == ""  # not OTHER: plan.fold proves who owns stream web-1
    [event], _ = read(logs_body([forged]), default_region="us-east-1")
    assert event.instance_id == ID
    # A user message pretending to be a tamper record is no event at all.
    user = f"type=USER msg=audit(1:1): pid=1 uid=1000 msg='type=DAEMON_END {OTHER}'"
    assert read(logs_body([user]), default_region="us-east-1")[0] == []


def test_stream_naming_two_ids_is_not_attributed():
    [event], _ = read(logs_body([DAEMON_END], stream=f"{ID}-{OTHER}"), default_region="us-east-1")
    assert event.instance_id == ""


def test_record_capped():
    long = REMOVE_RULE + " x=" + "a" * 5000
    [event], _ = read(logs_body([long]), default_region="us-east-1")
    assert len(event.record) == 1000


def test_control_message_dropped():
    events, [rejected] = read(logs_body([], kind="CONTROL_MESSAGE", owner="CloudwatchLogs"),
                              default_region="us-east-1")
    assert events == [] and rejected.ignored and rejected.reason == "control message: dropped"


def test_sweep_message_reads_back():
    from datetime import datetime, timezone
    msg = silence_message(instance_id=ID, region="us-east-1", account="111122223333", log_group="/ec2/audit",
                          log_stream=ID, last_event_ms=1732520000000, now=datetime(2024, 11, 25, 10, tzinfo=timezone.utc))
    [event], rejected = read(json.dumps(msg), default_region="eu-west-1", message_id="s-1")
    assert rejected == []
    assert (event.trigger, event.instance_id, event.region, event.at, event.log_stream, event.source) == (
        SILENCE, ID, "us-east-1", "2024-11-25T10:00:00Z", ID, "sweep")


def test_sqs_message_dict_read_as_its_body():
    [event], _ = read({"MessageId": "abc", "ReceiptHandle": "rh", "Body": json.dumps(ec2())},
                      default_region="us-east-1")
    assert event.message_id == "abc"


def _bomb() -> str:
    return base64.b64encode(gzip.compress(b"[" + b" " * (MAX_DECOMPRESSED + 10) + b"]")).decode()


@pytest.mark.parametrize("body,reason", [
    ("not json {", "not JSON"),
    ("[1, 2]", "JSON list, not an object"),
    ("42", "JSON int, not an object"),
    ({"source": "aws.s3", "detail-type": "Object Created"}, "foreign: source aws.s3"),
    ({"hello": 1}, "foreign: no source"),
    (ec2(**{"detail-type": "EC2 Spot Instance Interruption Warning"}), "foreign: aws.ec2 detail-type"),
    (ec2(detail={"state": "running"}), "bad instance id"),
    (ec2(detail={"instance-id": "i-XYZ", "state": "running"}), "bad instance id"),
    (ec2(detail={"instance-id": "i-0123456789abcdef0123", "state": "running"}), "bad instance id"),
    (ec2(detail={"instance-id": "i-0123456789abcdef0; i-1"}), "bad instance id"),
    (ec2(time="yesterday"), "bad time"),
    (ec2(region="../etc"), "bad region"),
    (ec2(account="me"), "bad account"),
    ({"awslogs": {"data": "!!!not base64!!!"}}, "awslogs.data: bad base64"),
    ({"awslogs": {"data": base64.b64encode(b"plain text").decode()}}, "awslogs.data: bad gzip"),
    ({"awslogs": {"data": base64.b64encode(gzip.compress(b"{nope")).decode()}}, "awslogs.data: not JSON"),
    ({"awslogs": {"data": base64.b64encode(gzip.compress(b"[]")).decode()}}, "awslogs.data: JSON not an object"),
    ({"awslogs": {"data": base64.b64encode(gzip.compress(b'{"a":1}')[:-6]).decode()}}, "bad gzip"),
    ({"awslogs": {}}, "missing field awslogs.data"),
    ({"awslogs": "x"}, "awslogs not an object"),
    ({"awslogs": {"data": logs_data([], owner="x")}}, "bad owner"),
    ({"awslogs": {"data": logs_data([], kind="OTHER")}}, "messageType"),
    ({"awslogs": {"data": logs_data([], group="")}}, "missing field logGroup"),
    ({"source": "ec2-audit.sweep", "detail-type": "Audit stream silent", "region": "us-east-1",
      "time": "2024-11-25T10:00:00Z", "detail": {"instance-id": ID}}, "missing field detail.log-group"),
    ({"from_trigger": True, "payload": {"status": "error"}}, "asset event extra"),
])
def test_junk_is_rejected_with_a_reason(body, reason):
    events, [rejected] = read(body, default_region="us-east-1", message_id="j")
    assert events == [] and reason in rejected.reason and not rejected.ignored
    assert rejected.message_id == "j" and len(rejected.excerpt) <= 201


def test_gzip_bomb_rejected():
    events, [rejected] = read({"awslogs": {"data": _bomb()}}, default_region="us-east-1")
    assert events == [] and "decompresses past" in rejected.reason


def test_log_events_past_the_cap_rejected_not_read():
    events = [{"id": str(n), "timestamp": 1732526400000, "message": DAEMON_END} for n in range(MAX_LOG_EVENTS + 3)]
    found, rejected = read({"awslogs": {"data": logs_data(events)}}, default_region="us-east-1")
    assert len(found) == MAX_LOG_EVENTS
    assert [r.reason for r in rejected] == [f"3 log events past the cap of {MAX_LOG_EVENTS} not read (/ec2/audit {ID})"]


def test_bad_log_events_rejected_one_by_one():
    events = [{"id": "1", "timestamp": "soon", "message": DAEMON_END}, {"id": "2", "timestamp": 1},
              "junk", {"id": "3", "timestamp": 1732526400000, "message": DAEMON_END}]
    found, rejected = read({"awslogs": {"data": logs_data(events)}}, default_region="us-east-1")
    assert len(found) == 1 and len(rejected) == 3


@pytest.mark.parametrize("body", [None, 3.5, b"\xff\xfe", "x" * (3 * 1024 * 1024), {"Body": None, "MessageId": "1"},
                                  {"source": ["aws.ec2"]}, {"awslogs": {"data": 7}}])
def test_never_raises(body):
    events, rejected = read(body, default_region="us-east-1")
    assert events == [] and len(rejected) == 1


def test_bodies_from_asset_events():
    extras = [{"from_trigger": True, "payload": {"status": "success", "message_batch": [
        {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{\"a\": 1}"},
        {"MessageId": "m2", "ReceiptHandle": "r2", "Body": json.dumps(ec2())}]}},
        {"from_trigger": True, "payload": {"status": "error", "message": "boom"}}]
    bodies = bodies_from_asset_events(extras)
    assert [(b, m) for b, m in bodies[:2]] == [("{\"a\": 1}", "m1"), (json.dumps(ec2()), "m2")]
    assert bodies[2] == (extras[1], "")
    assert "asset event extra" in read(bodies[2][0], default_region="us-east-1")[1][0].reason


def test_bodies_from_conf_replays():
    conf = {"events": [ec2(), json.dumps(ec2("stopped"))], "recipients": ["a@example.com"]}
    bodies = bodies_from_conf(conf)
    assert [m for _, m in bodies] == ["replay-1", "replay-2"]
    [event], _ = read(bodies[0][0], default_region="us-east-1", message_id=bodies[0][1])
    assert event.source == "replay" and event.message_id == "replay-1"
    assert bodies_from_conf({}) == [] and bodies_from_conf(None) == []
