"""The remediation plan: only NON_COMPLIANT hosts, commands only from fixes.py, instance data only as data,
immutable → manual, a hash over everything, a round trip through JSON."""
from __future__ import annotations

import dataclasses
import json

import pytest

from include.checks import fixes
from include.evidence.records import EvidenceItem
from include.remediation import plan as remediation
from include.remediation.plan import plan
from tests.factories import evidence_item

DAY = "2026-12-01"
CONSTANT_COMMANDS = {s.command for f in fixes.AUTOMATIC for s in f.steps}


def item(iid="i-0aaa", status="NON_COMPLIANT", failed=("auditd.running",), **kw) -> EvidenceItem:
    kw.setdefault("checks", {"auditd.immutable": {"status": "FAIL", "detail": "enabled=1"}})
    return evidence_item(iid, failed, status=status, audit_date=DAY, run_id="scheduled__1", output_sha256="ab" * 32,
                         name="web-1", address="10.0.0.5", **kw)


def fixes_of(p, iid="i-0aaa"):
    return {f.fix: f for h in p.hosts if h.instance_id == iid for f in h.fixes}


def test_a_stopped_auditd_is_planned_once_for_both_checks():
    p = plan([item(failed=("auditd.running", "auditd.enabled_on_boot"))])
    (host,) = p.hosts
    assert [f.fix for f in host.fixes] == ["auditd.start"]
    assert host.fixes[0].check_ids == ("auditd.running", "auditd.enabled_on_boot")
    assert host.fixes[0].steps[0].command == fixes.AUDITD_START.steps[0].command
    assert (host.evidence_run_id, host.evidence_output_sha256, host.audit_date) == ("scheduled__1", "ab" * 32, DAY)


@pytest.mark.parametrize("status", ["ERROR", "UNREACHABLE", "HOST_KEY_MISMATCH", "AUTH_FAILED", "COMPLIANT", "WAIVED"])
def test_only_non_compliant_hosts_are_planned(status):
    p = plan([item(status=status, failed=("auditd.running",))])
    assert p.hosts == ()
    assert [n.instance_id for n in p.not_planned] == ["i-0aaa"]
    if status in ("ERROR", "UNREACHABLE", "HOST_KEY_MISMATCH", "AUTH_FAILED"):
        assert "could not see" in p.not_planned[0].reason


def test_immutable_kernel_makes_loading_rules_manual():
    immutable = {"auditd.immutable": {"status": "PASS", "detail": "enabled 2"}}
    p = plan([item(failed=("auditd.rules_loaded", "auditd.running"), checks=immutable)])
    (host,) = p.hosts
    assert "auditd.load_rules" not in fixes_of(p)
    assert [(m.check_id, m.reason) for m in host.manual] == [("auditd.rules_loaded", fixes.IMMUTABLE_REASON)]
    assert "reboot" in fixes.IMMUTABLE_REASON
    p2 = plan([item(failed=("auditd.rules_loaded",))])
    assert "auditd.load_rules" in fixes_of(p2)


def test_manual_only_hosts_are_not_planned_but_listed():
    p = plan([item(failed=("auditd.boot_params", "auditd.config"))])
    assert p.hosts == () and "no automatic fix" in p.not_planned[0].reason


def test_advisory_failures_only_when_asked():
    it = item(failed=("auditd.running",), advisory_failed=["auditd.log_permissions"])
    assert "auditd.log_permissions" not in fixes_of(plan([it]))
    assert "auditd.log_permissions" in fixes_of(plan([it], include_advisory=True))


def test_the_log_group_travels_as_stdin_only():
    p = plan([item(failed=("cwagent.ships_audit_log",))], "/ec2/audit")
    (fix,) = p.hosts[0].fixes
    tee, append = fix.steps
    assert json.loads(tee.stdin)["logs"]["logs_collected"]["files"]["collect_list"][0]["log_group_name"] == "/ec2/audit"
    assert "/ec2/audit" not in tee.command + append.command and append.stdin == ""
    # without a log group the fix is manual, never run with a made-up one
    p = plan([item(failed=("cwagent.ships_audit_log", "auditd.running"))])
    assert "cwagent.audit_log_fragment" not in fixes_of(p)
    assert p.hosts[0].manual[0].reason == remediation.NO_LOG_GROUP


