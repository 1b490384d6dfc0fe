"""Run approved fixes on hosts through the remediation login: the audit's host-key checks, constant commands,
every step's exit status and output hash kept.

One SSH session per host (include/ssh_transport.connect, the audit's own key-exchange checks) through the
`ec2_audit_remediate_ssh` connection — never the audit's read-only one. Each step of a fix is its own exec
channel: the step's command is a constant of include/checks/fixes.py, its stdin (the agent fragment) is data.

Stricter than the audit, because this changes hosts:
- a host must already be pinned (the audit pinned it): a key is never trusted on first use here, and
  `insecure` is refused;
- the key seen must be the one in the evidence the plan was built from (a key rotated since, even if
  accepted by the audit, is refused until a new audit day and a new approval);
- a step that exits 3 or 4 is the fix's own guard refusing (include/checks/fixes.py): nothing was changed.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import asyncssh

from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.reach.hostkeys import Pin
from include.reach.ssh import SessionFailed, SessionRetry, SshSettings, connect
from include.remediation.plan import HostPlan, PlannedFix
from include.remediation.records import FixRun, StepRun

log = logging.getLogger(__name__)

GUARD_REFUSED = (3, 4)  # the fixes' guards: 3 = nothing this fix may do applies here, 4 = kernel immutable
OUTPUT_CAP = 64 * 1024  # bytes read per step (hashed); the rest is dropped and the step is marked cut
REMEDIATION_OUTPUT_CAP = 2048  # bytes of each step's output kept in the record for the reader


@dataclass
class HostFixes:
    """What happened on one host: `result` ran | refused | failed (before re-verify decides fixed or not)."""

    instance_id: str
    result: str
    detail: str = ""
    host_key_fingerprint: str = ""
    fixes: list[FixRun] = field(default_factory=list)

    @property
    def touched(self) -> bool:
        """A fix was started on the host (perhaps cut short): it must be re-verified."""
        return bool(self.fixes)


def refused(instance_id: str, detail: str, fingerprint: str = "") -> HostFixes:
    return HostFixes(instance_id, "refused", detail, fingerprint)


def precheck(plan: HostPlan, host: Host | None, pin: Pin | None, policy: str) -> str:
    """Why this host must not be touched (or "" when it may): checked before any connection."""
    if host is None:
        return "no longer running"
    if policy == "insecure":
        return "host_key_policy insecure: remediation never connects without checking the host key"
    if policy == "tofu" and pin is None:
        return "no pinned host key: remediation never trusts a key on first use (the audit pins it)"
    if plan.host_key_fingerprint and pin is not None and pin.fingerprint != plan.host_key_fingerprint:
        return (f"the pinned key ({pin.fingerprint}) is not the one the plan's evidence saw "
                f"({plan.host_key_fingerprint}): audit the host again, then approve a new plan")
    return ""


async def _run_step(conn: asyncssh.SSHClientConnection, command: str, stdin: str, timeout: float) -> StepRun:
    digest, kept, size = hashlib.sha256(), bytearray(), 0
    stdin_sha = hashlib.sha256(stdin.encode()).hexdigest() if stdin else ""

    async def run() -> int | None:
        nonlocal size
        async with conn.create_process(command, encoding=None, stderr=asyncssh.STDOUT) as proc:
            if stdin:
                proc.stdin.write(stdin.encode())
            proc.stdin.write_eof()
            while chunk := await proc.stdout.read(65536):
                if size >= OUTPUT_CAP:
                    continue  # drain without keeping: the step must still finish and report its status
                chunk = chunk[:OUTPUT_CAP - size]
                digest.update(chunk)
                kept.extend(chunk[:max(0, REMEDIATION_OUTPUT_CAP - len(kept))])
                size += len(chunk)
            await proc.wait()
            return proc.exit_status

    status = await asyncio.wait_for(run(), timeout)
    text = kept.decode(errors="replace") + (" [cut]" if size >= OUTPUT_CAP else "")
    return StepRun(command=command, stdin_sha256=stdin_sha, exit_status=status, output_sha256=digest.hexdigest(),
                   output=text)


async def _run_fix(conn, fix: PlannedFix, timeout: float) -> FixRun:
    steps: list[StepRun] = []
    for step in fix.steps:
        try:
            ran = await _run_step(conn, step.command, step.stdin, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            steps.append(StepRun(command=step.command, output=f"no answer within {timeout:g}s"))
            return FixRun(fix.fix, list(fix.check_ids), "failed", f"step {len(steps)} timed out",
                          [s.to_item() for s in steps] + _not_run(fix, len(steps)))
        steps.append(ran)
        if ran.exit_status in GUARD_REFUSED:
            return FixRun(fix.fix, list(fix.check_ids), "refused", f"step {len(steps)}: {ran.output.strip()[:300]}",
                          [s.to_item() for s in steps] + _not_run(fix, len(steps)))
        if ran.exit_status != 0:
            return FixRun(fix.fix, list(fix.check_ids), "failed",
                          f"step {len(steps)} exited {ran.exit_status}: {ran.output.strip()[:300]}",
                          [s.to_item() for s in steps] + _not_run(fix, len(steps)))
    return FixRun(fix.fix, list(fix.check_ids), "ran", "", [s.to_item() for s in steps])


def _not_run(fix: PlannedFix, done: int) -> list[dict]:
    return [StepRun(command=s.command).to_item() for s in fix.steps[done:]]


async def fix_host(plan: HostPlan, host: Host, settings: SshSettings, key: asyncssh.SSHKey, pin: Pin | None,
                   result: HostFixes) -> None:
    """Fills `result` as it goes (so a host budget that runs out keeps what already ran). Never raises."""
    outcome = HostOutcome(instance_id=plan.instance_id, transport_status=None)
    conn = None
    for attempt in range(1, settings.attempts + 1):
        try:
            conn = await connect(host, settings, key, pin, outcome)
            break
        except SessionFailed as exc:
            result.result = "refused" if exc.status == Status.HOST_KEY_MISMATCH else "failed"
            result.detail, result.host_key_fingerprint = f"{exc.status.value}: {exc.detail}", outcome.host_key_fingerprint or ""
            return
        except SessionRetry as exc:
            if attempt == settings.attempts:
                result.result, result.detail = "failed", f"{exc.status.value}: {exc.detail}"
                return
            await asyncio.sleep(settings.backoff * attempt)
    result.host_key_fingerprint = fingerprint = outcome.host_key_fingerprint or ""
    if plan.host_key_fingerprint and fingerprint != plan.host_key_fingerprint:  # belt and braces: pin == evidence
        conn.close()
        result.result, result.detail = "refused", f"host presented {fingerprint}, the evidence saw {plan.host_key_fingerprint}"
        return
    try:
        async with conn:
            for fix in plan.fixes:  # independent fixes: one refused or failed does not stop the next
                # In place first: if the host budget runs out mid-fix, the record still says it was started.
                result.fixes.append(FixRun(fix.fix, list(fix.check_ids), "failed", "did not finish",
                                           _not_run(fix, 0)))
                result.fixes[-1] = await _run_fix(conn, fix, settings.command_timeout)
    except (asyncssh.Error, OSError) as exc:
        result.detail = f"session dropped: {type(exc).__name__}: {exc}"[:300]
    settle(result, plan)


def settle(result: HostFixes, plan: HostPlan) -> None:
    """The host's result from its fixes': failed if any failed or did not run, refused if every one refused."""
    results = {f.result for f in result.fixes}
    if result.detail or "failed" in results or len(result.fixes) < len(plan.fixes):
        result.result = "failed"
    elif results == {"refused"}:
        result.result = "refused"
    else:
        result.result = "ran"
    result.detail = result.detail or "; ".join(f"{f.fix}: {f.result}{' (' + f.detail + ')' if f.detail else ''}"
                                               for f in result.fixes)


async def fix_hosts(plans: Iterable[HostPlan], hosts: Mapping[str, Host], settings: SshSettings,
                    pins: Mapping[str, Pin], concurrency: int = 10) -> list[HostFixes]:
    """Every planned host gets exactly one result, in plan order; at most `concurrency` sessions at once."""
    key = settings.load_key()
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(plan: HostPlan) -> HostFixes:
        host, pin = hosts.get(plan.instance_id), pins.get(plan.instance_id)
        if why := precheck(plan, host, pin, settings.host_key_policy):
            return refused(plan.instance_id, why)
        result = HostFixes(plan.instance_id, "failed")
        async with gate:
            try:
                await asyncio.wait_for(fix_host(plan, host, settings, key, pin, result), settings.host_budget)
            except (asyncio.TimeoutError, TimeoutError):
                result.result, result.detail = "failed", f"host budget of {settings.host_budget:g}s exhausted"
            except Exception as exc:  # noqa: BLE001 - one host's bug must not cost the others their results
                log.exception("remediation of %s", plan.instance_id)
                result.result, result.detail = "failed", f"internal error: {type(exc).__name__}"
        return result

    return list(await asyncio.gather(*(one(p) for p in plans)))
