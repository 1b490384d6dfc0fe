"""The EC2 Instance Connect transport (`transport: eic`): the SSH path with no standing key.

Per batch, one ed25519 key is made in memory (never written to disk, never in a connection). Just before each
host's session — and again before a retry — `SendSSHPublicKey` pushes its public half for that instance and
the connection's login (the OS user); EC2 keeps it in the instance metadata for 60 s, where the instance's
`eic_run_authorized_keys` (sshd's AuthorizedKeysCommand) offers it. Then the normal SSH path runs, with the
connection's port and host-key policy (include/reach/ssh.py, include/reach/hostkeys.py).

Cost: one extra AWS API call per host (two on a retry), against the per-account SendSSHPublicKey rate.
A push that AWS refuses (AccessDenied: the IAM policy, or its `ec2:osuser` condition) is AUTH_FAILED; a
throttled one is retried, then UNREACHABLE; any other failure is UNREACHABLE with AWS's reason.
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import asyncssh

from include.aws.errors import DENIED, THROTTLED
from include.core.host import Host
from include.core.status import Status
from include.reach.ssh import PreconnectFailed, SshSettings

KEY_TYPE = "ssh-ed25519"


def failure(exc: Exception, host: Host, user: str) -> PreconnectFailed:
    """A failed SendSSHPublicKey → the host's status and reason (AWS's error code and message)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        reason = f"EC2 Instance Connect refused the key for {user!r} on {host.instance_id}: {code}: {message}"[:300]
        if code in DENIED:
            return PreconnectFailed(Status.AUTH_FAILED, reason)
        return PreconnectFailed(Status.UNREACHABLE, reason, retry=code in THROTTLED)
    if isinstance(exc, BotoCoreError):  # endpoint unreachable, read timeout, …
        return PreconnectFailed(Status.UNREACHABLE, f"EC2 Instance Connect: {type(exc).__name__}: {exc}"[:300],
                                retry=True)
    return PreconnectFailed(Status.UNREACHABLE, f"EC2 Instance Connect: {type(exc).__name__}: {exc}"[:300])


@dataclass
class EicBatch:
    """One batch's ephemeral key and the push that precedes every session."""

    settings: SshSettings  # the connection's, with the ephemeral key in place of any other
    public_key: str
    client: object  # boto3 "ec2-instance-connect" client of the batch's account and region
    pushes: int = 0

    @classmethod
    def start(cls, connection: SshSettings, client) -> "EicBatch":
        if client is None:
            raise ValueError("transport eic needs an ec2-instance-connect client for the batch")
        if connection.proxy_jump:
            raise ValueError("transport eic does not go through proxy_jump bastions yet: the bastion would need "
                             "a standing key (use transport ssh, or drop proxy_jump)")
        key = asyncssh.generate_private_key(KEY_TYPE, comment="ec2-audit-eic")
        settings = dataclasses.replace(connection, private_key=key.export_private_key().decode(), key_file=None,
                                       passphrase=None, transport="eic")
        return cls(settings, key.export_public_key("openssh").decode().strip(), client)

    async def push(self, host: Host) -> None:
        """before_connect hook: SendSSHPublicKey for this host, right before the attempt."""
        user = self.settings.username
        self.pushes += 1
        try:
            answer = await asyncio.to_thread(self.client.send_ssh_public_key, InstanceId=host.instance_id,
                                             InstanceOSUser=user, SSHPublicKey=self.public_key)
        except Exception as exc:  # noqa: BLE001 - mapped to the host's status
            raise failure(exc, host, user) from exc
        if not answer.get("Success", False):
            raise PreconnectFailed(Status.UNREACHABLE, f"EC2 Instance Connect did not accept the key for "
                                                       f"{user!r} on {host.instance_id} (Success false)")

    def __repr__(self) -> str:  # never print the key
        return f"EicBatch(user={self.settings.username!r}, pushes={self.pushes})"
