"""The records that cross modules, typed, each with one `to_item()` / `from_item()` pair for DynamoDB.

An evidence item is built once (include/evidence.py: instance_item) and read back through `from_item` by every
reader (report, dashboard, alerts); a run summary is built once (include/pipeline.py: store_summary) and read
through `from_item` (report, dashboard, trend). `from_item` accepts projected and older items: a missing
attribute is its default, DynamoDB's Decimals become ints and floats.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


class _Record:
    """to_item / from_item over the dataclass fields (no field may be named like a DynamoDB key it is not)."""

    def to_item(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_item(cls, item: Mapping[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: _plain(v) for k, v in item.items() if k in names})


@dataclass(frozen=True)
class EvidenceItem(_Record):
    """One instance on one audit day (key: instance_id, audit_date). Contract: shared/CONTRACT.md, Evidence."""

    instance_id: str
    audit_date: str = ""
    item_type: str = "instance"
    run_id: str = ""
    mode: str = "live"
    checked_at: str = ""
    status: str = ""
    status_detail: str = ""
    failed_checks: list[str] = field(default_factory=list)  # the profile's failing checks: they decide
    advisory_failed: list[str] = field(default_factory=list)  # failing checks outside the profile
    waived_checks: list[str] = field(default_factory=list)
    profile: str = ""
    transport: str = ""
    checks: dict[str, dict[str, str]] = field(default_factory=dict)  # check id → {status, detail}
    region: str = ""
    account_id: str = ""
    private_ip: str = ""
    address: str = ""
    platform: str = "linux"
    name: str = ""
    environment: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    host_key_fingerprint: str = ""
    host_key_note: str = ""
    output_sha256: str = ""
    output_bytes: int = 0
    output_truncated: bool = False
    ssh_attempts: int = 0
    transport_evidence: dict[str, str] = field(default_factory=dict)  # e.g. SSM ping status, agent, command id
    expires_at: int = 0
    item_sha256: str = ""  # include/day_digest.py: item_sha256 of every other field, set when the item is built
    # Names that identify a host only while unique (include/name_claims.py), stored only when non-empty: each
    # [group, stream] the agent ships audit.log to that does not name the instance id, and the [group, stream]
    # a log_stream_fresh PASS rests on by such a name (a hostname, an IP, a DNS name) without a canary proof.
    stream_names: list[list[str]] = field(default_factory=list)
    stream_attributed_by_name: list[str] = field(default_factory=list)
    # A verdict corrected after the batch by the run (include/name_claims.py): what it was, why, when.
    amended: dict[str, Any] = field(default_factory=dict)

    OPTIONAL = ("stream_names", "stream_attributed_by_name", "amended")

    def to_item(self) -> dict[str, Any]:
        item = asdict(self)
        for key in self.OPTIONAL:  # most hosts have none of these: keep their items small
            if not item[key]:
                item.pop(key)
        return item

    @property
    def reached_by(self) -> str:
        """The transport and what vouched for the host's identity: its host key, or its SSM registration."""
        e = self.transport_evidence
        if self.transport == "ssm" and e:
            parts = [f"SSM agent {e.get('ssm_agent_version', '?')} ({e.get('ssm_ping_status', '?')})"]
            parts += [f"command {e['ssm_command_id']}"] if e.get("ssm_command_id") else []
            parts += [f"document {e['ssm_document']}"] if e.get("ssm_document") else []
            return "ssm: " + ", ".join(parts)
        key = f": host key {self.host_key_fingerprint}" if self.host_key_fingerprint else ""
        return f"{self.transport or '?'}{key}"

    @property
    def display_name(self) -> str:
        return self.name or str(self.tags.get("Name", ""))

    @property
    def display_environment(self) -> str:
        return self.environment or str(self.tags.get("Environment", ""))


@dataclass(frozen=True)
class RunSummary(_Record):
    """One audit day of the fleet (partition "#run-summary"): always agrees with that day's items."""

    run_id: str = ""
    mode: str = ""
    generated_at: str = ""
    discovered: int = 0
    checked: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    compliance_pct: float | None = None
    coverage_pct: float | None = None
    not_running: dict[str, int] = field(default_factory=dict)
    missing_evidence: list[str] = field(default_factory=list)
    checked_by_earlier_runs: int = 0
    regions: list[str] = field(default_factory=list)
    code_version: str = ""
    failed_batches: list[dict[str, str]] = field(default_factory=list)
    emailed_run_id: str = ""
    emailed_at: str = ""

    def to_item(self) -> dict[str, Any]:
        """What put_summary stores (the email fields are set by mark_emailed, never overwritten here)."""
        item = asdict(self)
        for key in ("emailed_run_id", "emailed_at"):
            if not item[key]:
                item.pop(key)
        return item


