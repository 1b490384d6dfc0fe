"""Issue 27's evidence layout built by hand, as the writers store it (pure): observations (current items and the
versions they replace, each with its `seq` and `item_sha256`), their raw output, the chained seals with their
members and the day's run summary. Unit tests feed it to include/integrity/verify.py; the integration tests write
it to a moto server (tests/integration/evidence/layout_writer.py) and run the command line over it.

Built from include/evidence/observation.py and manifest.py only, so it is the design's layout, not the writers'
code: the command line is checked against the documented form, whoever writes it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from include.core.clock import expires_at, iso
from include.evidence.manifest import (
    SEAL_ID,
    Member,
    Statement,
    manifest_sha256,
    pack_members,
    seal_item_fields,
    seal_key,
    statement_of,
)
from include.evidence.observation import (
    CURRENT,
    OUTPUT_IN_DYNAMODB,
    RawOutput,
    as_version,
    observation_sha256,
    parse_key,
    raw_s3_key,
)
from include.evidence.store import SUMMARY_ID
from include.integrity.verify import DayRead, SealRead

TTL = 400
D1, D2, D3 = "2031-03-01", "2031-03-02", "2031-03-03"


def raw_for(instance_id: str, seq: int, text: str = "") -> bytes:
    """Each observation's own output, so a changed chunk alters exactly one observation."""
    return (f"=== {instance_id} #{seq}\nauditctl -s: enabled 1\n{text}").encode()


@dataclass
class Ledger:
    """Everything stored, keyed as in the table: items[(instance_id, audit_date)], raws[(instance_id, day, sha)],
    seals[n] (the seal item), members[n], summaries[day]."""

    ttl: int = TTL
    bucket: str = ""  # raw output in S3 under this bucket instead of T_raw
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    raws: dict[tuple[str, str, str], RawOutput] = field(default_factory=dict)
    seals: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, list[Member]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc)

    def tick(self, day: str) -> str:
        start = datetime.fromisoformat(day).replace(hour=6, tzinfo=timezone.utc)
        self.clock = max(self.clock + timedelta(minutes=1), start)
        return iso(self.clock)

    def observe(self, instance_id: str, day: str, *, status: str = "COMPLIANT", trigger: str = "schedule",
                run_id: str = "", raw: bytes | None = None, keep_raw: bool = True) -> dict[str, Any]:
        """A new observation of (instance, day): the current one (if any) becomes a version, this one current."""
        before = self.items.get((instance_id, day))
        seq = 1
        if before is not None:
            version = as_version(before)
            self.items[(instance_id, version["audit_date"])] = version
            seq = int(before["seq"]) + 1
        output = RawOutput.of(raw if raw is not None else raw_for(instance_id, seq, day))
        ref = ""
        if keep_raw:
            ref = f"s3://{self.bucket}/{raw_s3_key(instance_id, day, output.sha256)}" if self.bucket \
                else OUTPUT_IN_DYNAMODB
            self.raws[(instance_id, day, output.sha256)] = output
        item = {"instance_id": instance_id, "audit_date": day, "item_type": CURRENT, "seq": seq,
                "run_id": run_id or f"run-{day}-{seq}", "checked_at": self.tick(day), "status": status,
                "failed_checks": [] if status == "COMPLIANT" else ["auditd.running"], "advisory_failed": [],
                "profile": "audit-trail", "transport": "ssh", "trigger": trigger,
                "checks": {"auditd.running": {"status": "PASS" if status == "COMPLIANT" else "FAIL", "detail": ""}},
                "region": "us-east-1", "account_id": "111111111111", "private_ip": "10.0.0.1",
                "tags": {"Name": instance_id, "Environment": "test"}, "host_key_fingerprint": "SHA256:x",
                "output_sha256": output.sha256, "output_bytes": output.size, "output_ref": ref,
                "expires_at": expires_at(day, self.ttl)}
        item["item_sha256"] = observation_sha256(item)
        self.items[(instance_id, day)] = item
        return item

    def of_day(self, day: str) -> tuple[list[dict], list[dict]]:
        current = [it for (i, k), it in sorted(self.items.items()) if k == day]
        versions = [it for (i, k), it in sorted(self.items.items()) if k != day and parse_key(k)[0] == day]
        return current, versions

    def seal(self, day: str, *, sign: Callable[[str], str] | None = None, kms_key_id: str = "",
             expires: int | None = None) -> dict[str, Any]:
        """Seal the day as it is now: the next seal of the one chain, its summary pointing at it."""
        current, versions = self.of_day(day)
        members = [Member(it["instance_id"], int(it["seq"]), observation_sha256(it)) for it in current + versions]
        parts, members_sha = pack_members(members)
        n = max(self.seals, default=0) + 1
        previous = self.seals.get(n - 1)
        same_day = [s for k, s in sorted(self.seals.items()) if statement_of(s).day == day]
        statement = Statement(
            seq=n, day=day, sealed_at=self.tick(day), run_id=f"seal-run-{n}", trigger="schedule",
            manifest_sha256=manifest_sha256(members), members_sha256=members_sha, items=len(members),
            previous_seal_sha256=previous["seal_sha256"] if previous else "",
            previous_manifest_sha256=statement_of(same_day[-1]).manifest_sha256 if same_day else "",
            previous_expires_at=int(previous["expires_at"]) if previous else 0, kms_key_id=kms_key_id)
        signature = sign(statement.text()) if sign else ""
        self.seals[n] = {"instance_id": SEAL_ID, "audit_date": seal_key(n), "item_type": "seal",
                         "expires_at": expires if expires is not None else expires_at(day, self.ttl),
                         **seal_item_fields(statement, signature, len(parts))}
        self.members[n] = members
        self.summaries[day] = {"instance_id": SUMMARY_ID, "audit_date": day, "item_type": "run_summary",
                               "run_id": statement.run_id, "checked": len(current),
                               "manifest_sha256": statement.manifest_sha256,
                               "previous_manifest_sha256": statement.previous_manifest_sha256, "seal_seq": n,
                               "expires_at": expires_at(day, self.ttl)}
        return self.seals[n]

    # -- as the command line reads it
    def day_read(self, day: str) -> DayRead:
        current, versions = self.of_day(day)
        raw = {}
        for it in current + versions:
            kept = self.raws.get((it["instance_id"], day, it["output_sha256"]))
            raw[(it["instance_id"], it["output_ref"], it["output_sha256"])] = \
                hashlib.sha256(kept.raw()).hexdigest() if kept else None
        return DayRead(day, current, versions, raw, self.summaries.get(day))

    def seal_reads(self) -> list[SealRead]:
        return [SealRead(n, item, self.members.get(n), True if item.get("signature") else None)
                for n, item in sorted(self.seals.items())]


def three_days(ledger: Ledger | None = None) -> Ledger:
    """Three sealed days of i-1, i-2, i-3 (i-3 NON_COMPLIANT); D2 rerun twice for i-2 (versions 1 and 2, current
    3) and resealed; then i-1 of D1 re-checked after a remediation and D1 resealed: seals 1..5."""
    ledger = ledger or Ledger()
    for day in (D1, D2, D3):
        for host in ("i-1", "i-2", "i-3"):
            ledger.observe(host, day, status="NON_COMPLIANT" if host == "i-3" else "COMPLIANT")
        ledger.seal(day)
    for _ in range(2):
        ledger.observe("i-2", D2, trigger="manual")
    ledger.seal(D2)
    ledger.observe("i-1", D1, trigger="remediation")
    ledger.seal(D1)
    return ledger
