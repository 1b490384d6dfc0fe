"""The run's params as a task reads them: the schema (include/settings/schema.py), then what a schema cannot say —
combinations, the files the run reads (profile, rule set, waivers), the channels and the report folder. A bad
param fails the run at its start, naming the field."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.settings.params import PARAM_SCHEMAS, AuditParams, RemediateParams, param_problems


def semantic_problems(params: AuditParams) -> list[str]:
    """What JSON schema cannot say: combinations, and the files (or names) the run reads."""
    # Imported here, not at the top: the DAG file imports this module at parse time, the catalogue is not needed then.
    from include.checks.rulesets import load_rule_set
    from include.notify.channels import Channels
    from include.report.storage import problem as report_dir_problem
    from include.verify.profiles import load_profile
    from include.verify.waivers import load_waivers

    problems = []
    if params.ssm_document and params.canary:
        problems.append("param ssm_document: the audit document holds the checks without the canary: run "
                        "canary=true with ssm_document empty (AWS-RunShellScript)")
    if params.evidence_bucket and params.evidence_bucket == params.ssm_output_bucket:
        problems.append("param evidence_bucket: must not be ssm_output_bucket (every instance role may write that "
                        "bucket; the evidence bucket is written by the Airflow worker's role only)")
    problems += Channels.from_params(params).problems()
    if bad_dir := report_dir_problem(params.report_dir):  # a scheme nothing can write, an s3:// with no bucket
        problems.append(bad_dir)
    for name, check in (("profile", load_profile), ("rule_set", load_rule_set), ("waivers_file", load_waivers)):
        try:
            check(getattr(params, name))
        except (ValueError, OSError) as exc:
            message = str(exc)
            problems.append(message if message.startswith(name) else f"param {name}: {message}")
    return problems


def validate(params: AuditParams) -> None:
    """The schema (for an AuditParams built directly) and the semantic checks, in one place."""
    problems = param_problems({name: getattr(params, name) for name in PARAM_SCHEMAS})
    problems += semantic_problems(params) if not problems else []
    if problems:
        raise ValueError("invalid params: " + "; ".join(problems))


def audit_params(raw: Mapping[str, Any]) -> AuditParams:
    """A run's params, checked whole: one ValueError lists every problem, each naming its param."""
    params = AuditParams.from_params(raw)  # the schema, on what was given (a default is valid by construction)
    if problems := semantic_problems(params):
        raise ValueError("invalid params: " + "; ".join(problems))
    return params


def current_audit_params() -> AuditParams:
    """The running task's params (the DAG's Params, as triggered)."""
    from airflow.sdk import get_current_context

    return audit_params(dict(get_current_context()["params"]))


def current_remediate_params() -> RemediateParams:
    from airflow.sdk import get_current_context

    return RemediateParams.from_params(dict(get_current_context()["params"]))
