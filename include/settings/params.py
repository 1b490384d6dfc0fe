"""Run parameters: defaults, validation, the audit day and the run mode (pure functions)."""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from include.settings.connections import AWS_CONN_ID, REMEDIATE_SSH_CONN_ID, SMTP_CONN_ID, SSH_CONN_ID  # noqa: F401 - re-exported
from include.settings.schema import DEFAULT_TABLE, PARAM_SCHEMAS, REMEDIATE_SCHEMAS, param_problems  # noqa: F401 - DEFAULT_TABLE re-exported

REBUILD_AFTER = timedelta(hours=36)
ADDRESS_KINDS = tuple(PARAM_SCHEMAS["address"]["enum"])
MODES = tuple(PARAM_SCHEMAS["mode"]["enum"])


def _default(name: str):
    """A dataclass field whose default is PARAM_SCHEMAS[name]["default"] (a fresh copy each time)."""
    return field(default_factory=lambda: copy.deepcopy(PARAM_SCHEMAS[name]["default"]))


@dataclass(frozen=True)
class AuditParams:
    """The run's params. Their types, ranges, defaults and descriptions are declared once, in
    include/settings/schema.py (PARAM_SCHEMAS, which also builds the DAG's Params); the defaults here are read
    from it, and tests/unit/settings/test_params_schema.py keeps these fields and PARAM_SCHEMAS' names the same."""

    regions: list[str] = _default("regions")  # [] → the AWS connection's region
    tag_filters: dict[str, list[str]] = _default("tag_filters")
    batch_size: int = _default("batch_size")  # 0 → sized automatically
    concurrency: int = _default("concurrency")
    recipients: list[str] = _default("recipients")
    report_dir: str | None = _default("report_dir")  # None/"" → $AIRFLOW_HOME/reports/ec2_audit
    evidence_table: str = _default("evidence_table")
    create_table: bool = _default("create_table")
    log_group: str | None = _default("log_group")
    stream_max_age_minutes: int = _default("stream_max_age_minutes")
    address: str = _default("address")
    mode: str = _default("mode")
    profile: str = _default("profile")  # audit-trail, cis, or a JSON profile file (include/verify/profiles.py)
    transport: str = _default("transport")  # ssh | ssm | eic | auto (include/reach/transport.py)
    ssm_output_bucket: str | None = _default("ssm_output_bucket")  # full SSM output from S3 (include/reach/ssm.py)
    ssm_output_bucket_owner: str | None = _default("ssm_output_bucket_owner")  # "" → aws_default's own account
    evidence_bucket: str | None = _default("evidence_bucket")  # raw output in S3 (include/evidence/raw_store.py)
    ssm_document: str | None = _default("ssm_document")  # the audit's own SSM document (include/reach/ssm_document.py)
    connect_timeout: int = _default("connect_timeout")
    host_timeout: int = _default("host_timeout")
    command_timeout: int = _default("command_timeout")
    ttl_days: int = _default("ttl_days")
    kms_key_id: str | None = _default("kms_key_id")  # signs the seals (include/evidence/signing.py); None = unsigned
    rule_set: str = _default("rule_set")  # built-in rule group set (cis, minimal) or a JSON file path
    waivers_file: str | None = _default("waivers_file")  # JSON list (include/verify/waivers.py); None/"" = none
    canary: bool = _default("canary")  # opt-in end-to-end delivery proof (cwagent.canary_delivered)
    canary_wait_seconds: int = _default("canary_wait_seconds")
    instance_ids: list[str] = _default("instance_ids")  # [] → every instance; else only these (a targeted run)
    accept_host_keys: list[str] = _default("accept_host_keys")  # instance ids whose changed key is accepted now
    # Other AWS accounts to audit besides the connection's own: IAM role ARNs (assumed from `aws_default`) or
    # Airflow AWS connection ids (each with its own credentials or `role_arn`). [] → the connection's account.
    accounts: list[str] = _default("accounts")
    include_default_account: bool = _default("include_default_account")  # also aws_default's own account
    alert_recipients: list[str] = _default("alert_recipients")  # [] → no alerts (compliance or pipeline failure)
    alert_threshold_pct: float = _default("alert_threshold_pct")  # compliance below this alerts; 0 = off
    alert_repeat_days: int = _default("alert_repeat_days")  # an open finding alerts again after N days; 0 = never
    tamper_grace_minutes: float = _default("tamper_grace_minutes")  # a clean auditd stop alerts only if still failing after
    launch_grace_minutes: float = _default("launch_grace_minutes")  # a launched instance is checked this long after running
    securityhub: bool = _default("securityhub")  # findings to AWS Security Hub (include/exports/securityhub.py)
    slack_conn_id: str | None = _default("slack_conn_id")  # slackwebhook connection; None = no Slack (include/notify/channels.py)
    sns_topic_arn: str | None = _default("sns_topic_arn")  # None = no SNS
    sns_aws_conn_id: str | None = _default("sns_aws_conn_id")  # None = aws_default
    queue_map: dict[str, str] = _default("queue_map")  # hosts → worker queue inside their VPC (include/settings/queues.py)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "AuditParams":
        """The params as PARAM_SCHEMAS types them (unknown names are ignored); one ValueError lists every
        problem, each naming its param. What a schema cannot say is checked by the task that reads them
        (include/tasks/params.py)."""
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        problems = param_problems(known)
        if problems:
            raise ValueError("invalid params: " + "; ".join(problems))
        return cls(**known)

    def resolved_report_dir(self) -> str:
        if self.report_dir:
            return self.report_dir
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        return os.path.join(home, "reports", "ec2_audit")


