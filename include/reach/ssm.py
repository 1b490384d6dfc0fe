"""The SSM Run Command transport (`transport: ssm`, and the SSM half of `auto`): no inbound SSH at all.

The same combined script as SSH, through `AWS-RunShellScript`:
  1. `DescribeInstanceInformation` for the batch (50 ids a page): an instance SSM does not manage, or whose
     agent's ping status is not Online, is UNREACHABLE with that reason — nothing is sent to it.
  2. One `SendCommand` per host, each with a random nonce of its own (probes.frame; the only per-host input,
     so the hosts cannot share one command): a command's parameters are readable by every instance it
     targets, and with `ssm_output_bucket` every instance role may write the bucket, so a nonce shared by
     several hosts would let one of them write a peer's output object framed well enough to be judged as
     the peer's. A host is sent only its own nonce; an object a peer wrote there lacks it and is unusable
     (ERROR), never a verdict (docs/SECURITY.md, the bucket policy this relies on). On the host the nonce
     sits in the agent's root-only document folder; root could forge anything on that host anyway.
     `MaxErrors` 100 %; a refused call (AccessDenied of a scoped policy, an instance gone offline in between)
     gives that host its status (AUTH_FAILED, UNREACHABLE).
  3. Results come from `ListCommandInvocations(Details=True)` pages per command — never a per-host poll loop.
     Each finished host's output is read once: the full stdout from S3 when `ssm_output_bucket` is set (always
     with `ExpectedBucketOwner`: a bucket of that name owned by anyone else is refused by S3), else
     `GetCommandInvocation`, which returns only the first 24,000 characters: output that reaches that limit
     is ERROR ("output truncated by SSM"), never judged. With the bucket, GetCommandInvocation is read only for
     a host whose object is missing, at most INLINE_FALLBACK_READS a batch (the rest: ERROR naming the object);
     without it, discovery refuses a fleet too large for one GetCommandInvocation a host
     (include/reach/choice.py, inline_read_problem).
Timed out or cancelled → ERROR; not delivered → UNREACHABLE. SSM's managed-instance registration stands in
for the host key: each outcome keeps the agent's ping status, version and the command id as evidence.

Cost per host: ≈ 1/50 DescribeInstanceInformation + 1 SendCommand + one ListCommandInvocations per poll
until it finishes, plus one GetCommandInvocation — or, with ssm_output_bucket, one S3 GetObject (and
GetCommandInvocation only for a missing object, ≤ 25 a batch).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from include.aws.errors import error_code, is_denied
from include.checks.probes import NO_TAG, frame, new_nonce
from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.reach import ssm_document
from include.reach.ssm_document import Verified

log = logging.getLogger(__name__)

DOCUMENT = "AWS-RunShellScript"
PLUGIN = "aws:runShellScript"
MAX_IDS = 50  # SendCommand's InstanceIds and DescribeInstanceInformation's filter: 50 at most
INLINE_LIMIT = 24_000  # GetCommandInvocation's StandardOutputContent: the first 24,000 characters
# With ssm_output_bucket, GetCommandInvocation is read only for a host whose S3 object is missing (the agent could
# not upload it), and at most this many times a batch: the rest of such hosts are ERROR naming the object, so a
# bucket the instance roles cannot write never turns back into one GetCommandInvocation per host.
INLINE_FALLBACK_READS = 25
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated",
            "DeliveryTimedOut", "ExecutionTimedOut"}
OnOutcome = Callable[[Host, HostOutcome], Awaitable[None]]


@dataclass(frozen=True)
class SsmSettings:
    command_timeout: int = 60  # AWS-RunShellScript's executionTimeout: the script's bound on the host
    delivery_timeout: int = 90  # SendCommand's TimeoutSeconds: a command not started by then never runs
    output_bucket: str | None = None  # full stdout from S3 instead of the 24,000-character inline output
    output_bucket_owner: str | None = None  # its account id: ExpectedBucketOwner on every read (required with it)
    output_prefix: str = "ec2-audit-ssm"
    max_concurrency: int = 50
    poll_s: float = 2.0
    max_output: int = 1 << 20  # bytes read from S3, as SSH's cap
    comment: str = "ec2-audit daily check (read-only)"
    slack_s: float = 30.0
    # The audit's own SSM document (include/reach/ssm_document.py) instead of AWS-RunShellScript: the role may then
    # be allowed to send that document only. Checked against this release's script before each batch.
    document: str | None = None

    @property
    def collect_budget_s(self) -> float:
        """How long results are awaited after sending: delivery, then the run, then some slack."""
        return float(self.delivery_timeout + self.command_timeout + self.slack_s)


@dataclass(frozen=True)
class Registration:
    """What SSM says of one managed instance (DescribeInstanceInformation)."""

    instance_id: str
    ping_status: str
    agent_version: str = ""
    last_ping: str = ""

    @property
    def online(self) -> bool:
        return self.ping_status == "Online"

    def evidence(self) -> dict[str, str]:
        return {"ssm_ping_status": self.ping_status, "ssm_agent_version": self.agent_version,
                "ssm_last_ping": self.last_ping}


class SsmDenied(RuntimeError):
    """DescribeInstanceInformation refused: the role may not use SSM at all."""


def describe(client, instance_ids: list[str], calls: Counter | None = None) -> dict[str, Registration]:
    """The registrations of the instances SSM manages, among `instance_ids`."""
    found: dict[str, Registration] = {}
    paginator = client.get_paginator("describe_instance_information")
    for start in range(0, len(instance_ids), MAX_IDS):
        chunk = instance_ids[start:start + MAX_IDS]
        try:
            for page in paginator.paginate(Filters=[{"Key": "InstanceIds", "Values": chunk}],
                                           PaginationConfig={"PageSize": MAX_IDS}):
                if calls is not None:
                    calls["DescribeInstanceInformation"] += 1
                for info in page.get("InstanceInformationList", []):
                    last = info.get("LastPingDateTime")
                    found[info["InstanceId"]] = Registration(
                        info["InstanceId"], str(info.get("PingStatus", "")), str(info.get("AgentVersion", "")),
                        last.isoformat() if hasattr(last, "isoformat") else str(last or ""))
        except Exception as exc:  # noqa: BLE001 - classified: denied fails every host, the rest raises
            if is_denied(exc):
                code, message = error_code(exc)
                raise SsmDenied(f"ssm:DescribeInstanceInformation refused: {code}: {message}"[:300]) from exc
            raise
    return found


def unreachable_reason(host: Host, reg: Registration | None) -> str | None:
    """Why SSM cannot run the script on this host now (None: it can)."""
    if reg is None:
        return (f"{host.instance_id} is not managed by SSM (no DescribeInstanceInformation entry): no SSM "
                "agent, or its instance profile lacks AmazonSSMManagedInstanceCore")
    if not reg.online:
        return f"SSM agent ping status is {reg.ping_status} (last ping {reg.last_ping or 'never'}), not Online"
    return None


def s3_key(prefix: str, command_id: str, instance_id: str, step: str = "0.awsrunShellScript") -> str:
    """Where SSM puts a runShellScript step's stdout (the agent's own layout; AWS-RunShellScript's step is
    "0.awsrunShellScript", a schema 2.2 document's is its step name)."""
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return f"{head}{command_id}/{instance_id}/awsrunShellScript/{step}/stdout"


