"""Security events (include/notify/security_events.py): which changes alert at once, dedup per (host, event) with a
repeat after `alert_repeat_days` while it lasts, and the message naming each instance and what changed."""
from __future__ import annotations

from dataclasses import replace

import boto3
import pytest
from moto import mock_aws

from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore
from include.notify import channels
from include.notify import email as notify
from include.notify import security_events as se
from include.notify.channels import Channels
from include.notify.event_store import SecurityEventStore
from include.report.built import Built
from tests.factories import stored_item

DAY, YESTERDAY = "2026-12-07", "2026-12-06"
PINNED, OFFERED = "SHA256:pinnedAAAAbbbbCCCCdddd0123456789+/xyz", "SHA256:offeredEEEEffffGGGG0123456789+/xyz"


def obs(iid="i-0abc", day=DAY, run="run-today", status="NON_COMPLIANT", seq=0, checked_at=None, **checks):
    """An evidence item as stored: `checks` given as check_id=status (dots written as __)."""
    verdicts = {k.replace("__", "."): {"status": v, "detail": f"{k.replace('__', '.')} {v.lower()} on {iid}"}
                for k, v in checks.items()}
    item = stored_item(iid, status, [c for c, v in verdicts.items() if v["status"] == "FAIL"], audit_date=day,
                       item_type="instance", run_id=run, checked_at=checked_at or f"{day}T06:00:00Z", checks=verdicts,
                       tags={"Name": "web-1"})
    if seq:
        item["seq"] = seq
    return item


def mismatch(iid="i-0def", day=DAY, run="run-today", offered=OFFERED):
    return {**obs(iid, day, run, status="HOST_KEY_MISMATCH"), "checks": {}, "failed_checks": [],
            "host_key_fingerprint": offered,
            "status_detail": f"host presented ssh-ed25519 {offered}, pinned ssh-ed25519 {PINNED}: the key changed"}


def detect(current, history=(), states=None, day=DAY, repeat=7):
    return se.detect(se.Observation.from_item(current), [se.Observation.from_item(h) for h in history],
                     states or {}, day, repeat)


# ------------------------------------------------------------------ detection (pure)

def test_pass_then_fail_of_a_watched_check_is_a_new_event_naming_the_passing_run():
    before = obs(day=YESTERDAY, run="run-y", status="COMPLIANT", auditd__running="PASS", cwagent__running="PASS")
    now = obs(auditd__running="FAIL", cwagent__running="PASS")
    events = detect(now, [before])
    assert [(e.kind, e.action) for e in events] == [("auditd.running", "new")]
    line = events[0].line()
    assert line.startswith("i-0abc: auditd.running passed on 2026-12-06 (run run-y), fails now: ")
    assert "auditd.running fail on i-0abc" in line


def test_fail_then_fail_and_a_first_observation_failing_are_no_event():
    failing_before = obs(day=YESTERDAY, run="run-y", auditd__rules_loaded="FAIL")
    assert detect(obs(auditd__rules_loaded="FAIL"), [failing_before]) == []
    assert detect(obs(auditd__rules_loaded="FAIL"), []) == []


def test_only_the_watched_checks_and_only_a_fail_verdict_count():
    before = obs(day=YESTERDAY, status="COMPLIANT", auditd__config="PASS", cwagent__ships_audit_log="PASS",
                 auditd__running="PASS")
    now = obs(auditd__config="FAIL", cwagent__ships_audit_log="FAIL", auditd__running="ERROR")
    assert [e.kind for e in detect(now, [before])] == ["cwagent.ships_audit_log"]


def test_the_latest_earlier_observation_of_the_check_decides_skipping_hosts_not_reached_and_itself():
    passed = obs(day="2026-12-01", run="run-old", status="COMPLIANT", auditd__running="PASS")
    failed = obs(day="2026-12-03", run="run-mid", auditd__running="FAIL")
    unreachable = {**obs(day="2026-12-05", run="run-u", status="UNREACHABLE"), "checks": {}}
    now = obs(auditd__running="FAIL")
    assert detect(now, [passed, failed, unreachable, now]) == []  # the latest one that saw the check failed
    events = detect(now, [passed, unreachable, now])  # an unreachable day in between: still pass → fail
    assert [e.kind for e in events] == ["auditd.running"] and "passed on 2026-12-01 (run run-old)" in events[0].line()


