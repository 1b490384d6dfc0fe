"""One schema per input: the DAG's Params and the run-time check come from PARAM_SCHEMAS; bad inputs are refused
naming the field; every default is valid (also as the UI form holds it); the two input files have schemas."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from include.checks.rulesets import CIS, load_rule_set
from include.settings import schema as param_schema
from include.settings.params import AuditParams
from include.settings.schema import PARAM_SCHEMAS, dag_params, param_defaults, param_problems
from include.tasks.params import audit_params
from include.tasks.params import validate as validate_params


def test_schema_and_auditparams_name_the_same_params():
    assert set(PARAM_SCHEMAS) == {f.name for f in dataclasses.fields(AuditParams)}


def test_defaults_are_all_valid_and_are_the_dataclass_defaults():
    assert param_problems(param_defaults()) == []
    assert audit_params(param_defaults()) == AuditParams() == audit_params({})
    validate_params(AuditParams())


def test_contract_params_and_defaults():
    p = AuditParams()
    assert (p.profile, p.transport, p.mode, p.address) == ("audit-trail", "ssh", "auto", "private_ip")
    assert p.waivers_file is None and p.report_dir is None and p.log_group is None
    assert PARAM_SCHEMAS["transport"]["enum"] == ["ssh", "ssm", "eic", "auto"]
    assert (p.tamper_grace_minutes, p.launch_grace_minutes) == (5, 10)  # CONTRACT: the watch's graces
    assert audit_params({"tamper_grace_minutes": 0, "launch_grace_minutes": 2.5}).launch_grace_minutes == 2.5


def test_optional_text_params_accept_their_default_as_the_ui_form_holds_it():
    """The trigger/backfill form refuses a required (non-nullable) string left empty and disables Trigger:
    every string param either has a non-empty default or is nullable with default None."""
    for name, spec in PARAM_SCHEMAS.items():
        types = spec.get("type") if isinstance(spec.get("type"), list) else [spec.get("type")]
        if "string" in types or "enum" in spec:
            default = spec["default"]
            assert default not in ("",), name
            assert default is not None or "null" in types, name
            if default is None:
                assert param_problems({name: None}) == [] and param_problems({name: ""}) == [], name
    assert audit_params({"waivers_file": "", "report_dir": "", "log_group": None}).waivers_file == ""
    assert audit_params({"report_dir": None}).resolved_report_dir().endswith("reports/ec2_audit")


@pytest.mark.parametrize("params,expected", [
    ({"batch_size": -1}, "param batch_size: -1 is less than the minimum of 0"),
    ({"concurrency": 0}, "param concurrency: 0 is less than the minimum of 1"),
    ({"connect_timeout": 60}, "param connect_timeout: 60 is greater than the maximum of 15"),
    ({"host_timeout": 2}, "param host_timeout: 2 is less than the minimum of 5"),
    ({"batch_size": "8"}, "param batch_size: must be an integer, not a string"),
    ({"address": "ipv6"}, "param address: 'ipv6' is not one of"),
    ({"mode": "fast"}, "param mode: 'fast' is not one of"),
    ({"transport": "carrier-pigeon"}, "param transport: 'carrier-pigeon' is not one of"),
    ({"regions": "us-east-1"}, "param regions: must be a list, not a string"),  # a string where a list belongs
    ({"recipients": "a@b.test"}, "param recipients: must be a list, not a string"),
    ({"regions": [""]}, "param regions.0:"),
    ({"tag_filters": {"Env": "prod"}}, "param tag_filters.Env: must be a list, not a string"),
    ({"tag_filters": ["Env"]}, "param tag_filters: must be an object, not a list"),
    ({"accounts": ["bad|name"]}, "param accounts.0:"),
    ({"alert_threshold_pct": 101}, "param alert_threshold_pct: 101 is greater than the maximum of 100"),
    ({"canary": "yes"}, "param canary: must be true or false, not a string"),
    ({"rule_set": ""}, "param rule_set:"),
    ({"profile": ""}, "param profile:"),
    ({"evidence_table": "bad table!"}, "param evidence_table:"),
    ({"stream_max_age_minutes": None}, "param stream_max_age_minutes: must be an integer, not null"),
    ({"waivers_file": 5}, "param waivers_file: must be null or a string, not an integer"),
    ({"tamper_grace_minutes": -1}, "param tamper_grace_minutes: -1 is less than the minimum of 0"),
    ({"launch_grace_minutes": "10"}, "param launch_grace_minutes: must be a number, not a string"),
])
def test_each_bad_param_is_refused_naming_it(params, expected):
    assert any(p.startswith(expected) for p in param_problems(params)), param_problems(params)
    with pytest.raises(ValueError, match="^invalid params: ") as caught:
        audit_params(params)
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once_and_unknown_names_are_ignored():
    with pytest.raises(ValueError) as caught:
        audit_params({"batch_size": -1, "mode": "fast", "not_a_param": object()})
    assert "param batch_size" in str(caught.value) and "param mode" in str(caught.value)
    assert "not_a_param" not in str(caught.value)


def test_every_transport_is_accepted_and_a_bad_output_bucket_is_named():
    for transport in ("ssh", "ssm", "eic", "auto"):
        assert audit_params({"transport": transport}).transport == transport
    with pytest.raises(ValueError, match="param transport"):
        audit_params({"transport": "telnet"})
    assert audit_params({"ssm_output_bucket": "audit-output.example"}).ssm_output_bucket == "audit-output.example"
    with pytest.raises(ValueError, match="param ssm_output_bucket"):
        audit_params({"ssm_output_bucket": "s3://Not A Bucket"})


def test_the_audit_document_without_the_canary_is_refused_naming_the_field():
    assert audit_params({"ssm_document": "EC2Audit-ReadOnlyChecks"}).ssm_document == "EC2Audit-ReadOnlyChecks"
    with pytest.raises(ValueError, match="param ssm_document: the audit document holds the checks without the canary"):
        audit_params({"ssm_document": "EC2Audit-ReadOnlyChecks", "canary": True})
    with pytest.raises(ValueError, match="param ssm_document"):
        audit_params({"ssm_document": "no spaces allowed"})


def test_profile_is_checked_by_load_profile(tmp_path):
    assert audit_params({"profile": "cis"}).profile == "cis"
    with pytest.raises(ValueError, match="profile"):
        audit_params({"profile": "no-such-profile"})
    bad = tmp_path / "profile.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="profile"):
        audit_params({"profile": str(bad)})


def test_files_named_by_params_are_checked_with_the_params(tmp_path):
    with pytest.raises(ValueError, match="waivers_file .*: no such file"):
        audit_params({"waivers_file": str(tmp_path / "missing.json")})
    with pytest.raises(ValueError, match="rule_set must be one of"):
        audit_params({"rule_set": "no-such-set"})


def test_the_dag_params_are_built_from_the_same_schema():
    from dags import ec2_audit_compliance as dag_module

    assert set(dag_module.PARAMS) == set(PARAM_SCHEMAS)
    for name, param in dag_module.PARAMS.items():
        assert param.value == PARAM_SCHEMAS[name]["default"], name
        assert param.description == PARAM_SCHEMAS[name].get("description"), name
        assert param.schema == param_schema.param_schema(name), name
        param.resolve()  # Airflow's own check accepts the default


def test_changing_the_schema_changes_both_the_param_and_the_validator(monkeypatch):
    from airflow.sdk.definitions.param import ParamValidationError

    assert dag_params()["batch_size"].resolve(3) == 3 and audit_params({"batch_size": 3}).batch_size == 3
    monkeypatch.setitem(PARAM_SCHEMAS, "batch_size", {**PARAM_SCHEMAS["batch_size"], "minimum": 5, "default": 5})
    with pytest.raises(ParamValidationError):
        dag_params()["batch_size"].resolve(3)
    with pytest.raises(ValueError, match="param batch_size: 3 is less than the minimum of 5"):
        audit_params({"batch_size": 3})
    assert AuditParams().batch_size == 5  # the dataclass default is read from the schema too


# ------------------------------------------------------------------ rule-set file

def _rules(tmp_path, data) -> str:
    path = tmp_path / "rules.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_rule_set_built_ins_and_a_good_file(tmp_path):
    assert load_rule_set("cis") == CIS
    groups = load_rule_set(_rules(tmp_path, [{"name": "identity", "keys": ["identity"], "watches": ["/etc/passwd"]}]))
    assert groups[0].name == "identity" and groups[0].watches == ("/etc/passwd",)


@pytest.mark.parametrize("data,expected", [
    ([], "must not be empty"),  # an empty rule set would make coverage pass vacuously
    ({"name": "x", "keys": ["k"]}, "must be a JSON list of rule groups, not an object"),
    ("\"identity\"", "must be a JSON list of rule groups, not a string"),
    ([{"name": "x", "keys": "identity"}], "entry #1, field keys: must be a list, not a string"),
    ([{"name": "x"}], "entry #1: needs at least one of keys, watches or syscalls"),
    ([{"name": "x", "keys": []}], "entry #1: needs at least one of keys, watches or syscalls"),
    ([{"keys": ["k"]}], "entry #1, field name: missing"),
    ([{"name": "a", "keys": ["k"]}, {"name": "b", "watches": ["etc/passwd"]}], "entry #2, field watches.0:"),
    ([{"name": "a", "keys": ["k"], "key": ["typo"]}], "entry #1, field key: not a known field"),
    ([{"name": "a", "keys": ["k"]}, {"name": "a", "syscalls": ["mount"]}], "entry #2, field name: 'a' repeats entry #1"),
    ("[{\"name\": ", "not valid JSON"),
])
def test_bad_rule_set_files_are_refused_naming_file_entry_and_field(tmp_path, data, expected):
    path = _rules(tmp_path, data)
    with pytest.raises(ValueError) as caught:
        load_rule_set(path)
    assert str(caught.value).startswith(f"rule_set {path}: ") and expected in str(caught.value), str(caught.value)
    with pytest.raises(ValueError, match="^invalid params: rule_set "):
        audit_params({"rule_set": path})


# ------------------------------------------------------------------ where a bad input shows: discover, at once

def test_a_bad_waivers_file_fails_the_run_in_discover_before_anything_else(airflow_db, tmp_path, caplog, capfd):
    from airflow.dag_processing.dagbag import DagBag

    waivers = tmp_path / "waivers.json"
    waivers.write_text(json.dumps([{"tags": {"Environment": "dev"}, "check_id": "*", "justification": "j",
                                    "approver": "a", "expires": "20260101"}]))
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags")).get_dag("ec2_audit_compliance")
    run = dag.test(run_conf={"waivers_file": str(waivers), "create_table": False, "report_dir": str(tmp_path)})
    assert run.state == "failed"
    states = {ti.task_id: ti for ti in run.get_task_instances()}
    assert states["discover"].state == "failed" and states["discover"].try_number == 1  # no retries of a bad input
    assert all(ti.state != "success" for tid, ti in states.items() if tid != "discover")  # nothing ran after it
    assert not list(tmp_path.glob("compliance-*"))
    logged = caplog.text + "".join(capfd.readouterr())
    assert f"waivers_file {waivers}: entry #1, field expires: '20260101' is not a date written YYYY-MM-DD" in logged


def test_the_evidence_bucket_is_a_bucket_name_and_never_the_ssm_output_bucket():
    assert audit_params({"evidence_bucket": "audit-evidence.example"}).evidence_bucket == "audit-evidence.example"
    assert audit_params({}).evidence_bucket is None
    with pytest.raises(ValueError, match="param evidence_bucket"):
        audit_params({"evidence_bucket": "s3://Not A Bucket"})
    with pytest.raises(ValueError, match="param evidence_bucket: must not be ssm_output_bucket"):
        audit_params({"evidence_bucket": "shared-output", "ssm_output_bucket": "shared-output"})
