"""The remediation DAG's decisions that need no host: the answer read from the approval, the outcome read from
re-verification, what is refused before any connection, the params, the DAG's shape."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from include.core.host import Host
from include.evidence.records import EvidenceItem
from include.reach.hostkeys import Pin
from include.remediation.plan import HostPlan, PlannedFix, PlannedStep
from include.remediation.records import FixRun
from include.remediation.results import Answer, Planned
from include.remediation.runner import HostFixes, precheck, settle
from include.settings.params import RemediateParams
from include.tasks.remediate import outcome_of

ROOT = Path(__file__).resolve().parents[3]
AT = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)


def _plan(fp: str = "SHA256:aaa") -> HostPlan:
    return HostPlan(instance_id="i-0123456789abcdef0", name="web", address="10.0.0.5", region="us-east-1",
                    account_id="123456789012", audit_date="2026-12-01", status="NON_COMPLIANT",
                    failed_checks=("auditd.running",), advisory_failed=(),
                    fixes=(PlannedFix("auditd.start", ("auditd.running",), "start", (PlannedStep("true"),)),),
                    manual=(), evidence_run_id="r1", evidence_output_sha256="ab" * 32, host_key_fingerprint=fp,
                    transport="ssh")


HOST = Host(instance_id="i-0123456789abcdef0", region="us-east-1", account_id="123456789012", address="10.0.0.5")


# ---------------------------------------------------------------- the answer

def answer(hitl) -> tuple[str, str, str]:
    """(decision, by, at) of the approval task's result as the DAG reads it."""
    a = Answer.from_xcom(hitl)
    return a.decision, a.by, a.at


def test_an_approval_names_the_person_and_the_time():
    hitl = {"chosen_options": ["Approve"], "responded_by_user": {"id": "alice", "name": "Alice"}, "responded_at": AT}
    assert answer(hitl) == ("approved", "Alice (id alice)", str(AT))


def test_reject_is_rejected_and_the_timeout_default_is_never_an_approval():
    by = {"id": "bob", "name": "bob"}
    assert answer({"chosen_options": ["Reject"], "responded_by_user": by, "responded_at": AT})[0] == "rejected"
    # The scheduler's sweep writes the default with no user: even an "Approve" default would not count.
    assert answer({"chosen_options": ["Approve"], "responded_by_user": None, "responded_at": AT})[0] == "timed_out"
    assert answer(None)[0] == "no_answer"  # the approval task failed: still never an approval
    assert answer({"chosen_options": [], "responded_by_user": by})[0] == "rejected"


# ---------------------------------------------------------------- refused before connecting

def test_a_host_is_only_touched_with_a_pin_that_is_the_evidence_s_key():
    pin = Pin(key="ssh-ed25519 AAAA", fingerprint="SHA256:aaa")
    assert precheck(_plan(), HOST, pin, "tofu") == ""
    assert "first use" in precheck(_plan(), HOST, None, "tofu")
    assert "insecure" in precheck(_plan(), HOST, pin, "insecure")
    assert "not the one the plan's evidence saw" in precheck(_plan("SHA256:old"), HOST, pin, "tofu")
    assert precheck(_plan(), None, pin, "tofu") == "no longer running"
    assert precheck(_plan(), HOST, None, "strict") == ""  # strict: known_hosts decides during key exchange


# ---------------------------------------------------------------- a host's result from its fixes

@pytest.mark.parametrize("results, expected", [
    (["ran"], "ran"), (["refused"], "refused"), (["ran", "refused"], "ran"), (["ran", "failed"], "failed"),
])
def test_the_host_result_is_its_worst_fix(results, expected):
    plan = _plan()
    plan = HostPlan(**{**plan.__dict__, "fixes": plan.fixes * len(results)})
    r = HostFixes(plan.instance_id, "")
    r.fixes = [FixRun(f"f{i}", [], res) for i, res in enumerate(results)]
    settle(r, plan)
    assert r.result == expected


def test_a_fix_cut_short_is_failed_and_still_reverified():
    plan = _plan()
    plan = HostPlan(**{**plan.__dict__, "fixes": plan.fixes * 2})
    r = HostFixes(plan.instance_id, "")
    r.fixes = [FixRun("a", [], "ran")]  # the second never finished
    settle(r, plan)
    assert r.result == "failed" and r.touched


# ---------------------------------------------------------------- the outcome from re-verification

FIXES = [{"fix": "auditd.start", "check_ids": ["auditd.running", "auditd.enabled_on_boot"]}]


def outcome_after(fixes, host_result: str, after: dict) -> tuple[str, str]:
    """outcome_of over the re-verified item built from `after`'s fields."""
    return outcome_of(fixes, host_result, EvidenceItem("i-0123456789abcdef0", **after))


