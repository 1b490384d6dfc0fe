"""A compact digest of one audit day, stored with its run summary: per instance its status, the run that
stored its item and the start of that item's hash (`item_sha256`, below). Pure.

Sealing the day already reads every item's status; keeping that read as a digest spares later readers a
read of the whole day: the next day's drift needs yesterday's statuses only, and the report matches the
verify batches' staged items (include/report/staging.py) against it instead of reading the day's items back.
The encoding is include/aws/chunks.py's (gzip'd JSON in chunks under DynamoDB's item limit, with its SHA-256 in
the first chunk, so a digest is read back whole or not at all).

Format (version 2): {"v": 2, "runs": [run id, ...], "hosts": {instance id: [status, index into runs,
item hash prefix]}}, the prefix being ITEM_HASH_HEX hex characters: 49 bytes or so a host before gzip, so
10,000 hosts fit in a few chunks. Version 1 (before item hashes) kept output_sha256[:16] there instead: it is
still read (drift needs only the statuses) but vouches for no staged item.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from include.aws import chunks
from include.evidence.observation import observation_sha256
from include.evidence.records import EvidenceItem

ITEM_HASH = "item_sha256"  # the attribute every instance item carries: item_sha256() of the item as written
# Hex characters of item_sha256 kept in the digest: 128 bits, so a staged copy that differs in anything the
# report reads cannot carry the stored item's prefix (a second preimage of 128 bits), in a bounded digest.
ITEM_HASH_HEX = 32


# The one definition of an item's hash (include/evidence/observation.py): of every stored attribute but where it is
# stored, seq included, so the digest, the staging match and the seals vouch for the same thing.
item_sha256 = observation_sha256


@dataclass(frozen=True)
class Entry:
    status: str
    run_id: str
    item: str  # the stored item's item_sha256[:ITEM_HASH_HEX]; "" when unknown (an item written before item hashes)


def build(items: Iterable[EvidenceItem]) -> dict[str, Entry]:
    """From the day's items (projected: instance_id, status, run_id, item_sha256)."""
    return {it.instance_id: Entry(str(it.status), str(it.run_id), str(it.item_sha256 or "")[:ITEM_HASH_HEX])
            for it in items}


def encode(digest: Mapping[str, Entry]) -> tuple[list[bytes], str]:
    """(chunks, sha256 of the whole payload). Runs are numbered once, not repeated per host."""
    runs = sorted({e.run_id for e in digest.values()})
    index = {r: n for n, r in enumerate(runs)}
    return chunks.pack({"v": 2, "runs": runs,
                        "hosts": {i: [e.status, index[e.run_id], e.item] for i, e in sorted(digest.items())}})


def decode(parts: list[bytes], sha256: str) -> dict[str, Entry]:
    doc = chunks.unpack(parts, sha256, "day digest")
    runs, vouches = doc["runs"], doc.get("v") == 2  # a version-1 prefix is of the output, not of the item
    return {i: Entry(status, runs[run], item if vouches else "") for i, (status, run, item) in doc["hosts"].items()}