@dataclass(frozen=True)
class Batch:
    """One mapped verify task: hosts of one account and region (XCom carries it as a plain dict)."""

    region: str  # the AWS region
    instance_ids: list[str]
    account: str = ""  # "" = the aws_default connection's own account; else a role ARN or a connection id
    number: int = 1
    of: int = 1
    label: str = ""  # what the Airflow UI shows for the mapped task, e.g. "222222222222 us-east-1 batch 1/3 (50 hosts)"
    audit_date: str = ""
    run_id: str = ""

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Batch":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names})


@dataclass(frozen=True)
class StepRun(_Record):
    """One remediation step as it ran on a host: the constant command, what it read and what it answered."""

    command: str
    stdin_sha256: str = ""  # "" = the step read nothing
    exit_status: int | None = None  # None = it never ran (an earlier step failed, or the session dropped)
    output_sha256: str = ""  # of the whole output (stdout and stderr merged by the step)
    output: str = ""  # its first REMEDIATION_OUTPUT_CAP bytes, decoded: for the reader, the hash is the proof


@dataclass(frozen=True)
class FixRun(_Record):
    """One fix (include/checks/fixes.py) on one host: its steps in order; `result` ran | refused | failed | skipped."""

    fix: str
    check_ids: list[str] = field(default_factory=list)
    result: str = ""
    detail: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)  # StepRun.to_item()s


@dataclass(frozen=True)
class RemediationRecord(_Record):
    """One host's remediation for one audit day (partition "#remediation#<host_id>", item_type "remediation").

    Keeps the chain an auditor asks for: the plan (its hash) and who approved it when, what ran (each step's
    constant command, exit status and output hash), the status before (the day's evidence) and after (the
    re-verify through the audit's own verify path and read-only login). `outcome`: fixed (every check the fixes
    addressed passes now) | not_fixed (a fix ran, the check still fails: reported as failed) | refused (nothing
    was changed: host key, stale evidence, a guard on the host) | failed (a step failed or the host was lost).
    A later attempt the same day replaces the fields and keeps the earlier ones' summaries in `earlier`."""

    host_id: str
    audit_date: str = ""
    item_type: str = "remediation"
    run_id: str = ""  # the ec2_audit_remediate run
    ran_at: str = ""
    name: str = ""
    region: str = ""
    account_id: str = ""
    plan_sha256: str = ""
    approved_by: str = ""
    approved_at: str = ""
    connection: str = ""  # the Airflow connection the fixes ran through
    host_key_fingerprint: str = ""  # the key the fixing session saw (must equal the pin)
    fixes: list[dict[str, Any]] = field(default_factory=list)  # FixRun.to_item()s
    outcome: str = ""
    detail: str = ""
    before_status: str = ""
    before_failed: list[str] = field(default_factory=list)
    before_run_id: str = ""
    before_output_sha256: str = ""
    after_status: str = ""  # "" = not re-verified (nothing ran)
    after_failed: list[str] = field(default_factory=list)
    after_advisory_failed: list[str] = field(default_factory=list)
    after_checks: dict[str, dict[str, str]] = field(default_factory=dict)
    after_checked_at: str = ""
    after_output_sha256: str = ""
    after_host_key_fingerprint: str = ""
    earlier: list[dict[str, Any]] = field(default_factory=list)  # earlier attempts that day: run, outcome, when, who
    expires_at: int = 0


@dataclass(frozen=True)
class RemediationDecision(_Record):
    """One answer to one plan (partition "#remediation-decisions", one item per audit day, a list of these):
    approved | rejected | timed_out | dry_run | nothing_to_do, by whom and when, for which plan hash."""

    run_id: str
    decision: str
    plan_sha256: str = ""
    hosts: int = 0
    fixes: int = 0
    by: str = ""
    at: str = ""
    detail: str = ""