def test_fixed_only_when_every_addressed_check_passes():
    after = {"status": "COMPLIANT", "checks": {"auditd.running": {"status": "PASS"},
                                                "auditd.enabled_on_boot": {"status": "PASS"}}}
    assert outcome_after(FIXES, "ran", after)[0] == "fixed"


def test_a_fix_that_did_not_make_its_check_pass_is_not_fixed_and_names_it():
    after = {"status": "NON_COMPLIANT", "checks": {"auditd.running": {"status": "FAIL"},
                                                    "auditd.enabled_on_boot": {"status": "PASS"}}}
    outcome, detail = outcome_after(FIXES, "ran", after)
    assert outcome == "not_fixed" and "auditd.running" in detail


def test_what_re_verification_could_not_see_is_never_fixed():
    for after in ({"status": "UNREACHABLE", "checks": {}}, {"status": "ERROR"},
                  {"status": "COMPLIANT", "checks": {"auditd.running": {"status": "ERROR"},
                                                     "auditd.enabled_on_boot": {"status": "PASS"}}}):
        assert outcome_after(FIXES, "ran", after)[0] == "not_fixed", after
    assert outcome_after([], "ran", {"status": "COMPLIANT"})[0] == "not_fixed"  # nothing addressed, nothing proven


def test_a_failed_step_stays_failed_even_if_the_host_passes_later():
    after = {"status": "COMPLIANT", "checks": {"auditd.running": {"status": "PASS"},
                                                "auditd.enabled_on_boot": {"status": "PASS"}}}
    assert outcome_after(FIXES, "failed", after)[0] == "failed"


# ---------------------------------------------------------------- params

def test_remediation_params_default_to_a_dry_run_and_bad_ones_are_named():
    assert RemediateParams.from_params({}).dry_run is True
    with pytest.raises(ValueError) as err:
        RemediateParams.from_params({"audit_date": "2026-02-30", "approval_timeout": 0,
                                     "log_group": "bad group"})
    text = str(err.value)
    assert "approval_timeout" in text and "log_group" in text
    with pytest.raises(ValueError, match="audit_date"):
        RemediateParams.from_params({"audit_date": "2026-02-30"})


# ---------------------------------------------------------------- the DAG

@pytest.fixture(scope="module")
def dag(dag_bag):
    return dag_bag.get_dag("ec2_audit_remediate")


def test_the_remediation_dag_is_manual_approval_gated_and_never_retries_a_change(dag):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    assert dag.timetable.__class__.__name__ == "NullTimetable"  # manual only, unless EC2_AUDIT_REMEDIATE_ON_EVIDENCE
    assert dag.max_active_runs == 1 and dag.params["dry_run"] is True
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator) and approve.defaults == ["Reject"]
    assert dag.get_task("apply_fixes").retries == 0
    assert "approve" in dag.get_task("apply_fixes").upstream_task_ids
    assert dag.get_task("needs_approval").task_id in approve.upstream_task_ids
    # record_decision must not be the approval's direct downstream: a Reject skips those.
    assert "record_decision" not in approve.downstream_task_ids
    assert dag.get_task("record_decision").trigger_rule == "all_done"


def test_the_day_is_the_param_else_the_triggering_evidence_event_s():
    from types import SimpleNamespace

    from include.tasks.remediate import resolve_day

    events = {"ec2_audit_evidence": [SimpleNamespace(extra={"audit_date": "2026-11-29"}),
                                     SimpleNamespace(extra={"audit_date": "2026-11-30"})]}
    assert resolve_day(RemediateParams(audit_date="2026-11-01"), events) == "2026-11-01"
    assert resolve_day(RemediateParams(), events) == "2026-11-30"  # the latest event