def test_a_same_day_earlier_version_is_the_earlier_observation():
    # Versions of a day carry `seq`; the earlier one of today passed, the current one (seq 2) fails.
    today_v1 = obs(run="run-1", status="COMPLIANT", seq=1, auditd__running="PASS", checked_at=f"{DAY}T06:00:00Z")
    yesterday = obs(day=YESTERDAY, run="run-y", auditd__running="FAIL")
    now = obs(run="run-2", seq=2, auditd__running="FAIL", checked_at=f"{DAY}T09:00:00Z")
    events = detect(now, [yesterday, today_v1, now])
    assert [e.kind for e in events] == ["auditd.running"] and "passed on 2026-12-07 (run run-1, seq 1)" in events[0].line()


def test_host_key_mismatch_is_an_event_naming_pinned_and_offered_keys():
    events = detect(mismatch(), [])  # even with no earlier observation
    assert [(e.kind, e.action) for e in events] == [("HOST_KEY_MISMATCH", "new")]
    assert events[0].line() == f"i-0def: host key changed: pinned {PINNED}, offered {OFFERED}"


def state_of(event, day=DAY, run="run-today"):
    return se.EventState.claimed(event, day, run, se.alert_id(day, run, event))


def test_dedup_once_per_occurrence_then_again_after_repeat_days_while_it_lasts():
    before = obs(day=YESTERDAY, run="run-y", status="COMPLIANT", auditd__running="PASS")
    first = detect(obs(auditd__running="FAIL"), [before])[0]
    states = {first.kind: state_of(first)}
    # A rerun of the same day still sees yesterday's pass (the item was replaced): same occurrence, quiet.
    assert [e.action for e in detect(obs(run="rerun", auditd__running="FAIL"), [before], states)] == ["quiet"]
    # Next days: fail → fail while the occurrence lasts; quiet until alert_repeat_days since the last alert.
    day3 = obs(day="2026-12-09", run="r3", auditd__running="FAIL")
    assert [e.action for e in detect(day3, [before, obs(auditd__running="FAIL")], states, day="2026-12-09")] == ["quiet"]
    day14 = obs(day="2026-12-14", run="r14", auditd__running="FAIL")
    reminder = detect(day14, [before, obs(auditd__running="FAIL")], states, day="2026-12-14")
    assert [e.action for e in reminder] == ["reminder"]
    assert reminder[0].line().startswith("i-0abc: auditd.running still failing since 2026-12-07 (passed on 2026-12-06")
    assert [e.action for e in detect(day14, [before, obs(auditd__running="FAIL")], states, day="2026-12-14",
                                     repeat=0)] == ["quiet"]  # 0 = never again
    # Fixed, then failing again: a new occurrence (its own passing observation), alerted at once.
    fixed = obs(day="2026-12-08", run="r8", status="COMPLIANT", auditd__running="PASS")
    again = detect(obs(day="2026-12-09", run="r9", auditd__running="FAIL"), [before, fixed], states, day="2026-12-09")
    assert [e.action for e in again] == ["new"]


def test_a_lasting_mismatch_is_quiet_and_a_different_offered_key_is_a_new_event():
    first = detect(mismatch(), [])[0]
    states = {first.kind: state_of(first)}
    later = mismatch(day="2026-12-08", run="r8")
    assert [e.action for e in detect(later, [mismatch()], states, day="2026-12-08")] == ["quiet"]
    other = mismatch(day="2026-12-08", run="r8", offered="SHA256:yetAnotherKey")
    assert [e.action for e in detect(other, [mismatch()], states, day="2026-12-08")] == ["new"]
    trusted = {**obs(day="2026-12-08", run="r8", status="COMPLIANT"), "host_key_fingerprint": PINNED}
    back = mismatch(day="2026-12-09", run="r9")  # the pin was trusted again in between: a new change
    assert [e.action for e in detect(back, [mismatch(), trusted], states, day="2026-12-09")] == ["new"]


