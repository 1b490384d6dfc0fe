"""A compact digest of one audit day, stored with its run summary: per instance its status, the run that
stored its item and the start of that item's output hash. Pure.

Sealing the day already reads every item's status; keeping that read as a digest spares later readers a
read of the whole day: the next day's drift needs yesterday's statuses only, and the report matches the
verify batches' staged items (include/staging.py) against it instead of reading the day's items back.
The encoding is include/chunks.py's (gzip'd JSON in chunks under DynamoDB's item limit, with its SHA-256 in
the first chunk, so a digest is read back whole or not at all).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from include import chunks

SHA_PREFIX = 16  # hex characters of output_sha256 kept: enough to tell one stored write from another


@dataclass(frozen=True)
class Entry:
    status: str
    run_id: str
    sha: str  # output_sha256[:SHA_PREFIX] ("" when the host produced no output: NOT_APPLICABLE, UNREACHABLE…)
    amended: bool = False  # the verdict was corrected after its batch (include/name_claims.py): staging is stale


def build(items: Iterable[Mapping]) -> dict[str, Entry]:
    """From the day's items (projected: instance_id, status, run_id, output_sha256, amended)."""
    return {it["instance_id"]: Entry(str(it.get("status", "")), str(it.get("run_id", "")),
                                     str(it.get("output_sha256") or "")[:SHA_PREFIX], bool(it.get("amended")))
            for it in items}


def encode(digest: Mapping[str, Entry]) -> tuple[list[bytes], str]:
    """(chunks, sha256 of the whole payload). Runs are numbered once, not repeated per host."""
    runs = sorted({e.run_id for e in digest.values()})
    index = {r: n for n, r in enumerate(runs)}
    return chunks.pack({"v": 1, "runs": runs,
                        "hosts": {i: [e.status, index[e.run_id], e.sha, *([1] if e.amended else [])]
                                  for i, e in sorted(digest.items())}})


def decode(parts: list[bytes], sha256: str) -> dict[str, Entry]:
    doc = chunks.unpack(parts, sha256, "day digest")
    runs = doc["runs"]
    return {i: Entry(status, runs[run], sha, bool(amended and amended[0]))
            for i, (status, run, sha, *amended) in doc["hosts"].items()}