def invocation_outcome(host: Host, invocation: dict, reg: Registration, command_id: str) -> HostOutcome | None:
    """A finished invocation's status as an outcome still to be filled with output (transport_status None),
    or already final (an error status); None when it has not finished."""
    status = str(invocation.get("Status", ""))
    details = str(invocation.get("StatusDetails", ""))
    if status not in TERMINAL and details not in TERMINAL:
        return None
    outcome = HostOutcome(instance_id=host.instance_id, transport_status=None, transport="ssm", attempts=1,
                          transport_evidence={**reg.evidence(), "ssm_command_id": command_id,
                                              "ssm_status": f"{status}/{details}"})
    if status in ("Success", "Failed"):
        return outcome  # Failed = a non-zero exit: the output (framed) still decides what was seen
    if details == "DeliveryTimedOut" or status in ("Undeliverable", "DeliveryTimedOut"):
        outcome.transport_status = Status.UNREACHABLE
        outcome.transport_detail = f"SSM did not deliver the command ({status}/{details}): the agent did not pick it up"
    else:  # TimedOut (execution), Cancelled, Terminated
        outcome.transport_status = Status.ERROR
        outcome.transport_detail = f"SSM command {status.lower()} on the host ({details or status})"
    return outcome


def inline_output(content: str) -> tuple[bytes, str | None]:
    """GetCommandInvocation's StandardOutputContent → (bytes, problem). Reaching the limit = cut by SSM."""
    if len(content) >= INLINE_LIMIT:
        return b"", (f"output truncated by SSM at {INLINE_LIMIT:,} characters (GetCommandInvocation's limit): "
                     "set ssm_output_bucket to read the full output from S3")
    return content.encode("utf-8", errors="replace"), None


