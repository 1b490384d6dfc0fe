"""Workers inside each VPC (include/settings/queues.py): the deployment's queues, the run's queue_map, batches that never
mix queues, and the DAG's shape with and without queues (without: exactly the contract's)."""
from __future__ import annotations

from pathlib import Path

import pytest

from include.fleet import batching, discovery
from include.fleet.inventory import Inventory
from include.settings import queues
from include.settings.params import AuditParams
from include.settings.schema import PARAM_SCHEMAS, param_problems
from include.tasks import audit as pipeline
from include.tasks.params import audit_params

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT, OTHER = "123456789012", "210987654321"
VPC_A, VPC_B, VPC_C = "vpc-0aaaaaaaaaaaaaaa1", "vpc-0bbbbbbbbbbbbbbb2", "vpc-0ccccccccccccccc3"


# ------------------------------------------------------------------ the deployment's queues

def test_queues_come_from_the_environment_in_order_without_repeats():
    assert queues.deployment_queues({}) == () == queues.deployment_queues({queues.ENV: " , "})
    assert queues.deployment_queues({queues.ENV: "vpc-a, vpc-b,vpc-a"}) == ("vpc-a", "vpc-b")


@pytest.mark.parametrize("raw,expected", [
    ("vpc a", "'vpc a' is not a queue name"),
    ("vpc-a,__x", "'__x' is not a queue name"),
    ("vpc/b", "'vpc/b' is not a queue name"),
    ("x" * 64, "is not a queue name"),
    ("vpc-a,default", "'default' is the default queue"),
])
def test_a_queue_that_cannot_be_one_is_refused_naming_the_variable(raw, expected):
    with pytest.raises(ValueError, match="^EC2_AUDIT_QUEUES: ") as caught:
        queues.parse_queues(raw)
    assert expected in str(caught.value)


# ------------------------------------------------------------------ the run's queue_map

def test_the_most_specific_key_wins_and_unmapped_hosts_stay_on_the_default_queue():
    queue_map = {ACCOUNT: "acct", VPC_A: "vpc-a", f"{ACCOUNT}/{VPC_B}": "pair", VPC_B: "vpc-b"}
    assert queues.queue_for(queue_map, ACCOUNT, VPC_B) == "pair"  # account/vpc before vpc
    assert queues.queue_for(queue_map, OTHER, VPC_B) == "vpc-b"  # the pair is another account's
    assert queues.queue_for(queue_map, ACCOUNT, VPC_A) == "vpc-a"  # vpc before account
    assert queues.queue_for(queue_map, ACCOUNT, VPC_C) == "acct"  # account last
    assert queues.queue_for(queue_map, OTHER, VPC_C) == queues.DEFAULT
    assert queues.queue_for({}, ACCOUNT, VPC_A) == queues.DEFAULT
    # An instance discovery saw but that is gone by planning (no placement): the default queue's batch,
    # which finds it no longer running, so it is counted, not lost.
    assert queues.assign({VPC_A: "vpc-a"}, {"i-1": (ACCOUNT, VPC_A)}, ["i-1", "i-2"]) == {"i-1": "vpc-a",
                                                                                       "i-2": queues.DEFAULT}


SCHEMA = {"queue_map": queues.param_schema(("vpc-a", "vpc-b"))}


@pytest.mark.parametrize("queue_map,expected", [
    ({VPC_A: "vpc-c"}, f"param queue_map.{VPC_A}: 'vpc-c' is not a queue of this deployment "
                       "(EC2_AUDIT_QUEUES=vpc-a,vpc-b)"),
    ({"vpc-a": "vpc-a"}, "param queue_map: 'vpc-a' is not a VPC id (vpc-…), an account id (12 digits) or "
                         "<account id>/<vpc-id>"),
    ({f"{ACCOUNT}/{VPC_A}/x": "vpc-a"}, "param queue_map: "),
    ({"12345": "vpc-a"}, "param queue_map: '12345' is not a VPC id"),
    ({VPC_A: 1}, f"param queue_map.{VPC_A}: must be a string, not an integer"),
    (["vpc-a"], "param queue_map: must be an object, not a list"),
])
def test_a_bad_queue_map_is_refused_naming_the_field(queue_map, expected):
    problems = param_problems({"queue_map": queue_map}, SCHEMA)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_good_queue_map_and_the_default_are_accepted():
    good = {VPC_A: "vpc-a", ACCOUNT: "vpc-b", f"{OTHER}/{VPC_C}": "default", "vpc-0123abcd": "vpc-a"}
    assert param_problems({"queue_map": good}, SCHEMA) == []
    assert param_problems({"queue_map": {}}, SCHEMA) == []
    # This test process has no EC2_AUDIT_QUEUES: only the default queue may be named.
    assert PARAM_SCHEMAS["queue_map"]["default"] == {} and AuditParams().queue_map == {}
    assert audit_params({"queue_map": {VPC_A: "default"}}).queue_map == {VPC_A: "default"}
    with pytest.raises(ValueError, match=f"param queue_map.{VPC_A}: 'vpc-a' is not a queue of this deployment "
                                         r"\(EC2_AUDIT_QUEUES is empty: only 'default'\)"):
        audit_params({"queue_map": {VPC_A: "vpc-a"}})