# ------------------------------------------------------------------ the whole path (moto DynamoDB, fake senders)

@pytest.fixture
def store():
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "sec_events_test")
        s.ensure_tables()
        yield s


@pytest.fixture
def outbox(monkeypatch):
    sent = {"email": [], "slack": [], "sns": []}
    monkeypatch.setattr(notify, "send_report_email", lambda **kw: sent["email"].append(kw))
    monkeypatch.setattr(channels, "_send_slack", lambda conn, payload, ctx: sent["slack"].append(payload))
    monkeypatch.setattr(channels, "_send_sns", lambda ch, subject, message, event, ctx:
                        sent["sns"].append((subject, message, event)))
    return sent


CHANS = Channels(slack_conn_id="slack_alerts", sns_topic_arn="arn:aws:sns:us-east-1:123456789012:sec")


def send(store, items, run="run-today", day=DAY, recipients=("soc@example.test",), chans=CHANS, repeat=7):
    return se.send_security_events(SecurityEventStore(store), [EvidenceItem.from_item(it) for it in items], day=day,
                                   run_id=run, recipients=list(recipients), chans=chans, repeat_days=repeat,
                                   ttl_days=400)


def test_events_go_once_to_email_slack_and_sns_then_a_rerun_and_another_worker_are_quiet(store, outbox):
    store.put_items([obs(day=YESTERDAY, run="run-y", status="COMPLIANT", auditd__running="PASS"),
                     obs("i-0def", day=YESTERDAY, run="run-y", status="COMPLIANT")])
    today = [obs(auditd__running="FAIL"), mismatch()]
    store.put_items(today)
    outcome = send(store, today)
    assert [e.key for e in outcome.events] == ["i-0abc|auditd.running", "i-0def|HOST_KEY_MISMATCH"]
    (mail,) = outbox["email"]
    assert mail["recipients"] == ["soc@example.test"] and mail["subject"].startswith("SECURITY EC2 audit 2026-12-07")
    assert "i-0abc: auditd.running passed on 2026-12-06 (run run-y), fails now" in mail["html"]
    assert f"i-0def: host key changed: pinned {PINNED}, offered {OFFERED}" in mail["html"]
    assert "i-0abc" in str(outbox["slack"][0]) and '"event": "security_event"' in outbox["sns"][0][1]
    assert outbox["sns"][0][2] == "security_event"
    # The same run again (a retry), another run of the day, and a worker racing: nothing resent.
    send(store, today)
    send(store, today, run="rerun")
    assert [len(v) for v in outbox.values()] == [1, 1, 1]


def test_a_retry_resends_only_to_the_channel_that_failed(store, outbox, monkeypatch):
    store.put_items([obs(day=YESTERDAY, run="run-y", status="COMPLIANT", cwagent__running="PASS")])
    today = [obs(cwagent__running="FAIL")]
    store.put_items(today)

    def broken(*a):
        raise ConnectionError("slack down")

    monkeypatch.setattr(channels, "_send_slack", broken)
    outcome = send(store, today)
    assert not outcome.results["slack"]["ok"] and outcome.results["email"]["ok"] and outcome.results["sns"]["ok"]
    with pytest.raises(channels.ChannelDeliveryError, match="slack"):
        channels.raise_for_failures(outcome.results, "security events")
    monkeypatch.setattr(channels, "_send_slack", lambda conn, payload, ctx: outbox["slack"].append(payload))
    send(store, today, run="another-run")  # not the run that claimed it: it does not resend
    assert outbox["slack"] == []
    retry = send(store, today)
    assert [len(v) for v in outbox.values()] == [1, 1, 1] and retry.results["slack"]["sent"] == 1


def test_alert_recipients_else_recipients():
    from include.settings.params import AuditParams

    assert se.recipients_for(AuditParams(recipients=["a@x"], alert_recipients=["soc@x"])) == ["soc@x"]
    assert se.recipients_for(AuditParams(recipients=["a@x"])) == ["a@x"]
    assert se.recipients_for(AuditParams()) == []


