"""How a batch reaches its hosts: one interface over SSH, EC2 Instance Connect and SSM Run Command.

Every transport has `name` and `async run(hosts, script, on_outcome)`: each host gets exactly one
HostOutcome (output, or a status with its reason; `transport`, host identity evidence), handed over as soon
as it is ready; one host never costs the batch. The checks, the judging and the evidence are the same
whatever reached the host (include/verify/batch.py). Which transport a batch uses is decided in
include/reach/choice.py.

  ssh  the connection's key (include/reach/ssh.py)
  eic  the SSH path with a per-batch key pushed by SendSSHPublicKey (include/reach/eic.py)
  ssm  AWS-RunShellScript through SSM (include/reach/ssm.py)
  auto SSM for the instances SSM manages and sees Online; the rest over SSH — or EIC when the SSH
       connection holds no key (nothing else could log in).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from include.checks.probes import NO_TAG
from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.reach.ssh import BeforeConnect, Pin, SshSettings, fan_out
from include.reach.ssm import OnOutcome, Registration


class Transport(Protocol):
    name: str

    async def run(self, hosts: list[Host], script: str, on_outcome: OnOutcome) -> None: ...


@dataclass
class SshTransport:
    """ssh, or eic when `before_connect` pushes the batch's key (settings.transport says which)."""

    settings: SshSettings
    pins: Mapping[str, Pin]
    concurrency: int
    before_connect: BeforeConnect | None = None
    tag: str = NO_TAG  # the batch's canary tag (probes.frame)

    @property
    def name(self) -> str:
        return self.settings.transport

    async def run(self, hosts: list[Host], script: str, on_outcome: OnOutcome) -> None:
        await fan_out(hosts, self.settings, script, self.pins, self.concurrency, on_outcome, self.before_connect,
                      self.tag)


@dataclass
class NoTransport:
    """auto without an SSH connection: hosts SSM cannot reach are UNREACHABLE, saying why."""

    reason: str
    name: str = "none"

    async def run(self, hosts: list[Host], script: str, on_outcome: OnOutcome) -> None:
        for host in hosts:
            await on_outcome(host, HostOutcome(instance_id=host.instance_id, transport_status=Status.UNREACHABLE,
                                               transport_detail=self.reason, transport="none"))


def split_for_auto(hosts: list[Host], registrations: Mapping[str, Registration]) -> tuple[list[Host], list[Host]]:
    """(hosts for SSM, hosts for SSH/EIC): SSM takes what it manages and sees Online."""
    ssm = [h for h in hosts if (r := registrations.get(h.instance_id)) is not None and r.online]
    taken = {h.instance_id for h in ssm}
    return ssm, [h for h in hosts if h.instance_id not in taken]


def ssh_side(transport: str, has_key: bool) -> str | None:
    """Which SSH-based transport a run uses for the hosts SSM does not take (None: none)."""
    if transport in ("ssh", "eic"):
        return transport
    if transport == "auto":
        return "ssh" if has_key else "eic"
    return None