# ------------------------------------------------------------------ batches never mix queues

def _fleet(n_per_vpc: int):
    ids = {vpc: [f"i-{vpc[-1]}{n:05d}" for n in range(n_per_vpc)] for vpc in (VPC_A, VPC_B, VPC_C)}
    placement = {i: (ACCOUNT, vpc) for vpc, vpc_ids in ids.items() for i in vpc_ids}
    return ids, placement


def test_batches_hold_one_queue_each_and_every_host_once():
    ids, placement = _fleet(130)
    # Interleaved, as instance ids sort: a batch cut by id alone would mix VPCs.
    scope = sorted(i for vpc_ids in ids.values() for i in vpc_ids)
    queue_of = queues.assign({VPC_A: "vpc-a", VPC_B: "vpc-b"}, placement, scope)
    planned = batching.plan_batches({"us-east-1": scope}, batch_size=50, queue_of=queue_of)
    batches = [b.to_xcom() for b in planned]  # as XCom carries them
    assert sorted(i for b in batches for i in b["instance_ids"]) == sorted(scope)  # nothing lost or doubled
    for b in batches:
        assert {queue_of[i] for i in b["instance_ids"]} == {b["queue"]}, b["label"]
        assert f"[{b['queue']}]" in b["label"]
    assert sorted({b["queue"] for b in batches}) == ["default", "vpc-a", "vpc-b"]
    assert [b["number"] for b in batches] == list(range(1, len(batches) + 1))
    assert {b["of"] for b in batches} == {len(batches)}
    assert len(batches) == 9  # 3 queues × ceil(130 / 50)
    by_queue = {q: queues.select(planned, q) for q in queues.allowed_queues(("vpc-a", "vpc-b"))}
    assert sum(len(v) for v in by_queue.values()) == len(batches)  # each batch to exactly one verify task
    assert queues.unknown_queues(planned, ("vpc-a", "vpc-b")) == []
    assert queues.unknown_queues(planned, ("vpc-a",)) == ["vpc-b"]


def test_queues_still_keep_the_batch_count_bounded():
    ids, placement = _fleet(2000)
    scope = sorted(placement)
    queue_of = queues.assign({VPC_A: "vpc-a", VPC_B: "vpc-b"}, placement, scope)
    batches = [b.to_xcom() for b in batching.plan_batches({"us-east-1": scope}, batch_size=1, queue_of=queue_of,
                                                           max_batches=48)]
    assert len(batches) <= 48
    assert all(len({queue_of[i] for i in b["instance_ids"]}) == 1 for b in batches)


def test_without_queue_of_the_batches_are_as_they_always_were():
    batches = [b.to_xcom() for b in batching.plan_batches({"us-east-1": ["i-2", "i-1", "i-3"]}, batch_size=2)]
    assert batches == [
        {"region": "us-east-1", "instance_ids": ["i-1", "i-2"], "account": "", "number": 1, "of": 2,
         "label": "us-east-1 batch 1/2 (2 hosts)", "audit_date": "", "run_id": ""},
        {"region": "us-east-1", "instance_ids": ["i-3"], "account": "", "number": 2, "of": 2,
         "label": "us-east-1 batch 2/2 (1 hosts)", "audit_date": "", "run_id": ""}]


# ------------------------------------------------------------------ placements and the plan step

class Ec2:
    """DescribeInstances pages: running instances of two VPCs and two owners, plus one the plan did not ask for."""

    def __init__(self):
        self.calls: list[dict] = []

    def get_paginator(self, name):
        assert name == "describe_instances"
        calls = self.calls

        class Pages:
            def paginate(self, **kw):
                calls.append(kw)
                yield {"Reservations": [{"OwnerId": ACCOUNT, "Instances": [
                    {"InstanceId": "i-a1", "VpcId": VPC_A}, {"InstanceId": "i-b1", "VpcId": VPC_B}]}]}
                yield {"Reservations": [{"OwnerId": OTHER, "Instances": [
                    {"InstanceId": "i-b2", "VpcId": VPC_B}, {"InstanceId": "i-zz", "VpcId": VPC_A}]}]}
        return Pages()