def test_email_only_and_a_reminder_after_repeat_days(store, outbox):
    store.put_items([obs("i-0def", day=YESTERDAY, run="run-y", status="COMPLIANT")])
    send(store, [mismatch()], chans=Channels())
    for n, day in enumerate(("2026-12-08", "2026-12-13", "2026-12-14")):
        send(store, [mismatch(day=day, run=f"r{n}")], run=f"r{n}", day=day, chans=Channels())
    subjects = [m["subject"] for m in outbox["email"]]
    assert len(subjects) == 2 and "2026-12-14" in subjects[1]  # 7 days after the first alert, not before
    assert "still mismatched since 2026-12-07" in outbox["email"][1]["html"]


def test_candidates_are_this_run_s_hosts_failing_a_watched_check_or_mismatched(store):
    store.put_items([obs("i-1", auditd__running="FAIL"), obs("i-2", status="COMPLIANT", auditd__running="PASS"),
                     obs("i-3", auditd__config="FAIL"), mismatch("i-4"), obs("i-5", run="other", auditd__running="FAIL"),
                     obs("i-6", status="COMPLIANT", cwagent__canary_delivered="FAIL")])
    candidates = SecurityEventStore(store).candidates(DAY, "run-today")
    assert sorted(it.instance_id for it in candidates) == ["i-1", "i-4", "i-6"]


def test_two_workers_deciding_on_the_same_state_claim_an_alert_once(store):
    store.put_items([mismatch(day=YESTERDAY, run="run-y")])
    (event,) = detect(mismatch(), [])
    store = SecurityEventStore(store)
    assert se.claim(store, event, DAY, "run-a", 400) is not None
    assert se.claim(store, event, DAY, "run-b", 400) is None  # decided on the same (absent) state: lost the race
    (stored,) = store.states("i-0def").values()
    assert stored.alert_run == "run-a" and stored.first_seen == DAY
    due = replace(detect(mismatch(day="2026-12-14", run="r14"), [mismatch()], {stored.kind: stored},
                         day="2026-12-14")[0])
    assert due.action == "reminder"
    assert se.claim(store, due, "2026-12-14", "r14", 400) is not None
    assert se.claim(store, due, "2026-12-14", "r14-other", 400) is None  # the state it read has changed


def test_the_daily_alert_task_sends_security_events_to_recipients_even_with_compliance_above_threshold(
        store, outbox, monkeypatch):
    from include.settings.params import AuditParams
    from include.tasks import audit as pipeline

    store.put_items([obs("i-0def", day=YESTERDAY, run="run-y", status="COMPLIANT")])
    store.put_items([mismatch()])
    monkeypatch.setattr(pipeline, "evidence_store", lambda params: store)
    params = AuditParams(recipients=["team@example.test"], alert_threshold_pct=50.0)  # no alert_recipients
    built = {"mode": "live", "audit_date": DAY, "run_id": "run-today", "paths": {"html": "/r.html"},
             "compliance_pct": 100.0}
    pipeline.alert(params, Built.from_xcom(built))
    (mail,) = outbox["email"]  # only the security event: compliance is above the threshold
    assert mail["recipients"] == ["team@example.test"] and mail["subject"].startswith("SECURITY EC2 audit")
    assert "i-0def: host key changed" in mail["html"]
    assert "rebuild" in pipeline.alert(params, Built.from_xcom({**built, "mode": "rebuild"}))
    assert len(outbox["email"]) == 1


def test_a_failed_security_channel_fails_the_alert_task_after_the_compliance_alert_went_out(
        store, outbox, monkeypatch):
    from include.settings.params import AuditParams
    from include.tasks import audit as pipeline

    store.put_items([obs(day=YESTERDAY, run="run-y", status="COMPLIANT", auditd__running="PASS")])
    store.put_items([obs(auditd__running="FAIL")])
    monkeypatch.setattr(pipeline, "evidence_store", lambda params: store)

    def broken(**kw):
        if kw["subject"].startswith("SECURITY"):
            raise ConnectionError("smtp refused")
        outbox["email"].append(kw)

    monkeypatch.setattr(notify, "send_report_email", broken)
    params = AuditParams(alert_recipients=["soc@example.test"], alert_threshold_pct=0)
    built = {"mode": "live", "audit_date": DAY, "run_id": "run-today", "paths": {"html": "/r.html"},
             "compliance_pct": 0.0}
    with pytest.raises(channels.ChannelDeliveryError, match="security events"):
        pipeline.alert(params, Built.from_xcom(built))
    assert [m["subject"][:5] for m in outbox["email"]] == ["ALERT"]  # the compliance alert was still sent


