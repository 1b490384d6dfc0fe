"""Tamper security events (include/notify/tamper.py): a rule deletion / audit disable alerts at once with its record,
once per (host, occurrence) whatever the burst; a clean daemon stop alerts only if its final re-check fails, with
that verdict; an active remediation run on the host is named."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore
from include.notify import channels, tamper
from include.notify import email as notify
from include.remediation.records import RemediationRecord
from include.remediation.store import RemediationStore
from include.settings.params import AuditParams
from include.watch.records import AUDIT_DISABLED, CONFIG_CHANGED, DAEMON_STOPPED, RULES_DELETED, TAMPER, Recheck
from tests.factories import stored_item

DAY = "2026-12-07"
IID, OTHER = "i-0abc", "i-0def"
DELETE = ('type=CONFIG_CHANGE msg=audit(1796630400.123:901): auid=1000 ses=3 op=remove_rule '
          'key="identity" list=4 res=1')
DISABLE = "type=CONFIG_CHANGE msg=audit(1796630400.200:902): op=set audit_enabled=0 old=1 auid=1000 ses=3 res=1"
DAEMON_END = "type=DAEMON_END msg=audit(1796630400.000:903): op=terminate auid=0 pid=1 subj=unconfined res=success"
PARAMS = AuditParams(alert_recipients=["soc@example.test"], recipients=["team@example.test"],
                     slack_conn_id="slack_alerts", sns_topic_arn="arn:aws:sns:us-east-1:123456789012:sec")


def no_fix(instance_id: str) -> str:
    return ""


def observation(iid=IID, checked_at=f"{DAY}T06:00:00Z", run="run-daily", seq=1, status="COMPLIANT", **checks):
    """A stored observation (a version of the day): `checks` as check_id=status (dots written as __)."""
    verdicts = {k.replace("__", "."): {"status": v, "detail": f"{k.replace('__', '.')} {v.lower()}"}
                for k, v in checks.items()}
    return stored_item(iid, status, [c for c, v in verdicts.items() if v["status"] == "FAIL"],
                       audit_date=f"{DAY}#v#{seq}", day=DAY, seq=seq, item_type="instance", run_id=run,
                       checked_at=checked_at, checks=verdicts, tags={"Name": "web-1"})


def recheck_item(iid=IID, status="COMPLIANT", checked_at=f"{DAY}T09:01:00Z", run="watch-1", seq=2,
                 **checks) -> EvidenceItem:
    """The item a watch re-check stored (its seq after the day's daily observation)."""
    verdicts = {k.replace("__", "."): {"status": v, "detail": f"{k.replace('__', '.')} {v.lower()}"}
                for k, v in checks.items()}
    return EvidenceItem.from_item(stored_item(iid, status, [c for c, v in verdicts.items() if v["status"] == "FAIL"],
                                              audit_date=DAY, run_id=run, checked_at=checked_at, checks=verdicts,
                                              region="us-east-1", trigger=TAMPER, seq=seq))


def recheck(iid=IID, kinds=(RULES_DELETED,), first_at=f"{DAY}T09:00:00Z", events=1, records=(DELETE,)):
    return Recheck(iid, "us-east-1", TAMPER, first_at=first_at, events=events, tamper=list(kinds),
                   records=list(records))


@pytest.fixture
def store():
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "tamper_test")
        s.ensure_tables()
        s.put_items([observation(), observation(OTHER)])
        yield s


@pytest.fixture
def outbox(monkeypatch):
    sent = {"email": [], "slack": [], "sns": []}
    monkeypatch.setattr(notify, "send_report_email", lambda **kw: sent["email"].append(kw))
    monkeypatch.setattr(notify, "run_url", lambda dag, run: f"http://airflow.test/dags/{dag}/runs/{run}")
    monkeypatch.setattr(channels, "_send_slack", lambda conn, payload, ctx: sent["slack"].append(payload))
    monkeypatch.setattr(channels, "_send_sns", lambda ch, subject, message, event, ctx:
                        sent["sns"].append((subject, message, event)))
    return sent


