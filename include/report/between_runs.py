"""The report's "Checks between runs": every observation of the day that an event asked for (a launch, a tamper
record, a silent stream, a targeted request, a remediation's re-check), when, why, and the verdict before → after.

Pure (`checks_between_runs`) over the day's observations as the store returns them: the current items and the
versions they replaced (include/evidence/observation.py). "Before" is the host's previous observation of the day
(by `seq`), whatever asked for it, so a tamper re-check after the daily run reads "COMPLIANT → NON_COMPLIANT";
the day's first observation has none ("—"). A daily run or a rerun of it (schedule, backfill, manual) is not
listed. The rows are capped (a storm of launches must not blow up the email), failing or changed verdicts kept
first so a storm never hides one; the total and the count per trigger are always whole.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.status import Status
from include.evidence.observation import CURRENT

# What an event asked for (CONTRACT Evidence `trigger`); schedule, backfill and manual are the daily run's.
EVENT_TRIGGERS = ("launch", "tamper", "silence", "request", "remediation")
MAX_ROWS = 500
NO_VERDICT = "—"
DETAIL_CHARS = 300  # trigger_detail may quote a host's audit record: the report keeps it short (and escapes it)
# What the rows need of a version (EvidenceStore.day_versions projects these, not whole items).
VERSION_FIELDS = ("status", "checked_at", "trigger", "trigger_detail", "failed_checks", "run_id")


@dataclass(frozen=True)
class CheckBetweenRuns:
    """One event-driven observation of a host on the day."""

    instance_id: str
    seq: int
    checked_at: str
    trigger: str
    before: str  # the host's previous observation's status that day; NO_VERDICT for the day's first
    after: str
    trigger_detail: str = ""
    failed_checks: tuple[str, ...] = ()
    run_id: str = ""
    name: str = ""

    @property
    def why(self) -> str:
        return f"{self.trigger}: {self.trigger_detail}" if self.trigger_detail else self.trigger

    @property
    def change(self) -> str:
        return f"{self.before} → {self.after}"

    def to_json(self) -> dict[str, Any]:
        """The report JSON's row (`before` "—": the day's first observation)."""
        return {**asdict(self), "failed_checks": list(self.failed_checks)}

    @property
    def notable(self) -> bool:
        """Kept first when rows are capped: the verdict is not COMPLIANT, or changed (a first one that passes,
        e.g. a launch, did not)."""
        return self.after != Status.COMPLIANT.value or self.before not in (NO_VERDICT, self.after)


@dataclass(frozen=True)
class ChecksBetweenRuns:
    rows: list[CheckBetweenRuns] = field(default_factory=list)  # at most the cap, oldest first
    total: int = 0  # every one of the day, listed or not
    by_trigger: dict[str, int] = field(default_factory=dict)

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


def _plain(observation: Any) -> Mapping[str, Any]:
    """A typed item (EvidenceItem) as the attributes the rows read, absent ones None (trigger_detail is optional):
    not to_item(), which would copy every host's whole `checks` for nothing."""
    if isinstance(observation, Mapping):
        return observation
    return {k: getattr(observation, k, None) for k in ("instance_id", "item_type", "seq", "name", "tags",
                                                        *VERSION_FIELDS)}


def _seq(observation: Mapping[str, Any]) -> int:
    return int(observation.get("seq") or 1)  # an item from before versions was its day's first


def checks_between_runs(observations: Iterable[Any], *, limit: int = MAX_ROWS) -> ChecksBetweenRuns:
    """The day's event-driven checks from the day's observations (current items and versions, any order)."""
    hosts: dict[str, list[Mapping[str, Any]]] = {}
    for observation in map(_plain, observations):
        hosts.setdefault(str(observation["instance_id"]), []).append(observation)
    rows: list[CheckBetweenRuns] = []
    for iid, seen in hosts.items():
        seen.sort(key=lambda o: (_seq(o), o.get("item_type") == CURRENT))
        name = next((str(o.get("name") or (o.get("tags") or {}).get("Name") or "") for o in reversed(seen)), "")
        for n, o in enumerate(seen):
            trigger = str(o.get("trigger") or "")
            if trigger not in EVENT_TRIGGERS:
                continue
            rows.append(CheckBetweenRuns(
                instance_id=iid, seq=_seq(o), checked_at=str(o.get("checked_at") or ""), trigger=trigger,
                before=str(seen[n - 1].get("status") or "?") if n else NO_VERDICT, after=str(o.get("status") or "?"),
                trigger_detail=str(o.get("trigger_detail") or "")[:DETAIL_CHARS], failed_checks=tuple(o.get("failed_checks") or ()),
                run_id=str(o.get("run_id") or ""), name=name))
    shown = sorted(rows, key=lambda r: (not r.notable, r.checked_at, r.instance_id, r.seq))[:max(limit, 0)]
    return ChecksBetweenRuns(sorted(shown, key=lambda r: (r.checked_at, r.instance_id, r.seq)), len(rows),
                             dict(sorted(Counter(r.trigger for r in rows).items())))


def read(store, day: str, current: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The day's observations for checks_between_runs: the current items already read for the report, and the
    day's versions through the day index, projected (one Query per seq level: "<day>#v#1", "<day>#v#2", ...)."""
    return [*map(_plain, current), *store.day_versions(day, fields=VERSION_FIELDS)]
