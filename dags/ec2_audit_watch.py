"""Between the daily runs: a host that launches, writes an audit record of tampering, or whose audit stream goes
silent is re-checked within minutes, through the daily path (CONTRACT "Security events and checks between runs").

Scheduled on an Asset whose AssetWatcher (common-messaging's MessageQueueTrigger, scheme "sqs", run by the
triggerer) reads the events queue `EC2_AUDIT_EVENTS_QUEUE_URL`: each asset event holds the messages it received,
so a failed run is retried from them. A manual run replays messages: conf `{"events": [<message body>, ...]}`.

collect → wait_for_boot → plan_batches → verify_batch (mapped; the daily DAG's own step) → finish
→ wait_for_grace → second_look
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetWatcher, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from include.fleet.batching import Batch
from include.notify.channels import PipelineFailureNotifier
from include.settings.schema import dag_params
from include.tasks import audit as pipeline
from include.tasks import params as task_params
from include.tasks import watch
from include.tasks.waiting import WaitUntil
from include.verify.result import BatchResult
from include.watch.records import WatchPlan

# The poll interval bounds the latency when the queue was empty (the trigger's default is 60 s); a long poll of
# WAIT seconds answers at once when a message arrives.
POLL_SECONDS = int(os.environ.get("EC2_AUDIT_WATCH_POLL_SECONDS", "5"))
WAIT_SECONDS = int(os.environ.get("EC2_AUDIT_WATCH_WAIT_SECONDS", "10"))
QUEUE_URL = watch.queue_url()


def events_asset() -> Asset | None:
    """The events queue as an Asset the triggerer watches; None without a queue (the DAG then runs replays only)."""
    if not QUEUE_URL:
        return None
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    trigger = MessageQueueTrigger(scheme="sqs", sqs_queue=QUEUE_URL, aws_conn_id="aws_default",
                                  waiter_delay=POLL_SECONDS, wait_time_seconds=WAIT_SECONDS, max_messages=10,
                                  num_batches=1)
    return Asset("ec2_audit_events", uri=f"sqs-queue://{QUEUE_URL.split('://', 1)[-1]}",
                 watchers=[AssetWatcher(name="ec2_audit_events_queue", trigger=trigger)])


EVENTS = events_asset()


@dag(
    dag_id="ec2_audit_watch",
    schedule=[EVENTS] if EVENTS else None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Runs may overlap (a launch's boot, a clean stop's grace): conditional writes keep every observation.
    max_active_runs=int(os.environ.get("EC2_AUDIT_WATCH_MAX_RUNS", "4")),
    tags=["security", "compliance", "watch"],
    params=dag_params(),
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10), "execution_timeout": timedelta(minutes=20),
                  "on_failure_callback": PipelineFailureNotifier()},
    doc_md=__doc__,
)
def ec2_audit_watch():
    @task
    def collect() -> dict:
        # Bad params fail here, naming the field; bad messages never fail the run (logged and counted).
        context = get_current_context()
        try:
            params = task_params.current_audit_params()
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        plan = watch.collect(params, watch.message_bodies(context), context["dag_run"].run_id)
        from dataclasses import replace

        return replace(plan, alerted=watch.alert_at_once(params, plan)).to_xcom()

    wait_for_boot = WaitUntil(
        task_id="wait_for_boot", target_time="{{ ti.xcom_pull(task_ids='collect')['wait_until'] }}")

    @task
    def plan_batches(plan: dict) -> list[dict]:
        return [b.to_xcom() for b in watch.plan(task_params.current_audit_params(), WatchPlan.from_xcom(plan))]

    @task(map_index_template="{{ batch_label }}", retries=3, execution_timeout=timedelta(minutes=60))
    def verify_batch(batch: dict) -> dict:
        context = get_current_context()
        context["batch_label"] = batch["label"]
        ti = context["ti"]
        b = Batch.from_xcom(batch)
        return pipeline.verify(watch.params_for(task_params.current_audit_params(), b.trigger), b,
                               final_try=ti.try_number > ti.max_tries).to_xcom()

    @task(trigger_rule="none_failed")
    def finish(plan: dict, results: list[dict]) -> dict:
        return watch.finish(task_params.current_audit_params(), WatchPlan.from_xcom(plan),
                            [BatchResult.from_xcom(r) for r in results or []])

    wait_for_grace = WaitUntil(
        task_id="wait_for_grace", target_time="{{ ti.xcom_pull(task_ids='finish')['at'] }}")

    @task
    def second_look(plan: dict, looked: dict) -> str:
        return watch.second_look(task_params.current_audit_params(), WatchPlan.from_xcom(plan), looked)

    plan = collect()
    batches = plan_batches(plan)
    plan >> wait_for_boot >> batches
    looked = finish(plan, verify_batch.expand(batch=batches))
    looked >> wait_for_grace >> second_look(plan, looked)


ec2_audit_watch()