def test_the_event_store_reads_typed_records(store):
    store.put_items([obs("i-1", day=YESTERDAY, run="run-y", status="COMPLIANT", auditd__running="PASS"),
                     obs("i-1", auditd__running="FAIL")])
    events = SecurityEventStore(store)
    (candidate,) = events.candidates(DAY, "run-today")
    assert isinstance(candidate, EvidenceItem) and candidate.instance_id == "i-1"
    history = events.history("i-1", DAY)
    assert all(isinstance(o, se.Observation) for o in history) and [o.day for o in history] == [DAY, YESTERDAY]
    assert se.Observation.from_evidence(candidate) == se.Observation.from_item(obs("i-1", auditd__running="FAIL"))
    (event,) = se.detect(se.Observation.from_evidence(candidate), history, {}, DAY, 7)
    assert se.claim(events, event, DAY, "run-today", 400) is not None
    (state,) = events.states("i-1").values()
    assert isinstance(state, se.EventState) and (state.kind, state.alert_run) == ("auditd.running", "run-today")


def test_a_recheck_later_the_same_day_compares_with_that_day_s_earlier_observation(store, outbox):
    # The watch re-checks a host (seq 2) whose daily observation of the same day (seq 1) passed: an event. The
    # re-check's item carries its seq; the earlier version of today is the observation before it.
    daily = {**obs(run="run-daily", status="COMPLIANT", seq=1, auditd__running="PASS"), "audit_date": f"{DAY}#v#1",
             "day": DAY}
    store.put_items([obs(day=YESTERDAY, run="run-y", auditd__running="FAIL"), daily])
    recheck = {**obs(run="watch-1", seq=2, auditd__running="FAIL", checked_at=f"{DAY}T09:00:00Z")}
    outcome = send(store, [recheck], run="watch-1")
    assert [e.key for e in outcome.events] == ["i-0abc|auditd.running"]
    assert "passed on 2026-12-07 (run run-daily, seq 1)" in outbox["email"][0]["html"]


def test_failing_hosts_are_read_several_at_a_time_and_judged_as_one_at_a_time(monkeypatch):
    """Each failing host costs two Queries (history, occurrences): read one host at a time they were 8,000
    sequential round trips at 10,000 hosts. A barrier that only opens when two reads are in flight at once
    proves the concurrency (sequential reads break it); the events are those a sequential read finds."""
    import threading

    from include.notify.event_store import Observation

    barrier = threading.Barrier(2, timeout=10)

    class Store:
        def history(self, instance_id, day):
            barrier.wait()  # BrokenBarrierError when no other host is being read meanwhile
            return [Observation(instance_id, YESTERDAY, "run-y", 1, f"{YESTERDAY}T06:00:00Z", "COMPLIANT",
                                {"auditd.running": {"status": "PASS"}})]

        def states(self, instance_id):
            return {}

    failing = [EvidenceItem.from_item(obs(f"i-{n}", auditd__running="FAIL")) for n in range(6)]
    passing = EvidenceItem.from_item(obs("i-ok", status="COMPLIANT", auditd__running="PASS"))
    monkeypatch.setattr(se, "claim", lambda store, event, day, run_id, ttl: None)
    outcome, _ = se.due_events(Store(), [*failing, passing], day=DAY, run_id="run-today", targets=["email"],
                               repeat_days=7, ttl_days=30)
    assert sorted(e.instance_id for e in outcome.events) == [f"i-{n}" for n in range(6)]
    assert all(e.action == "new" and e.kind == "auditd.running" for e in outcome.events)
