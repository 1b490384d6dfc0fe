"""Split discovered instance ids into batches for dynamic task mapping (pure)."""
from __future__ import annotations

import math
from collections.abc import Mapping

from include.accounts import account_label, parse_scope
from include.config import MAX_BATCHES
from include.records import Batch

AUTO_MIN_BATCH = 50  # below this, a mapped task instance costs more than the hosts it checks
# Automatic sizing aims at this many batches: enough to keep 16 worker slots busy. Each batch is a task
# process (~1.5 s of CPU to start) while one verify process checks ~300 hosts/s, so batches beyond the
# workers available only add start-ups: at 10,000 hosts, 48 batches spent ~70 s of CPU on them, 16 ~25 s.
AUTO_TARGET_BATCHES = 16


def auto_batch_size(total: int, target_batches: int = AUTO_TARGET_BATCHES) -> int:
    return max(AUTO_MIN_BATCH, math.ceil(total / target_batches)) if total else AUTO_MIN_BATCH


def plan_batches(instances_by_region: Mapping[str, list[str]], batch_size: int = 0,
                 max_batches: int = MAX_BATCHES) -> list[dict]:
    """Batches of one account and region each (keys: include/accounts.py scopes), balanced in size; never more
    than `max_batches` in all. Returns Batch records as XCom dicts.

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
    planned: list[tuple[str, list[str]]] = []
    for scope in regions:
        ids = sorted(instances_by_region[scope])
        count = math.ceil(len(ids) / size)
        per, extra = divmod(len(ids), count)
        start = 0
        for i in range(count):
            n = per + (1 if i < extra else 0)
            planned.append((scope, ids[start:start + n]))
            start += n
    batches = []
    for number, (scope, ids) in enumerate(planned, 1):
        account, region = parse_scope(scope)
        same = [i for i, (s, _) in enumerate(planned) if s == scope]
        where = f"{account_label(account)} {region}".strip()
        label = f"{where} batch {same.index(number - 1) + 1}/{len(same)} ({len(ids)} hosts)"
        batches.append(Batch(region, ids, account, number, len(planned), label).to_xcom())
    return batches
