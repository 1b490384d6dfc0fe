"""Daily proof that every Linux EC2 instance keeps an audit trail (auditd + CloudWatch agent → Logs).

discover → plan_batches → verify_batch (mapped, retried) → store_evidence → build_report → send_report
+ send_alerts → confirm_complete (fails the run, after the email, if a batch failed after all retries)
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from include import pipeline
from include.config import DEFAULT_TABLE, AuditParams
from include.notify import PipelineFailureNotifier

PARAMS = {
    "regions": Param([], type="array", items={"type": "string"},
                     description="AWS regions to audit; empty = the AWS connection's region"),
    "accounts": Param([], type="array", items={"type": "string"},
                      description="Other AWS accounts: IAM role ARNs to assume, or AWS connection ids"),
    "include_default_account": Param(True, type="boolean",
                                     description="Also audit the aws_default connection's own account"),
    "tag_filters": Param({}, type="object", description='Only instances matching all, e.g. {"Environment": ["prod"]}'),
    "batch_size": Param(0, type="integer", minimum=0, description="Hosts per mapped batch; 0 = automatic (about 16 batches of ≥ 50 hosts)"),
    "concurrency": Param(100, type="integer", minimum=1, maximum=1000, description="SSH sessions at once per batch"),
    "recipients": Param([], type="array", items={"type": "string"}, description="Report email recipients"),
    "report_dir": Param("", type="string", description="Report folder; empty = $AIRFLOW_HOME/reports/ec2_audit"),
    "evidence_table": Param(DEFAULT_TABLE, type="string"),
    "create_table": Param(True, type="boolean"),
    "log_group": Param(None, type=["null", "string"], description="Fallback log group when a config names none"),
    "stream_max_age_minutes": Param(120, type="integer", minimum=1),
    "address": Param("private_ip", enum=["private_ip", "public_ip", "private_dns"]),
    "mode": Param("auto", enum=["auto", "live", "rebuild"],
                  description="live SSHes; rebuild only rebuilds the report from stored evidence"),
    "connect_timeout": Param(15, type="integer", minimum=1, maximum=15),
    "host_timeout": Param(90, type="integer", minimum=5, maximum=90),
    "command_timeout": Param(60, type="integer", minimum=5, maximum=85),
    "ttl_days": Param(400, type="integer", minimum=1),
    "waivers_file": Param("", type="string", description="JSON file of approved, expiring waivers (see docs)"),
    "canary": Param(False, type="boolean",
                    description="Write a marker to each host's audit log and find it in CloudWatch Logs"),
    "canary_wait_seconds": Param(90, type="integer", minimum=5, maximum=600),
    "accept_host_keys": Param([], type="array", items={"type": "string"},
                              description="Instance ids whose changed (rotated) host key to accept and re-pin in this run"),
    "alert_recipients": Param([], type="array", items={"type": "string"},
                              description="Who gets immediate alerts (critical failures, low compliance, a failed run)"),
    "alert_threshold_pct": Param(90.0, type="number", minimum=0, maximum=100,
                                 description="Alert when fleet compliance falls below this; 0 = off"),
    "alert_repeat_days": Param(7, type="integer", minimum=0,
                               description="Re-alert a finding still open after this many days; 0 = never"),
    "rule_set": Param("cis", type="string", description="Audit rule groups required: cis, minimal, or a JSON file path"),
}


# Seconds before a failed task's first retry (doubling after). Tests and impatient operators lower it.
RETRY_DELAY = timedelta(seconds=int(os.environ.get("EC2_AUDIT_RETRY_DELAY_SECONDS", "20")))


def _params() -> AuditParams:
    return AuditParams.from_params(dict(get_current_context()["params"]))


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
                  "max_retry_delay": timedelta(minutes=5),
                  "on_failure_callback": PipelineFailureNotifier()},  # after the last retry only
    on_failure_callback=PipelineFailureNotifier(),
    doc_md=__doc__,
)
def ec2_audit_compliance():
    @task
    def discover() -> dict:
        return pipeline.discover(_params(), pipeline.run_facts(get_current_context()))

    @task
    def plan_batches(inventory: dict) -> list[dict]:
        return pipeline.plan(_params(), inventory)

    @task(map_index_template="{{ batch_label }}", retries=3)
    def verify_batch(batch: dict) -> dict:
        context = get_current_context()
        context["batch_label"] = batch["label"]
        ti = context["ti"]
        return pipeline.verify(_params(), batch, final_try=ti.try_number > ti.max_tries)

    @task(trigger_rule="none_failed")
    def store_evidence(inventory: dict, results: list[dict]) -> dict:
        return pipeline.store_summary(_params(), inventory, list(results or []))

    @task(trigger_rule="none_failed")
    def build_report(sealed: dict) -> dict:
        return pipeline.build(_params(), sealed)

    @task(trigger_rule="none_failed")
    def send_report(built: dict) -> str:
        return pipeline.send(_params(), built)

    @task(trigger_rule="none_failed")
    def send_alerts(built: dict) -> str:
        return pipeline.alert(_params(), built)

    @task(trigger_rule="none_failed")
    def confirm_complete(built: dict, sent: str, alerted: str) -> str:
        return pipeline.confirm_complete(built)

    inventory = discover()
    results = verify_batch.expand(batch=plan_batches(inventory))
    built = build_report(store_evidence(inventory, results))
    confirm_complete(built, send_report(built), send_alerts(built))


ec2_audit_compliance()