def test_placements_list_running_instances_once_with_the_run_s_tag_filters():
    ec2 = Ec2()
    found = discovery.placements(ec2, ["i-a1", "i-b1", "i-b2", "i-gone"], {"Environment": ["prod"]})
    assert found == {"i-a1": (ACCOUNT, VPC_A), "i-b1": (ACCOUNT, VPC_B), "i-b2": (OTHER, VPC_B)}
    assert ec2.calls == [{"Filters": [{"Name": "instance-state-name", "Values": ["running"]},
                                      {"Name": "tag:Environment", "Values": ["prod"]}],
                          "PaginationConfig": {"PageSize": 1000}}]


INVENTORY = Inventory.from_xcom({"audit_date": "2026-11-30", "run_id": "manual__x", "mode": "live", "discovered": 4,
                                 "instances": {"us-east-1": ["i-a1", "i-b1", "i-b2", "i-gone"]}, "states": {}})


def test_plan_routes_each_host_to_its_vpc_s_queue(monkeypatch):
    monkeypatch.setenv(queues.ENV, "vpc-a,vpc-b")
    ec2 = Ec2()
    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": ec2)
    queue_map = {VPC_A: "vpc-a", f"{ACCOUNT}/{VPC_B}": "vpc-b"}  # OTHER's host in VPC B: not mapped
    batches = [b.to_xcom() for b in pipeline.plan(AuditParams(queue_map=queue_map, batch_size=10), INVENTORY)]
    assert {b["queue"]: b["instance_ids"] for b in batches} == {
        "vpc-a": ["i-a1"], "vpc-b": ["i-b1"], "default": ["i-b2", "i-gone"]}
    assert all(b["audit_date"] == "2026-11-30" and b["run_id"] == "manual__x" for b in batches)
    assert len(ec2.calls) == 1


def test_without_a_queue_map_the_plan_asks_aws_nothing_and_carries_no_queue(monkeypatch):
    def no_aws(*a, **k):
        raise AssertionError("no DescribeInstances without a queue_map")

    monkeypatch.setattr(pipeline, "ec2_client", no_aws)
    batches = [b.to_xcom() for b in pipeline.plan(AuditParams(batch_size=10), INVENTORY)]
    assert len(batches) == 1 and "queue" not in batches[0]
    assert batches[0]["label"] == "us-east-1 batch 1/1 (4 hosts)"


def test_a_plan_for_a_queue_this_worker_does_not_serve_is_refused(monkeypatch):
    """The schema refuses it first; if a worker's EC2_AUDIT_QUEUES differed from the trigger's, the batches of
    a queue with no verify task would never be checked: the plan fails instead of dropping them."""
    monkeypatch.setenv(queues.ENV, "vpc-a")
    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": Ec2())
    params = AuditParams(queue_map={VPC_B: "vpc-b"})  # unchecked: as another deployment's schema accepted it
    with pytest.raises(ValueError, match="param queue_map: queue\\(s\\) vpc-b not in EC2_AUDIT_QUEUES"):
        pipeline.plan(params, INVENTORY)


# ------------------------------------------------------------------ the DAG's shape

def _dag(monkeypatch, raw: str | None):
    from airflow.dag_processing.dagbag import DagBag

    if raw is None:
        monkeypatch.delenv(queues.ENV, raising=False)
    else:
        monkeypatch.setenv(queues.ENV, raw)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag("ec2_audit_compliance")


CONTRACT_TASKS = {"discover", "plan_batches", "verify_batch", "store_evidence", "build_report", "send_report",
                  "send_alerts", "export_findings", "confirm_complete"}


def test_without_queues_the_dag_is_the_contract_s(airflow_db, monkeypatch):
    dag = _dag(monkeypatch, None)
    assert set(dag.task_ids) == CONTRACT_TASKS
    assert dag.get_task("verify_batch").upstream_task_ids == {"plan_batches"}
    assert dag.get_task("verify_batch").queue == "default"


