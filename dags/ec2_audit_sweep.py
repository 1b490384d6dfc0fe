"""The silence sweep: every EC2_AUDIT_SWEEP_MINUTES (15), AWS-side only (no host contacted), the streams of the
hosts whose latest check passed are listed newest first; a host whose stream has been silent longer than
stream_max_age_minutes goes on the events queue, and ec2_audit_watch re-checks it with the canary
(`trigger: silence`). Scheduled only when EC2_AUDIT_EVENTS_QUEUE_URL names the queue.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import dag, task

from include.notify.channels import PipelineFailureNotifier
from include.settings.schema import dag_params
from include.tasks import params as task_params
from include.tasks import watch

SWEEP_MINUTES = float(os.environ.get("EC2_AUDIT_SWEEP_MINUTES", "15"))


@dag(
    dag_id="ec2_audit_silence_sweep",
    schedule=timedelta(minutes=SWEEP_MINUTES) if watch.queue_url() else None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["security", "compliance", "watch"],
    params=dag_params(),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(minutes=10),
                  "on_failure_callback": PipelineFailureNotifier()},
    doc_md=__doc__,
)
def ec2_audit_silence_sweep():
    @task
    def sweep() -> dict:
        return watch.sweep(task_params.current_audit_params())

    sweep()


ec2_audit_silence_sweep()