@pytest.mark.parametrize("bad", ["/ec2;reboot", "$(reboot)", "a b", "aws/x"])
def test_a_bad_log_group_is_refused(bad):
    with pytest.raises(ValueError):
        plan([item(failed=("cwagent.ships_audit_log",))], bad)
    with pytest.raises(ValueError):  # even when no host would use it: the run's param is wrong
        plan([item(failed=("auditd.running",))], bad)


def test_instance_data_never_reaches_a_command():
    evil = "$(reboot)`id`;rm -rf /|x"
    its = [item(iid=f"i-{n}", failed=("auditd.running", "auditd.rules_loaded", "cwagent.running",
                                      "cwagent.ships_audit_log", "auditd.log_permissions"),
                tags={"Name": evil}, region=evil, account_id=evil, host_key_fingerprint=evil)
           for n in range(3)]
    its = [dataclasses.replace(it, name=evil, address=evil) for it in its]
    p = plan(its, "/ec2/audit")
    commands = [s.command for h in p.hosts for f in h.fixes for s in f.steps]
    assert commands and set(commands) <= CONSTANT_COMMANDS
    assert all(evil not in c for c in commands)
    assert all(evil not in s.stdin for h in p.hosts for f in h.fixes for s in f.steps)
    assert p.hosts[0].name == evil  # kept, as data
    text = remediation.describe(p)
    assert evil not in text and r"\$\(reboot\)\`id\`;rm -rf /\|x" in text  # inert markdown


def test_hash_changes_with_anything_in_the_plan():
    base = plan([item(failed=("auditd.running", "cwagent.ships_audit_log"))], "/ec2/audit")
    variants = [
        plan([item(failed=("auditd.running", "cwagent.ships_audit_log"))], "/ec2/other"),
        plan([item(failed=("auditd.running",))], "/ec2/audit"),
        plan([dataclasses.replace(item(failed=("auditd.running", "cwagent.ships_audit_log")), output_sha256="cd" * 32)],
             "/ec2/audit"),
        plan([dataclasses.replace(item(failed=("auditd.running", "cwagent.ships_audit_log")), run_id="manual__2")],
             "/ec2/audit"),
        plan([item(failed=("auditd.running", "cwagent.ships_audit_log")), item(iid="i-0bbb", status="ERROR")],
             "/ec2/audit"),
    ]
    hashes = {remediation.plan_hash(v) for v in variants} | {base.hash}
    assert len(hashes) == len(variants) + 1
    host = base.hosts[0]
    step = host.fixes[0].steps[0]
    edited = dataclasses.replace(base, hosts=(dataclasses.replace(host, fixes=(dataclasses.replace(
        host.fixes[0], steps=(dataclasses.replace(step, command=step.command + " ; reboot"),)),) + host.fixes[1:]),))
    assert edited.hash != base.hash
    assert plan([item(failed=("auditd.running", "cwagent.ships_audit_log"))], "/ec2/audit").hash == base.hash  # stable


def test_round_trip_and_tamper_refused():
    p = plan([item(failed=("auditd.running", "cwagent.ships_audit_log")), item(iid="i-0bbb", status="UNREACHABLE")],
             "/ec2/audit")
    text = remediation.to_json(p)
    back = remediation.from_json(text)
    assert back == p and back.hash == p.hash
    doc = json.loads(text)
    doc["plan"]["hosts"][0]["fixes"][0]["steps"][0]["command"] = "/sbin/reboot"
    with pytest.raises(ValueError, match="hash"):
        remediation.from_json(json.dumps(doc))


