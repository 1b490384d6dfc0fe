"""Which transports a batch uses, and what each needs: the one reader of the run's `transport` param.

  ssh   every host over the SSH connection's key
  eic   every host over SSH with a per-batch key pushed by EC2 Instance Connect
  ssm   every host through SSM Run Command; the SSH connection is not read
  auto  SSM for the hosts it manages and sees Online, the rest over SSH — or EIC when the SSH connection
        holds no key; without an SSH connection those hosts are UNREACHABLE, saying why

The Airflow connection is read by include/tasks/audit.py and handed down as an SshConnection; what a
batch's hosts then meet is planned here (BatchTransports.plan), and include/verify/batch.py only runs it.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from include.core.host import Host
from include.reach.hostkeys import HostKeys, parse_policy
from include.reach.ssh import SshSettings
from include.reach.ssm import SsmDenied, SsmSettings, SsmTransport
from include.reach.transport import NoTransport, SshTransport, Transport, split_for_auto, ssh_side
from include.settings.params import AuditParams

log = logging.getLogger(__name__)

DEFAULT_SSH_LOGIN = "ec2-user"  # the audit's login when ec2_audit_ssh names none


# Without ssm_output_bucket each SSM host's output is one ssm:GetCommandInvocation call, all of a scope's calls
# on that account's and Region's rate. AWS publishes no rate for it that we could find: the quota model
# (docs/PERFORMANCE.md, "AWS API quotas"; devstack/standins/aws/quotas.py) assumes 5/s, low on purpose, and
# issue 29 allows each API 15 minutes of its rate in a day. Past that many hosts in one scope the reads need
# the bucket (S3 GETs: 5,500/s a prefix).
INLINE_READS_PER_S = 5
INLINE_READ_BUDGET_S = 15 * 60
INLINE_MAX_HOSTS = INLINE_READS_PER_S * INLINE_READ_BUDGET_S  # 4,500 hosts per account and Region


def inline_read_problem(transport: str, output_bucket: str | None, fleet: Mapping[str, int]) -> str | None:
    """Why this fleet cannot read its SSM output inline (None: it can, or it needs no inline reads).
    `fleet`: hosts per account-and-Region label, every one of which may go through SSM (auto included)."""
    if transport not in ("ssm", "auto") or output_bucket:
        return None
    over = {where: hosts for where, hosts in fleet.items() if hosts > INLINE_MAX_HOSTS}
    if not over:
        return None
    where, hosts = max(over.items(), key=lambda kv: kv[1])
    return (f"param ssm_output_bucket: transport {transport} without ssm_output_bucket reads each host's output with "
            f"one ssm:GetCommandInvocation: {hosts:,} hosts in {where} need at least {hosts / INLINE_READS_PER_S:,.0f} s "
            f"at {INLINE_READS_PER_S} calls/s (the quota model's rate per account and Region, docs/PERFORMANCE.md), "
            f"more than the {INLINE_READ_BUDGET_S} s allowed; above {INLINE_MAX_HOSTS:,} hosts per account and Region "
            "set ssm_output_bucket (an S3 bucket the instance roles may write, never evidence_bucket) and its owner"
            + (f" ({len(over)} scopes over)" if len(over) > 1 else ""))


@dataclass(frozen=True)
class SshConnection:
    """The `ec2_audit_ssh` connection as Airflow holds it: login, port and the SSH provider's extra."""

    login: str | None = None
    port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def key_fields(extra: Mapping[str, Any]) -> dict[str, Any]:
    """An SSH connection's key and host-key fields, under the SSH provider's extra names (private_key, key_file,
    private_key_passphrase): what the audit's and the remediation's connections both hand to SshSettings."""
    return {"private_key": extra.get("private_key"), "key_file": extra.get("key_file"),
            "passphrase": extra.get("private_key_passphrase") or None,
            "host_key_policy": parse_policy(extra.get("host_key_policy")),  # security state fails closed
            "known_hosts": extra.get("known_hosts")}


def ssh_settings(params: AuditParams, connection: Callable[[bool], SshConnection | None]) -> SshSettings | None:
    """The run's SSH settings from the connection, read with the SSH provider's extra names (private_key,
    key_file). With transport eic it gives the login (OS user), port and host-key policy, and needs no key.
    Transport ssm reads none (None); auto reads it when it exists (connection(required=False) may give None)
    and uses eic when it holds no key."""
    if params.transport == "ssm":
        return None
    conn = connection(params.transport != "auto")
    if conn is None:
        return None
    extra = conn.extra
    return SshSettings(
        username=conn.login or DEFAULT_SSH_LOGIN,
        **key_fields(extra),
        port=int(conn.port or 22),
        proxy_jump=extra.get("proxy_jump") or extra.get("ProxyJump") or None,
        proxy_jump_host_key=extra.get("proxy_jump_host_key") or None,
        connect_timeout=float(params.connect_timeout),
        command_timeout=float(params.command_timeout),
        host_budget=float(params.host_timeout),
        transport=ssh_side(params.transport, bool(extra.get("private_key") or extra.get("key_file"))),
    )


