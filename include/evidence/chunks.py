"""A JSON document stored as DynamoDB items: gzip'd, cut into chunks under the 400 KB item limit, with the
SHA-256 of the whole payload, so it is read back whole or not at all. Pure."""
from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

CHUNK_BYTES = 300_000  # below DynamoDB's 400 KB item limit with the keys and attributes around it


def pack(doc: Any) -> tuple[list[bytes], str]:
    """(chunks, sha256 of the whole payload)."""
    payload = gzip.compress(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode(), mtime=0)
    return [payload[i:i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)] or [b""], \
        hashlib.sha256(payload).hexdigest()


def unpack(chunks: list[bytes], sha256: str, what: str = "document") -> Any:
    payload = b"".join(chunks)
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise ValueError(f"{what} does not match its hash (a chunk missing or changed)")
    return json.loads(gzip.decompress(payload))
