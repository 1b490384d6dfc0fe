"""The evidence records, typed, each with one `to_item()` / `from_item()` pair for DynamoDB.

An evidence item is built once (include/evidence/store.py: instance_item) and read back through `from_item` by every
reader (report, dashboard, alerts); a run summary is built once (include/tasks/audit.py: store_summary) and read
through `from_item` (report, dashboard, trend).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.record import Record


@dataclass(frozen=True)
class EvidenceItem(Record):
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
    output_ref: str = ""  # where the raw output is kept: "dynamodb" (T_raw), "s3://bucket/key", "" = none kept
    output_truncated: bool = False
    ssh_attempts: int = 0
    transport_evidence: dict[str, str] = field(default_factory=dict)  # e.g. SSM ping status, agent, command id
    expires_at: int = 0
    # include/evidence/observation.py: observation_sha256 of the item as stored (seq included), set by the store
    # when it writes the observation (EvidenceStore.put_observations).
    item_sha256: str = ""
    seq: int = 0  # 1, 2, ... per instance and day: set by the store (0 = not yet written)
    trigger: str = ""  # what asked for this check (observation.TRIGGERS); "" = an item written before triggers
    output_ref: str = ""  # where the raw output is kept: "" none, "dynamodb" (T_raw) or an s3:// URL
    # Names that identify a host only while unique (include/verify/name_claims.py), stored only when non-empty: each
    # [group, stream] the agent ships audit.log to that does not name the instance id, and the [group, stream]
    # a log_stream_fresh PASS rests on by such a name (a hostname, an IP, a DNS name) without a canary proof.
    stream_names: list[list[str]] = field(default_factory=list)
    stream_attributed_by_name: list[str] = field(default_factory=list)
    # The [group, stream] the host's log_stream_fresh PASS rests on, stored only when it passed: the silence sweep
    # (include/tasks/watch.py) watches that stream between the daily runs.
    stream: list[str] = field(default_factory=list)
    # A verdict corrected after the batch by the run (include/verify/name_claims.py): what it was, why, when.
    amended: dict[str, Any] = field(default_factory=dict)
    # Why this host was checked, beside `trigger` (the watch's event: Batch.reasons), stored only when non-empty.
    trigger_detail: str = ""

    OPTIONAL = ("stream", "stream_names", "stream_attributed_by_name", "amended", "trigger_detail")

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
class RunSummary(Record):
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
    # The day's latest seal (include/evidence/seals.py): its manifest, the manifest of the day's seal before it
    # ("" when none) and its number in the chain; the report and its email show the manifest.
    manifest_sha256: str = ""
    previous_manifest_sha256: str = ""
    seal_seq: int = 0
    emailed_run_id: str = ""
    emailed_at: str = ""

    def to_item(self) -> dict[str, Any]:
        """What put_summary stores (the email fields are set by mark_emailed, never overwritten here)."""
        item = asdict(self)
        for key in ("emailed_run_id", "emailed_at"):
            if not item[key]:
                item.pop(key)
        return item
