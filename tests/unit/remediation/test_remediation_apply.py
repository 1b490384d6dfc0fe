"""apply_fixes runs exactly what was approved: the plan re-read from its file, its hash the one the approver's
answer carries (and the stored decision of this run holds), every command the catalogue's fix for the check it
names; the remediation login is never the audit's. No host is contacted here: EC2, the pins and the SSH
runner are stand-ins that record what they were asked to touch."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from include.core.host import Host
from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore
from include.reach.hostkeys import Pin
from include.remediation import plan as remediation
from include.remediation.records import FixRun
from include.remediation.results import Answer, Planned
from include.remediation.runner import HostFixes
from include.remediation.store import RemediationStore
from include.settings.params import RemediateParams
from include.tasks import remediate
from tests.factories import evidence_item

DAY, RUN = "2026-12-01", "manual__2026-12-01T10:00:00+00:00"
AT = datetime(2026, 12, 1, 10, 5, tzinfo=timezone.utc)
ALICE = {"id": "alice", "name": "Alice"}


def item(iid: str, failed=("auditd.running",)) -> EvidenceItem:
    return evidence_item(iid, failed, status="NON_COMPLIANT", audit_date=DAY, run_id="scheduled__1",
                         output_sha256="ab" * 32, name=iid, address="10.0.0.5", host_key_fingerprint="SHA256:k",
                         checks={"auditd.immutable": {"status": "FAIL"}})


def the_plan(*iids: str) -> remediation.RemediationPlan:
    return remediation.plan([item(i) for i in iids or ("i-0aaa",)], "/ec2/audit", audit_date=DAY)


def with_command(p: remediation.RemediationPlan, iid: str, command: str) -> remediation.RemediationPlan:
    """`p` with one host's first step replaced: a plan that still carries a valid hash of its own."""
    hosts = []
    for h in p.hosts:
        if h.instance_id == iid:
            f = h.fixes[0]
            f = dataclasses.replace(f, steps=(dataclasses.replace(f.steps[0], command=command),) + f.steps[1:])
            h = dataclasses.replace(h, fixes=(f,) + h.fixes[1:])
        hosts.append(h)
    return dataclasses.replace(p, hosts=tuple(hosts))


def approval(sha256: str | None) -> Answer:
    return Answer.from_xcom({"chosen_options": ["Approve"], "responded_by_user": ALICE, "responded_at": AT,
                             "params_input": {} if sha256 is None else {"plan_sha256": sha256}})


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A moto store, the plan files in tmp_path, and a stand-in runner that records the hosts it was given."""
    from include.reach import hostkeys
    from include.remediation import runner as fix_runner

    ran: list[str] = []

    async def fake_fix_hosts(plans, hosts, settings, pins, concurrency=10):
        out = []
        for hp in plans:
            ran.append(hp.instance_id)
            r = HostFixes(hp.instance_id, "ran", "ran", "SHA256:k")
            r.fixes = [FixRun(f.fix, list(f.check_ids), "ran") for f in hp.fixes]
            out.append(r)
        return out

    class FakePins:
        def __init__(self, *a):
            pass

        def load(self, ids):
            return SimpleNamespace(pins={i: Pin(key="ssh-ed25519 AAAA", fingerprint="SHA256:k") for i in ids}, unread={})

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "remediation_apply")
        store.ensure_tables()
        monkeypatch.setattr(remediate, "store_of", lambda params: store)
        monkeypatch.setattr(remediate, "remediate_ssh_settings", lambda params: SimpleNamespace(host_key_policy="tofu"))
        monkeypatch.setattr(remediate, "_stale", lambda store, p: {})
        monkeypatch.setattr(remediate, "_current_hosts", lambda p: ({h.instance_id: (Host(
            instance_id=h.instance_id, region="us-east-1", account_id="123456789012", address=h.address),
            "private_ip") for h in p.hosts}, {}))
        monkeypatch.setattr(hostkeys, "PinStore", FakePins)
        monkeypatch.setattr(fix_runner, "fix_hosts", fake_fix_hosts)
        params = RemediateParams(dry_run=False, report_dir=str(tmp_path), log_group="/ec2/audit")
        yield SimpleNamespace(store=store, ran=ran, params=params, dir=Path(tmp_path))


def show(env, p: remediation.RemediationPlan) -> Planned:
    """What plan_fixes leaves: the plan file beside its markdown, and the XCom."""
    (env.dir / (remediate.plan_file_name(DAY, RUN).removesuffix(".md") + ".json")).write_text(remediation.to_json(p))
    return Planned(DAY, remediation.to_json(p), p.hash, "", hosts=len(p.hosts),
                   fixes=sum(len(h.fixes) for h in p.hosts), dry_run=False)


def approve(env, planned: Planned, hitl: Answer) -> Answer:
    """The approval task's own record of the answer (PlanApproval.execute_complete), then the answer."""
    remediate.record_decision(env.params, planned, hitl, RUN)
    return hitl


