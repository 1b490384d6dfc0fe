"""`python -m include.integrity verify | history | output` (contract: Evidence command line; docs/EVIDENCE.md).

Exit codes: 0 intact / found; 1 a problem named (verify) or nothing kept to show (history, output); 2 the
store cannot be read (or the command line is wrong, as argparse says).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import date, timedelta

from include.evidence.observation import CURRENT, canonical_value, parse_key
from include.integrity.reader import EvidenceReader, StoreUnreadable
from include.integrity.verify import seq_of, verify

DEFAULT_TABLE = "ec2_audit_evidence"


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m include.integrity",
                                  description="Verify and read the audit evidence (no Airflow needed).")
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--table", default=DEFAULT_TABLE, help=f"evidence table [{DEFAULT_TABLE}]")
        sub.add_argument("--region", default="", help="AWS region [the connection's, else the AWS chain's]")
        return sub

    check = command("verify", "recompute every day's manifest, raw output hashes and the seal chain")
    check.add_argument("--from", dest="first", type=_day, required=True, metavar="YYYY-MM-DD")
    check.add_argument("--to", dest="last", type=_day, required=True, metavar="YYYY-MM-DD")
    check.add_argument("--public-key", default="", metavar="PEM",
                       help="verify signatures offline with this public key (kms:GetPublicKey); every seal in "
                            "the range must then be signed. Default: kms:Verify on each signed seal's key")
    for name, help_text in (("history", "every observation of a host on a day, one JSON object a line"),
                            ("output", "the kept raw output of an observation, byte for byte")):
        sub = command(name, help_text)
        sub.add_argument("--instance", required=True)
        sub.add_argument("--day", type=_day, required=True, metavar="YYYY-MM-DD")
        if name == "output":
            which = sub.add_mutually_exclusive_group()
            which.add_argument("--seq", type=int, help="that observation [the current one]")
            which.add_argument("--run", default="", metavar="RUN_ID", help="that run's latest observation")
    return top


def reader_for(args) -> EvidenceReader:
    from botocore.exceptions import BotoCoreError, ClientError

    from include.integrity.credentials import ENV, Aws

    try:
        return EvidenceReader(Aws.from_env(args.region), args.table)
    except (BotoCoreError, ClientError) as exc:  # a profile that does not exist, a role we may not assume
        raise StoreUnreadable(f"AWS credentials: {exc}") from exc
    except ValueError as exc:  # not a connection Airflow could read either
        raise StoreUnreadable(f"{ENV}: {exc}") from exc


def days_in(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def run_verify(args, out) -> int:
    if args.first > args.last:
        print(f"--from {args.first} is after --to {args.last}", file=sys.stderr)
        return 2
    reader = reader_for(args)
    if args.public_key:
        from include.integrity.signatures import pem_verifier

        with open(args.public_key, "rb") as handle:
            verifier = pem_verifier(handle.read())
    else:
        from include.integrity.signatures import kms_verifier

        verifier = kms_verifier(reader.aws.client("kms"))

    def in_scope(day: str, previous_day: str) -> bool:
        return args.first <= day <= args.last or args.first <= previous_day <= args.last

    seals = reader.seals(in_scope, verifier)
    hints: dict[str, int] = {}
    for seal in seals:  # the highest seq a seal names for the day: its versions are read at least that far
        for member in seal.members or []:
            hints[seal.day] = max(hints.get(seal.day, 0), member.seq - 1)
    days = [reader.day(day, hints.get(day, 0)) for day in days_in(args.first, args.last)]
    outcome = verify(days, seals, args.first, args.last, int(time.time()), require_signed=bool(args.public_key))
    for line in outcome.lines():
        print(line, file=out)
    return outcome.exit_code


def history_record(item: dict) -> dict:
    """One observation as `history` prints it: every stored attribute, its day and seq, and whether it is the
    current one."""
    record = {k: canonical_value(v) for k, v in item.items() if k not in ("item_type", "day")}
    record.update(audit_date=parse_key(str(item["audit_date"]))[0], seq=seq_of(item),
                  current=item.get("item_type") == CURRENT)
    for name in ("run_id", "checked_at", "status", "output_sha256", "trigger"):
        record.setdefault(name, "")
    record.setdefault("failed_checks", [])
    return record


def run_history(args, out) -> int:
    items = reader_for(args).host_day(args.instance, args.day)
    if not items:
        print(f"no observation of {args.instance} on {args.day}", file=sys.stderr)
        return 1
    for item in items:
        print(json.dumps(history_record(item), sort_keys=True, ensure_ascii=False), file=out)
    return 0


def pick(items: list[dict], seq: int | None, run_id: str) -> dict | None:
    """The observation `output` shows: --seq N, else --run's latest, else the current one."""
    if seq is not None:
        found = [it for it in items if seq_of(it) == seq]
    elif run_id:
        found = [it for it in items if it.get("run_id") == run_id]
    else:
        found = [it for it in items if it.get("item_type") == CURRENT]
    return found[-1] if found else None  # host_day is ordered by seq


def run_output(args, out) -> int:
    reader = reader_for(args)
    items = reader.host_day(args.instance, args.day)
    item = pick(items, args.seq, args.run)
    which = f"seq {args.seq}" if args.seq is not None else f"run {args.run}" if args.run else "current"
    if item is None:
        print(f"no observation of {args.instance} on {args.day} ({which})", file=sys.stderr)
        return 1
    raw = reader.raw_output(item)
    if raw is None:
        reason = "none was kept" if not item.get("output_ref") else f"{item['output_ref']} holds nothing for it"
        print(f"no raw output of {args.instance} on {args.day} seq {seq_of(item)}: {reason}", file=sys.stderr)
        return 1
    if hashlib.sha256(raw).hexdigest() != item.get("output_sha256"):
        print(f"the kept raw output of {args.instance} on {args.day} seq {seq_of(item)} does not match its "
              "output_sha256 (altered): not shown", file=sys.stderr)
        return 1
    out.buffer.write(raw)
    out.flush()
    return 0


def main(argv: list[str] | None = None, out=None) -> int:
    args = parser().parse_args(argv)
    out = out or sys.stdout
    try:
        return {"verify": run_verify, "history": run_history, "output": run_output}[args.command](args, out)
    except StoreUnreadable as exc:
        print(f"cannot read the evidence: {exc}", file=sys.stderr)
        return 2
