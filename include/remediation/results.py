"""What the remediation DAG's steps hand each other through XCom (typed records, pure): the plan as shown for
approval, the approver's answer, what the fixes did, what re-verification found, the rebuilt report.

XCom carries each as the plain dict it always carried: the approval's Jinja templates read `planned['hosts']`,
`['audit_date']`, `['sha256']` and `['markdown']` from it, so its keys are the fields' names and stay them.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.core.xcom import known_fields
from include.remediation.records import FixRun

APPROVE = "Approve"  # the ApprovalOperator's option that is a yes; any other answer is not
PLAN_HASH_PARAM = "plan_sha256"  # the approval form's field: the answer carries the hash of the plan approved
SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Planned:
    """The plan for one audit day as the approver sees it (include/tasks/remediate.py build_plan): `plan` is the
    plan's JSON, `sha256` its hash; the fixes run from the plan file, never from this record."""

    audit_date: str
    plan: str
    sha256: str
    markdown: str
    hosts: int
    fixes: int
    dry_run: bool
    not_planned: int = 0
    plan_file: str = ""

    @property
    def needs_approval(self) -> bool:
        return not self.dry_run and self.hosts > 0

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Planned":
        return cls(**known_fields(cls, value))


@dataclass(frozen=True)
class Answer:
    """The approval task's answer as Airflow's HITL operator gives it (its XCom, or the trigger's event); no
    answer at all (the approval task failed) is `received=False`. Only `decision` says whether it is a yes."""

    received: bool = False
    chosen_options: list[str] = field(default_factory=list)
    responded_by_user: dict[str, str] = field(default_factory=dict)  # {} = the scheduler's default on timeout
    responded_at: str = ""
    plan_sha256: str = ""  # the hash the answer's form carried back ("" when none, or not a SHA-256)

    @property
    def decision(self) -> str:
        """approved | rejected | timed_out | no_answer (the approval task itself failed, so it left no result)."""
        if not self.received:
            return "no_answer"
        if not self.responded_by_user:  # even an "Approve" default is not a person's yes
            return "timed_out"
        return "approved" if self.chosen_options == [APPROVE] else "rejected"

    @property
    def by(self) -> str:
        user = self.responded_by_user
        return f"{user.get('name') or user.get('id')} (id {user.get('id')})" if user else ""

    @property
    def at(self) -> str:
        return self.responded_at if self.received else ""

    def to_xcom(self) -> dict[str, Any] | None:
        if not self.received:
            return None
        return {"chosen_options": list(self.chosen_options), "responded_by_user": self.responded_by_user or None,
                "responded_at": self.responded_at, "params_input": {PLAN_HASH_PARAM: self.plan_sha256}}

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | None) -> "Answer":
        if not value:
            return cls()
        sha = (value.get("params_input") or {}).get(PLAN_HASH_PARAM)
        return cls(received=True, chosen_options=list(value.get("chosen_options") or []),
                   responded_by_user=dict(value.get("responded_by_user") or {}),
                   responded_at=str(value.get("responded_at") or ""),
                   plan_sha256=sha if isinstance(sha, str) and SHA256_RE.fullmatch(sha) else "")


@dataclass(frozen=True)
class AppliedHost:
    """One planned host after apply_fixes: `result` ran | refused | failed; `touched` when a fix started on it
    (then it is re-verified, at the address kind the evidence used)."""

    result: str
    detail: str = ""
    touched: bool = False
    address_kind: str | None = None
    fixes: list[FixRun] = field(default_factory=list)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "AppliedHost":
        fields_ = known_fields(cls, value)
        return cls(**{**fields_, "fixes": [FixRun.from_item(f) for f in fields_.get("fixes") or []]})


@dataclass(frozen=True)
class Applied:
    """What apply_fixes did: the approval it ran under and each planned host's result."""

    audit_date: str
    profile: str = ""
    approved_by: str = ""
    approved_at: str = ""
    plan_sha256: str = ""
    connection: str = ""
    hosts: dict[str, AppliedHost] = field(default_factory=dict)

    def touched(self) -> dict[str, AppliedHost]:
        return {i: h for i, h in self.hosts.items() if h.touched}

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Applied":
        fields_ = known_fields(cls, value)
        return cls(**{**fields_, "hosts": {i: AppliedHost.from_xcom(h) for i, h in (fields_.get("hosts") or {}).items()}})


@dataclass(frozen=True)
class Reverified:
    """Each touched host's outcome after re-verification: fixed | not_fixed | failed."""

    audit_date: str
    outcomes: dict[str, str] = field(default_factory=dict)

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Reverified":
        return cls(**known_fields(cls, value))


@dataclass(frozen=True)
class Published:
    """The day's report rebuilt with its Remediated section: its paths and the day's outcome counts (None: no
    sealed day to rebuild, and then XCom carries no `outcomes` key, as before this record)."""

    audit_date: str
    paths: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, int] | None = None

    def to_xcom(self) -> dict[str, Any]:
        value = asdict(self)
        if self.outcomes is None:
            value.pop("outcomes")
        return value

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> "Published":
        return cls(**known_fields(cls, value))
