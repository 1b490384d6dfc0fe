"""Verify one batch: SSH fan-out, judge each host, store its evidence as soon as it is judged.

Evidence is flushed every few hosts, so a worker killed mid-batch loses little, and the retried task
skips every host this run already recorded (keyed by run id), so nothing is checked or stored twice.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from include.canary import Canary, find_canaries
from include.checks import parsers
from include.checks.catalogue import CANARY_CHECK, SCRIPT, SCRIPT_WITH_CANARY, CheckOptions, evaluate_host_checks
from include.checks.rulesets import load_rule_set
from include.checks.sections import split_sections
from include.cloudwatch import StreamLookup
from include.config import AuditParams
from include.discovery import hydrate
from include.evidence import EvidenceStore, instance_item, utc_now
from include.models import CheckStatus, Host, HostOutcome, Status, Verdict
from include.scoring import host_status
from include.ssh_transport import SshSettings, fan_out
from include.waivers import apply_waivers, load_waivers

log = logging.getLogger(__name__)

FLUSH_EVERY = 25
STREAM_CHECK = "cwagent.log_stream_fresh"


@dataclass(frozen=True)
class RunContext:
    audit_date: str
    run_id: str
    params: AuditParams
    ssh: SshSettings


def _identity(host: Host, outputs: dict[str, str]) -> dict[str, str | None]:
    return {"instance_id": host.instance_id, "hostname": parsers.hostname_from(outputs),
            "local_hostname": host.private_dns, "ip_address": host.private_ip}


def judge_stream(outputs: dict[str, str], verdicts: dict[str, Verdict], host: Host, lookup: StreamLookup,
                 params: AuditParams, now: Callable[[], datetime]) -> Verdict:
    """cwagent.log_stream_fresh: the stream this host's own config names, looked up on the AWS side."""
    if "cwagent_config" not in outputs:
        return Verdict.error("no complete agent config output")
    if verdicts.get("cwagent.ships_audit_log", Verdict.passed("")).status == CheckStatus.FAIL:
        return Verdict.failed("the agent config does not ship audit.log, so no stream can be fresh")
    names = parsers.stream_names(outputs, _identity(host, outputs), params.log_group)
    if isinstance(names, str):
        return Verdict.error(names)
    observed = {(g, s): lookup.describe(g, s) for g, s in names}
    return parsers.judge_stream_freshness(observed, now(), params.stream_max_age_minutes)


def plan_canary(outputs: dict[str, str], verdicts: dict[str, Verdict], host: Host,
                params: AuditParams) -> Canary | Verdict:
    """Where to look for this host's canary, or the verdict when there is nothing to look for."""
    if not params.canary:
        return Verdict.not_applicable("opt-in: run with canary=true")
    token = parsers.canary_token(outputs)
    if isinstance(token, Verdict):
        return token
    if verdicts.get("cwagent.ships_audit_log", Verdict.passed("")).status == CheckStatus.FAIL:
        return Verdict.failed("canary written, but the agent config does not ship audit.log")
    names = parsers.stream_names(outputs, _identity(host, outputs), params.log_group)
    if isinstance(names, str) or not names:
        return Verdict.error(names or "no stream to search")
    group, stream = names[0]
    return Canary(host.instance_id, group, stream, token)


@dataclass
class Judgement:
    status: Status
    failed: list[str]
    verdicts: dict[str, Verdict]
    detail: str
    canary: Canary | None = field(default=None)  # set while the canary search is still to come


def _detail(status: Status, failed: list[str], verdicts: dict[str, Verdict], output) -> str:
    if output is not None and output.truncated:
        return "output exceeded the size cap and was truncated"
    if output is not None and not output.complete:
        return "script output incomplete or unrecognised"
    if status == Status.ERROR:
        return "; ".join(f"{c}: {v.detail}" for c, v in verdicts.items() if v.status == CheckStatus.ERROR)
    passed = sum(v.status == CheckStatus.PASS for v in verdicts.values())
    not_applicable = sum(v.status == CheckStatus.NOT_APPLICABLE for v in verdicts.values())
    return f"{passed} passed, {len(failed)} failed, {not_applicable} not applicable"


def judge_host(host: Host, outcome: HostOutcome, lookup: StreamLookup, params: AuditParams,
               now: Callable[[], datetime] = utc_now) -> Judgement:
    """Transport outcome + script output → status, failed check ids, verdicts, one-line detail."""
    if outcome.transport_status is not None:
        return Judgement(outcome.transport_status, [], {}, outcome.transport_detail)
    output = split_sections(outcome.output.decode("utf-8", errors="replace"))
    output.truncated = outcome.truncated
    verdicts = evaluate_host_checks(output, CheckOptions(rule_groups=load_rule_set(params.rule_set)))
    present = {name: text for name, text in output.sections.items() if name not in output.ambiguous}
    try:
        verdicts[STREAM_CHECK] = judge_stream(present, verdicts, host, lookup, params, now)
    except Exception as exc:  # noqa: BLE001 - an AWS error for one host is that check's ERROR
        verdicts[STREAM_CHECK] = Verdict.error(f"CloudWatch Logs lookup failed: {type(exc).__name__}: {exc}"[:200])
    canary = plan_canary(present, verdicts, host, params)
    if isinstance(canary, Verdict):
        verdicts[CANARY_CHECK], canary = canary, None
    status, failed = host_status(verdicts)
    return Judgement(status, failed, verdicts, _detail(status, failed, verdicts, output), canary)


