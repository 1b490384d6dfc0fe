"""Split discovered instance ids into batches for dynamic task mapping (pure)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.aws.accounts import account_label, parse_scope
from include.core.xcom import known_fields
from include.settings.queues import DEFAULT as DEFAULT_QUEUE

MAX_BATCHES = 48  # keeps mapped task instances to "a few dozen" whatever batch_size says
AUTO_MIN_BATCH = 50  # below this, a mapped task instance costs more than the hosts it checks
# Automatic sizing aims at this many batches: two per worker slot of the embedded setup (parallelism 4), so
# a slow batch does not hold the run's last wave alone. Each batch is a task process (~2 s of CPU to start,
# mostly imports and AWS clients) while one verify process checks ~300 hosts/s, so batches beyond the slots
# available only add start-ups: at 10,000 hosts, 48 batches spent ~70 s of CPU on them, 16 ~30 s, 8 ~15 s.
AUTO_TARGET_BATCHES = 8
# ...and at most this many hosts a batch (unless MAX_BATCHES needs more): a verify task's peak RSS grows by
# ~40 KB a host over Airflow's ~220 MB runtime, so 1,500 hosts stay under 300 MB (docs/PERFORMANCE.md).
AUTO_MAX_BATCH = 1_500



@dataclass(frozen=True)
class Batch:
    """One mapped verify task: hosts of one account and region (XCom carries it as a plain dict)."""

    region: str  # the AWS region
    instance_ids: list[str]
    account: str = ""  # "" = the aws_default connection's own account; else a role ARN or a connection id
    number: int = 1
    of: int = 1
    label: str = ""  # what the Airflow UI shows for the mapped task, e.g. "222222222222 us-east-1 batch 1/3 (50 hosts)"
    audit_date: str = ""
    run_id: str = ""
    trigger: str = ""  # what asked for the run (include/fleet/inventory.py trigger_of): every item of the batch carries it
    # The worker queue whose verify task maps over it (include/settings/queues.py); "" = the plain DAG shape
    # without queues, and then XCom carries no `queue` key, as before queues existed.
    queue: str = ""
    # instance id → why it is checked (the watch: its event, e.g. "tamper: rules_deleted at ..."), stored on the
    # host's evidence item as `trigger_detail`; empty for a daily run.
    reasons: dict[str, str] = field(default_factory=dict)

    def to_xcom(self) -> dict[str, Any]:
        value = asdict(self)
        for key in ("queue", "trigger", "reasons"):  # unset: the XCom is exactly what it was before these existed
            if not value[key]:
                del value[key]
        return value

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Batch":
        return cls(**known_fields(cls, value))


def auto_batch_size(total: int, target_batches: int = AUTO_TARGET_BATCHES) -> int:
    return min(AUTO_MAX_BATCH, max(AUTO_MIN_BATCH, math.ceil(total / target_batches))) if total else AUTO_MIN_BATCH


def plan_batches(instances_by_region: Mapping[str, list[str]], batch_size: int = 0,
                 max_batches: int = MAX_BATCHES, queue_of: Mapping[str, str] | None = None) -> list[Batch]:
    """Batches of one account and region each (keys: include/aws/accounts.py scopes), balanced in size; never more
    than `max_batches` in all.

    With `queue_of` (instance id → worker queue, include/settings/queues.py) a batch also holds hosts of one queue only,
    and its `queue` names the verify task that maps over it; an id it lacks is the default queue's.
    Without it the batches are exactly what they always were.

    A requested batch_size that would exceed max_batches is raised: thousands of mapped task instances
    are what breaks the embedded SQLite setup, and concurrency inside a batch is cheaper anyway.
    """
    total = sum(len(ids) for ids in instances_by_region.values())
    if total == 0:
        return []
    size = batch_size or auto_batch_size(total)
    groups: dict[tuple[str, str], list[str]] = {}  # (scope, queue) → ids
    for scope in sorted(r for r, ids in instances_by_region.items() if ids):
        for instance_id in sorted(instances_by_region[scope]):
            queue = queue_of.get(instance_id, DEFAULT_QUEUE) if queue_of is not None else ""
            groups.setdefault((scope, queue), []).append(instance_id)
    # Each group needs at least one batch; grow the size until the count fits.
    while sum(math.ceil(len(ids) / size) for ids in groups.values()) > max(max_batches, len(groups)):
        size = math.ceil(size * 1.25)
    planned: list[tuple[tuple[str, str], list[str]]] = []
    for group, ids in groups.items():
        count = math.ceil(len(ids) / size)
        per, extra = divmod(len(ids), count)
        start = 0
        for i in range(count):
            n = per + (1 if i < extra else 0)
            planned.append((group, ids[start:start + n]))
            start += n
    batches = []
    for number, ((scope, queue), ids) in enumerate(planned, 1):
        account, region = parse_scope(scope)
        same = [i for i, (g, _) in enumerate(planned) if g == (scope, queue)]
        where = " ".join(p for p in (account_label(account), region, f"[{queue}]" if queue else "") if p)
        label = f"{where} batch {same.index(number - 1) + 1}/{len(same)} ({len(ids)} hosts)"
        batches.append(Batch(region, ids, account, number, len(planned), label, queue=queue))
    return batches
