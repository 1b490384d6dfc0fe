"""One host as discovery found it, and what reaching it returned. No Airflow or AWS imports here."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from include.core.status import Status


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
    output: bytes = b""  # raw combined-script stdout (capped); handed on (drop_output) once the host is judged
    truncated: bool = False
    nonce: str = ""  # the random marker nonce this host's script was framed with (probes.frame)
    output_sha256: str = ""  # kept as evidence when `output` is handed on
    output_bytes: int = 0
    host_key_fingerprint: str | None = None
    host_key: str | None = None  # OpenSSH public key text, for tofu pinning
    attempts: int = 0
    elapsed_s: float = 0.0
    host_key_note: str = ""  # e.g. a re-pin accepted by an operator
    transport: str = "ssh"  # what reached the host: ssh, eic or ssm (under transport=auto it varies by host)
    # What the transport knows of the host's identity besides a host key: SSM's ping status, agent version and
    # command id (include/reach/ssm.py). Kept as evidence.
    transport_evidence: dict[str, str] = field(default_factory=dict)

    def digest(self) -> tuple[str, int]:
        """(SHA-256, size) of the output: what the evidence keeps of it, before or after it is dropped."""
        if self.output:
            return hashlib.sha256(self.output).hexdigest(), len(self.output)
        return self.output_sha256, self.output_bytes

    def drop_output(self) -> bytes:
        """A judged host's output leaves the outcome: returned, for the batch to keep compressed until its
        evidence is written (include/verify/batch.py); the outcome keeps its digest, `output_sha256`."""
        output, (self.output_sha256, self.output_bytes) = self.output, self.digest()
        self.output = b""
        return output