def at_once(store, rechecks, run="watch-1", fixes=no_fix, params=PARAMS):
    return tamper.alert_at_once(store, rechecks, day=DAY, run_id=run, params=params, active_fixes=fixes)


def after(store, rechecks, items, final, run="watch-1", params=PARAMS):
    return tamper.after_recheck(store, rechecks, items, day=DAY, run_id=run, params=params, active_fixes=no_fix,
                                final=final)


# ------------------------------------------------------------------ at once

def test_a_rule_deletion_alerts_at_once_with_the_record_to_alert_recipients_and_every_channel(store, outbox):
    at_once(store, [recheck(), Recheck(OTHER, "us-east-1", "launch")])  # a launch is no tamper alert
    (mail,) = outbox["email"]
    assert mail["recipients"] == ["soc@example.test"]  # alert_recipients before recipients
    assert mail["subject"] == f"SECURITY EC2 audit {DAY}: {IID} audit rules deleted"
    html = mail["html"]
    assert IID in html and "us-east-1" in html and f"{DAY}T09:00:00Z" in html and "1 record:" in html
    assert "op=remove_rule" in html and OTHER not in html
    (slack,) = outbox["slack"]
    assert "audit rules deleted" in str(slack) and IID in str(slack)
    ((subject, message, event),) = outbox["sns"]
    assert event == "security_event" and "TAMPER_RULES_DELETED" in message and "op=remove_rule" in message


def test_audit_disabled_alerts_at_once_and_a_clean_stop_or_a_config_change_does_not(store, outbox):
    at_once(store, [recheck(OTHER, kinds=(DAEMON_STOPPED, CONFIG_CHANGED), records=(DAEMON_END,))])
    assert outbox["email"] == []
    at_once(store, [recheck(kinds=(AUDIT_DISABLED,), records=(DISABLE,))])
    (mail,) = outbox["email"]
    assert mail["subject"].endswith(f"{IID} audit disabled (audit_enabled=0)") and "audit_enabled=0" in mail["html"]


def test_a_burst_of_1000_records_in_one_recheck_is_one_alert_saying_how_many(store, outbox):
    burst = recheck(events=1000, records=[DELETE.replace(":901", f":{n}") for n in range(5)])
    at_once(store, [burst])
    at_once(store, [burst])  # the task retried: nothing more
    assert [len(v) for v in outbox.values()] == [1, 1, 1]
    assert "1000 records:" in outbox["email"][0]["html"]


def test_the_same_burst_split_over_two_watch_runs_is_one_alert_and_a_later_tampering_another(store, outbox):
    at_once(store, [recheck(events=600)], run="watch-1")
    # watch-1 re-checked the host (an observation after the event), then watch-2 reads the rest of the burst.
    store.put_items([observation(checked_at=f"{DAY}T09:01:00Z", run="watch-1", seq=2, status="NON_COMPLIANT",
                                 auditd__rules_loaded="FAIL")])
    at_once(store, [recheck(first_at=f"{DAY}T09:00:01Z", events=400)], run="watch-2")
    assert len(outbox["email"]) == 1
    at_once(store, [recheck(first_at=f"{DAY}T10:00:00Z")], run="watch-3")  # deleted again after the re-check
    assert len(outbox["email"]) == 2 and "last checked 2026-12-07 (run watch-1, seq 2)" in outbox["email"][1]["html"]


def test_a_failed_channel_fails_the_call_and_a_retry_resends_only_to_it(store, outbox, monkeypatch):
    def broken(*a):
        raise ConnectionError("slack down")

    monkeypatch.setattr(channels, "_send_slack", broken)
    with pytest.raises(channels.ChannelDeliveryError, match="slack"):
        at_once(store, [recheck()])
    monkeypatch.setattr(channels, "_send_slack", lambda conn, payload, ctx: outbox["slack"].append(payload))
    at_once(store, [recheck()], run="watch-other")  # another run: the occurrence is alerted already
    assert outbox["slack"] == []
    at_once(store, [recheck()])  # the claiming run's retry
    assert [len(v) for v in outbox.values()] == [1, 1, 1]


