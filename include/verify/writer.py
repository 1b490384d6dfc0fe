"""A batch's evidence writer: items buffered as hosts are judged, written every few hosts and at close, so a
worker killed mid-batch loses little (include/verify/batch.py)."""
from __future__ import annotations

from collections.abc import Callable

from include.evidence.store import EvidenceStore

FLUSH_EVERY = 25


class EvidenceWriter:
    """Buffers a batch's items and writes them every `every` hosts (and at close), one writer at a time."""

    def __init__(self, store: EvidenceStore, every: int = FLUSH_EVERY,
                 sink: Callable[[list[dict]], None] | None = None, keep: bool = False) -> None:
        self.store, self.every, self.pending = store, every, []
        self.sink = sink  # None: the day's table; re-verification (include/tasks/remediate.py) keeps its items aside
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
            (self.sink or self.store.put_items)(items)
            if self.written is not None:
                self.written.extend(items)

    def close(self) -> None:
        self.write(self.take())
