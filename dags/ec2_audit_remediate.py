"""Approval-gated remediation of one audit day: plan from the evidence, a person approves, fix, re-verify, record.

plan_fixes → needs_approval (dry run or nothing to fix: stop here) → approve (Airflow's human-in-the-loop
ApprovalOperator: the plan and its SHA-256 on screen) → apply_fixes (ec2_audit_remediate_ssh, pinned keys
only) → reverify (the audit's own verify path and read-only login) → publish (the day's report, rebuilt with
its Remediated section). The approval records who approved, rejected or let it time out; record_decision
records an approval task that failed without an answer.

Manual by default (dry_run=true: shows exactly what would run, touches nothing). EC2_AUDIT_REMEDIATE_ON_EVIDENCE=1
schedules it on the audit's evidence Asset, so each day's plan waits for approval in the Required Actions page.
EC2_AUDIT_REMEDIATION_APPROVERS (comma-separated Airflow user ids) limits who may answer: deployment config,
never a param, since whoever triggers a run could otherwise name themselves.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException

from include.remediation.results import Answer, Applied, Planned, Reverified
from include.settings.params import RemediateParams
from include.settings.schema import REMEDIATE_SCHEMAS, dag_params
from include.tasks import params as task_params
from include.tasks import remediate
from include.tasks.assets import EVIDENCE

APPROVERS = [{"id": u.strip(), "name": u.strip()}
             for u in os.environ.get("EC2_AUDIT_REMEDIATION_APPROVERS", "").split(",") if u.strip()]


# No task may hang a run. apply_fixes is sized per run from its params (remediate.apply_timeout) before it
# starts, so the timeout never cuts hosts inside their own budgets (it is never retried); reverify is the
# audit's verify path over at most max_hosts hosts, like one daily batch.
TASK_TIMEOUT = timedelta(minutes=20)
REVERIFY_TIMEOUT = timedelta(minutes=60)


def _params() -> RemediateParams:
    return task_params.current_remediate_params()


def _plan_hash_param(sha256: str = "") -> dict:
    """The approval form's one field, filled with the plan's hash: the answer carries it back, so what was
    approved is recorded with who approved it (Airflow's HITL detail, then the decision record), and
    apply_fixes runs only a plan with that hash."""
    return {remediate.PLAN_HASH_PARAM: Param(sha256, type="string", title="Plan sha256",
                                             description="The SHA-256 of the plan shown above. Leave it as it "
                                                         "is: the fixes run only from the plan with this hash.")}


def _planned(context) -> Planned:
    return Planned.from_xcom(context["ti"].xcom_pull(task_ids="plan_fixes"))


class PlanApproval(ApprovalOperator):
    """The approval, waiting `approval_timeout` (a run param) and then defaulting to Reject: no answer
    never means yes. The answer is recorded here, as it arrives: a Reject skips every task after this one
    (and leaves no XCom), so no later task could read it."""

    def execute(self, context):
        self.response_timeout = timedelta(minutes=float(context["params"]["approval_timeout"]))
        self.params = ParamsDict(_plan_hash_param(_planned(context).sha256))
        return super().execute(context)

    def execute_complete(self, context, event):
        self.params = ParamsDict(_plan_hash_param())  # the form's fields, to check the answer's against
        if "error" not in event:
            remediate.record_decision(RemediateParams.from_params(dict(context["params"])), _planned(context),
                                      Answer.from_xcom(event), context["dag_run"].run_id)
        return super().execute_complete(context, event)


@dag(
    dag_id="ec2_audit_remediate",
    schedule=[EVIDENCE] if os.environ.get("EC2_AUDIT_REMEDIATE_ON_EVIDENCE", "") in ("1", "true") else None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two plans changing the same hosts at once would each prove nothing
    tags=["security", "compliance", "remediation"],
    params=dag_params(REMEDIATE_SCHEMAS),
    # a step that changes hosts is never retried by itself
    default_args={"retries": 0, "execution_timeout": TASK_TIMEOUT},
    doc_md=__doc__,
)
def ec2_audit_remediate():
    @task
    def plan_fixes() -> dict:
        context = get_current_context()
        try:
            params = _params()
            day = remediate.resolve_day(params, context.get("triggering_asset_events"))
            # XCom keeps the record's dict: the approval's templates read its keys (hosts, sha256, markdown)
            return remediate.build_plan(params, day, context["dag_run"].run_id).to_xcom()
        except ValueError as exc:  # bad params, or a remediation login that is the audit's: refused at start
            raise AirflowFailException(str(exc)) from None

    @task.short_circuit
    def needs_approval(planned: dict) -> bool:
        return remediate.needs_approval(Planned.from_xcom(planned))

    approve = PlanApproval(
        task_id="approve",
        params=_plan_hash_param(),
        response_timeout=timedelta(minutes=REMEDIATE_SCHEMAS["approval_timeout"]["default"]),  # per run: execute
        execution_timeout=TASK_TIMEOUT,  # its own steps only; the wait for an answer is response_timeout
        subject="Remediate {{ ti.xcom_pull(task_ids='plan_fixes')['hosts'] }} hosts of "
                "{{ ti.xcom_pull(task_ids='plan_fixes')['audit_date'] }} "
                "(plan {{ ti.xcom_pull(task_ids='plan_fixes')['sha256'][:12] }})",
        body="{{ ti.xcom_pull(task_ids='plan_fixes')['markdown'] }}",
        defaults="Reject",
        assigned_users=APPROVERS or None,
    )

    def size_apply_timeout(context) -> None:
        context["task"].execution_timeout = remediate.apply_timeout(
            RemediateParams.from_params(dict(context["params"])))

    @task(pre_execute=size_apply_timeout)
    def apply_fixes(planned: dict) -> dict:
        context = get_current_context()
        return remediate.apply(_params(), Planned.from_xcom(planned),
                               Answer.from_xcom(context["ti"].xcom_pull(task_ids="approve")),
                               context["dag_run"].run_id).to_xcom()

    @task(retries=2, retry_delay=timedelta(seconds=30), execution_timeout=REVERIFY_TIMEOUT)  # reading: retry is safe
    def reverify(applied: dict) -> dict:
        return remediate.reverify(_params(), Applied.from_xcom(applied), get_current_context()["dag_run"].run_id).to_xcom()

    @task(retries=2, retry_delay=timedelta(seconds=30))
    def publish(verified: dict) -> dict:
        return remediate.publish(_params(), Reverified.from_xcom(verified)).to_xcom()

    @task(trigger_rule="all_done")
    def record_decision(planned: dict) -> str:
        # The approval recorded its answer; an approval task that failed before one is recorded here.
        return remediate.ensure_decision(_params(), Planned.from_xcom(planned), get_current_context()["dag_run"].run_id)

    planned = plan_fixes()
    applied = apply_fixes(planned)
    needs_approval(planned) >> approve >> applied
    publish(reverify(applied))
    applied >> record_decision(planned)


ec2_audit_remediate()