def test_with_queues_each_queue_has_its_own_mapped_verify_over_its_own_batches(airflow_db, monkeypatch):
    dag = _dag(monkeypatch, "vpc-a,vpc-b")
    extra = {"batches__default", "batches__vpc-a", "batches__vpc-b", "verify_batch__vpc-a", "verify_batch__vpc-b"}
    assert set(dag.task_ids) == CONTRACT_TASKS | extra
    plain = dag.get_task("verify_batch")
    for queue in ("default", "vpc-a", "vpc-b"):
        verify = dag.get_task(queues.verify_task_id(queue))
        assert verify.queue == queue  # static: every mapped instance runs on it
        assert verify.upstream_task_ids == {f"batches__{queue}"}
        assert dag.get_task(f"batches__{queue}").upstream_task_ids == {"plan_batches"}
        assert dag.get_task(f"batches__{queue}").queue == "default"
        # Every verify task is verify_batch: same template, retries and timeout (tests/unit/dags/test_dag_integrity.py).
        assert verify.map_index_template == plain.map_index_template == "{{ batch_label }}"
        assert (verify.retries, verify.execution_timeout) == (plain.retries, plain.execution_timeout)
        assert verify.retry_exponential_backoff
    assert dag.get_task("store_evidence").upstream_task_ids == {
        "discover", "verify_batch", "verify_batch__vpc-a", "verify_batch__vpc-b"}
    assert dag.get_task("store_evidence").trigger_rule == "none_failed"  # a queue with no batches is skipped


def test_a_queue_map_naming_another_queue_is_refused_before_any_host_is_contacted(airflow_db, tmp_path, monkeypatch,
                                                                                   caplog, capfd):
    """The trigger (form, REST API, dag.test) refuses it naming the field; and should the DAG's own Param have
    accepted it (parsed where another EC2_AUDIT_QUEUES held), the run's first task fails, once, naming it."""
    from airflow.sdk.definitions.param import ParamValidationError

    conf = {"queue_map": {VPC_A: "vpc-z"}, "create_table": False, "report_dir": str(tmp_path)}
    with pytest.raises(ParamValidationError, match="queue_map"):
        _dag(monkeypatch, "vpc-a").test(run_conf=conf)

    monkeypatch.setitem(PARAM_SCHEMAS, "queue_map", queues.param_schema(("vpc-a", "vpc-z")))
    dag = _dag(monkeypatch, "vpc-a,vpc-z")  # its Param allows vpc-z
    monkeypatch.setitem(PARAM_SCHEMAS, "queue_map", queues.param_schema(("vpc-a",)))  # this worker's does not
    run = dag.test(run_conf=conf)
    assert run.state == "failed"
    states = {ti.task_id: ti for ti in run.get_task_instances()}
    assert states["discover"].state == "failed" and states["discover"].try_number == 1
    assert all(ti.state != "success" for tid, ti in states.items() if tid != "discover")
    assert not list(tmp_path.glob("compliance-*"))
    logged = caplog.text + "".join(capfd.readouterr())
    assert f"param queue_map.{VPC_A}: 'vpc-z' is not a queue of this deployment (EC2_AUDIT_QUEUES=vpc-a)" in logged


def _executors(monkeypatch, configured: str) -> None:
    """[core] executor as a deployment sets it, with Airflow's executor-name caches emptied (re-read from conf)."""
    from collections import defaultdict

    from airflow.executors import executor_loader

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", configured)
    for name in ("_alias_to_executors_per_team", "_module_to_executors_per_team", "_classname_to_executors_per_team",
                 "_team_name_to_executors"):
        monkeypatch.setattr(executor_loader, name, defaultdict(list if name == "_team_name_to_executors" else dict))
    monkeypatch.setattr(executor_loader, "_executor_names", [])


def test_the_per_queue_verify_tasks_can_go_to_another_executor_than_the_central_ones(airflow_db, monkeypatch):
    """EC2_AUDIT_QUEUE_EXECUTOR (docker-compose.yaml: Celery for everything, Edge for the VPC batches); an executor
    the deployment does not run is an import error naming the task, not batches that never start."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(queues.EXECUTOR_ENV, "EdgeExecutor")
    monkeypatch.setenv(queues.ENV, "vpc-a")
    _executors(monkeypatch, "LocalExecutor")
    errors = DagBag(dag_folder=str(ROOT / "dags")).import_errors
    assert "Task 'verify_batch__vpc-a' specifies executor 'EdgeExecutor', which is not available" in str(errors)

    _executors(monkeypatch, "LocalExecutor,airflow.providers.edge3.executors.EdgeExecutor")
    dag = _dag(monkeypatch, "vpc-a")
    assert dag.get_task("verify_batch__vpc-a").executor == "EdgeExecutor"
    assert all(t.executor is None for t in dag.tasks if t.task_id != "verify_batch__vpc-a")  # the default one
    monkeypatch.delenv(queues.EXECUTOR_ENV)
    assert _dag(monkeypatch, "vpc-a").get_task("verify_batch__vpc-a").executor is None
    assert queues.verify_overrides("vpc-a") == {"task_id": "verify_batch__vpc-a", "queue": "vpc-a"}
