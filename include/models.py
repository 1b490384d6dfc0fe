"""Plain data types shared by every stage. No Airflow or AWS imports here."""
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

    @classmethod
    def passed(cls, detail: str) -> "Verdict":
        return cls(CheckStatus.PASS, detail)

    @classmethod
    def failed(cls, detail: str) -> "Verdict":
        return cls(CheckStatus.FAIL, detail)

    @classmethod
    def error(cls, detail: str) -> "Verdict":
        return cls(CheckStatus.ERROR, detail)

    @classmethod
    def not_applicable(cls, detail: str) -> "Verdict":
        return cls(CheckStatus.NOT_APPLICABLE, detail)


@dataclass(frozen=True)
class Host:
    """One running EC2 instance as the verify step needs it."""

    instance_id: str
    region: str
    account_id: str
    address: str | None  # what we SSH to, chosen by the `address` param
    private_ip: str | None = None
    public_ip: str | None = None
    private_dns: str | None = None
    platform: str = "linux"  # "linux" or "windows"
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.tags.get("Name", "")

    @property
    def environment(self) -> str:
        return self.tags.get("Environment", "")

    @property
    def is_windows(self) -> bool:
        return self.platform == "windows"


@dataclass
class HostOutcome:
    """Result of talking to one host over SSH (before checks are judged)."""

    instance_id: str
    transport_status: Status | None  # None = session ran; else UNREACHABLE/AUTH_FAILED/...
    transport_detail: str = ""
    output: bytes = b""  # raw combined-script stdout (capped); dropped once the host is judged
    truncated: bool = False
    nonce: str = ""  # the random marker nonce this host's script was framed with (probes.frame)
    output_sha256: str = ""  # kept as evidence when `output` is dropped
    output_bytes: int = 0
    host_key_fingerprint: str | None = None
    host_key: str | None = None  # OpenSSH public key text, for tofu pinning
    attempts: int = 0
    elapsed_s: float = 0.0
    host_key_note: str = ""  # e.g. a re-pin accepted by an operator
