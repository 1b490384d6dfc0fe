"""ec2_audit_watch: parses without a queue (replays only) and, with one, is scheduled on an Asset whose watcher is
common-messaging's SQS trigger with a poll interval of our own; it takes the daily DAG's params."""
from __future__ import annotations

import importlib
import sys

import pytest

QUEUE = "http://127.0.0.1:5999/123456789012/ec2-audit-events"


def _load(monkeypatch, queue: str | None):
    if queue is None:
        monkeypatch.delenv("EC2_AUDIT_EVENTS_QUEUE_URL", raising=False)
    else:
        monkeypatch.setenv("EC2_AUDIT_EVENTS_QUEUE_URL", queue)
    sys.modules.pop("dags.ec2_audit_watch", None)
    module = importlib.import_module("dags.ec2_audit_watch")
    return module


@pytest.fixture
def dag(dag_bag):
    return dag_bag.get_dag("ec2_audit_watch")


def test_the_watch_is_the_daily_path_between_a_collect_and_a_second_look(dag):
    assert dag is not None and dag.catchup is False
    order = [t.task_id for t in dag.topological_sort()]
    for earlier, later in [("collect", "wait_for_boot"), ("wait_for_boot", "plan_batches"),
                           ("plan_batches", "verify_batch"), ("verify_batch", "finish"), ("finish", "wait_for_grace"),
                           ("wait_for_grace", "second_look")]:
        assert order.index(earlier) < order.index(later)
    assert dag.get_task("verify_batch").is_mapped if hasattr(dag.get_task("verify_batch"), "is_mapped") else True


def test_it_takes_the_daily_dag_s_params(dag, dag_bag):
    daily = dag_bag.get_dag("ec2_audit_compliance")
    assert set(dag.params.keys()) == set(daily.params.keys())
    assert {k: dag.params[k] for k in dag.params.keys()} == {k: daily.params[k] for k in daily.params.keys()}


def test_without_a_queue_it_has_no_watcher_and_still_parses(monkeypatch):
    module = _load(monkeypatch, None)
    assert module.EVENTS is None


def test_with_a_queue_the_triggerer_watches_it_through_common_messaging_sqs(monkeypatch):
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    module = _load(monkeypatch, QUEUE)
    try:
        (watcher,) = module.EVENTS.watchers
        trigger = watcher.trigger
        assert type(trigger).__name__ == "MessageQueueTrigger" and trigger.scheme == "sqs"
        inner = trigger.trigger
        assert isinstance(inner, SqsSensorTrigger) and inner.sqs_queue == QUEUE
        assert inner.waiter_delay < 60  # the provider's default would bound the latency at a minute
        assert inner.delete_message_on_reception  # the message lives on in the asset event's payload
    finally:
        _load(monkeypatch, None)