def settle_canaries(waiting: list[Judgement], logs_client, since_ms: int, wait_s: float) -> None:
    """Search the batch's canaries together, then fill in each host's verdict and status."""
    seen = find_canaries(logs_client, [j.canary for j in waiting], since_ms, wait_s)
    for j in waiting:
        delay = seen.get(j.canary.instance_id)
        j.verdicts[CANARY_CHECK] = (
            Verdict.passed(f"canary found in {j.canary.group}/{j.canary.stream} after {delay:g}s") if delay is not None
            else Verdict.failed(f"canary not found in {j.canary.group}/{j.canary.stream} within {wait_s:g}s"))
        j.status, j.failed = host_status(j.verdicts)
        j.detail = _detail(j.status, j.failed, j.verdicts, None)
        j.canary = None


def verify_batch(batch: dict, ctx: RunContext, ec2_client, logs_client, store: EvidenceStore) -> dict:
    """Check every host of one batch and store its evidence. Returns only counts (XCom stays small)."""
    region, ids = batch["region"], list(batch["instance_ids"])
    hosts, gone = hydrate(ec2_client, region, ids, ctx.params.address)
    already = store.recorded_by_run(ctx.audit_date, [h.instance_id for h in hosts], ctx.run_id)
    todo = [h for h in hosts if h.instance_id not in already]
    if already:
        log.info("retry: %d hosts already recorded by run %s, skipping them", len(already), ctx.run_id)
    counts: Counter[str] = Counter()
    pending: list[dict] = []
    new_pins: list[tuple[str, str, str, str]] = []
    repins: list[tuple] = []  # operator-accepted rotations (accept_host_keys)
    lookup = StreamLookup(logs_client, likely_names=[h.instance_id for h in todo])  # default stream name

    waivers = load_waivers(ctx.params.waivers_file)

    def record(host: Host, outcome: HostOutcome | None, j: Judgement) -> None:
        status, failed, waived = apply_waivers(host, j.status, j.failed, waivers, ctx.audit_date)
        counts[status.value] += 1
        item = instance_item(host=host, outcome=outcome, status=status, failed=failed, verdicts=j.verdicts,
                             detail=j.detail, audit_date=ctx.audit_date, run_id=ctx.run_id,
                             checked_at=utc_now(), ttl_days=ctx.params.ttl_days)
        item["waived_checks"] = waived
        pending.append(item)

    def take() -> tuple[list[dict], list[tuple], list[tuple]]:
        # Swapped out on the event loop thread, so no append can slip between copy and clear.
        items, pins_, repins_ = pending[:], new_pins[:], repins[:]
        del pending[:], new_pins[:], repins[:]
        return items, pins_, repins_

    def write(items: list[dict], pins_: list[tuple], repins_: list[tuple]) -> None:
        for instance_id, key, fingerprint, address in pins_:
            store.pin(instance_id, key, fingerprint, address)
        for args in repins_:
            store.repin(*args)
        if items:
            store.put_items(items)

    for host in todo:
        if host.is_windows:
            record(host, None, Judgement(Status.NOT_APPLICABLE, [], {}, "Windows instance: Linux audit checks do not apply"))
    linux = [h for h in todo if not h.is_windows]
    pins = store.load_pins([h.instance_id for h in linux]) if ctx.ssh.host_key_policy == "tofu" else {}
    # An operator-approved rotation: connect without the old pin, then replace it with the key seen now.
    accepted = {i: pins.pop(i, None) for i in ctx.params.accept_host_keys if i in {h.instance_id for h in linux}}

    async def run() -> None:
        lock = asyncio.Lock()

        async def on_outcome(host: Host, outcome: HostOutcome) -> None:
            judged = await asyncio.to_thread(judge_host, host, outcome, lookup, ctx.params)
            status = judged.status
            if host.instance_id in accepted and outcome.host_key:
                old = accepted[host.instance_id]
                outcome.host_key_note = (f"re-pinned by accept_host_keys (was {old.fingerprint})" if old
                                         else "pinned by accept_host_keys")
                repins.append((host.instance_id, outcome.host_key, outcome.host_key_fingerprint, host.address,
                               old.fingerprint if old else None, ctx.run_id))
            elif (ctx.ssh.host_key_policy == "tofu" and host.instance_id not in pins and outcome.host_key
                    and status != Status.HOST_KEY_MISMATCH):
                new_pins.append((host.instance_id, outcome.host_key, outcome.host_key_fingerprint, host.address))
            if judged.canary is not None:  # stored once the batch's canaries have been searched
                awaiting.append((host, outcome, judged))
                return
            record(host, outcome, judged)
            if len(pending) >= FLUSH_EVERY:
                taken = take()
                async with lock:  # one writer at a time: boto3 resources are not thread-safe
                    await asyncio.to_thread(write, *taken)

        script = SCRIPT_WITH_CANARY if ctx.params.canary else SCRIPT
        await fan_out(linux, ctx.ssh, script, pins, ctx.params.concurrency, on_outcome)

    awaiting: list[tuple[Host, HostOutcome, Judgement]] = []
    since_ms = int(utc_now().timestamp() * 1000) - 60_000
    if linux:
        asyncio.run(run())
    if awaiting:
        settle_canaries([j for _, _, j in awaiting], logs_client, since_ms, ctx.params.canary_wait_seconds)
        for host, outcome, judged in awaiting:
            record(host, outcome, judged)
    write(*take())
    return {"label": batch.get("label", region), "region": region, "hosts": len(ids),
            "already_recorded": len(already), "no_longer_running": len(gone), "counts": dict(counts)}
