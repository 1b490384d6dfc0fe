"""Verify one batch: SSH fan-out, judge each host, store its evidence as soon as it is judged.

Evidence is flushed every few hosts, so a worker killed mid-batch loses little, and the retried task
skips every host this run already recorded (keyed by run id), so nothing is checked or stored twice.
A host is judged under the run's profile (include/profiles.py); every check is stored whatever it is.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
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
from include.hostkeys import HostKeys, PinStore
from include.models import CheckStatus, Host, HostOutcome, Status, Verdict
from include.profiles import Profile, load_profile
from include.records import Batch
from include.scoring import score_host
from include.ssh_transport import SshSettings, fan_out
from include.waivers import apply_waivers, load_waivers

log = logging.getLogger(__name__)

FLUSH_EVERY = 25
STREAM_CHECK = "cwagent.log_stream_fresh"
SHIPS_CHECK = "cwagent.ships_audit_log"
# AWS-side judging (stream lookups) of one batch stops asking after this long: the rest are ERROR, not a
# task that outlives its execution_timeout (dags/ec2_audit_compliance.py) on a throttled account.
JUDGE_BUDGET_S = 900.0


@dataclass(frozen=True)
class RunContext:
    audit_date: str
    run_id: str
    params: AuditParams
    ssh: SshSettings


def _identity(host: Host, outputs: dict[str, str]) -> dict[str, str | None]:
    """How the agent resolves its placeholders on this host (hostname as the host reports it)."""
    return {"instance_id": host.instance_id, "hostname": parsers.hostname_from(outputs),
            "local_hostname": host.private_dns, "ip_address": host.private_ip}


def _trusted(host: Host) -> dict[str, str | None]:
    """What EC2 says of the instance: the only names a stream may carry to count as this host's."""
    return {"instance_id": host.instance_id, "private_ip": host.private_ip, "private_dns": host.private_dns}


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise BudgetExceeded(f"the batch's AWS judging budget of {self.seconds:g}s is spent")


def judge_stream(outputs: dict[str, str], verdicts: dict[str, Verdict], host: Host, lookup: StreamLookup,
                 params: AuditParams, now: Callable[[], datetime]) -> Verdict:
    """cwagent.log_stream_fresh: the stream the running agent uses, if it is provably this host's, is fresh."""
    if "cwagent_config" not in outputs:
        return Verdict.error("no complete agent config output")
    ships = verdicts.get(SHIPS_CHECK, Verdict.passed(""))
    if ships.status == CheckStatus.FAIL:
        return Verdict.failed("the agent config does not ship audit.log, so no stream can be fresh")
    if ships.status == CheckStatus.ERROR:
        return Verdict.error(f"agent config not judged: {ships.detail}"[:300])
    targets = parsers.stream_targets(outputs, _identity(host, outputs), params.log_group)
    if isinstance(targets, Verdict):
        return targets
    trusted = _trusted(host)
    not_own = {(t.group, t.stream): why for t in targets if (why := parsers.attribution_problem(t, trusted))}
    # Streams that are not this host's are never looked up: their freshness could only mislead.
    observed = {(t.group, t.stream): None if (t.group, t.stream) in not_own else lookup.describe(t.group, t.stream)
                for t in targets}
    return parsers.judge_stream_freshness(observed, now(), params.stream_max_age_minutes, not_own)


def plan_canary(outputs: dict[str, str], verdicts: dict[str, Verdict], host: Host,
                params: AuditParams) -> Canary | Verdict:
    """Where to look for this host's canary, or the verdict when there is nothing to look for."""
    if not params.canary:
        return Verdict.not_applicable("opt-in: run with canary=true")
    token = parsers.canary_token(outputs)
    if isinstance(token, Verdict):
        return token
    if verdicts.get(SHIPS_CHECK, Verdict.passed("")).status == CheckStatus.FAIL:
        return Verdict.failed("canary written, but the agent config does not ship audit.log")
    targets = parsers.stream_targets(outputs, _identity(host, outputs), params.log_group)
    if isinstance(targets, Verdict):
        return targets
    return Canary(host.instance_id, targets[0].group, targets[0].stream, token)


@dataclass
class Judgement:
    status: Status
    failed: list[str]
    verdicts: dict[str, Verdict]
    detail: str
    advisory: list[str] = field(default_factory=list)
    canary: Canary | None = field(default=None)  # set while the canary search is still to come
    complete: bool = True  # the script's end marker was seen (no section missing by a cut)
    truncated: bool = False  # the output cap was hit