def ssm_settings(params: AuditParams) -> SsmSettings | None:
    """SSM Run Command's settings from the run's params (None unless the transport is ssm or auto)."""
    if params.transport not in ("ssm", "auto"):
        return None
    owner = params.ssm_output_bucket_owner or None
    if params.ssm_output_bucket and not owner:  # every read names the owner: the evidence account's by default
        from include.aws.clients import default_account_id

        owner = default_account_id()
    return SsmSettings(command_timeout=params.command_timeout, delivery_timeout=max(30, params.host_timeout),
                       output_bucket=params.ssm_output_bucket or None, output_bucket_owner=owner,
                       max_concurrency=min(50, params.concurrency), document=params.ssm_document or None)


def transport_clients(params: AuditParams, region: str, account: str = "") -> dict[str, Any]:
    """The AWS clients the run's transport needs for one batch (verify_batch's keyword arguments)."""
    from include.aws import clients as aws_clients

    clients: dict[str, Any] = {}
    if params.transport in ("eic", "auto"):
        clients["eic_client"] = aws_clients.eic_client(region, account)
    if params.transport in ("ssm", "auto"):
        clients["ssm_client"] = aws_clients.ssm_client(region, account)
        if params.ssm_output_bucket:
            clients["s3_client"] = aws_clients.s3_client(region, account)
    return clients


@dataclass
class Plan:
    """Which transport takes which hosts, and the hosts none may take: their host-key pin could not be read
    (never "first use"), so they are recorded ERROR with the reason, not connected to."""

    legs: list[tuple[Transport, list[Host]]]
    unread: list[tuple[Host, str]] = field(default_factory=list)


@dataclass
class BatchTransports:
    """One batch's transports: its settings, clients and canary tag; `calls` counts their AWS calls (the bench)."""

    params: AuditParams
    ssh: SshSettings | None  # None: no SSH connection (transport ssm, or auto without one)
    ssm: SsmSettings | None
    tag: str
    eic_client: Any = None  # ec2-instance-connect (eic, auto without a key)
    ssm_client: Any = None
    s3_client: Any = None  # ssm_output_bucket
    calls: Counter[str] = field(default_factory=Counter)

    async def plan(self, hosts: list[Host], keys: HostKeys) -> Plan:
        """SSH-side hosts need their pins read first (fail closed): those whose pin is unread go to no transport."""
        choice = self.params.transport
        ssm_hosts, ssh_hosts, plan = [], hosts, Plan([])
        if choice in ("ssm", "auto"):
            ssm = SsmTransport(self.ssm_client, self.s3_client, self.ssm or SsmSettings(), calls=self.calls,
                               tag=self.tag)
            if choice == "ssm":
                ssm_hosts, ssh_hosts = hosts, []
            else:
                try:
                    ssm_hosts, ssh_hosts = split_for_auto(hosts, await ssm.describe(hosts))
                except SsmDenied as exc:  # auto: SSM unusable here, so SSH for every host (said in the log)
                    log.warning("transport auto: %s; every host goes over SSH", exc)
            plan.legs.append((ssm, ssm_hosts))
        if ssh_hosts:
            unread = keys.prepare([h.instance_id for h in ssh_hosts])  # first: the SSH side is handed the pins it read
            plan.unread = [(h, unread[h.instance_id]) for h in ssh_hosts if h.instance_id in unread]
            plan.legs.append((self.ssh_transport(keys), [h for h in ssh_hosts if h.instance_id not in unread]))
        return plan

    def ssh_transport(self, keys: HostKeys) -> Transport:
        ssh = self.ssh
        if ssh is None:
            return NoTransport("not reachable through SSM, and no SSH connection (ec2_audit_ssh) to fall back on")
        before_connect = None
        if ssh.transport == "eic":  # a key made for this batch, pushed before each session
            from include.reach.eic import EicBatch

            eic = EicBatch.start(ssh, self.eic_client)
            ssh, before_connect = eic.settings, eic.push
        return SshTransport(ssh, keys.transport_pins, self.params.concurrency, before_connect, tag=self.tag)