def _remediate_default(name: str):
    return field(default_factory=lambda: copy.deepcopy(REMEDIATE_SCHEMAS[name]["default"]))


@dataclass(frozen=True)
class RemediateParams:
    """The remediation DAG's params, declared in include/settings/schema.py REMEDIATE_SCHEMAS."""

    audit_date: str | None = _remediate_default("audit_date")
    dry_run: bool = _remediate_default("dry_run")
    log_group: str | None = _remediate_default("log_group")
    include_advisory: bool = _remediate_default("include_advisory")
    approval_timeout: float = _remediate_default("approval_timeout")
    max_hosts: int = _remediate_default("max_hosts")
    concurrency: int = _remediate_default("concurrency")
    command_timeout: int = _remediate_default("command_timeout")
    evidence_table: str = _remediate_default("evidence_table")
    report_dir: str | None = _remediate_default("report_dir")
    ttl_days: int = _remediate_default("ttl_days")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "RemediateParams":
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        problems = param_problems(known, REMEDIATE_SCHEMAS)
        if not problems and known.get("audit_date"):
            try:
                datetime.strptime(known["audit_date"], "%Y-%m-%d")
            except ValueError:
                problems.append(f"param audit_date: {known['audit_date']!r} is not a real day")
        if problems:
            raise ValueError("invalid params: " + "; ".join(problems))
        return cls(**known)

    def audit_params(self, profile: str) -> AuditParams:
        """What re-verification runs with: the audit's own verify path, on this table, under the day's profile."""
        return AuditParams(evidence_table=self.evidence_table, report_dir=self.report_dir, ttl_days=self.ttl_days,
                           profile=profile or "audit-trail", transport="ssh", create_table=False)


def audit_day(logical_date: datetime | None, run_after: datetime | None) -> str:
    """The run's logical date (or run_after for manual runs without one) as YYYY-MM-DD in UTC."""
    moment = logical_date or run_after
    if moment is None:
        raise ValueError("a run has neither logical_date nor run_after")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


class StaleLiveCheck(ValueError):
    """`mode=live` asked of a day long past: a check observes the moment it runs, so it cannot be day D's."""


def resolve_mode(mode: str, logical_date: datetime | None, run_start: datetime) -> str:
    """`auto` is live unless the logical date is more than 36 h before the run starts (backfill/old rerun).
    `live` for such a day is refused: what it saw would be recorded as evidence of a day it never observed."""
    old = logical_date is not None and run_start - logical_date > REBUILD_AFTER
    if mode == "live" and old:
        today, day = run_start.astimezone(timezone.utc).strftime("%Y-%m-%d"), audit_day(logical_date, None)
        raise StaleLiveCheck(f"param mode: a live check observes {today}, not {day}: use mode=rebuild")
    if mode in ("live", "rebuild"):
        return mode
    return "rebuild" if old else "live"
