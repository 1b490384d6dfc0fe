"""A day's manifest and a seal's statement, in the canonical forms docs/EVIDENCE.md documents. Pure.

- A member is one observation of the day: (instance_id, seq, item hash), the hash being
  include/evidence/observation.py's observation_sha256 of the stored item.
- manifest_sha256 = SHA-256 of the UTF-8 text made of one line "<instance_id>\\t<seq>\\t<item hash>\\n" per
  member, sorted by (instance_id, seq).
- A seal's statement is the short canonical JSON (sorted keys, "," and ":" separators) of STATEMENT_FIELDS:
  what KMS signs (RSASSA_PSS_SHA_256, MessageType RAW, at most 4 KB).
- seal_sha256 = SHA-256 of the statement's UTF-8 bytes, a newline, and the base64 signature ("" unsigned):
  the next seal's `previous_seal_sha256`, so one chain runs through time and stripping a signature breaks it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from include.aws import chunks

SEAL_ID = "#seal"  # partition of the chain: one item per seal, sort key seal_key(n)
MEMBERS_PREFIX = "#seal-members#"  # + seal_key(n) + "#" + chunk number: the seal's members, sort key the day
SIGNING_ALGORITHM = "RSASSA_PSS_SHA_256"
STATEMENT_VERSION = 1


def seal_key(n: int) -> str:
    """Sort key of the n-th seal: zero-padded, so the chain reads in order."""
    return f"{int(n):012d}"


def members_prefix(n: int) -> str:
    return f"{MEMBERS_PREFIX}{seal_key(n)}#"


@dataclass(frozen=True, order=True)
class Member:
    instance_id: str
    seq: int
    sha256: str


def manifest_text(members: Iterable[Member]) -> str:
    return "".join(f"{m.instance_id}\t{int(m.seq)}\t{m.sha256}\n" for m in sorted(members))


def manifest_sha256(members: Iterable[Member]) -> str:
    return hashlib.sha256(manifest_text(members).encode("utf-8")).hexdigest()


def pack_members(members: Iterable[Member]) -> tuple[list[bytes], str]:
    """(chunks, sha256 of the payload): gzip'd JSON {"v": 1, "members": [[id, seq, hash], ...]} in chunks under
    DynamoDB's item limit (a 100,000-host day does not fit one item)."""
    return chunks.pack({"v": 1, "members": [[m.instance_id, int(m.seq), m.sha256] for m in sorted(members)]})


def unpack_members(parts: list[bytes], sha256: str) -> list[Member]:
    doc = chunks.unpack(parts, sha256, "seal members")
    return [Member(i, int(s), h) for i, s, h in doc["members"]]


@dataclass(frozen=True)
class Statement:
    """What one seal asserts, short enough for KMS to sign as a RAW message."""

    seq: int  # position in the chain (1, 2, ...)
    day: str
    sealed_at: str
    run_id: str
    trigger: str
    manifest_sha256: str
    members_sha256: str
    items: int
    previous_seal_sha256: str  # "" for the first seal
    previous_manifest_sha256: str  # the latest earlier seal of the same day; "" when this is the day's first
    previous_expires_at: int = 0  # when the seal before this one expires (TTL): past it, its absence is no gap
    kms_key_id: str = ""

    def text(self) -> str:
        return json.dumps({"v": STATEMENT_VERSION, **asdict(self)}, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)

    @classmethod
    def parse(cls, text: str) -> "Statement":
        doc = json.loads(text)
        doc.pop("v", None)
        return cls(**doc)


def seal_sha256(statement_text: str, signature_b64: str = "") -> str:
    return hashlib.sha256(statement_text.encode("utf-8") + b"\n" + signature_b64.encode("ascii")).hexdigest()


def seal_item_fields(statement: Statement, signature_b64: str, chunks_count: int) -> dict[str, Any]:
    """The seal item's attributes besides its key and TTL: the statement's fields (for readers), its exact text
    (for verifiers: what was signed), the signature and the seal's own hash."""
    text = statement.text()
    return {**asdict(statement), "statement": text, "signature": signature_b64,
            "signing_algorithm": SIGNING_ALGORITHM if signature_b64 else "", "members_chunks": chunks_count,
            "seal_sha256": seal_sha256(text, signature_b64)}


def statement_of(item: Mapping[str, Any]) -> Statement:
    """A stored seal's statement, read from its exact text (the attributes beside it are for display)."""
    return Statement.parse(str(item["statement"]))
