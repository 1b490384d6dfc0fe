"""Split discovered instance ids into batches for dynamic task mapping (pure)."""
from __future__ import annotations

import math
from collections.abc import Mapping

from include.config import MAX_BATCHES

AUTO_MIN_BATCH = 50  # below this, a mapped task instance costs more than the hosts it checks
# Automatic sizing aims at this many batches: enough to keep 16 worker slots busy. Each batch is a task
# process (~1.5 s of CPU to start) while one verify process checks ~300 hosts/s, so batches beyond the
# workers available only add start-ups: at 10,000 hosts, 48 batches spent ~70 s of CPU on them, 16 ~25 s.
AUTO_TARGET_BATCHES = 16


def auto_batch_size(total: int, target_batches: int = AUTO_TARGET_BATCHES) -> int:
    return max(AUTO_MIN_BATCH, math.ceil(total / target_batches)) if total else AUTO_MIN_BATCH


def plan_batches(instances_by_region: Mapping[str, list[str]], batch_size: int = 0,
                 max_batches: int = MAX_BATCHES) -> list[dict]:
    """Batches of one region each, balanced in size; never more than `max_batches` in all.

    A requested batch_size that would exceed max_batches is raised: thousands of mapped task instances
    are what breaks the embedded SQLite setup, and concurrency inside a batch is cheaper anyway.
    """
    total = sum(len(ids) for ids in instances_by_region.values())
    if total == 0:
        return []
    size = batch_size or auto_batch_size(total)
    regions = sorted(r for r, ids in instances_by_region.items() if ids)
    # Each region needs at least one batch; grow the size until the count fits.
    while sum(math.ceil(len(instances_by_region[r]) / size) for r in regions) > max(max_batches, len(regions)):
        size = math.ceil(size * 1.25)
    batches: list[dict] = []
    for region in regions:
        ids = sorted(instances_by_region[region])
        count = math.ceil(len(ids) / size)
        per, extra = divmod(len(ids), count)
        start = 0
        for i in range(count):
            n = per + (1 if i < extra else 0)
            batches.append({"region": region, "instance_ids": ids[start:start + n]})
            start += n
    for number, batch in enumerate(batches, 1):
        batch["number"], batch["of"] = number, len(batches)
        region_batches = [b for b in batches if b["region"] == batch["region"]]
        index = region_batches.index(batch) + 1
        batch["label"] = f"{batch['region']} batch {index}/{len(region_batches)} ({len(batch['instance_ids'])} hosts)"
    return batches
