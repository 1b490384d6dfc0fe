"""A compact digest of one audit day, stored with its run summary: per instance its status, the run that
stored its item and the start of that item's output hash. Pure.

Sealing the day already reads every item's status; keeping that read as a digest spares later readers a
read of the whole day: the next day's drift needs yesterday's statuses only, and the report matches the
verify batches' staged items (include/staging.py) against it instead of reading the day's items back.
The encoding is gzip'd JSON cut into chunks small enough for DynamoDB's 400 KB item limit; its SHA-256
travels in the first chunk, so a digest read back whole or not at all.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CHUNK_BYTES = 300_000  # below DynamoDB's 400 KB item limit with the keys and attributes around it
SHA_PREFIX = 16  # hex characters of output_sha256 kept: enough to tell one stored write from another


@dataclass(frozen=True)
class Entry:
    status: str
    run_id: str
    sha: str  # output_sha256[:SHA_PREFIX] ("" when the host produced no output: NOT_APPLICABLE, UNREACHABLE…)


def build(items: Iterable[Mapping]) -> dict[str, Entry]:
    """From the day's items (projected: instance_id, status, run_id, output_sha256)."""
    return {it["instance_id"]: Entry(str(it.get("status", "")), str(it.get("run_id", "")),
                                     str(it.get("output_sha256") or "")[:SHA_PREFIX]) for it in items}


def encode(digest: Mapping[str, Entry]) -> tuple[list[bytes], str]:
    """(chunks, sha256 of the whole payload). Runs are numbered once, not repeated per host."""
    runs = sorted({e.run_id for e in digest.values()})
    index = {r: n for n, r in enumerate(runs)}
    payload = gzip.compress(json.dumps(
        {"v": 1, "runs": runs, "hosts": {i: [e.status, index[e.run_id], e.sha] for i, e in sorted(digest.items())}},
        separators=(",", ":")).encode(), mtime=0)
    chunks = [payload[i:i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)] or [b""]
    return chunks, hashlib.sha256(payload).hexdigest()


def decode(chunks: list[bytes], sha256: str) -> dict[str, Entry]:
    payload = b"".join(chunks)
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise ValueError("day digest does not match its hash (a chunk missing or changed)")
    doc = json.loads(gzip.decompress(payload))
    runs = doc["runs"]
    return {i: Entry(status, runs[run], sha) for i, (status, run, sha) in doc["hosts"].items()}
