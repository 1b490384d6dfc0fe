"""A batch's evidence writer: items buffered as hosts are judged, written every few hosts and at close, so a
worker killed mid-batch loses little (include/verify/batch.py). Every item is an observation: stored through
EvidenceStore.put_observations, which keeps whatever it replaces as a version."""
from __future__ import annotations

from include.evidence.store import EvidenceStore

FLUSH_EVERY = 25


class EvidenceWriter:
    """Buffers a batch's items and writes them every `every` hosts (and at close), one writer at a time."""

    def __init__(self, store: EvidenceStore, every: int = FLUSH_EVERY, keep: bool = False) -> None:
        self.store, self.every, self.pending = store, every, []
        self.written: list[dict] | None = [] if keep else None  # what was stored, for staging (include/report/staging.py)

    def add(self, item: dict) -> bool:
        """Returns whether a flush is due."""
        self.pending.append(item)
        return len(self.pending) >= self.every

    def take(self) -> list[dict]:
        # Swapped out on the event loop thread, so no append can slip between copy and clear.
        taken = self.pending[:]
        del self.pending[:]
        return taken

    def write(self, items: list[dict]) -> None:
        if items:
            stored = self.store.put_observations(items)
            if self.written is not None:  # exactly what was stored (seq, item_sha256): the staging matches on it
                self.written.extend(stored)

    def close(self) -> None:
        self.write(self.take())
