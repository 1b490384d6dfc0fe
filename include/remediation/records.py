"""The remediation records: what ran on a host, and every answer given to a plan (typed, stored beside the evidence)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from include.core.record import Record


@dataclass(frozen=True)
class StepRun(Record):
    """One remediation step as it ran on a host: the constant command, what it read and what it answered."""

    command: str
    stdin_sha256: str = ""  # "" = the step read nothing
    exit_status: int | None = None  # None = it never ran (an earlier step failed, or the session dropped)
    output_sha256: str = ""  # of the whole output (stdout and stderr merged by the step)
    output: str = ""  # its first REMEDIATION_OUTPUT_CAP bytes, decoded: for the reader, the hash is the proof


@dataclass(frozen=True)
class FixRun(Record):
    """One fix (include/checks/fixes.py) on one host: its steps in order; `result` ran | refused | failed | skipped."""

    fix: str
    check_ids: list[str] = field(default_factory=list)
    result: str = ""
    detail: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)  # StepRun.to_item()s


@dataclass(frozen=True)
class RemediationRecord(Record):
    """One attempt (one run) of a host's remediation for one audit day (partition "#remediation#<host_id>", sort
    key "<audit_date>#<run_id>", item_type "remediation").

    Keeps the chain an auditor asks for: the plan (its hash) and who approved it when, what ran (each step's
    constant command, exit status and output hash), the status before (the day's evidence) and after (the
    re-verify: an observation of the UTC day it ran, `trigger` remediation, through the audit's own verify path and
    read-only login; `after_day` and `after_seq` name it). `outcome`: fixed (every check the fixes
    addressed passes now) | not_fixed (a fix ran, the check still fails: reported as failed) | refused (nothing
    was changed: host key, stale evidence, a guard on the host) | failed (a step failed or the host was lost).
    Every attempt is its own item; read back, the day's latest carries the earlier ones' summaries in `earlier`."""

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
    after_day: str = ""  # the re-check's observation: its day (the UTC day it ran) and seq in the evidence table
    after_seq: int = 0
    # Earlier attempts that day (run, outcome, when, who): derived when read (RemediationStore), never stored.
    earlier: list[dict[str, Any]] = field(default_factory=list)
    expires_at: int = 0


@dataclass(frozen=True)
class RemediationDecision(Record):
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
