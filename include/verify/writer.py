"""A batch's evidence writer: items buffered as hosts are judged, written every few hosts and at close, so a
worker killed mid-batch loses little (include/verify/batch.py). Every item is an observation: stored through
EvidenceStore.put_observations, which keeps whatever it replaces as a version. Each item's raw output
(compressed) waits with it and is stored first: an item never names raw output that is not there
(include/evidence/raw_store.py)."""
from __future__ import annotations

from include.evidence.observation import RawOutput
from include.evidence.raw_store import RawOutputStore
from include.evidence.store import EvidenceStore

FLUSH_EVERY = 25


class EvidenceWriter:
    """Buffers a batch's items and writes them every `every` hosts (and at close), one writer at a time."""

    def __init__(self, store: EvidenceStore, every: int = FLUSH_EVERY, keep: bool = False,
                 raws: RawOutputStore | None = None) -> None:
        self.store, self.every, self.pending = store, every, []
        # Raw output of the pending items, by (instance_id, audit_date, output_sha256): at most a batch's hosts'
        # compressed outputs (each capped by its transport), released as they are stored.
        self.raws, self.raw_pending = raws, {}
        self.written: list[dict] | None = [] if keep else None  # what was stored, for staging (include/report/staging.py)

    def add(self, item: dict, raw: RawOutput | None = None) -> bool:
        """Returns whether a flush is due."""
        if raw is not None and self.raws is not None:
            self.raw_pending[_raw_key(item)] = raw
        self.pending.append(item)
        return len(self.pending) >= self.every

    def take(self) -> list[dict]:
        # Swapped out on the event loop thread, so no append can slip between copy and clear.
        taken = self.pending[:]
        del self.pending[:]
        return taken

    def write(self, items: list[dict]) -> None:
        if items:
            raws = [(it, self.raw_pending.pop(key)) for it in items if (key := _raw_key(it)) in self.raw_pending]
            if raws:  # before the items that name them (content-addressed: a retry rewrites the same bytes)
                self.raws.put(raws)
            stored = self.store.put_observations(items)
            if self.written is not None:  # exactly what was stored (seq, item_sha256): the staging matches on it
                self.written.extend(stored)

    def close(self) -> None:
        self.write(self.take())


def _raw_key(item: dict) -> tuple[str, str, str]:
    return item["instance_id"], item["audit_date"], item.get("output_sha256", "")
