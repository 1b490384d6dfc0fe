"""Observations as stored: where a current item, its versions and its raw output live, and the canonical hash
of one observation. Pure: the store (include/evidence/store.py), the seals (include/evidence/seals.py) and the
auditors' command line (include/integrity/) all read the layout from here, so none of them can drift.

Layout in the evidence table T (docs/EVIDENCE.md):
- the current observation of (instance, day): key (instance_id, day), item_type "instance", `seq` N;
- each observation it replaced: key (instance_id, "<day>#v#<seq>"), item_type "version", `day` = the day,
  every other attribute as it was stored while current. In the day index (by_audit_date) a version sits in the
  partition "<day>#v#<seq>": reads of the day see current items only, and the day's versions are listed by
  querying "<day>#v#1", "<day>#v#2", ... up to the first empty one (a version with seq s > 1 implies one with s-1);
- one Query `instance_id = I AND begins_with(audit_date, "<day>")` returns a host's every observation of the day;
- raw output: gzip'd, content-addressed by the SHA-256 of the raw bytes (`output_sha256`), in T_raw (chunk
  items) or S3 under `evidence_bucket` (`output_ref` on the item says which).
"""
from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# The raw-output table is created beside the evidence table (include/aws/tables.py): its name is defined there.
from include.aws.tables import RAW_TABLE_SUFFIX, raw_table_name  # noqa: F401 - part of the layout, re-exported

VERSION_MARK = "#v#"
CURRENT, VERSION = "instance", "version"  # item_type of a current observation, of a replaced one

# What asked for an observation (contract: Evidence, `trigger`).
TRIGGERS = ("schedule", "backfill", "manual", "request", "launch", "tamper", "silence", "remediation")

# Attributes that say where an observation is stored, not what was observed: left out of its hash, so an
# observation hashes the same while current and once kept as a version. `item_sha256` is the hash itself.
LAYOUT_FIELDS = ("item_type", "day", "item_sha256")

RAW_CHUNK_BYTES = 300_000  # raw-output chunk items stay under 350 KB with their keys and attributes
OUTPUT_IN_DYNAMODB = "dynamodb"  # `output_ref` when the raw output is in T_raw; else an s3:// URL; "" = none kept


def version_key(day: str, seq: int) -> str:
    return f"{day}{VERSION_MARK}{int(seq)}"


def parse_key(audit_date: str) -> tuple[str, int | None]:
    """(day, seq of the version) from a sort key; seq None for a current item's key (the day itself)."""
    day, mark, seq = audit_date.partition(VERSION_MARK)
    return (day, int(seq)) if mark and seq.isdigit() else (audit_date, None)


def raw_chunk_key(day: str, sha256: str, part: int) -> str:
    """Sort key (`output_key`) of one chunk of a raw output in T_raw, under the partition instance_id."""
    return f"{day}#{sha256}#{part}"


def raw_s3_key(instance_id: str, day: str, sha256: str) -> str:
    return f"raw/{instance_id}/{day}/{sha256}.gz"


def canonical_value(value: Any) -> Any:
    """DynamoDB's types as the JSON the hash is taken over: integral Decimals as ints, other numbers as their
    decimal string, sets as sorted lists, bytes as hex. Written values read back hash as written."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (Decimal, int, float)):
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        return int(d) if d == d.to_integral_value() else str(d.normalize())
    if isinstance(value, Mapping):
        return {str(k): canonical_value(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(canonical_value(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if hasattr(value, "value") and isinstance(value.value, (bytes, bytearray)):  # boto3's Binary
        return bytes(value.value).hex()
    return str(value)


def canonical_bytes(item: Mapping[str, Any]) -> bytes:
    """The canonical form of one observation: every stored attribute but LAYOUT_FIELDS, `audit_date` as the
    day (a version's key names its seq, which `seq` already holds), as JSON with sorted keys, separators
    "," and ":", non-ASCII kept, UTF-8."""
    record = {k: canonical_value(v) for k, v in item.items() if k not in LAYOUT_FIELDS}
    if "audit_date" in record:
        record["audit_date"] = parse_key(str(record["audit_date"]))[0]
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def observation_sha256(item: Mapping[str, Any]) -> str:
    """The hash a seal's member carries for one observation (stored on it as `item_sha256`)."""
    return hashlib.sha256(canonical_bytes(item)).hexdigest()


def as_version(current: Mapping[str, Any]) -> dict[str, Any]:
    """The item that keeps a replaced current observation: same attributes, its own key, type and `day`. An item
    written before versions existed has no `seq`: it was the day's first observation."""
    day = str(current["audit_date"])
    seq = int(current.get("seq") or 1)
    return {**current, "audit_date": version_key(day, seq), "item_type": VERSION, "day": day, "seq": seq}


@dataclass(frozen=True)
class RawOutput:
    """What the transport returned for one host (up to its cap), compressed, named by the SHA-256 of the raw
    bytes: the item's `output_sha256`."""

    sha256: str
    size: int
    gz: bytes

    @classmethod
    def of(cls, raw: bytes) -> "RawOutput":
        return cls(hashlib.sha256(raw).hexdigest(), len(raw), gzip.compress(raw, mtime=0))

    def raw(self) -> bytes:
        return gzip.decompress(self.gz)