def test_one_audit_day_per_plan_and_dicts_accepted():
    other = dataclasses.replace(item(iid="i-0bbb"), audit_date="2026-11-30")
    with pytest.raises(ValueError):
        plan([item(), other])
    with pytest.raises(ValueError):
        plan([item()], audit_date="2026-11-30")
    p = plan(map(EvidenceItem.from_item, [item().to_item(), {"instance_id": "#run-summary", "audit_date": DAY,
                                                              "item_type": "run_summary"}]))
    assert [h.instance_id for h in p.hosts] == ["i-0aaa"] and p.audit_date == DAY


def test_describe_shows_steps_stdin_manual_and_hash():
    immutable = {"auditd.immutable": {"status": "PASS"}}
    p = plan([item(failed=("auditd.running", "auditd.rules_loaded", "cwagent.ships_audit_log"), checks=immutable),
              item(iid="i-0bbb", status="HOST_KEY_MISMATCH")], "/ec2/audit")
    text = remediation.describe(p)
    assert p.hash in text
    assert fixes.AUDITD_START.steps[0].command in text and fixes.TEE_FRAGMENT in text
    assert '"log_group_name": "/ec2/audit"' in text
    assert "manual `auditd.rules_loaded`" in text and "reboot" in text
    assert "i-0bbb" in text and "HOST\\_KEY\\_MISMATCH" in text


# ---------------------------------------------------------------- the runner's own check against the catalogue

def _edit_fix(p, **changes):
    h = p.hosts[0]
    return dataclasses.replace(h, fixes=(dataclasses.replace(h.fixes[0], **changes),) + h.fixes[1:])


def _edit_step(p, **changes):
    f = p.hosts[0].fixes[0]
    return _edit_fix(p, steps=(dataclasses.replace(f.steps[0], **changes),) + f.steps[1:])


def test_a_plan_as_planned_is_exactly_the_catalogue_s():
    p = plan([item(failed=("auditd.running", "auditd.enabled_on_boot", "auditd.rules_loaded", "cwagent.running",
                           "cwagent.ships_audit_log", "auditd.log_permissions"))], "/ec2/audit")
    assert len(p.hosts[0].fixes) == 5
    assert remediation.catalogue_problem(p.hosts[0], p.log_group) == ""


def test_anything_but_the_catalogue_s_fix_for_the_named_check_is_refused():
    p = plan([item(failed=("cwagent.ships_audit_log", "auditd.running", "auditd.config"))], "/ec2/audit")
    assert [f.fix for f in p.hosts[0].fixes] == ["cwagent.audit_log_fragment", "auditd.start"]
    start = fixes.AUDITD_START.steps[0].command
    tee = p.hosts[0].fixes[0].steps[0]
    bad = {
        "another command": _edit_step(p, command="/sbin/reboot"),
        "a command of another fix": _edit_step(p, command=start),
        "a command with more after it": _edit_step(p, command=tee.command + "; id"),
        "other bytes on stdin": _edit_step(p, stdin=fixes.agent_fragment("/ec2/other")),
        "a step too many": _edit_fix(p, steps=p.hosts[0].fixes[0].steps + (remediation.PlannedStep(start),)),
        "a step too few": _edit_fix(p, steps=p.hosts[0].fixes[0].steps[:1]),
        "a fix named for another check": _edit_fix(p, check_ids=("auditd.running",)),
        "a manual check": _edit_fix(p, check_ids=("auditd.config",)),
        "an unknown check": _edit_fix(p, check_ids=("auditd.nope",)),
        "no check": _edit_fix(p, check_ids=()),
        "a check the host passed": _edit_fix(p, check_ids=("cwagent.ships_audit_log", "cwagent.running")),
    }
    for why, host in bad.items():
        assert remediation.catalogue_problem(host, p.log_group), why
    # the fragment is judged against the plan's own log group: a plan without one cannot send one
    assert remediation.catalogue_problem(p.hosts[0], "")
    assert remediation.catalogue_problem(dataclasses.replace(p.hosts[0], fixes=()), p.log_group)
