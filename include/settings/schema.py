"""One declared schema per input: the run params, the waivers file and the rule-set file.

`PARAM_SCHEMAS` is the only description of the DAG's params. The DAG builds its Airflow `Param`s from it
(`dag_params()`: the trigger and backfill forms render and check these JSON schemas), and every task checks
the run's params against the same schemas with jsonschema (`param_problems()`, called by
`AuditParams.from_params`), the library Airflow's own `Param.resolve` uses. What JSON schema cannot say
(a file that must exist and parse, a transport not built yet, a date that must be a real day) is code, in
`include/settings/params.py` (`AuditParams.semantic_problems`) and the two file loaders.

Empty means "none" only where the schema says so: optional text params are nullable (`["null", "string"]`,
default None), because the UI form refuses an empty string for a `type: string` param and disables Trigger.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from include.settings.queues import param_schema as queue_map_schema

DEFAULT_TABLE = "ec2_audit_evidence"
INSTANCE_ID_PATTERN = "^i-[0-9a-f]{8,17}$"
# Deployment defaults of the audit DAGs' params (PARAM_SCHEMAS), a JSON object read when a DAG file is parsed.
PARAMS_ENV = "EC2_AUDIT_PARAMS"
# Per run only: a deployment default of instance_ids would turn every scheduled run into a narrowed one.
NOT_DEPLOYMENT_DEFAULTS = ("instance_ids",)
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}

# name → JSON schema of the param, with its `default` and `description` (Airflow's Param keeps both apart from
# the schema; `dag_params` splits them). Keys are the AuditParams fields (include/settings/params.py), one for one.
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "regions": {**_STRINGS, "default": [], "description": "AWS regions to audit; empty = the AWS connection's region"},
    "accounts": {**_STRINGS, "items": {"type": "string", "minLength": 1, "pattern": "^[^|]+$"}, "default": [],
                 "description": "Other AWS accounts: IAM role ARNs to assume, or AWS connection ids"},
    "include_default_account": {"type": "boolean", "default": True,
                                "description": "Also audit the aws_default connection's own account"},
    "tag_filters": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    "default": {}, "description": 'Only instances matching all, e.g. {"Environment": ["prod"]}'},
    "batch_size": {"type": "integer", "minimum": 0, "default": 0,
                   "description": "Hosts per mapped batch; 0 = automatic (about 16 batches of ≥ 50 hosts)"},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100,
                    "description": "SSH sessions at once per batch"},
    "recipients": {**_STRINGS, "default": [], "description": "Report email recipients; empty = no email"},
    "report_dir": {"type": ["null", "string"], "default": None,
                   "description": "Report folder: a local path or s3://bucket/prefix (via the aws_default "
                                  "connection); empty = $AIRFLOW_HOME/reports/ec2_audit"},
    "evidence_table": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_.-]{3,255}$",
                       "default": DEFAULT_TABLE, "description": "DynamoDB table of the evidence"},
    "create_table": {"type": "boolean", "default": True, "description": "Create the evidence table if missing"},
    "log_group": {"type": ["null", "string"], "default": None,
                  "description": "Fallback log group when a config names none"},
    "stream_max_age_minutes": {"type": "integer", "minimum": 1, "default": 120,
                               "description": "An audit-log stream older than this is stale"},
    "address": {"type": "string", "enum": ["private_ip", "public_ip", "private_dns"], "default": "private_ip",
                "description": "Which address SSH connects to"},
    "mode": {"type": "string", "enum": ["auto", "live", "rebuild"], "default": "auto",
             "description": "live SSHes; rebuild only rebuilds the report from stored evidence; auto = rebuild "
                            "for a day more than 36 h old (a backfill), else live"},
    "profile": {"type": "string", "minLength": 1, "default": "audit-trail",
                "description": "Which checks decide a host's status: audit-trail, cis, or a JSON profile file path"},
    "transport": {"type": "string", "enum": ["ssh", "ssm", "eic", "auto"], "default": "ssh",
                  "description": "How commands reach the hosts: ssh (the connection's key), ssm (SSM Run Command), "
                                 "eic (EC2 Instance Connect: a short-lived key pushed per host), auto (SSM where "
                                 "the agent is Online, else SSH, or EIC when the SSH connection has no key)"},
    "ssm_output_bucket": {"type": ["null", "string"], "default": None, "pattern": "^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                          "description": "S3 bucket SSM writes command output to (full output; without it output "
                                         "over SSM's 24,000-character inline limit makes the host ERROR, and a "
                                         "fleet over 4,500 hosts in one account and Region is refused: one "
                                         "GetCommandInvocation a host). Never evidence_bucket"},
    "ssm_output_bucket_owner": {"type": ["null", "string"], "default": None, "pattern": "^$|^[0-9]{12}$",
                                "description": "Account id owning ssm_output_bucket, named on every read "
                                               "(ExpectedBucketOwner); empty = the AWS connection's own account"},
    "ssm_document": {"type": ["null", "string"], "default": None, "pattern": "^$|^[A-Za-z0-9_.-]{3,128}$",
                     "description": "The audit's own SSM document (python -m include.reach.ssm_document) instead of "
                                    "AWS-RunShellScript, so the role may send only it; empty = AWS-RunShellScript"},
    "evidence_bucket": {"type": ["null", "string"], "default": None, "pattern": "^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                        "description": "S3 bucket (the evidence account's) that keeps each host's raw output, locked "
                                       "until the item expires when the bucket has Object Lock; written by the "
                                       "Airflow worker's role only; empty = chunk items in DynamoDB (<table>_raw)"},
    "connect_timeout": {"type": "integer", "minimum": 1, "maximum": 15, "default": 15,
                        "description": "Seconds to open one SSH connection"},
    "host_timeout": {"type": "integer", "minimum": 5, "maximum": 90, "default": 90,
                     "description": "Seconds for everything on one host"},
    "command_timeout": {"type": "integer", "minimum": 5, "maximum": 85, "default": 60,
                        "description": "Seconds for the combined check script on one host"},
    "ttl_days": {"type": "integer", "minimum": 1, "default": 400, "description": "Evidence expiry (DynamoDB TTL)"},
    "kms_key_id": {"type": ["null", "string"], "default": None, "pattern": "^$|^[A-Za-z0-9:/_.-]{1,2048}$",
                   "description": "Asymmetric KMS key (id, ARN or alias/...; RSA, SIGN_VERIFY) that signs each seal "
                                  "of the day's evidence (RSASSA_PSS_SHA_256); empty = seals unsigned"},
    "rule_set": {"type": "string", "minLength": 1, "default": "cis",
                 "description": "Audit rule groups required: cis, minimal, or a JSON file path"},
    "waivers_file": {"type": ["null", "string"], "default": None,
                     "description": "JSON file of approved, expiring waivers (see docs); empty = none"},
    "canary": {"type": "boolean", "default": False,
               "description": "Write a marker to each host's audit log and find it in CloudWatch Logs"},
    "canary_wait_seconds": {"type": "integer", "minimum": 5, "maximum": 600, "default": 90,
                            "description": "How long to wait for the canary to reach CloudWatch Logs"},
    "instance_ids": {"type": "array", "items": {"type": "string", "pattern": INSTANCE_ID_PATTERN}, "default": [],
                     "description": "Check only these instances (a patch pipeline asks); empty = every instance. "
                                    "The day's summary and report still cover every host checked that day"},
    "accept_host_keys": {**_STRINGS, "default": [],
                         "description": "Instance ids whose changed (rotated) host key to accept and re-pin in this run"},
    "alert_recipients": {**_STRINGS, "default": [],
                         "description": "Who gets immediate alerts (critical failures, low compliance, a failed run)"},
    "alert_threshold_pct": {"type": "number", "minimum": 0, "maximum": 100, "default": 90.0,
                            "description": "Alert when fleet compliance falls below this; 0 = off"},
    "alert_repeat_days": {"type": "integer", "minimum": 0, "default": 7,
                          "description": "Re-alert a finding still open after this many days; 0 = never"},
    "tamper_grace_minutes": {"type": "number", "minimum": 0, "default": 5,
                             "description": "A clean auditd stop (reboot, upgrade) alerts only if the re-check does "
                                            "not pass within this many minutes"},
    "launch_grace_minutes": {"type": "number", "minimum": 0, "default": 10,
                             "description": "A launched instance is checked this many minutes after it starts "
                                            "running, once it has booted"},
    "securityhub": {"type": "boolean", "default": False,
                    "description": "Send one AWS Security Hub finding per failing (host, check), updated daily; "
                                   "resolved when the check passes again, archived when the instance is gone"},
    "slack_conn_id": {"type": ["null", "string"], "default": None, "pattern": "^$|^[A-Za-z0-9_.-]{1,250}$",
                      "description": "Airflow connection (type slackwebhook) that compliance alerts and failure "
                                     "notices also go to; empty = no Slack"},
    "sns_topic_arn": {"type": ["null", "string"], "default": None,
                      "pattern": "^$|^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$",
                      "description": "SNS topic (standard, not FIFO) that compliance alerts and failure notices are "
                                     "also published to, as JSON; empty = no SNS"},
    "sns_aws_conn_id": {"type": ["null", "string"], "default": None, "pattern": "^$|^[A-Za-z0-9_.-]{1,250}$",
                        "description": "AWS connection that publishes to sns_topic_arn; empty = aws_default"},
    # Hosts → the worker queue inside their VPC; the values allowed are the deployment's EC2_AUDIT_QUEUES.
    "queue_map": queue_map_schema(),
}

# The remediation DAG's params (dags/ec2_audit_remediate.py, include/settings/params.py: RemediateParams). Who may approve
# is NOT a param: whoever triggers a run could name themselves. It is deployment config
# (EC2_AUDIT_REMEDIATION_APPROVERS, read when the DAG is parsed).
REMEDIATE_SCHEMAS: dict[str, dict[str, Any]] = {
    "audit_date": {"type": ["null", "string"], "default": None, "pattern": "^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                   "format": "date",
                   "description": "The audit day whose evidence the plan is built from (YYYY-MM-DD); empty = the "
                                  "day of the evidence event that triggered the run, else the latest audited day"},
    "dry_run": {"type": "boolean", "default": True,
                "description": "Only build and show the plan (task log, XCom, a file beside the report): no "
                               "approval is asked and no host is touched. Set false to ask for approval"},
    "log_group": {"type": ["null", "string"], "default": None, "pattern": "^$|^[.\\-_/#A-Za-z0-9]{1,512}$",
                  "description": "CloudWatch log group the agent fix ships audit.log to; empty = that fix is manual"},
    "include_advisory": {"type": "boolean", "default": False,
                         "description": "Also fix failures outside the day's profile (advisory_failed)"},
    "approval_timeout": {"type": "number", "minimum": 0.05, "maximum": 10080, "default": 240,
                         "description": "Minutes to wait for an answer; none by then: nothing runs (recorded as "
                                        "timed out)"},
    "max_hosts": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50,
                  "description": "At most this many hosts in one plan (the rest are listed, not planned)"},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10,
                    "description": "Hosts changed at once"},
    "command_timeout": {"type": "integer", "minimum": 5, "maximum": 600, "default": 120,
                        "description": "Seconds for one fix step on one host"},
    "evidence_table": PARAM_SCHEMAS["evidence_table"],
    "report_dir": PARAM_SCHEMAS["report_dir"],
    "ttl_days": PARAM_SCHEMAS["ttl_days"],
}

_NOT_SCHEMA = ("default", "description")


def param_schema(name: str, schemas: Mapping[str, Mapping[str, Any]] = PARAM_SCHEMAS) -> dict[str, Any]:
    """The JSON schema of one param (without its default and description)."""
    return {k: copy.deepcopy(v) for k, v in schemas[name].items() if k not in _NOT_SCHEMA}


def param_defaults(schemas: Mapping[str, Mapping[str, Any]] = PARAM_SCHEMAS) -> dict[str, Any]:
    return {name: copy.deepcopy(spec["default"]) for name, spec in schemas.items()}


def deployment_defaults(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`EC2_AUDIT_PARAMS` (a JSON object: param name → default) checked against PARAM_SCHEMAS. A value that is
    not JSON, an unknown or per-run name, or a value its param's schema refuses raises ValueError naming
    EC2_AUDIT_PARAMS and the field: the DAG then fails to import, visibly, instead of running with a default
    nobody meant."""
    text = (os.environ if environ is None else environ).get(PARAMS_ENV, "").strip()
    if not text:
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{PARAMS_ENV}: not valid JSON (column {exc.colno}: {exc.msg})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{PARAMS_ENV}: must be a JSON object of param name → default, not {_json_type(values)}")
    problems = []
    for name in values:
        if name in NOT_DEPLOYMENT_DEFAULTS:
            problems.append(f"{name}: set per run (trigger conf), not as a deployment default")
        elif name not in PARAM_SCHEMAS:
            problems.append(f"{name}: not a param of the audit DAGs")
    problems += [p.removeprefix("param ") for p in param_problems(values)]
    if problems:
        raise ValueError(f"{PARAMS_ENV}: " + "; ".join(problems))
    return values