def test_the_approved_plan_runs_and_records_the_approved_hash(env):
    p = the_plan("i-0aaa")
    planned = show(env, p)
    out = remediate.apply(env.params, planned, approve(env, planned, approval(p.hash)), RUN)
    assert env.ran == ["i-0aaa"] and out.plan_sha256 == p.hash
    (rec,) = RemediationStore(env.store).day_remediations(DAY)
    assert rec.plan_sha256 == p.hash and rec.approved_by.startswith("Alice")


def test_a_plan_xcom_changed_after_approval_is_not_what_runs(env):
    """The XCom carries a plan consistent with its own hash, but not the one approved: the file's plan (the
    approved one) runs, never the XCom's."""
    approved = the_plan("i-0aaa")
    planned = show(env, approved)
    hitl = approve(env, planned, approval(approved.hash))
    other = the_plan("i-0bbb")
    planned = dataclasses.replace(planned, plan=remediation.to_json(other), sha256=other.hash)
    remediate.apply(env.params, planned, hitl, RUN)
    assert env.ran == ["i-0aaa"]


def test_a_plan_file_changed_after_approval_runs_nothing(env):
    approved = the_plan("i-0aaa")
    planned = show(env, approved)
    hitl = approve(env, planned, approval(approved.hash))
    show(env, the_plan("i-0aaa", "i-0bbb"))  # rewritten with a valid hash of its own
    with pytest.raises(RuntimeError, match="not the one approved"):
        remediate.apply(env.params, planned, hitl, RUN)
    assert env.ran == [] and RemediationStore(env.store).day_remediations(DAY) == []


def test_an_approval_that_carries_no_plan_hash_runs_nothing(env):
    p = the_plan("i-0aaa")
    planned = show(env, p)
    hitl = approve(env, planned, approval(None))  # e.g. answered through the API without the form's field
    with pytest.raises(RuntimeError, match="no plan hash"):
        remediate.apply(env.params, planned, hitl, RUN)
    assert env.ran == []
    (d,) = RemediationStore(env.store).decisions(DAY)
    assert (d.decision, d.plan_sha256) == ("approved", "") and "nothing runs" in d.detail


def test_an_approval_of_another_hash_runs_nothing_and_is_recorded_as_such(env):
    p = the_plan("i-0aaa")
    planned = show(env, p)
    hitl = approve(env, planned, approval("0" * 64))
    with pytest.raises(RuntimeError, match="not the one approved"):
        remediate.apply(env.params, planned, hitl, RUN)
    assert env.ran == []
    (d,) = RemediationStore(env.store).decisions(DAY)
    assert d.plan_sha256 == "0" * 64 and "nothing runs" in d.detail  # what the approver answered, not the XCom


def test_an_answer_without_a_stored_approval_of_this_run_runs_nothing(env):
    p = the_plan("i-0aaa")
    planned = show(env, p)
    with pytest.raises(RuntimeError, match="no recorded approval"):
        remediate.apply(env.params, planned, approval(p.hash), RUN)  # nothing was recorded for this run
    remediate.record_decision(env.params, planned, approval(p.hash), "manual__another_run")
    with pytest.raises(RuntimeError, match="no recorded approval"):
        remediate.apply(env.params, planned, approval(p.hash), RUN)
    assert env.ran == []


