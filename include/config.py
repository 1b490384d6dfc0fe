"""Run parameters: defaults, validation, the audit day and the run mode (pure functions)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

AWS_CONN_ID = "aws_default"
SSH_CONN_ID = "ec2_audit_ssh"
SMTP_CONN_ID = "smtp_default"
DEFAULT_TABLE = "ec2_audit_evidence"
MAX_BATCHES = 48  # keeps mapped task instances to "a few dozen" whatever batch_size says
REBUILD_AFTER = timedelta(hours=36)
ADDRESS_KINDS = ("private_ip", "public_ip", "private_dns")
MODES = ("auto", "live", "rebuild")


@dataclass(frozen=True)
class AuditParams:
    regions: list[str] = field(default_factory=list)  # [] → the AWS connection's region
    tag_filters: dict[str, list[str]] = field(default_factory=dict)
    batch_size: int = 0  # 0 → sized automatically
    concurrency: int = 100
    recipients: list[str] = field(default_factory=list)
    report_dir: str = ""  # "" → $AIRFLOW_HOME/reports/ec2_audit
    evidence_table: str = DEFAULT_TABLE
    create_table: bool = True
    log_group: str | None = None
    stream_max_age_minutes: int = 120
    address: str = "private_ip"
    mode: str = "auto"
    connect_timeout: int = 15
    host_timeout: int = 90
    command_timeout: int = 60
    ttl_days: int = 400
    rule_set: str = "cis"  # built-in rule group set (cis, minimal) or a JSON file path
    waivers_file: str = ""  # JSON list of waivers (include/waivers.py); "" = none
    canary: bool = False  # opt-in end-to-end delivery proof (cwagent.canary_delivered)
    canary_wait_seconds: int = 90
    accept_host_keys: list[str] = field(default_factory=list)  # instance ids whose changed key is accepted now
    # Other AWS accounts to audit besides the connection's own: IAM role ARNs (assumed from `aws_default`) or
    # Airflow AWS connection ids (each with its own credentials or `role_arn`). [] → the connection's account.
    accounts: list[str] = field(default_factory=list)
    include_default_account: bool = True  # also audit `aws_default`'s own account when `accounts` is set
    alert_recipients: list[str] = field(default_factory=list)  # [] → no alerts (compliance or pipeline failure)
    alert_threshold_pct: float = 90.0  # compliance below this alerts; 0 turns the threshold alert off
    alert_repeat_days: int = 7  # an open finding alerts again after this many days; 0 = never repeat

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "AuditParams":
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__ and v is not None}
        p = cls(**known)
        p.validate()
        return p

    def validate(self) -> None:
        problems = []
        if self.address not in ADDRESS_KINDS:
            problems.append(f"address must be one of {ADDRESS_KINDS}, not {self.address!r}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, not {self.mode!r}")
        if not isinstance(self.tag_filters, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in self.tag_filters.values()):
            problems.append("tag_filters must map a tag name to a list of values")
        if self.batch_size < 0 or self.concurrency < 1:
            problems.append("batch_size must be ≥ 0 and concurrency ≥ 1")
        if not 1 <= self.connect_timeout <= 15:
            problems.append("connect_timeout must be 1–15 s")
        if not 5 <= self.host_timeout <= 90:
            problems.append("host_timeout must be 5–90 s")
        if any(not isinstance(a, str) or not a or "|" in a for a in self.accounts):
            problems.append("accounts must be role ARNs or AWS connection ids (non-empty, no '|')")
        if not 0 <= self.alert_threshold_pct <= 100 or self.alert_repeat_days < 0:
            problems.append("alert_threshold_pct must be 0–100 and alert_repeat_days ≥ 0")
        if self.stream_max_age_minutes < 1 or self.ttl_days < 1:
            problems.append("stream_max_age_minutes and ttl_days must be positive")
        try:
            from include.checks.rulesets import load_rule_set
            from include.waivers import load_waivers

            load_rule_set(self.rule_set)
            load_waivers(self.waivers_file)
        except (ValueError, OSError) as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("invalid params: " + "; ".join(problems))

    def resolved_report_dir(self) -> str:
        if self.report_dir:
            return self.report_dir
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        return os.path.join(home, "reports", "ec2_audit")


def audit_day(logical_date: datetime | None, run_after: datetime | None) -> str:
    """The run's logical date (or run_after for manual runs without one) as YYYY-MM-DD in UTC."""
    moment = logical_date or run_after
    if moment is None:
        raise ValueError("a run has neither logical_date nor run_after")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


def resolve_mode(mode: str, logical_date: datetime | None, run_start: datetime) -> str:
    """`auto` is live unless the logical date is more than 36 h before the run starts (backfill/old rerun)."""
    if mode in ("live", "rebuild"):
        return mode
    if logical_date is not None and run_start - logical_date > REBUILD_AFTER:
        return "rebuild"
    return "live"