@dataclass
class SsmTransport:
    """One batch's SSM reach: the registrations (read once), the sends, the collection, the call counts."""

    client: object  # boto3 "ssm" client of the batch's account and region
    s3: object | None  # boto3 "s3" client, for ssm_output_bucket
    settings: SsmSettings
    registrations: dict[str, Registration] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    name: str = "ssm"
    verified: Verified | None = None  # the audit document's version that holds this release's script
    # The batch's canary tag (probes.frame), framed with AWS-RunShellScript. The audit document holds the
    # checks without the canary (config refuses canary=true with ssm_document), so it takes no tag.
    tag: str = NO_TAG

    def __post_init__(self) -> None:
        self._fallbacks, self._fallback_lock = 0, threading.Lock()  # GetCommandInvocation reads for missing objects
        if self.client is None:
            raise ValueError("transport ssm needs an SSM client for the batch")
        if self.settings.output_bucket and self.s3 is None:
            raise ValueError("ssm_output_bucket needs an S3 client for the batch")
        if self.settings.output_bucket and not self.settings.output_bucket_owner:
            raise ValueError("ssm_output_bucket needs ssm_output_bucket_owner, the bucket's account id: every read "
                             "names it (ExpectedBucketOwner), so output in someone else's bucket is never read")

    async def describe(self, hosts: list[Host]) -> dict[str, Registration]:
        self.registrations.update(await asyncio.to_thread(describe, self.client, [h.instance_id for h in hosts],
                                                          self.calls))
        return self.registrations

    async def run(self, hosts: list[Host], script: str, on_outcome: OnOutcome) -> None:
        """Every host gets exactly one outcome through `on_outcome`; this never raises for one host."""
        if not hosts:
            return
        try:
            missing = [h for h in hosts if h.instance_id not in self.registrations]
            if missing:
                await self.describe(missing)
        except SsmDenied as exc:
            for host in hosts:
                await on_outcome(host, self._final(host, Status.AUTH_FAILED, str(exc)))
            return
        ready = []
        for host in hosts:
            reason = unreachable_reason(host, self.registrations.get(host.instance_id))
            if reason:
                await on_outcome(host, self._final(host, Status.UNREACHABLE, reason))
            else:
                ready.append(host)
        if ready and self.settings.document:
            problem = await asyncio.to_thread(self._verify_document, script)
            if problem:
                for host in ready:
                    await on_outcome(host, self._final(host, *problem))
                return
        commands = []
        for host in ready:  # a nonce per host, so a command per host (see the module docstring)
            nonce = new_nonce()
            sent, refused = await asyncio.to_thread(self._send, [host], frame(script, nonce, self.tag), nonce)
            commands += sent
            for refused_host, status, detail in refused:
                await on_outcome(refused_host, self._final(refused_host, status, detail))
        await self._collect(commands, on_outcome)

    # ---- sending

    def _verify_document(self, script: str) -> tuple[Status, str] | None:
        """Fail closed: a document that is not exactly this release's script runs nowhere."""
        name = self.settings.document
        self.calls["GetDocument"] += 1
        try:
            self.verified = ssm_document.verify(self.client, name, script)
        except ssm_document.DocumentMismatch as exc:
            return Status.ERROR, str(exc)[:300]
        except Exception as exc:  # noqa: BLE001 - classified
            code, message = error_code(exc)
            status = Status.AUTH_FAILED if is_denied(exc) else Status.ERROR
            return status, f"ssm:GetDocument {name}: {code or 'error'}: {message}"[:300]
        return None

    def _send(self, hosts: list[Host], body: bytes, nonce: str) -> tuple[list[tuple[str, str, list[Host]]], list]:
        """SendCommand for this host (a list of one: its nonce is its own). Returns ([(command_id, nonce,
        hosts)], []) or ([], [(host, status, detail)]) when the call is refused."""
        try:
            return [(self._send_one(hosts, body, nonce), nonce, hosts)], []
        except Exception as exc:  # noqa: BLE001 - classified below
            code, message = error_code(exc)
            status = Status.AUTH_FAILED if is_denied(exc) else Status.UNREACHABLE
            detail = f"ssm:SendCommand refused: {code or 'error'}: {message}"[:300]
            return [], [(h, status, detail) for h in hosts]

    def _send_one(self, hosts: list[Host], body: bytes, nonce: str) -> str:
        s = self.settings
        extra = {"OutputS3BucketName": s.output_bucket, "OutputS3KeyPrefix": s.output_prefix} if s.output_bucket else {}
        if self.verified is not None:  # the audit's document, at the version checked: only the nonce travels
            extra.update(DocumentName=self.verified.name, DocumentVersion=self.verified.version,
                         Parameters={"nonce": [nonce], "executionTimeout": [str(s.command_timeout)]})
        else:
            extra.update(DocumentName=DOCUMENT,
                         Parameters={"commands": [body.decode()], "executionTimeout": [str(s.command_timeout)]})
        self.calls["SendCommand"] += 1
        answer = self.client.send_command(
            InstanceIds=[h.instance_id for h in hosts], Comment=s.comment[:100],
            TimeoutSeconds=max(30, s.delivery_timeout), MaxConcurrency=str(max(1, s.max_concurrency)),
            MaxErrors="100%", **extra)
        return answer["Command"]["CommandId"]

    # ---- collecting

    async def _collect(self, commands: list[tuple[str, str, list[Host]]], on_outcome: OnOutcome) -> None:
        pending = {(cid, h.instance_id): (h, nonce) for cid, nonce, hosts in commands for h in hosts}
        deadline = time.monotonic() + self.settings.collect_budget_s
        if pending:
            await asyncio.sleep(self.settings.poll_s)  # nothing has finished the moment it was sent
        while pending:
            for cid in sorted({cid for cid, _ in pending}):
                done = await asyncio.to_thread(self._finished, cid, pending)
                if done:
                    await asyncio.gather(*(self._complete(cid, inv, pending.pop((cid, inv["InstanceId"])),
                                                          on_outcome) for inv in done))
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(self.settings.poll_s)
        for (cid, _), (host, _) in sorted(pending.items(), key=lambda kv: kv[0]):
            await on_outcome(host, self._final(host, Status.ERROR, f"SSM command {cid} did not finish within "
                                                                   f"{self.settings.collect_budget_s:g}s",
                                               command_id=cid))

    def _finished(self, command_id: str, pending: dict) -> list[dict]:
        done = []
        paginator = self.client.get_paginator("list_command_invocations")
        for page in paginator.paginate(CommandId=command_id, Details=True, PaginationConfig={"PageSize": MAX_IDS}):
            self.calls["ListCommandInvocations"] += 1
            for inv in page.get("CommandInvocations", []):
                if (command_id, inv.get("InstanceId")) in pending and (
                        inv.get("Status") in TERMINAL or inv.get("StatusDetails") in TERMINAL):
                    done.append(inv)
        return done

    async def _complete(self, command_id: str, invocation: dict, host_nonce: tuple[Host, str],
                        on_outcome: OnOutcome) -> None:
        host, nonce = host_nonce
        reg = self.registrations[host.instance_id]
        outcome = invocation_outcome(host, invocation, reg, command_id)
        outcome.nonce = nonce
        if self.verified is not None:
            outcome.transport_evidence["ssm_document"] = f"{self.verified.name}:{self.verified.version}"
        if outcome.transport_status is None:
            try:
                await asyncio.to_thread(self._read_output, command_id, host, outcome)
            except Exception as exc:  # noqa: BLE001 - this host's output is unreadable: its ERROR
                code, message = error_code(exc)
                outcome.transport_status = Status.ERROR
                outcome.transport_detail = f"SSM output of {command_id} unreadable: {code or 'error'}: {message}"[:300]
        await on_outcome(host, outcome)

    def _read_output(self, command_id: str, host: Host, outcome: HostOutcome) -> None:
        s = self.settings
        step = ssm_document.STEP if self.verified else None
        if s.output_bucket:
            key = s3_key(s.output_prefix, command_id, host.instance_id, *([step] if step else []))
            url = f"s3://{s.output_bucket}/{key}"
            self.calls["s3:GetObject"] += 1
            try:
                answer = self.s3.get_object(Bucket=s.output_bucket, Key=key, Range=f"bytes=0-{s.max_output}",
                                            ExpectedBucketOwner=s.output_bucket_owner)
            except Exception as exc:  # noqa: BLE001 - only a missing object may fall back (below)
                code, message = error_code(exc)
                if code not in ("NoSuchKey", "404"):
                    raise
                with self._fallback_lock:  # outputs are read in threads
                    spent = self._fallbacks >= INLINE_FALLBACK_READS
                    self._fallbacks += not spent
                if spent:
                    outcome.transport_status = Status.ERROR
                    outcome.transport_detail = (f"SSM output object {url} missing ({code}): can the instance role "
                                                f"write ssm_output_bucket? This batch's {INLINE_FALLBACK_READS} "
                                                "GetCommandInvocation fallback reads are spent")[:300]
                    return
                outcome.transport_evidence["ssm_output"] = f"GetCommandInvocation ({url} missing: {code})"
                self._read_inline(command_id, host, outcome, step)
                return
            data = answer["Body"].read()
            outcome.output, outcome.truncated = data[:s.max_output], len(data) > s.max_output
            outcome.transport_evidence["ssm_output"] = url
            return
        self._read_inline(command_id, host, outcome, step)

    def _read_inline(self, command_id: str, host: Host, outcome: HostOutcome, step: str | None) -> None:
        self.calls["GetCommandInvocation"] += 1
        answer = self.client.get_command_invocation(CommandId=command_id, InstanceId=host.instance_id,
                                                    PluginName=step or PLUGIN)
        output, problem = inline_output(str(answer.get("StandardOutputContent", "")))
        if problem:
            outcome.transport_status, outcome.transport_detail = Status.ERROR, problem
        outcome.output = output

    def _final(self, host: Host, status: Status, detail: str, command_id: str = "") -> HostOutcome:
        reg = self.registrations.get(host.instance_id)
        evidence = reg.evidence() if reg else {"ssm_ping_status": "not managed"}
        if command_id:
            evidence["ssm_command_id"] = command_id
        return HostOutcome(instance_id=host.instance_id, transport_status=status, transport_detail=detail,
                           transport="ssm", transport_evidence=evidence)
