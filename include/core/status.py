"""Statuses and check verdicts: the vocabulary every stage speaks. No Airflow or AWS imports here."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    """One per instance per run (see shared/CONTRACT.md)."""

    COMPLIANT = "COMPLIANT"
    NON_COMPLIANT = "NON_COMPLIANT"
    UNREACHABLE = "UNREACHABLE"
    AUTH_FAILED = "AUTH_FAILED"
    HOST_KEY_MISMATCH = "HOST_KEY_MISMATCH"
    ERROR = "ERROR"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    WAIVED = "WAIVED"

    def __str__(self) -> str:  # so f-strings and CSV cells show the bare name
        return self.value

    # What each status means for the numbers, and how it is shown: said here once, read everywhere.
    @property
    def unverified(self) -> bool:
        """The session did not yield a judgement: a coverage gap of a kind, never a result."""
        return self in _UNVERIFIED

    @property
    def scorable(self) -> bool:
        """Counts in the compliance denominator (contract: checked − NOT_APPLICABLE − WAIVED)."""
        return self not in (Status.NOT_APPLICABLE, Status.WAIVED)

    @property
    def colour(self) -> str:
        return _COLOURS[self]

    @classmethod
    def colours(cls) -> dict[str, str]:
        """Status name → colour, for templates."""
        return {s.value: s.colour for s in cls}

    @classmethod
    def ordered(cls) -> tuple["Status", ...]:
        """Report order: what needs attention first."""
        return _ORDER

    @classmethod
    def parse(cls, value: object) -> "Status | None":
        try:
            return cls(str(value))
        except ValueError:
            return None


_UNVERIFIED = frozenset({Status.HOST_KEY_MISMATCH, Status.AUTH_FAILED, Status.ERROR, Status.UNREACHABLE})


_ORDER = (Status.NON_COMPLIANT, Status.HOST_KEY_MISMATCH, Status.AUTH_FAILED, Status.ERROR, Status.UNREACHABLE,
          Status.WAIVED, Status.NOT_APPLICABLE, Status.COMPLIANT)


_COLOURS = {Status.COMPLIANT: "#1a7f37", Status.NON_COMPLIANT: "#cf222e", Status.ERROR: "#9a6700",
            Status.UNREACHABLE: "#6e7781", Status.AUTH_FAILED: "#8250df", Status.HOST_KEY_MISMATCH: "#bc4c00",
            Status.NOT_APPLICABLE: "#57606a", Status.WAIVED: "#0969da"}


class CheckStatus(str, Enum):
    """One per check per host."""

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    NOT_APPLICABLE = "NOT_APPLICABLE"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Verdict:
    """What a parser concludes about one check on one host."""

    status: CheckStatus
    detail: str
    # The (group, stream) a cwagent.log_stream_fresh PASS rests on: the run-level name-claim step
    # (include/verify/name_claims.py) needs to know which name made the stream this host's. Not part of equality.
    stream: tuple[str, str] | None = field(default=None, compare=False)

    @classmethod
    def passed(cls, detail: str, stream: tuple[str, str] | None = None) -> "Verdict":
        return cls(CheckStatus.PASS, detail, stream)

    @classmethod
    def failed(cls, detail: str) -> "Verdict":
        return cls(CheckStatus.FAIL, detail)

    @classmethod
    def error(cls, detail: str) -> "Verdict":
        return cls(CheckStatus.ERROR, detail)

    @classmethod
    def not_applicable(cls, detail: str) -> "Verdict":
        return cls(CheckStatus.NOT_APPLICABLE, detail)

