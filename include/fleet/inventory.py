"""What a run knows before it contacts a host (typed records XCom carries as plain dicts, pure)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.xcom import known_fields

# Airflow's DagRunType (value) → the evidence's `trigger` (contract: Evidence; include/evidence/observation.py TRIGGERS).
# A Clear re-runs the scheduled run: still "schedule". Another DAG (TriggerDagRunOperator) or an asset event asked
# for the check: "request" (the watch DAG, issue 28, names its own event kinds).
RUN_TYPE_TRIGGERS = {"scheduled": "schedule", "backfill": "backfill", "manual": "manual",
                     "operator_triggered": "request", "asset_triggered": "request",
                     "asset_materialization": "request"}


def trigger_of(run_type: object, instance_ids: object = None, triggered_by: object = None) -> str:
    """What asked for a run's checks, from its dag_run (pure). A run naming its `instance_ids`, or started by
    another DAG (triggered_by OPERATOR, where Airflow exposes it), is a "request" whatever its run type; a run
    type Airflow adds later reads as "manual" (someone asked; never passed off as the schedule)."""
    value = str(getattr(run_type, "value", run_type) or "").lower()
    by = str(getattr(triggered_by, "value", triggered_by) or "").lower()
    if instance_ids or by == "operator":
        return "request"
    return RUN_TYPE_TRIGGERS.get(value, "manual")


@dataclass(frozen=True)
class RunFacts:
    """The run's audit day, run id, resolved mode (`live` | `rebuild`) and what asked for it (`trigger`)."""

    audit_date: str
    run_id: str
    mode: str
    trigger: str = ""  # trigger_of(...); "" = not known (an XCom written before triggers)

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "RunFacts":
        return cls(**known_fields(cls, value))


@dataclass(frozen=True)
class Inventory:
    """What discovery found: running instance ids and instance-state counts per scope (include/aws/accounts.py
    scope keys), with the run's facts. A rebuild discovers nothing."""

    audit_date: str
    run_id: str
    mode: str
    instances: dict[str, list[str]] = field(default_factory=dict)
    states: dict[str, dict[str, int]] = field(default_factory=dict)
    discovered: int = 0
    trigger: str = ""
    # A targeted run (`instance_ids`): the ids asked for that no audited region listed as running (unknown,
    # stopped, terminated, another account or region). Named in the log and the report; never an error.
    not_found: list[str] = field(default_factory=list)

    @property
    def facts(self) -> RunFacts:
        return RunFacts(self.audit_date, self.run_id, self.mode, self.trigger)

    def to_xcom(self) -> dict[str, Any]:
        value = asdict(self)
        if not value["not_found"]:  # a daily run's XCom is exactly what it was before targeted runs
            del value["not_found"]
        return value

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Inventory":
        return cls(**known_fields(cls, value))