def test_on_evidence_the_dag_is_scheduled_by_the_audit_s_asset(monkeypatch, airflow_db):
    import importlib.util

    monkeypatch.setenv("EC2_AUDIT_REMEDIATE_ON_EVIDENCE", "1")
    spec = importlib.util.spec_from_file_location("remediate_on_evidence", ROOT / "dags" / "ec2_audit_remediate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.ec2_audit_remediate()
    assert dag.timetable.__class__.__name__ == "AssetTriggeredTimetable"
    assert "ec2-audit://evidence" in str(dag.timetable.asset_condition)


def test_every_remediation_task_has_an_execution_timeout(dag):
    for t in dag.tasks:
        assert t.execution_timeout is not None and t.execution_timeout.total_seconds() > 0, t.task_id
    # the approval's timeout bounds its own steps; the wait for an answer is approval_timeout (response_timeout)
    assert dag.get_task("approve").response_timeout is not None


def test_apply_fixes_is_given_the_time_its_hosts_budgets_need(dag):
    import copy
    import math

    from include.tasks.remediate import apply_timeout, remediate_ssh_settings  # noqa: F401 - the budget's owner

    params = RemediateParams.from_params({"max_hosts": 1000, "concurrency": 3, "command_timeout": 600})
    waves = math.ceil(1000 / 3)
    assert apply_timeout(params).total_seconds() > waves * (600 * 6 + 30)
    task = copy.copy(dag.get_task("apply_fixes"))
    task._pre_execute_hook({"task": task, "params": {"max_hosts": 1000, "concurrency": 3, "command_timeout": 600}})
    assert task.execution_timeout == apply_timeout(params)


def test_the_approval_form_carries_the_plan_hash_and_its_answer_is_accepted(dag, monkeypatch):
    import copy
    from types import SimpleNamespace

    import airflow.providers.standard.operators.hitl as hitl_module
    from airflow.sdk.exceptions import TaskAwaitingInput

    from include.tasks import remediate

    approve = copy.copy(dag.get_task("approve"))  # execute sets attributes: not on the module's DAG
    assert list(approve.params) == [remediate.PLAN_HASH_PARAM]  # only the hash: never the run's params
    seen = {}
    monkeypatch.setattr(remediate, "record_decision", lambda params, planned, hitl, run_id: seen.update(hitl=hitl))
    monkeypatch.setattr(hitl_module, "upsert_hitl_detail", lambda **kw: seen.update(request=kw))
    sha = "ab" * 32
    planned = Planned("2026-12-01", "{}", sha, "", hosts=1, fixes=1, dry_run=False).to_xcom()
    ti = SimpleNamespace(xcom_pull=lambda task_ids: planned, task_id="approve", id="ti-1")
    with pytest.raises(TaskAwaitingInput):  # the request is written, then the task waits for an answer
        approve.execute({"params": dict(dag.params), "ti": ti, "task_instance": ti})
    assert seen["request"]["params"][remediate.PLAN_HASH_PARAM]["value"] == sha  # the form, filled with the hash
    event = {"chosen_options": ["Approve"], "params_input": {remediate.PLAN_HASH_PARAM: sha}, "responded_at": AT,
             "responded_by_user": {"id": "alice", "name": "alice"}}
    ret = approve.execute_complete({"params": dict(dag.params), "ti": ti, "dag_run": SimpleNamespace(run_id="r")},
                                   event)
    assert ret["params_input"] == {remediate.PLAN_HASH_PARAM: sha} and seen["hitl"] == Answer.from_xcom(event)


def test_approvers_come_from_the_deployment_s_config_only(monkeypatch, airflow_db):
    import importlib.util

    monkeypatch.setenv("EC2_AUDIT_REMEDIATION_APPROVERS", " alice, bob ,,")
    spec = importlib.util.spec_from_file_location("remediate_approvers", ROOT / "dags" / "ec2_audit_remediate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    approve = module.ec2_audit_remediate().get_task("approve")
    assert approve.assigned_users == [{"id": "alice", "name": "alice"}, {"id": "bob", "name": "bob"}]
    assert "approvers" not in " ".join(module.ec2_audit_remediate().params)  # never a run param


def test_the_plan_s_xcom_has_every_key_the_approval_s_templates_read(dag, monkeypatch, tmp_path):
    """The approval's subject and body are Jinja over plan_fixes' XCom (`planned['hosts']`, `['sha256']`, ...):
    Airflow renders a missing key as an empty string, so an approver would be asked about a plan with no hash
    shown. Rendered here strictly over what the plan_fixes task itself returns."""
    import json
    import re
    from types import SimpleNamespace

    import jinja2

    from include.tasks import remediate

    monkeypatch.setattr(remediate, "store_of", lambda params: SimpleNamespace(day_items=lambda day: [],
                                                                              add_decision=lambda *a: None))
    monkeypatch.setattr(remediate, "RemediationStore", lambda store: store)
    plan_fixes = dag.get_task("plan_fixes").python_callable
    params = RemediateParams(dry_run=True, report_dir=str(tmp_path), audit_date="2026-12-01")
    monkeypatch.setitem(plan_fixes.__globals__, "_params", lambda: params)
    monkeypatch.setitem(plan_fixes.__globals__, "get_current_context",
                        lambda: {"dag_run": SimpleNamespace(run_id="manual__r")})
    payload = json.loads(json.dumps(plan_fixes()))  # as XCom stores it
    approve = dag.get_task("approve")
    templates = [approve.subject, approve.body]
    read = {k for t in templates for k in re.findall(r"xcom_pull\(task_ids='plan_fixes'\)\['(\w+)'\]", t)}
    assert read >= {"hosts", "audit_date", "sha256", "markdown"}, read  # the pattern still finds what they read
    assert read <= set(payload), read - set(payload)
    ti = SimpleNamespace(xcom_pull=lambda task_ids: payload)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    subject, body = (env.from_string(t).render(ti=ti) for t in templates)
    assert subject == f"Remediate 0 hosts of 2026-12-01 (plan {payload['sha256'][:12]})" and body == payload["markdown"]