def dag_params(schemas: Mapping[str, Mapping[str, Any]] = PARAM_SCHEMAS) -> dict[str, Any]:
    """A DAG's Airflow `Param`s, built from its schemas (the only copy). The audit DAGs' (PARAM_SCHEMAS) take
    their defaults from EC2_AUDIT_PARAMS where it names them (deployment_defaults); each run's params carry
    those defaults, so the tasks' AuditParams see them too."""
    from airflow.sdk import Param

    overrides = deployment_defaults() if schemas is PARAM_SCHEMAS else {}
    return {name: Param(copy.deepcopy(overrides[name] if name in overrides else spec["default"]),
                        description=spec.get("description"), schema=param_schema(name, schemas))
            for name, spec in schemas.items()}


# ------------------------------------------------------------------ validation with jsonschema

def _validator(schema: Mapping[str, Any]):
    """The validator Airflow's Param.resolve uses: the default draft for the schema, with format checks."""
    from jsonschema import FormatChecker
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    return cls(schema, format_checker=FormatChecker())


def _where(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


_JSON_TYPES = {"array": "a list", "object": "an object", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)


def _message(error) -> tuple[list[Any], str]:
    """(path of the field, message) for one jsonschema error: missing and unexpected fields named."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "required":
        # one error per missing field, its name only in the message ("'approver' is a required property")
        missing = [k for k in error.validator_value if k not in (error.instance or {})]
        named = next((k for k in missing if error.message.startswith(repr(k))), missing[0] if missing else "?")
        return path + [named], "missing (required)"
    if error.validator == "additionalProperties" and error.validator_value is False:
        extra = sorted(set(error.instance) - set(schema.get("properties", {})))
        allowed = ", ".join(sorted(schema.get("properties", {})))
        return path + extra[:1], f"not a known field (allowed: {allowed})"
    if error.validator == "type":
        if "x-type-error" in schema:
            return path, f"{schema['x-type-error']}, not {_json_type(error.instance)}"
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return path, f"must be {' or '.join(_JSON_TYPES.get(t, t) for t in wanted)}, not {_json_type(error.instance)}"
    custom = schema.get("x-error")
    if custom:
        if isinstance(error.instance, (dict, list)):
            return path, custom
        return path, f"{_short(error.instance)} {custom}"
    return path, error.message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def param_problems(params: Mapping[str, Any], schemas: Mapping[str, Mapping[str, Any]] = PARAM_SCHEMAS) -> list[str]:
    """Every param (known names only) against its schema; messages name the param."""
    problems = []
    for name, value in params.items():
        if name not in schemas:
            continue
        errors = _validator(param_schema(name, schemas)).iter_errors(value)
        for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
            path, message = _message(error)
            problems.append(f"param {_where([name, *path])}: {message}")
    return list(dict.fromkeys(problems))


# ------------------------------------------------------------------ the two input files

_DATE = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "format": "date",
         "x-error": "is not a date written YYYY-MM-DD (e.g. 2026-01-01)"}
_TEXT = {"type": "string", "minLength": 1, "pattern": "\\S", "x-error": "must not be empty"}

WAIVERS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "x-type-error": "must be a JSON list of waivers",
    "items": {
        "type": "object",
        "properties": {
            "instance_id": {"type": "string", "pattern": INSTANCE_ID_PATTERN,
                            "x-error": "is not an EC2 instance id (i-0123456789abcdef0)"},
            "tags": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"},
                     "x-error": "must map at least one tag name to a value"},
            "check_id": _TEXT,
            "justification": _TEXT,
            "approver": _TEXT,
            "expires": _DATE,
        },
        "required": ["check_id", "justification", "approver", "expires"],
        "additionalProperties": False,
        "anyOf": [{"required": ["instance_id"]}, {"required": ["tags"]}],
        "x-error": "needs instance_id or tags (which hosts the waiver covers)",
    },
}

RULE_SET_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "x-type-error": "must be a JSON list of rule groups",
    "x-error": "must not be empty: a rule set needs at least one rule group",
    "items": {
        "type": "object",
        "properties": {
            "name": _TEXT,
            "keys": {"type": "array", "items": _TEXT},
            "watches": {"type": "array", "items": {**_TEXT, "pattern": "^/", "x-error": "must be an absolute path"}},
            "syscalls": {"type": "array", "items": _TEXT},
        },
        "required": ["name"],
        "additionalProperties": False,
        "anyOf": [{"required": [k], "properties": {k: {"minItems": 1}}} for k in ("keys", "watches", "syscalls")],
        "x-error": "needs at least one of keys, watches or syscalls (a group nothing can cover)",
    },
}


def read_json_file(what: str, path: str) -> Any:
    """Parse a JSON input file; ValueError naming the param and the file for anything unreadable."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{what} {path}: no such file")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


def file_problems(what: str, path: str, data: Any, schema: Mapping[str, Any], limit: int = 10) -> list[str]:
    """Schema errors of a list-of-entries file: '<what> <file>: entry #n, field f: message'."""
    problems = []
    for error in sorted(_validator(schema).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        field_path, message = _message(error)
        if not field_path:
            problems.append(f"{what} {path}: {message}")
        elif len(field_path) == 1:
            problems.append(f"{what} {path}: entry #{int(field_path[0]) + 1}: {message}")
        else:
            problems.append(f"{what} {path}: entry #{int(field_path[0]) + 1}, field {_where(field_path[1:])}: {message}")
    problems = list(dict.fromkeys(problems))  # a value failing two keywords (pattern, format) is named once
    if len(problems) > limit:
        problems = problems[:limit] + [f"… and {len(problems) - limit} more"]
    return problems