@pytest.mark.parametrize("command", ["/sbin/reboot", "sudo -n /usr/bin/systemctl enable --now auditd; id"])
def test_a_command_that_is_not_the_catalogue_s_fix_is_refused_and_recorded(env, command):
    """Approved, hash intact, and still refused: the runner itself checks every command against the catalogue."""
    p = with_command(the_plan("i-0aaa", "i-0bbb"), "i-0bbb", command)
    planned = show(env, p)
    remediate.apply(env.params, planned, approve(env, planned, approval(p.hash)), RUN)
    assert env.ran == ["i-0aaa"]
    recs = {r.host_id: r for r in RemediationStore(env.store).day_remediations(DAY)}
    assert recs["i-0bbb"].outcome == "refused" and "catalogue" in recs["i-0bbb"].detail
    assert recs["i-0bbb"].fixes == [] and recs["i-0aaa"].outcome == remediate.UNVERIFIED


# ---------------------------------------------------------------- the remediation login

def _conns(monkeypatch, audit_login: str | None, remediation_login: str | None) -> None:
    for var, login in (("AIRFLOW_CONN_EC2_AUDIT_SSH", audit_login),
                       ("AIRFLOW_CONN_EC2_AUDIT_REMEDIATE_SSH", remediation_login)):
        conn = {"conn_type": "ssh", "extra": {"key_file": "/nonexistent/id", "host_key_policy": "tofu"}}
        monkeypatch.setenv(var, json.dumps({**conn, **({"login": login} if login else {})}))


@pytest.mark.parametrize("audit, fixer", [("ec2-audit", "ec2-audit"), (None, "ec2-user"), ("ec2-audit", " ec2-audit ")])
def test_the_remediation_login_must_not_be_the_audit_s(monkeypatch, audit, fixer):
    _conns(monkeypatch, audit, fixer)
    with pytest.raises(ValueError, match="the audit's own"):
        remediate.remediate_ssh_settings(RemediateParams())


def test_a_run_that_may_change_hosts_is_refused_at_its_start_with_the_audit_s_login(monkeypatch, tmp_path):
    _conns(monkeypatch, "ec2-audit", "ec2-audit")
    monkeypatch.setattr(remediate, "store_of", lambda params: SimpleNamespace(day_items=lambda day: [],
                                                                              add_decision=lambda *a: None))
    monkeypatch.setattr(remediate, "RemediationStore", lambda store: store)  # the fake answers for both owners
    with pytest.raises(ValueError, match="the audit's own"):
        remediate.build_plan(RemediateParams(dry_run=False, report_dir=str(tmp_path)), DAY, RUN)
    # a dry run changes nothing and needs no remediation login
    dry = remediate.build_plan(RemediateParams(dry_run=True, report_dir=str(tmp_path)), DAY, RUN)
    assert dry.hosts == 0


def test_a_remediation_login_of_its_own_is_used(monkeypatch):
    _conns(monkeypatch, "ec2-audit", "ec2-fix")
    assert remediate.remediate_ssh_settings(RemediateParams()).username == "ec2-fix"


# ------------------------------------------------------------------ the re-check is an observation of its own day

def _recheck(env, monkeypatch, today: str, status: str = "COMPLIANT") -> list:
    """reverify with the verify path's batch standing in: it stores one observation per host through the
    store's real write (put_observations), as verify_batch's writer does, and records the contexts it got."""
    from include.core import clock
    from include.core.status import Status
    from include.evidence.store import instance_item
    from include.tasks import audit as pipeline
    from include.verify import batch as verify

    seen = []

    def fake_verify_batch(batch, ctx, ec2, logs, store, **kwargs):
        assert set(kwargs) <= {"eic_client", "ssm_client", "s3_client", "stage"}  # no sink: stored like any check
        seen.append(ctx)
        store.put_observations([instance_item(
            host=Host(i, batch.region, "123456789012", "10.0.0.5"), outcome=None, status=Status(status), failed=[],
            verdicts={}, detail="re-checked", audit_date=ctx.audit_date, run_id=ctx.run_id, trigger=ctx.trigger,
            checked_at=datetime.fromisoformat(f"{today}T12:00:00+00:00"), ttl_days=400) for i in batch.instance_ids])

    monkeypatch.setattr(clock, "utc_now", lambda: datetime.fromisoformat(f"{today}T12:00:00+00:00"))
    monkeypatch.setattr(verify, "verify_batch", fake_verify_batch)
    for name in ("ec2_client", "logs_client", "ssh_settings"):
        monkeypatch.setattr(pipeline, name, lambda *a, **k: None)
    return seen


