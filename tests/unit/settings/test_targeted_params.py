"""`instance_ids` is a param like the others (schema, AuditParams, the DAG's Params), and `EC2_AUDIT_PARAMS`
sets the audit DAGs' defaults at parse time: a bad value is refused naming the variable and the field."""
from __future__ import annotations

import json

import pytest

from include.settings import schema
from include.settings.params import AuditParams
from include.settings.schema import PARAMS_ENV, dag_params, param_problems
from include.tasks.params import audit_params


def test_instance_ids_is_a_list_of_ec2_instance_ids_defaulting_to_none():
    assert AuditParams().instance_ids == [] and dag_params()["instance_ids"].value == []
    assert audit_params({"instance_ids": ["i-0123456789abcdef0", "i-01234567"]}).instance_ids == [
        "i-0123456789abcdef0", "i-01234567"]
    for bad in (["web-1"], ["i-XYZ12345"], ["i-0123"], "i-0123456789abcdef0"):
        assert any(p.startswith("param instance_ids") for p in param_problems({"instance_ids": bad})), bad


def test_ec2_audit_params_overrides_the_dag_defaults_of_the_names_it_gives(monkeypatch):
    monkeypatch.setenv(PARAMS_ENV, json.dumps({"recipients": ["ops@example.test"], "transport": "ssm",
                                               "regions": ["eu-west-1"]}))
    params = dag_params()
    assert params["recipients"].value == ["ops@example.test"]
    assert params["transport"].value == "ssm" and params["regions"].value == ["eu-west-1"]
    assert params["profile"].value == "audit-trail"  # not named: the schema's default
    # The tasks read the run's params, which carry the DAG's defaults: the same values reach AuditParams.
    run = audit_params({name: p.value for name, p in params.items()})
    assert (run.recipients, run.transport, run.regions) == (["ops@example.test"], "ssm", ["eu-west-1"])


def test_ec2_audit_params_does_not_touch_the_remediation_dag(monkeypatch):
    monkeypatch.setenv(PARAMS_ENV, json.dumps({"concurrency": 7}))
    assert dag_params(schema.REMEDIATE_SCHEMAS)["concurrency"].value == 10
    assert dag_params()["concurrency"].value == 7


@pytest.mark.parametrize("value,expected", [
    ("{not json", "EC2_AUDIT_PARAMS: not valid JSON"),
    ('["recipients"]', "EC2_AUDIT_PARAMS: must be a JSON object"),
    ('{"recipents": ["a@b.test"]}', "EC2_AUDIT_PARAMS: recipents: not a param of the audit DAGs"),
    ('{"concurrency": 0}', "EC2_AUDIT_PARAMS: concurrency: 0 is less than the minimum of 1"),
    ('{"recipients": "a@b.test"}', "EC2_AUDIT_PARAMS: recipients: must be a list, not a string"),
    ('{"instance_ids": ["i-0123456789abcdef0"]}', "EC2_AUDIT_PARAMS: instance_ids: set per run"),
])
def test_a_bad_ec2_audit_params_fails_parsing_naming_the_variable_and_the_field(monkeypatch, value, expected):
    monkeypatch.setenv(PARAMS_ENV, value)
    with pytest.raises(ValueError) as caught:
        dag_params()
    assert str(caught.value).startswith(expected), str(caught.value)


def test_an_empty_ec2_audit_params_is_no_override(monkeypatch):
    monkeypatch.setenv(PARAMS_ENV, "  ")
    assert dag_params()["recipients"].value == []
