"""Daily proof that every Linux EC2 instance keeps an audit trail (auditd + CloudWatch agent → Logs).

discover → plan_batches → verify_batch (mapped, retried) → store_evidence → build_report → send_report
→ confirm_complete (fails the run, after the email, if a batch failed after all retries)
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from include import pipeline
from include.config import DEFAULT_TABLE, AuditParams

PARAMS = {
    "regions": Param([], type="array", items={"type": "string"},
                     description="AWS regions to audit; empty = the AWS connection's region"),
    "tag_filters": Param({}, type="object", description='Only instances matching all, e.g. {"Environment": ["prod"]}'),
    "batch_size": Param(0, type="integer", minimum=0, description="Hosts per mapped batch; 0 = automatic"),
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
    "rule_set": Param("cis", type="string", description="Audit rule groups required: cis, minimal, or a JSON file path"),
}


def _params() -> AuditParams:
    return AuditParams.from_params(dict(get_current_context()["params"]))


@dag(
    dag_id="ec2_audit_compliance",
    schedule=os.environ.get("EC2_AUDIT_SCHEDULE", "0 6 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["security", "compliance"],
    params=PARAMS,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": True,
                  "max_retry_delay": timedelta(minutes=5)},
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
    def confirm_complete(built: dict, sent: str) -> str:
        return pipeline.confirm_complete(built)

    inventory = discover()
    results = verify_batch.expand(batch=plan_batches(inventory))
    built = build_report(store_evidence(inventory, results))
    confirm_complete(built, send_report(built))


ec2_audit_compliance()