# ------------------------------------------------------------------ a clean stop: only if the re-check fails

def stop(iid=IID):
    return recheck(iid, kinds=(DAEMON_STOPPED,), records=(DAEMON_END,), events=3)


def test_a_clean_stop_whose_recheck_passes_alerts_nothing(store, outbox):
    item = recheck_item(auditd__running="PASS")
    assert not tamper.needs_second_look(stop(), item, 5)
    after(store, [stop()], [item], final=True)
    assert outbox["email"] == [] and outbox["slack"] == [] and outbox["sns"] == []


def test_a_clean_stop_failing_its_final_recheck_alerts_with_the_verdict(store, outbox):
    store.put_items([observation(auditd__running="PASS")])
    first = recheck_item(status="NON_COMPLIANT", auditd__running="FAIL")
    assert tamper.needs_second_look(stop(), first, 5) and not tamper.needs_second_look(stop(), first, 0)
    after(store, [stop()], [first], final=False)
    assert outbox["email"] == []  # still inside the grace: a reboot looks like this
    final = recheck_item(status="NON_COMPLIANT", checked_at=f"{DAY}T09:06:00Z", seq=3, auditd__running="FAIL")
    after(store, [stop()], [final], final=True)
    (mail,) = outbox["email"]  # one message: the verdict and the watched check it shows
    assert mail["subject"] == (f"SECURITY EC2 audit {DAY}: {IID} re-checked after DAEMON_END: NON_COMPLIANT "
                               "(auditd.running) (+1 more)")
    assert "op=terminate" in mail["html"] and "not passing 5 min after" in mail["html"]
    assert "auditd.running passed on" in mail["html"]
    after(store, [stop()], [final], final=True, run="watch-2")  # the same stop read again: no second alert
    assert len(outbox["email"]) == 1


def test_no_evidence_from_the_final_recheck_is_not_a_pass(store, outbox):
    assert tamper.needs_second_look(stop(), None, 5)
    after(store, [stop()], [], final=True)
    (mail,) = outbox["email"]
    assert "re-checked after DAEMON_END: not re-checked (no evidence stored)" in mail["subject"]


def test_a_clean_stop_host_s_auditd_running_pass_to_fail_waits_for_the_final_recheck(store, outbox):
    store.put_items([observation(auditd__running="PASS"), observation(OTHER, auditd__running="PASS")])
    held = recheck_item(status="NON_COMPLIANT", auditd__running="FAIL")
    deleted = recheck_item(OTHER, status="NON_COMPLIANT", auditd__running="FAIL")  # rules deleted: not held
    after(store, [stop(), recheck(OTHER)], [held, deleted], final=False)
    (mail,) = outbox["email"]
    assert f"{OTHER}: auditd.running passed on" in mail["html"] and IID not in mail["html"]


# ------------------------------------------------------------------ an active remediation run is named

def test_an_active_remediation_run_on_the_host_is_named(store, outbox):
    fixes = RemediationStore(store)
    fixes.put_remediation(RemediationRecord(host_id=IID, audit_date="2026-12-06", run_id="manual__fix-1",
                                            ran_at=f"{DAY}T08:59:30Z", approved_by="alice", outcome="applying"), 400)
    fixes.put_remediation(RemediationRecord(host_id=IID, audit_date="2026-12-01", run_id="manual__old",
                                            ran_at="2026-12-01T08:00:00Z", approved_by="bob", outcome="unverified"),
                          400)  # days old: not this event's
    lookup = tamper.remediation_lookup(store, [recheck()])
    assert lookup(IID) == "remediation run manual__fix-1 approved by alice, applying" and lookup(OTHER) == ""
    at_once(store, [recheck(), recheck(OTHER)], fixes=lookup)
    html = outbox["email"][0]["html"]
    assert "Remediation on this host: remediation run manual__fix-1 approved by alice, applying" in html
    assert "augenrules --load" in html and html.count("Remediation on this host") == 1