def _detail(j: Judgement, profile: Profile) -> str:
    status, failed, verdicts = j.status, j.failed, j.verdicts
    if j.truncated:
        return "output exceeded the size cap and was truncated: the checks it cut off are ERROR"
    if not j.complete:
        return "script output incomplete or unrecognised"
    if status == Status.ERROR:
        return "; ".join(f"{c}: {v.detail}" for c, v in verdicts.items()
                         if v.status == CheckStatus.ERROR and profile.decides(c)) or "no profile check evaluated"
    passed = sum(v.status == CheckStatus.PASS for c, v in verdicts.items() if profile.decides(c))
    not_applicable = sum(v.status == CheckStatus.NOT_APPLICABLE for c, v in verdicts.items() if profile.decides(c))
    return f"{profile.name}: {passed} passed, {len(failed)} failed, {not_applicable} not applicable"


def _score(j: Judgement, profile: Profile) -> None:
    score = score_host(j.verdicts, profile.decides, j.complete and not j.truncated)
    j.status, j.failed, j.advisory = score.status, score.failed, score.advisory
    j.detail = _detail(j, profile)


def judge_host(host: Host, outcome: HostOutcome, lookup: StreamLookup, params: AuditParams,
               now: Callable[[], datetime] = utc_now, profile: Profile | None = None) -> Judgement:
    """Transport outcome + script output → status, failed check ids, verdicts, one-line detail. Never raises:
    a host whose output breaks the judge is ERROR, the batch goes on."""
    profile = profile or load_profile(params.profile)
    if outcome.transport_status is not None:
        return Judgement(outcome.transport_status, [], {}, outcome.transport_detail)
    try:
        return _judge_output(host, outcome, lookup, params, now, profile)
    except Exception as exc:  # noqa: BLE001 - one odd host must not cost the batch
        log.exception("judging %s failed", host.instance_id)
        return Judgement(Status.ERROR, [], {}, f"could not judge this host's output: {type(exc).__name__}: {exc}"[:300])


def _judge_output(host: Host, outcome: HostOutcome, lookup: StreamLookup, params: AuditParams,
                  now: Callable[[], datetime], profile: Profile) -> Judgement:
    output = split_sections(outcome.output.decode("utf-8", errors="replace"), outcome.nonce)
    output.truncated = outcome.truncated
    verdicts = evaluate_host_checks(output, CheckOptions(rule_groups=load_rule_set(params.rule_set)))
    present = output.usable()
    try:
        verdicts[STREAM_CHECK] = judge_stream(present, verdicts, host, lookup, params, now)
    except Exception as exc:  # noqa: BLE001 - an AWS error for one host is that check's ERROR
        verdicts[STREAM_CHECK] = Verdict.error(f"CloudWatch Logs lookup failed: {type(exc).__name__}: {exc}"[:200])
    canary = plan_canary(present, verdicts, host, params)
    if isinstance(canary, Verdict):
        verdicts[CANARY_CHECK], canary = canary, None
    j = Judgement(Status.ERROR, [], verdicts, "", canary=canary, complete=output.complete, truncated=output.truncated)
    _score(j, profile)
    return j


def settle_canaries(waiting: list[Judgement], logs_client, since_ms: int, wait_s: float, profile: Profile) -> None:
    """Search the batch's canaries together, then fill in each host's verdict and status. A canary found in
    the host's stream proves delivery: it also settles log_stream_fresh when that stream was not provably
    the host's own (shared or misnamed)."""
    seen = find_canaries(logs_client, [j.canary for j in waiting], since_ms, wait_s)
    for j in waiting:
        delay = seen.get(j.canary.instance_id)
        where = f"{j.canary.group}/{j.canary.stream}"
        if delay is not None:
            j.verdicts[CANARY_CHECK] = Verdict.passed(f"canary found in {where} after {delay:g}s")
            if j.verdicts.get(STREAM_CHECK, Verdict.passed("")).status != CheckStatus.PASS:
                j.verdicts[STREAM_CHECK] = Verdict.passed(f"this host's canary arrived in {where} after {delay:g}s: "
                                                          "delivery proven end to end")
        else:
            j.verdicts[CANARY_CHECK] = Verdict.failed(f"canary not found in {where} within {wait_s:g}s")
        j.canary = None
        _score(j, profile)


class EvidenceWriter:
    """Buffers a batch's items and writes them every `every` hosts (and at close), one writer at a time."""

    def __init__(self, store: EvidenceStore, every: int = FLUSH_EVERY) -> None:
        self.store, self.every, self.pending = store, every, []

    def add(self, item: dict) -> bool:
        """Returns whether a flush is due."""
        self.pending.append(item)
        return len(self.pending) >= self.every

    def take(self) -> list[dict]:
        # Swapped out on the event loop thread, so no append can slip between copy and clear.
        taken = self.pending[:]
        del self.pending[:]
        return taken

    def write(self, items: list[dict]) -> None:
        if items:
            self.store.put_items(items)

    def close(self) -> None:
        self.write(self.take())


