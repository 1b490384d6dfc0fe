"""Daily proof that every Linux EC2 instance keeps an audit trail (auditd + CloudWatch agent → Logs).

discover → plan_batches → verify_batch (mapped, retried) → store_evidence → build_report → send_report
+ send_alerts + export_findings (Security Hub) → confirm_complete (fails the run, after the email, if a batch failed after all retries)
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from include.evidence.sealed import Sealed
from include.fleet.batching import Batch
from include.fleet.inventory import Inventory
from include.notify.channels import PipelineFailureNotifier
from include.notify.deadline import alert as report_deadline
from include.report.built import Built
from include.settings import queues
from include.settings.params import AuditParams
from include.settings.schema import dag_params
from include.tasks import audit as pipeline
from include.tasks import params as task_params
from include.tasks.assets import EVIDENCE, REPORT, evidence_extra, report_extra
from include.verify.result import BatchResult

# Built from include/settings/schema.py PARAM_SCHEMAS, the one declared schema of the params: the trigger and
# backfill forms check these JSON schemas, and every task checks the run's params against the same ones.
PARAMS = dag_params()


# Seconds before a failed task's first retry (doubling after). Tests and impatient operators lower it.
RETRY_DELAY = timedelta(seconds=int(os.environ.get("EC2_AUDIT_RETRY_DELAY_SECONDS", "20")))
# No task may hang a run: a batch's SSH is bounded per host (≤ 90 s) and its AWS judging by a budget
# (include/verify/judge.py: JUDGE_BUDGET_S, 15 min) plus the canary wait (≤ 10 min); every other step is AWS calls.
TASK_TIMEOUT = timedelta(minutes=20)
BATCH_TIMEOUT = timedelta(minutes=60)
# Deployment config read at parse time (include/settings/queues.py): the queues of workers placed inside VPCs. A mapped
# task's queue is fixed when it is parsed, so each queue gets its own mapped verify task; none → the plain shape.
VERIFY_QUEUES, QUEUE_EXECUTOR = queues.deployment_queues(), queues.queue_executor()


def _params() -> AuditParams:
    return task_params.current_audit_params()


@dag(
    dag_id="ec2_audit_compliance",
    # Daily at 06:00 UTC; EC2_AUDIT_SCHEDULE sets another cron, or "none" for manual runs only.
    schedule=None if os.environ.get("EC2_AUDIT_SCHEDULE", "").lower() == "none"
    else os.environ.get("EC2_AUDIT_SCHEDULE", "0 6 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["security", "compliance"],
    params=PARAMS,
    default_args={"retries": 2, "retry_delay": RETRY_DELAY, "retry_exponential_backoff": True,
                  "max_retry_delay": timedelta(minutes=5), "execution_timeout": TASK_TIMEOUT,
                  "on_failure_callback": PipelineFailureNotifier()},  # after the last retry only
    on_failure_callback=PipelineFailureNotifier(),
    # The day's report not out within EC2_AUDIT_REPORT_DEADLINE_MINUTES of the run being queued: a notice.
    deadline=report_deadline(),
    doc_md=__doc__,
)
def ec2_audit_compliance():
    # XCom carries plain dicts (the UI shows them); each task reads them back as the typed records the steps
    # take (X.from_xcom) and returns what its step returns as X.to_xcom().
    @task
    def discover() -> dict:
        # First task: every param and the files they name are checked here, before any host is contacted.
        # A bad input fails the run at once with one error naming each problem (a retry cannot fix it).
        # Later tasks re-parse the same params.
        # So do mode=live for a day long past (nothing is written: a live check observes today) and a
        # kms_key_id or evidence_bucket that cannot be used (discover probes them before any host).
        try:
            params = _params()
            return pipeline.discover(params, pipeline.run_facts(get_current_context())).to_xcom()
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None

    @task
    def plan_batches(inventory: dict) -> list[dict]:
        return [b.to_xcom() for b in pipeline.plan(_params(), Inventory.from_xcom(inventory))]

    @task(map_index_template="{{ batch_label }}", retries=3, execution_timeout=BATCH_TIMEOUT)
    def verify_batch(batch: dict) -> dict:
        context = get_current_context()
        context["batch_label"] = batch["label"]
        ti = context["ti"]
        return pipeline.verify(_params(), Batch.from_xcom(batch), final_try=ti.try_number > ti.max_tries).to_xcom()

    # The day's evidence and report are Assets: downstream DAGs schedule on them (include/tasks/assets.py).
    @task(trigger_rule="none_failed", outlets=[EVIDENCE])
    def store_evidence(inventory: dict, results: list[dict]) -> dict:
        params = _params()
        sealed = pipeline.store_summary(params, Inventory.from_xcom(inventory),
                                        [BatchResult.from_xcom(r) for r in results or []])
        get_current_context()["outlet_events"][EVIDENCE].extra = evidence_extra(params.evidence_table, sealed)
        return sealed.to_xcom()

    @task(trigger_rule="none_failed", outlets=[REPORT])
    def build_report(sealed: dict) -> dict:
        built = pipeline.build(_params(), Sealed.from_xcom(sealed))
        get_current_context()["outlet_events"][REPORT].extra = report_extra(built)
        return built.to_xcom()

    @task(trigger_rule="none_failed")
    def send_report(built: dict) -> str:
        return pipeline.send(_params(), Built.from_xcom(built))

    @task(trigger_rule="none_failed")
    def send_alerts(built: dict) -> str:
        return pipeline.alert(_params(), Built.from_xcom(built))

    @task(trigger_rule="none_failed")
    def export_findings(built: dict, inventory: dict) -> dict:
        # The inventory says what this run re-checked: only those findings are its to resolve or archive.
        return pipeline.export_findings(_params(), Built.from_xcom(built), Inventory.from_xcom(inventory)).to_xcom()

    @task(trigger_rule="none_failed")
    def confirm_complete(built: dict, sent: str, alerted: str, exported: dict) -> str:
        return pipeline.confirm_complete(Built.from_xcom(built))

    inventory = discover()
    planned = plan_batches(inventory)
    if not VERIFY_QUEUES:
        results = verify_batch.expand(batch=planned)
    else:
        @task
        def batches_for(planned: list[dict], queue: str) -> list[dict]:
            return [b.to_xcom() for b in queues.select([Batch.from_xcom(b) for b in planned], queue)]

        # verify_batch on the default queue, verify_batch__<queue> on each other, each over its own batches.
        mapped = [(verify_batch if q == queues.DEFAULT else verify_batch.override(**queues.verify_overrides(q, QUEUE_EXECUTOR)))
                  .expand(batch=batches_for.override(task_id=queues.select_task_id(q))(planned, q))
                  for q in queues.allowed_queues(VERIFY_QUEUES)]
        results = mapped[0].concat(*mapped[1:])
    built = build_report(store_evidence(inventory, results))
    confirm_complete(built, send_report(built), send_alerts(built), export_findings(built, inventory))


ec2_audit_compliance()
