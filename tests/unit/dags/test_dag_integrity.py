"""The DAG imports, has the contract's shape, and every task retries."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dag(dag_bag):
    return dag_bag.get_dag("ec2_audit_compliance")


def test_contract_shape(dag):
    assert dag is not None
    assert dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.tags) == {"security", "compliance"}
    assert {"discover", "plan_batches", "verify_batch", "store_evidence", "build_report", "send_report",
            "send_alerts", "export_findings", "confirm_complete"} == set(dag.task_ids)


def test_pipeline_order_has_no_cycles(dag):
    order = [t.task_id for t in dag.topological_sort()]
    for earlier, later in [("discover", "plan_batches"), ("plan_batches", "verify_batch"),
                           ("verify_batch", "store_evidence"), ("store_evidence", "build_report"),
                           ("build_report", "send_report"), ("send_report", "confirm_complete"),
                           ("build_report", "send_alerts"), ("send_alerts", "confirm_complete")]:
        assert order.index(earlier) < order.index(later)


def test_params_are_the_contract(dag):
    expected = {"regions", "tag_filters", "batch_size", "concurrency", "recipients", "report_dir", "evidence_table",
                "create_table", "log_group", "stream_max_age_minutes", "address", "mode", "profile", "transport",
                "waivers_file"}
    assert expected <= set(dag.params.keys())
    assert dag.params["evidence_table"] == "ec2_audit_evidence"
    assert dag.params["stream_max_age_minutes"] == 120 and dag.params["address"] == "private_ip"
    assert dag.params["mode"] == "auto" and dag.params["create_table"] is True
    assert dag.params["profile"] == "audit-trail" and dag.params["transport"] == "ssh"


def test_every_task_retries_and_verify_is_mapped(dag):
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
    verify = dag.get_task("verify_batch")
    assert verify.map_index_template == "{{ batch_label }}"
    assert verify.retry_exponential_backoff


def test_failures_notify_alert_recipients_for_tasks_and_the_run(dag):
    from include.notify.channels import PipelineFailureNotifier

    assert isinstance(dag.on_failure_callback, PipelineFailureNotifier)  # run failed (dag-processor runs it)
    for task in dag.tasks:  # after the last retry only
        callbacks = task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
        assert any(isinstance(c, PipelineFailureNotifier) for c in callbacks), task.task_id


def test_every_task_has_an_execution_timeout_longer_than_its_own_budgets(dag):
    from include.verify.judge import JUDGE_BUDGET_S

    for task in dag.tasks:
        assert task.execution_timeout is not None, task.task_id
    verify = dag.get_task("verify_batch").execution_timeout.total_seconds()
    assert verify > JUDGE_BUDGET_S + 600 + 90  # judging budget + longest canary wait + one host's SSH budget


def test_the_day_s_evidence_and_report_are_assets_for_downstream_dags(dag):
    from include.tasks.assets import EVIDENCE, REPORT

    assert [a.uri for a in dag.get_task("store_evidence").outlets] == [EVIDENCE.uri]
    assert [a.uri for a in dag.get_task("build_report").outlets] == [REPORT.uri]


def test_a_late_report_has_a_deadline_counted_from_when_the_run_was_queued(dag, monkeypatch):
    from airflow.sdk.definitions.deadline import DeadlineReference

    from include.notify import deadline

    assert dag.deadline is None  # off unless configured (Airflow 3.3.2's dag.test cannot run deadlines)
    monkeypatch.setenv("EC2_AUDIT_REPORT_DEADLINE_MINUTES", "240")
    alert = deadline.alert()
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval.total_seconds() == 240 * 60
    assert alert.callback.path == deadline.CALLBACK
    assert alert.callback.kwargs["minutes"] == 240


def test_the_late_notice_names_the_run_and_goes_to_the_run_s_alert_recipients(monkeypatch):
    from include.notify import deadline

    context = {"dag_run": {"dag_run_id": "scheduled__2026-12-01T06:00:00+00:00", "dag_id": "ec2_audit_compliance",
                           "logical_date": "2026-12-01T06:00:00+00:00", "conf": {"alert_recipients": ["soc@x.test"]}},
               "deadline": {"deadline_time": "2026-12-01T10:00:00+00:00"}}
    subject, html, to = deadline.late_message(context, 240)
    assert subject.startswith("LATE ec2_audit_compliance: the audit report for 2026-12-01 is not out 240 min")
    assert "scheduled__2026-12-01T06:00:00+00:00" in html and "2026-12-01T10:00:00+00:00" in html
    assert "/dags/ec2_audit_compliance/runs/scheduled__2026-12-01T06:00:00+00:00" in html  # a link to the run
    assert to == ["soc@x.test"]
    monkeypatch.setenv("EC2_AUDIT_REPORT_DEADLINE_MINUTES", "0")
    assert deadline.alert() is None  # 0 turns it off