def verify_batch(batch: Batch | dict, ctx: RunContext, ec2_client, logs_client, store: EvidenceStore) -> dict:
    """Check every host of one batch and store its evidence. Returns only counts (XCom stays small)."""
    batch = batch if isinstance(batch, Batch) else Batch.from_xcom(batch)
    region, ids = batch.region, list(batch.instance_ids)
    profile = load_profile(ctx.params.profile)
    waivers = load_waivers(ctx.params.waivers_file)
    hosts, gone = hydrate(ec2_client, region, ids, ctx.params.address)
    already = store.recorded_by_run(ctx.audit_date, [h.instance_id for h in hosts], ctx.run_id)
    todo = [h for h in hosts if h.instance_id not in already]
    if already:
        log.info("retry: %d hosts already recorded by run %s, skipping them", len(already), ctx.run_id)
    counts: Counter[str] = Counter()
    writer = EvidenceWriter(store)
    budget = Budget(JUDGE_BUDGET_S)
    lookup = StreamLookup(logs_client, likely_names=[h.instance_id for h in todo], before_call=budget.check)

    def record(host: Host, outcome: HostOutcome | None, j: Judgement) -> bool:
        status, failed, waived = apply_waivers(host, j.status, j.failed, waivers, ctx.audit_date)
        counts[status.value] += 1
        item = instance_item(host=host, outcome=outcome, status=status, failed=failed, verdicts=j.verdicts,
                             detail=j.detail, audit_date=ctx.audit_date, run_id=ctx.run_id,
                             checked_at=utc_now(), ttl_days=ctx.params.ttl_days, profile=profile.name,
                             advisory=j.advisory, transport=ctx.params.transport, waived=waived)
        return writer.add(item)

    for host in todo:
        if host.is_windows:
            record(host, None, Judgement(Status.NOT_APPLICABLE, [], {}, "Windows instance: Linux audit checks do not apply"))
    linux = [h for h in todo if not h.is_windows]
    keys = HostKeys(ctx.ssh.host_key_policy, PinStore(store.resource, store.table_name),
                    accept=ctx.params.accept_host_keys, run_id=ctx.run_id, known_hosts=ctx.ssh.known_hosts)
    unread = keys.prepare([h.instance_id for h in linux])  # pins that could not be read: never "first use"
    for host in linux:
        if host.instance_id in unread:
            record(host, None, Judgement(Status.ERROR, [], {}, unread[host.instance_id]))
    linux = [h for h in linux if h.instance_id not in unread]
    awaiting: list[tuple[Host, HostOutcome, Judgement]] = []

    async def run() -> None:
        lock = asyncio.Lock()

        async def on_outcome(host: Host, outcome: HostOutcome) -> None:
            # First-sight pin, accepted rotation, lost race: may make it HOST_KEY_MISMATCH or ERROR. Before judging.
            await asyncio.to_thread(keys.settle, host, outcome)
            judged = await asyncio.to_thread(judge_host, host, outcome, lookup, ctx.params, utc_now, profile)
            # The batch keeps no host's command output once judged: only its hash and size, as evidence.
            if outcome.output:
                outcome.output_sha256 = hashlib.sha256(outcome.output).hexdigest()
                outcome.output_bytes = len(outcome.output)
                outcome.output = b""
            if judged.canary is not None:  # stored once the batch's canaries have been searched
                awaiting.append((host, outcome, judged))
                return
            if record(host, outcome, judged):
                taken = writer.take()
                async with lock:  # one writer at a time: boto3 resources are not thread-safe
                    await asyncio.to_thread(writer.write, taken)

        script = SCRIPT_WITH_CANARY if ctx.params.canary else SCRIPT
        await fan_out(linux, ctx.ssh, script, keys.transport_pins, ctx.params.concurrency, on_outcome)

    since_ms = int(utc_now().timestamp() * 1000) - 60_000
    try:
        if linux:
            asyncio.run(run())
        if awaiting:
            settle_canaries([j for _, _, j in awaiting], logs_client, since_ms, ctx.params.canary_wait_seconds,
                            profile)
            for host, outcome, judged in awaiting:
                record(host, outcome, judged)
    finally:
        writer.close()  # what was judged is stored even when the batch fails (e.g. its bastion dropped)
    return {"label": batch.label or region, "region": region, "hosts": len(ids),
            "already_recorded": len(already), "no_longer_running": len(gone), "counts": dict(counts)}