def _applied(env):
    p = the_plan("i-0aaa")
    planned = show(env, p)
    return remediate.apply(env.params, planned, approve(env, planned, approval(p.hash)), RUN)


def test_the_re_check_is_an_observation_of_the_day_it_runs_read_back_for_the_outcome(env, monkeypatch):
    audited = env.store.put_observations([{**item("i-0aaa").to_item(), "trigger": "schedule"}])
    applied = _applied(env)
    seen = _recheck(env, monkeypatch, "2026-12-04")
    verified = remediate.reverify(env.params, applied, RUN)
    assert [(c.audit_date, c.trigger) for c in seen] == [("2026-12-04", "remediation")]
    (after,) = env.store.observations("i-0aaa", "2026-12-04")
    assert (after["run_id"], after["trigger"], after["status"], after["seq"]) == (RUN, "remediation", "COMPLIANT", 1)
    assert env.store.observations("i-0aaa", DAY) == audited  # the remediated day's evidence is what the audit saw
    (rec,) = RemediationStore(env.store).day_remediations(DAY)
    assert (rec.after_status, rec.after_day, rec.after_seq, rec.after_checked_at) == (
        "COMPLIANT", "2026-12-04", 1, after["checked_at"])
    assert verified.outcomes == {"i-0aaa": rec.outcome}


def test_a_re_check_on_the_remediated_day_keeps_the_audit_s_observation_as_a_version(env, monkeypatch):
    env.store.put_observations([{**item("i-0aaa").to_item(), "trigger": "schedule"}])
    applied = _applied(env)
    _recheck(env, monkeypatch, DAY, status="NON_COMPLIANT")
    remediate.reverify(env.params, applied, RUN)
    audit, recheck = env.store.observations("i-0aaa", DAY)
    assert (audit["item_type"], audit["run_id"], audit["status"]) == ("version", "scheduled__1", "NON_COMPLIANT")
    assert (recheck["item_type"], recheck["run_id"], recheck["trigger"], recheck["seq"]) == (
        "instance", RUN, "remediation", 2)
    (rec,) = RemediationStore(env.store).day_remediations(DAY)
    assert (rec.after_day, rec.after_seq, rec.after_status) == (DAY, 2, "NON_COMPLIANT")


def test_the_re_check_read_back_is_this_run_s_even_when_a_later_check_is_current():
    from include.tasks.remediate import recheck_of

    history = [{"instance_id": "i-1", "run_id": "daily", "trigger": "schedule", "seq": 1, "status": "NON_COMPLIANT"},
               {"instance_id": "i-1", "run_id": RUN, "trigger": "remediation", "seq": 2, "status": "COMPLIANT"},
               {"instance_id": "i-1", "run_id": "watch", "trigger": "tamper", "seq": 3, "status": "NON_COMPLIANT"}]
    assert (recheck_of(history, RUN).seq, recheck_of(history, RUN).status) == (2, "COMPLIANT")
    assert recheck_of(history[:1], RUN) is None


def test_each_host_is_recorded_applying_before_its_fixes_run(env, monkeypatch):
    """A fix's own `augenrules --load` writes rule deletions: the watch's tamper alert must find the run applying."""
    from include.notify.tamper import remediation_lookup
    from include.remediation import runner as fix_runner
    from include.watch.records import Recheck

    seen: list[str] = []
    fake = fix_runner.fix_hosts

    async def looking(plans, hosts, settings, pins, concurrency=10):
        lookup = remediation_lookup(env.store, [Recheck("i-0aaa", "us-east-1", "tamper", first_at="2026-12-01T10:06:00Z")],
                                    now=AT)
        seen.append(lookup("i-0aaa"))
        return await fake(plans, hosts, settings, pins, concurrency)

    monkeypatch.setattr(fix_runner, "fix_hosts", looking)
    p = the_plan("i-0aaa")
    planned = show(env, p)
    remediate.apply(env.params, planned, approve(env, planned, approval(p.hash)), RUN)
    assert len(seen) == 1 and "applying" in seen[0] and RUN in seen[0]
    (rec,) = RemediationStore(env.store).day_remediations(DAY)
    assert rec.outcome == "unverified"  # the same attempt, completed once the fixes ran
