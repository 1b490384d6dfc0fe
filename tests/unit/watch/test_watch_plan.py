"""A run's events fold into one Recheck per host (include/watch/plan.py)."""
from __future__ import annotations

import random

from include.watch.plan import fold
from include.watch.records import (
    AUDIT_DISABLED,
    CONFIG_CHANGED,
    DAEMON_STOPPED,
    LAUNCH,
    RULES_DELETED,
    SILENCE,
    TAMPER,
    WatchEvent,
)

A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


def ev(trigger=TAMPER, instance_id=A, at="2024-11-25T10:00:00Z", tamper="", record="", mid="m", **kw):
    if trigger == TAMPER and not tamper:
        tamper = DAEMON_STOPPED
    return WatchEvent(trigger=trigger, region=kw.pop("region", "us-east-1"), at=at, instance_id=instance_id,
                      tamper=tamper, record=record or f"{tamper or trigger} {at}", message_id=mid, **kw)


def nobody(event):
    raise AssertionError("owners asked for an event naming its instance")


def test_burst_of_a_thousand_records_is_one_recheck():
    events = [ev(at=f"2024-11-25T10:{n // 60:02d}:{n % 60:02d}Z", mid=f"m{n // 10}",
                 record=f"type=DAEMON_END msg=audit(1:{n}): op=terminate") for n in range(1000)]
    [recheck], rejected = fold(events, nobody, launch_grace_minutes=10)
    assert rejected == []
    assert (recheck.instance_id, recheck.trigger, recheck.events, recheck.first_at) == (A, TAMPER, 1000,
                                                                                      "2024-11-25T10:00:00Z")
    assert recheck.tamper == [DAEMON_STOPPED] and len(recheck.records) == 5 and recheck.not_before == ""


def test_most_serious_trigger_and_kinds_in_order():
    events = [ev(LAUNCH, at="2024-11-25T09:00:00Z"), ev(SILENCE, at="2024-11-25T09:30:00Z"),
              ev(tamper=CONFIG_CHANGED, record="cc"), ev(tamper=RULES_DELETED, record="rd", at="2024-11-25T11:00:00Z")]
    [recheck], _ = fold(events, nobody, launch_grace_minutes=10)
    assert recheck.trigger == TAMPER and recheck.first_at == "2024-11-25T09:00:00Z"
    assert recheck.tamper == [RULES_DELETED, CONFIG_CHANGED]
    assert recheck.records[0] == "rd"  # the alert quotes the most serious record
    assert recheck.not_before == ""  # not a launch-only host
    [recheck], _ = fold([ev(LAUNCH), ev(SILENCE)], nobody, launch_grace_minutes=10)
    assert recheck.trigger == SILENCE


def test_duplicates_count_once():
    one = ev(tamper=AUDIT_DISABLED, record="type=CONFIG_CHANGE audit_enabled=0", mid="sqs-1")
    [recheck], _ = fold([one, one, one], nobody, launch_grace_minutes=10)
    assert recheck.events == 1 and recheck.records == [one.record]
    [recheck], _ = fold([one, ev(tamper=AUDIT_DISABLED, record=one.record, mid="sqs-2")], nobody,
                        launch_grace_minutes=10)
    assert recheck.events == 2 and recheck.records == [one.record]  # two messages, one distinct record


def test_launch_only_waits_for_the_grace():
    [recheck], _ = fold([ev(LAUNCH, at="2024-11-25T10:00:00Z"), ev(LAUNCH, at="2024-11-25T10:05:00Z", mid="n")],
                        nobody, launch_grace_minutes=10)
    assert recheck.trigger == LAUNCH and recheck.not_before == "2024-11-25T10:15:00Z"


def test_stream_no_host_owns_is_rejected_once():
    events = [ev(instance_id="", log_group="/ec2/audit", log_stream="web-9", mid=f"m{n}") for n in range(50)]
    asked = []
    rechecks, [rejected] = fold(events, lambda e: asked.append(e) or [], launch_grace_minutes=10)
    assert rechecks == [] and len(asked) == 1
    assert rejected.reason == "no host owns stream /ec2/audit web-9 (50 events)"


def test_owned_stream_goes_to_each_owner():
    events = [ev(instance_id="", log_group="/ec2/audit", log_stream="web-1"), ev(LAUNCH, instance_id=C)]
    rechecks, rejected = fold(events, lambda e: [B, A] if e.log_stream == "web-1" else [], launch_grace_minutes=10)
    assert rejected == [] and [(r.instance_id, r.trigger) for r in rechecks] == [(A, TAMPER), (B, TAMPER),
                                                                                (C, LAUNCH)]


def test_hosts_fold_per_account_region_and_order_is_deterministic():
    events = [ev(instance_id=A, region="us-east-1"), ev(instance_id=A, region="eu-west-1"),
              ev(instance_id=B, account="222233334444"), ev(LAUNCH, instance_id=C, mid="x")]
    first, _ = fold(events, nobody, launch_grace_minutes=10)
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    again, _ = fold(shuffled, nobody, launch_grace_minutes=10)
    assert first == again and len(first) == 4
    assert [(r.account, r.region, r.instance_id) for r in first] == sorted(
        (r.account, r.region, r.instance_id) for r in first)
