"""Which transport takes which host, inside a batch (include/reach/choice.py BatchTransports.plan): the SSH side is
handed the pins read for the batch, so a host whose key changed is refused during key exchange — before the
script is sent — and never judged as "first use"."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from include.core.host import Host
from include.reach.hostkeys import Pin
from include.reach.ssh import SshSettings
from include.reach.transport import SshTransport
from include.settings.params import AuditParams
from include.verify.batch import BatchRun, RunContext


class FakeStore:
    table_name = "ev"
    resource = SimpleNamespace(meta=SimpleNamespace(client=None))


def test_the_ssh_side_gets_the_pins_read_for_the_batch():
    host = Host("i-0123456789abcdef0", "us-east-1", "123456789012", "10.0.0.1")
    pin = Pin("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample", "SHA256:pinned")
    ctx = RunContext("2026-12-01", "run-1", AuditParams(), SshSettings(username="ec2-user", private_key="unused"))
    run = BatchRun(ctx, FakeStore(), None, [host])
    run.keys.store.load = lambda ids: SimpleNamespace(pins={host.instance_id: pin}, unread={})
    [(transport, chosen)] = asyncio.run(run.transports.plan([host], run.keys)).legs
    assert isinstance(transport, SshTransport) and chosen == [host]
    assert transport.pins[host.instance_id] == pin
